"""A pool of GPU hosts that run the session server (`--innovator-hosts hosts.toml`).

Each item leases GPUs from one of the pool's servers (remote/leases.py: the server grants and
expires its leases itself, so harnesses sharing a pool never collide) and runs its workspace and
sessions there. The host chosen is the one that fits best: the fewest free GPUs that still hold
the item, so large holes stay free for large items. While every host that could hold the item is
busy, the item waits; when no host of the pool has that many GPUs, it cannot run here at all.
A heartbeat renews the lease; a host that stops answering (or a lease that expired there) marks
the lease lost, and the item's next request to that host fails saying so.

hosts.toml::

    [[hosts]]
    url = "https://gpu-a:8765"        # pytest-innovator serve --root DIR --gpus 0,1,2,3
    token_file = "~/.innovator/gpu-a.token"
    name = "gpu-a"                    # optional; default: the URL's host and port
    labels = ["a100"]                 # optional; recorded with each lease
"""

from __future__ import annotations

import threading
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..errors import InnovatorError
from ..remote.client import Connection, LeaseRefused, RemoteError, ServerUnreachable

LEASE_TTL_S = 60.0  # a harness that died frees its GPUs within this
FIRST_POLL_S = 0.5
MAX_POLL_S = 10.0
HOST_KEYS = {"url", "token_file", "name", "labels"}


class PoolError(InnovatorError):
    """A hosts file that cannot be used, or a pool that cannot hold an item; the message says why."""


class PoolCannotHold(PoolError):
    """Every host of the pool answered, and none has as many GPUs as the item needs."""


@dataclass(frozen=True)
class PoolHost:
    name: str
    url: str
    token_file: Path
    labels: tuple[str, ...] = ()

    def token(self) -> str:
        try:
            return self.token_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise PoolError(f"host {self.name}: cannot read its token file ({exc})") from None

    def connect(self, retries: int = 2) -> Connection:
        return Connection(self.url, self.token(), retries=retries)


def load_pool(path: Path) -> list[PoolHost]:
    """The hosts of a hosts.toml; PoolError names the file, the entry and what is wrong."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise PoolError(f"{path}: {exc}") from None
    entries = data.get("hosts")
    if not isinstance(entries, list) or not entries or set(data) - {"hosts"}:
        raise PoolError(f"{path}: expected one or more [[hosts]] tables (url, token_file; optional name, labels)")
    hosts: list[PoolHost] = []
    for number, entry in enumerate(entries, 1):
        where = f"{path}: host {number}"
        unknown = set(entry) - HOST_KEYS
        if unknown:
            raise PoolError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(HOST_KEYS)}")
        url, token_file = entry.get("url"), entry.get("token_file")
        if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
            raise PoolError(f"{where}: url must be the session server's http(s)://HOST:PORT, not {url!r}")
        if not isinstance(token_file, str) or not token_file:
            raise PoolError(f"{where}: token_file must name the file holding the server's token")
        labels = entry.get("labels", [])
        if not isinstance(labels, list) or not all(isinstance(label, str) for label in labels):
            raise PoolError(f"{where}: labels must be a list of strings")
        name = entry.get("name", urlsplit(url).netloc)
        if not isinstance(name, str) or not name or "/" in name:
            raise PoolError(f"{where}: name must be a non-empty string without '/'")
        token_path = Path(token_file).expanduser()
        if not token_path.is_absolute():
            token_path = path.parent / token_path
        hosts.append(PoolHost(name, url.rstrip("/"), token_path, tuple(labels)))
    names = [host.name for host in hosts]
    if len(set(names)) != len(names):
        raise PoolError(f"{path}: two hosts are named alike ({names}): give each a name")
    return hosts


def ask_hosts(hosts: list[PoolHost]) -> tuple[dict[PoolHost, dict[str, Any]], dict[str, str]]:
    """Each host's GPUs and leases (GET /v1/leases), and why the others did not answer."""
    answers: dict[PoolHost, dict[str, Any]] = {}
    problems: dict[str, str] = {}
    for host in hosts:
        try:
            connection = host.connect(retries=0)
        except PoolError as exc:
            problems[host.name] = str(exc)
            continue
        try:
            answers[host] = connection.request("GET", "/v1/leases")
        except (ServerUnreachable, RemoteError, ValueError) as exc:
            problems[host.name] = str(exc)
        finally:
            connection.close()
    return answers, problems


def silent_hosts(problems: dict[str, str]) -> str:
    """The hosts that did not answer, and why, on one line."""
    return "; ".join(f"{name}: {problem}" for name, problem in problems.items())


@dataclass
class PoolLease:
    """GPUs of one pool host, held for one item; a GpuLease to the fixtures (devices, owner,
    acquired_at, cuda_visible_devices) plus the host and the heartbeat's verdict."""

    host: PoolHost
    lease_id: str
    devices: tuple[str, ...]
    owner: str
    acquired_at: float
    lost: str | None = None  # why the lease no longer holds (the host stopped answering, it expired)
    companions: list[PoolLease] = field(default_factory=list)  # the other hosts of an item that spans hosts
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)

    def cuda_visible_devices(self) -> str:
        return ",".join(self.devices)

    def alive_check(self) -> None:
        """Raises ServerUnreachable at once when the heartbeat found the host gone."""
        if self.lost:
            raise ServerUnreachable(self.lost)

    @property
    def hosts(self) -> list[PoolLease]:
        """This lease and its companions: every host the item holds, the first one first."""
        return [self, *self.companions]

    def start_heartbeat(self, ttl_s: float) -> None:
        threading.Thread(target=self._renew, args=(ttl_s / 3,), daemon=True, name="lease-heartbeat").start()

    def _renew(self, every_s: float) -> None:
        connection = self.host.connect(retries=2)
        try:
            while not self._stop.wait(every_s):
                try:
                    connection.request("POST", f"/v1/leases/{self.lease_id}/renew")
                except LeaseRefused as exc:
                    self.lost = f"the GPU lease on host {self.host.name} is gone ({exc})"
                    return
                except (ServerUnreachable, RemoteError) as exc:
                    self.lost = f"host {self.host.name} stopped answering: {exc}"
                    return
        finally:
            connection.close()

    def release(self) -> None:
        for companion in self.companions:
            companion.release()
        self._stop.set()
        if self.lost:
            return
        try:
            connection = self.host.connect(retries=1)
        except PoolError:
            return
        try:
            connection.request("DELETE", f"/v1/leases/{self.lease_id}")
        except (LeaseRefused, ServerUnreachable, RemoteError):
            pass  # it expires on its own
        finally:
            connection.close()


def lease_from_pool(
    hosts: list[PoolHost], count: int, holder: str, ttl_s: float = LEASE_TTL_S, spread: int = 1
) -> PoolLease:
    """Lease `count` GPUs on each of `spread` hosts, the best-fitting ones, waiting while the hosts
    that could hold them are busy; the first host's lease holds the others' as its companions.
    Never holds some hosts while waiting for more (two items waiting for each other's hosts would
    wait for ever). PoolCannotHold when every host answered and fewer than `spread` have `count`
    GPUs; PoolError when the hosts that might have them did not answer."""
    poll = FIRST_POLL_S
    what = f"{count} GPUs on one host" if spread == 1 else f"{count} GPUs on each of {spread} hosts"
    while True:
        answers, problems = ask_hosts(hosts)
        large_enough = {host: answer for host, answer in answers.items() if len(answer["gpus"]) >= count}
        if len(large_enough) < spread:
            sizes = ", ".join(f"{host.name}: {len(answer['gpus'])}" for host, answer in answers.items())
            if not problems:
                raise PoolCannotHold(f"{what}; the pool's hosts have {sizes}")
            raise PoolError(
                f"{what}; the hosts that answered have {sizes or 'nothing'}, "
                f"the others did not answer ({silent_hosts(problems)})"
            )
        free_now = [host for host in large_enough if len(large_enough[host]["free"]) >= count]
        chosen = sorted(free_now, key=lambda h: len(large_enough[h]["free"]))[:spread]
        leases = []
        if len(chosen) == spread:
            for host in chosen:
                lease = _ask_lease(host, count, holder, ttl_s)
                if lease is None:  # another holder was quicker: give back what this one got
                    for held in leases:
                        held.release()
                    break
                leases.append(lease)
        if leases and len(leases) == spread:
            first, *others = leases
            first.companions = others
            for lease in leases:
                lease.start_heartbeat(ttl_s)
            return first
        time.sleep(poll)
        poll = min(poll * 1.5, MAX_POLL_S)


def _ask_lease(host: PoolHost, count: int, holder: str, ttl_s: float) -> PoolLease | None:
    """The lease, or None when another holder took the GPUs first (or the host went away)."""
    connection = host.connect(retries=0)
    try:
        info = connection.request("POST", "/v1/leases", json={"gpus": count, "holder": holder, "ttl_s": ttl_s})
    except (LeaseRefused, ServerUnreachable):
        return None
    finally:
        connection.close()
    return PoolLease(host, info["id"], tuple(info["devices"]), holder, time.time())
