"""An item that holds several hosts (a task's `resources.hosts`, e.g. InnovatorBench task 6: one
server trains while the other serves a model): a workspace on each, one set of sessions.

The first host's workspace is the item's workspace (its files are what the grader receives);
each other host gets a workspace of its own, provisioned from the same starter files, whose
sessions the agent reaches through the same tools. Sessions on the first host keep their names;
a session on another host is named `<host>/<name>`: `create_session` with `host` makes one, and
every other session tool then takes that name. `list_hosts` says what each host holds.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

WATCH_SLICE_S = 0.5  # how long each host is asked at a time, when waiting for any command to finish


class SpanningSessions:
    """The SessionManager methods the environment and the tools use, over several hosts' sessions."""

    def __init__(self, first: str, managers: dict[str, Any]):
        self.first = first
        self.managers = managers  # host name -> its workspace's sessions, the first host's first

    def _split(self, name: str) -> tuple[Any, str]:
        host, slash, rest = name.partition("/")
        if slash and host in self.managers and host != self.first:
            return self.managers[host], rest
        return self.managers[self.first], name

    def create(self, name: str | None = None, host: str | None = None) -> Any:
        if host is None or host == self.first:
            return self.managers[self.first].create(name)
        if host not in self.managers:
            raise ValueError(f"this item holds no host {host!r}; its hosts: {', '.join(self.managers)}")
        session = self.managers[host].create(name)
        return _Named(session, f"{host}/{session.name}")

    def get(self, name: str) -> Any:
        manager, own_name = self._split(name)
        session = manager.get(own_name)
        return session if manager is self.managers[self.first] else _Named(session, name)

    def list(self) -> list[Any]:
        statuses = []
        for host, manager in self.managers.items():
            prefix = "" if host == self.first else f"{host}/"
            statuses += [dataclasses.replace(s, name=prefix + s.name) for s in manager.list()]
        return statuses

    def close(self, name: str) -> None:
        manager, own_name = self._split(name)
        manager.close(own_name)

    def close_all(self) -> None:
        for manager in self.managers.values():
            manager.close_all()

    def watch_any(self, timeout: float) -> bool:
        """Wait until a command running on any host finishes (or timeout); False at once when none runs."""
        deadline = time.monotonic() + max(timeout, 0.0)
        while True:
            running = [m for m in self.managers.values() if any(s.busy for s in m.list())]
            if not running:
                return False
            for manager in running:
                if manager.watch_any(min(WATCH_SLICE_S, max(deadline - time.monotonic(), 0.0))):
                    return True
            if time.monotonic() >= deadline:
                return False


class _Named:
    """A session of another host, under the name the agent uses for it."""

    def __init__(self, session: Any, name: str):
        self._session = session
        self.name = name

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self._session, attribute)

    def status(self) -> Any:
        return dataclasses.replace(self._session.status(), name=self.name)
