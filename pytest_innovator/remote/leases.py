"""The GPU leases a session server grants, so harnesses that share a pool of hosts never collide.

A lease holds some of the server's GPUs for one holder (an item of some harness) until it is
released or its holder stops renewing it: a lease not renewed within its time to live expires,
its GPUs are free again and the workspaces made under it are closed (their commands killed), so a
harness that died does not keep GPUs busy. The table lives in the server's memory: a restarted
server has no leases, and the harnesses that held some see their renewals refused and fail their
items. Every grant, release and expiry is appended to ``leases.jsonl`` in the server's root.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from .errors import ApiError


@dataclass
class Lease:
    id: str
    devices: tuple[str, ...]
    holder: str
    ttl_s: float
    granted_at: float  # wall clock, for the records
    expires_at: float  # wall clock: when it expires unless renewed


class LeaseTable:
    def __init__(self, devices: tuple[str, ...], log_path: Path | None, on_expire: Callable[[Lease], None]):
        self.devices = devices
        self.log_path = log_path
        self.on_expire = on_expire  # closes what ran under the lease
        self.leases: dict[str, Lease] = {}
        self.lock = threading.Lock()

    def free(self) -> list[str]:
        with self.lock:
            self._expire()
            return self._free()

    def grant(self, count: int, holder: str, ttl_s: float) -> Lease:
        if count > len(self.devices):
            raise ApiError(
                400,
                "lease",
                f"{count} GPUs asked, this host has {len(self.devices)} ({','.join(self.devices) or 'none'}): "
                "lease from a host that has enough",
            )
        with self.lock:
            self._expire()
            free = self._free()
            if len(free) < count:
                raise ApiError(409, "busy", f"{count} GPUs asked, {len(free)} free now: ask again later")
            now = time.time()
            lease = Lease(secrets.token_hex(8), tuple(free[:count]), holder, ttl_s, now, now + ttl_s)
            self.leases[lease.id] = lease
            self._log("granted", lease)
            return lease

    def renew(self, lease_id: str) -> Lease:
        with self.lock:
            self._expire()
            lease = self._get(lease_id)
            lease.expires_at = time.time() + lease.ttl_s
            return lease

    def release(self, lease_id: str) -> None:
        with self.lock:
            self._expire()
            lease = self._get(lease_id)
            del self.leases[lease_id]
            self._log("released", lease)

    def get(self, lease_id: str) -> Lease:
        with self.lock:
            self._expire()
            return self._get(lease_id)

    def expire_now(self) -> None:
        with self.lock:
            self._expire()

    def _get(self, lease_id: str) -> Lease:
        lease = self.leases.get(lease_id)
        if lease is None:
            raise ApiError(
                404, "lease", f"there is no lease {lease_id!r} on this host: it was released, or it expired unrenewed"
            )
        return lease

    def _free(self) -> list[str]:
        held = {device for lease in self.leases.values() for device in lease.devices}
        return [device for device in self.devices if device not in held]

    def _expire(self) -> None:
        now = time.time()
        for lease in [lease for lease in self.leases.values() if lease.expires_at <= now]:
            del self.leases[lease.id]
            self._log("expired", lease)
            # closing its workspaces kills their commands: not while the table is locked
            threading.Thread(target=self.on_expire, args=(lease,), daemon=True).start()

    def _log(self, event: str, lease: Lease) -> None:
        if self.log_path is None:
            return
        line = json.dumps({"event": event, "at": time.time(), **asdict(lease)})
        with open(self.log_path, "a", encoding="utf-8") as log:
            log.write(line + "\n")
