"""The workspaces a session server serves: the one given on its command line (id ``main``) and
those created through the API under its ``--root``."""

from __future__ import annotations

import secrets
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path

from ..sandbox import Sandbox
from ..sessions import SessionManager
from ..workspace import LocalWorkspace, command_environment
from .errors import ApiError

MAIN_WORKSPACE = "main"


@dataclass
class Served:
    """A workspace the server serves, with the directory for what it keeps beside it."""

    id: str
    workspace: LocalWorkspace
    state_dir: Path  # exposed copies go here; for a provisioned workspace, everything of it
    provisioned: bool
    label: str = ""
    exposed: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class Registry:
    def __init__(self, root: Path | None, sandboxed: bool):
        self.root = root
        self.sandboxed = sandboxed
        self.served: dict[str, Served] = {}
        self.lock = threading.Lock()

    def add_existing(self, directory: Path, log_dir: Path, state_dir: Path, read_only: list[str]) -> Served:
        """Serve an existing directory (the `--workspace` of a container or a host) as `main`."""
        env = command_environment()
        sandbox = self._sandbox(directory, log_dir, network=False) if self.sandboxed else None
        sessions = SessionManager(directory, log_dir, env=env, wrap=sandbox.argv if sandbox else None)
        workspace = LocalWorkspace(directory, sessions, env, sandbox)
        workspace.linked = frozenset((directory / p).resolve() for p in read_only)
        served = Served(MAIN_WORKSPACE, workspace, state_dir, provisioned=False)
        self.served[served.id] = served
        return served

    def provision(self, env: dict[str, str], network: bool, label: str) -> Served:
        if self.root is None:
            raise ApiError(
                409,
                "request",
                "this server serves one workspace and creates none: start it with "
                "--root DIR to let clients create workspaces",
            )
        workspace_id = secrets.token_hex(8)
        state_dir = self.root / workspace_id
        directory, log_dir = state_dir / "workspace", state_dir / "sessions"
        directory.mkdir(parents=True)
        log_dir.mkdir()
        command_env = command_environment(env)
        sandbox = self._sandbox(directory, log_dir, network) if self.sandboxed else None
        sessions = SessionManager(directory, log_dir, env=command_env, wrap=sandbox.argv if sandbox else None)
        served = Served(
            workspace_id,
            LocalWorkspace(directory, sessions, command_env, sandbox),
            state_dir,
            provisioned=True,
            label=label,
        )
        with self.lock:
            self.served[workspace_id] = served
        return served

    def _sandbox(self, directory: Path, log_dir: Path, network: bool) -> Sandbox:
        hidden = [self.root] if self.root else []  # the other workspaces of this server
        return Sandbox(writable=[directory], readonly=[log_dir], hidden=hidden, network=network, chdir=directory)

    def get(self, workspace_id: str) -> Served:
        with self.lock:
            served = self.served.get(workspace_id)
            if served is None:
                raise ApiError(
                    404,
                    "workspace",
                    f"there is no workspace {workspace_id!r} on this server; create one with POST /v1/workspaces",
                )
            return served

    def remove(self, workspace_id: str) -> None:
        served = self.get(workspace_id)
        if not served.provisioned:
            raise ApiError(
                409,
                "request",
                f"workspace {workspace_id!r} was given on the command line and is "
                "not removed through the API; stop the server instead",
            )
        with self.lock:
            self.served.pop(workspace_id, None)
        served.workspace.close()
        shutil.rmtree(served.state_dir, ignore_errors=True)

    def close_all(self) -> None:
        with self.lock:
            served = list(self.served.values())
        for item in served:
            item.workspace.close()
