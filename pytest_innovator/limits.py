"""Resource limits of an item's processes on this host: a cgroup per item, or rlimits where none can be made.

Every process of a sandboxed item (its sessions and one-shot commands; its grader in a cgroup of
its own) starts through `Limits.wrap`, which puts it into the item's cgroup before it runs:

* memory: the task's `memory`, swap off (so the limit is real memory: an allocation past it is
  killed by the kernel's out-of-memory killer, inside the item only);
* CPU: a quota of the task's `cpus` per period (`cpus = 1`: one core's worth of time);
* processes: the task's `processes` (threads count too), so a fork loop stops at the limit;
* I/O weight: 100 (the default share), where the controller exists.

The kernel's interface is used directly (files under /sys/fs/cgroup): cgroup v2 where the host
has the unified hierarchy with its controllers, v1 (one directory per controller) otherwise. No
library is needed for a dozen file writes, and none of the Python ones covers both versions.
Processes join by writing their pid into the cgroup before `exec`: a shell prefix, so a failed
join fails the command instead of running it unlimited.

What the limits did is read back from the cgroup's counters (out-of-memory kills, fork refusals,
throttled periods) and told to the agent after the step that hit them (env.py). Closing the item
kills everything in its cgroup and removes it.

Where no cgroup can be made (not root, no writable hierarchy), the item gets what rlimits give
(`prlimit`: address space for memory) and its description says which limits are not enforced:
never silently unlimited.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
GROUP = "pytest-innovator"
CPU_PERIOD_US = 100_000
V1_CONTROLLERS = ("memory", "pids", "cpu", "blkio")


@dataclass(frozen=True)
class LimitSpec:
    memory: int  # bytes
    cpus: float
    pids: int


@dataclass(frozen=True)
class LimitEvents:
    """Counters of a cgroup: how often each limit acted since it was made."""

    oom_kills: int = 0
    forks_refused: int = 0
    throttled_periods: int = 0


def cgroup_version() -> int | None:
    """2 for a unified hierarchy with its controllers, 1 for per-controller hierarchies, else None."""
    if (CGROUP_ROOT / "cgroup.controllers").is_file():
        return 2
    if all((CGROUP_ROOT / controller).is_dir() for controller in V1_CONTROLLERS[:3]):
        return 1
    return None


class Cgroup:
    """One cgroup of the harness (``/sys/fs/cgroup[/<controller>]/pytest-innovator/<name>``)."""

    def __init__(self, version: int, directories: list[Path], spec: LimitSpec):
        self.version = version
        self.directories = directories  # one (v2), or one per v1 controller: memory first
        self.spec = spec
        self.io_weight = False
        self._seen = LimitEvents()

    @classmethod
    def of_container(cls, container_id: str, spec: LimitSpec) -> Cgroup | None:
        """The cgroup Docker made for a container on this host, to read its counters (its limits
        are Docker's); None where it is not found (another host's daemon, an unknown layout)."""
        version = cgroup_version()
        places = ("docker", container_id), ("system.slice", f"docker-{container_id}.scope")  # cgroupfs, systemd
        if version == 2:
            found = [CGROUP_ROOT.joinpath(*place) for place in places]
            return next((cls(2, [path], spec) for path in found if path.is_dir()), None)
        if version == 1:
            for place in places:
                directories = [CGROUP_ROOT.joinpath(c, *place) for c in V1_CONTROLLERS]
                if directories[0].is_dir():
                    return cls(1, [d for d in directories if d.is_dir()], spec)
        return None

    @classmethod
    def create(cls, name: str, spec: LimitSpec) -> Cgroup | str:
        """The cgroup with the limits written, or why it cannot be made here."""
        version = cgroup_version()
        if version is None:
            return f"no cgroup hierarchy under {CGROUP_ROOT}"
        leaf = f"{name}-{uuid.uuid4().hex[:8]}"
        try:
            if version == 2:
                parent = CGROUP_ROOT / GROUP
                parent.mkdir(exist_ok=True)
                wanted = {"memory", "pids", "cpu", "io"} & set((CGROUP_ROOT / "cgroup.controllers").read_text().split())
                for level in (CGROUP_ROOT, parent):
                    (level / "cgroup.subtree_control").write_text(" ".join(f"+{c}" for c in sorted(wanted)))
                (parent / leaf).mkdir()
                cgroup = cls(2, [parent / leaf], spec)
            else:
                directories = []
                for controller in V1_CONTROLLERS:
                    if (CGROUP_ROOT / controller).is_dir():
                        (CGROUP_ROOT / controller / GROUP).mkdir(exist_ok=True)
                        (CGROUP_ROOT / controller / GROUP / leaf).mkdir()
                        directories.append(CGROUP_ROOT / controller / GROUP / leaf)
                cgroup = cls(1, directories, spec)
            cgroup._write_limits()
        except OSError as exc:
            with contextlib.suppress(UnboundLocalError):
                cgroup.remove()
            return f"cannot create a cgroup ({exc.strerror}: {exc.filename})"
        return cgroup

    def _file(self, name: str) -> Path:
        if self.version == 2:
            return self.directories[0] / name
        controller = {"memory": "memory", "pids": "pids", "cpu": "cpu", "blkio": "blkio"}[name.split(".")[0]]
        return next(d for d in self.directories if d.parts[-3] == controller) / name

    def _write_limits(self) -> None:
        quota = max(1000, int(self.spec.cpus * CPU_PERIOD_US))
        if self.version == 2:
            self._file("memory.max").write_text(str(self.spec.memory))
            if self._file("memory.swap.max").exists():
                self._file("memory.swap.max").write_text("0")
            self._file("pids.max").write_text(str(self.spec.pids))
            self._file("cpu.max").write_text(f"{quota} {CPU_PERIOD_US}")
            if self._file("io.weight").exists():
                self._file("io.weight").write_text("default 100")
                self.io_weight = True
            return
        self._file("memory.limit_in_bytes").write_text(str(self.spec.memory))
        if self._file("memory.memsw.limit_in_bytes").exists():  # memory plus swap: equal means no swap
            self._file("memory.memsw.limit_in_bytes").write_text(str(self.spec.memory))
        else:
            self._file("memory.swappiness").write_text("0")
        self._file("pids.max").write_text(str(self.spec.pids))
        self._file("cpu.cfs_period_us").write_text(str(CPU_PERIOD_US))
        self._file("cpu.cfs_quota_us").write_text(str(quota))
        for weight in ("blkio.bfq.weight", "blkio.weight"):
            if any(d.parts[-3] == "blkio" for d in self.directories) and self._file(weight).exists():
                self._file(weight).write_text("100")
                self.io_weight = True
                break

    def join_argv(self, argv: list[str]) -> list[str]:
        """``argv`` run inside this cgroup (the shell joins, then execs it)."""
        joins = " && ".join(f"echo $$ > {shlex.quote(str(d / 'cgroup.procs'))}" for d in self.directories)
        return ["sh", "-c", f'{joins} && exec "$@"', "sh", *argv]

    def events(self) -> LimitEvents:
        def fields(name: str) -> dict[str, int]:
            try:
                pairs = (line.split() for line in self._file(name).read_text().splitlines())
                return {pair[0]: int(pair[1]) for pair in pairs if len(pair) == 2 and pair[1].isdigit()}
            except OSError:
                return {}

        memory = fields("memory.events" if self.version == 2 else "memory.oom_control")
        return LimitEvents(
            oom_kills=memory.get("oom_kill", 0),
            forks_refused=fields("pids.events").get("max", 0),
            throttled_periods=fields("cpu.stat").get("nr_throttled", 0),
        )

    def new_events(self) -> list[str]:
        """What the limits did since the last call, in plain words (empty if nothing)."""
        now = self.events()
        seen, self._seen = self._seen, now
        said = []
        if now.oom_kills > seen.oom_kills:
            said.append(
                f"out of memory: the kernel killed {now.oom_kills - seen.oom_kills} process(es) of this item, "
                f"which may use {self.spec.memory / 2**30:.3g} GiB (swap off); use less memory"
            )
        if now.forks_refused > seen.forks_refused:
            said.append(
                f"process limit: {now.forks_refused - seen.forks_refused} fork(s) refused, this item may run "
                f"{self.spec.pids} processes at once; end some before starting more"
            )
        if now.throttled_periods > seen.throttled_periods:
            said.append(
                f"CPU limit: throttled in {now.throttled_periods - seen.throttled_periods} periods of "
                f"{CPU_PERIOD_US // 1000} ms, this item may use {self.spec.cpus:g} CPU(s)"
            )
        return said

    def pids(self) -> set[int]:
        found: set[int] = set()
        for directory in self.directories:
            with contextlib.suppress(OSError):
                found.update(int(pid) for pid in (directory / "cgroup.procs").read_text().split())
        return found

    def kill_all(self, timeout: float = 5.0) -> None:
        """SIGKILL every process in the cgroup until none is left (a fork in flight joins late)."""
        deadline = time.monotonic() + timeout
        while (pids := self.pids()) and time.monotonic() < deadline:
            if self.version == 2 and self._file("cgroup.kill").exists():
                with contextlib.suppress(OSError):
                    self._file("cgroup.kill").write_text("1")
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.02)

    def remove(self) -> None:
        self.kill_all()
        for directory in self.directories:
            for _ in range(50):  # a killed process leaves the cgroup a moment after it dies
                try:
                    directory.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.02)


class Limits:
    """What bounds an item's processes: its cgroups (one for the agent's commands, one for the
    grader), or rlimits; `wrap` puts a command under them."""

    def __init__(self, name: str, spec: LimitSpec):
        self.spec = spec
        made = Cgroup.create(name, spec)
        self.cgroup = made if isinstance(made, Cgroup) else None
        self.missing = "" if self.cgroup else made
        self._grader: Cgroup | None = None
        self._name = name

    def bound(self, wrap: Callable[[list[str]], list[str]]) -> Callable[[list[str]], list[str]]:
        """``wrap`` (a sandbox's) followed by this: for a session manager's ``wrap``."""
        return lambda argv: self.wrap(wrap(argv))

    def wrap(self, argv: list[str]) -> list[str]:
        if self.cgroup is not None:
            return self.cgroup.join_argv(argv)
        return rlimited(argv, self.spec)

    def wrap_grader(self, argv: list[str]) -> list[str]:
        if self.cgroup is None:
            return rlimited(argv, self.spec)
        if self._grader is None:
            made = Cgroup.create(f"{self._name}-grader", self.spec)
            self._grader = made if isinstance(made, Cgroup) else None
        return self._grader.join_argv(argv) if self._grader else rlimited(argv, self.spec)

    def describe(self) -> str:
        """One line for the session header and the item's `limits` property."""
        memory = f"memory {self.spec.memory / 2**30:.3g} GiB"
        if self.cgroup is None:
            bounded = f"{memory} of address space" if shutil.which("prlimit") else "nothing (no prlimit)"
            return f"limits by rlimit only ({self.missing}): {bounded}; processes, CPU and I/O not limited"
        io = ", io weight 100" if self.cgroup.io_weight else ", no io weight (no controller)"
        return (
            f"limits by cgroup v{self.cgroup.version}: {memory} without swap, {self.spec.cpus:g} CPU(s), "
            f"{self.spec.pids} processes{io}"
        )

    def new_events(self) -> list[str]:
        """What the limits did since the last call, in plain words (empty if nothing)."""
        return self.cgroup.new_events() if self.cgroup else []

    def close(self) -> None:
        for cgroup in (self.cgroup, self._grader):
            if cgroup is not None:
                cgroup.remove()


def rlimited(argv: list[str], spec: LimitSpec) -> list[str]:
    """``argv`` with its address space bounded by the memory limit. The process count is not
    bounded this way: RLIMIT_NPROC counts every process of the user, the harness's included."""
    prlimit = shutil.which("prlimit")
    if prlimit is None:
        return argv
    return [prlimit, f"--as={spec.memory}", "--", *argv]
