"""Model servers as processes: start one, wait until it answers, stop it, share it across a host.

A server runs in its own session (process group) with its output in a log file; it is ready when
``GET <base_url>/models`` answers with a model list, and an error while waiting carries the tail
of its log. `SharedServer` lets every process on a host that asks for the same server (pytest-xdist
workers, or two pytest runs) use one: the first starts it, the others find it in a small JSON state
file guarded by a file lock, and the last one out stops it. The state lists the pids of its users,
and a watcher process started with the server stops it once none of them is alive: a worker that
was killed (Ctrl-C on an xdist run, kill -9) does not leave the server running.

A server that needs GPUs is started through ``python -m pytest_innovator.llm.server_process hold-gpus``,
which leases the devices (`GpuLeaser`), runs the server with ``CUDA_VISIBLE_DEVICES`` set and holds
the lease exactly as long as the server lives, whichever process stops it.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from ..errors import InnovatorError
from ..rundir import write_json_atomic

LOG_TAIL_LINES = 40
_STOP_GRACE_SECONDS = 15.0
_POLL_SECONDS = 0.25
WATCH_INTERVAL_S = 2.0

# Loopback only: never route a health check through a proxy from the environment.
_loopback_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class ServerStartError(InnovatorError, RuntimeError):
    """A server did not come up: it exited, or did not answer in time. The message has its log tail."""


class LLMEndpoint(NamedTuple):
    """Where an OpenAI-compatible server answers: ``base_url`` ends in /v1."""

    base_url: str
    model: str


def free_loopback_port() -> int:
    """A port that was free on 127.0.0.1 a moment ago (the server binds it itself)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def log_tail(log_path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = log_path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    # Progress bars redraw with carriage returns; keep only what each line ended as.
    kept = [line.rsplit("\r", 1)[-1] for line in text.splitlines()]
    return "\n".join(kept[-lines:]) or "(the log is empty)"


def served_models(base_url: str, timeout_s: float = 5.0) -> list[str]:
    """The model ids a server lists at /models; raises OSError or ValueError when it does not answer."""
    with _loopback_opener.open(f"{base_url.rstrip('/')}/models", timeout=timeout_s) as response:
        listing = json.load(response)
    return [str(entry["id"]) for entry in listing["data"]]


def process_alive(pid: int) -> bool:
    """True while `pid` runs; a zombie (exited, not yet reaped) counts as gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no procfs: trust kill(0)
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


@dataclass
class ServerProcess:
    """A started server: its process group leader, its base URL and its log."""

    pid: int
    base_url: str
    log_path: Path
    popen: subprocess.Popen[bytes] | None = None  # only in the process that started it

    @classmethod
    def launch(
        cls, command: Sequence[str], base_url: str, log_path: Path, env: dict[str, str] | None = None
    ) -> ServerProcess:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log_file:
            log_file.write(f"$ {' '.join(command)}\n".encode())
            log_file.flush()
            popen = subprocess.Popen(
                list(command),
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        return cls(pid=popen.pid, base_url=base_url, log_path=log_path, popen=popen)

    def wait_ready(self, timeout_s: float, what: str = "the server") -> str:
        """Wait until /models answers; return the first model id. Stops the server on failure."""
        deadline = time.monotonic() + timeout_s
        while True:
            exit_code = self.popen.poll() if self.popen is not None else None
            if exit_code is not None or not process_alive(self.pid):
                code = f" with code {exit_code}" if exit_code is not None else ""
                raise ServerStartError(
                    f"{what} exited{code} before it answered at {self.base_url}/models; "
                    f"the end of its log ({self.log_path}):\n{log_tail(self.log_path)}"
                )
            try:
                models = served_models(self.base_url, timeout_s=2.0)
            except (OSError, ValueError, KeyError, TypeError):
                models = []
            if models:
                return models[0]
            if time.monotonic() >= deadline:
                self.stop()
                raise ServerStartError(
                    f"{what} did not answer at {self.base_url}/models within {timeout_s:g} s "
                    f"and was stopped; the end of its log ({self.log_path}):\n{log_tail(self.log_path)}"
                )
            time.sleep(_POLL_SECONDS)

    def stop(self, grace_s: float = _STOP_GRACE_SECONDS) -> None:
        """SIGTERM to the whole process group, SIGKILL after `grace_s`."""
        stop_process_group(self.pid, grace_s)
        if self.popen is not None:
            self.popen.wait()


def stop_process_group(pid: int, grace_s: float = _STOP_GRACE_SECONDS) -> None:
    """SIGTERM to the process group led by `pid`; SIGKILL to what is left of it after `grace_s`."""
    _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while group_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    _signal_group(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5.0
    while group_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def group_alive(pgid: int) -> bool:
    """True while a process of group `pgid` runs (zombies do not count)."""
    try:
        entries = os.listdir("/proc")
    except OSError:  # no procfs: ask the kernel, zombies included
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[-1].split()
        except OSError:
            continue
        if fields[2] == str(pgid) and fields[0] != "Z":  # fields: state, ppid, pgrp, ...
            return True
    return False


# --- sharing one server between the processes of a host --------------------------------------


@dataclass(frozen=True)
class ServerSpec:
    """How to start a server: `key` names it on the host (same key, same server)."""

    key: str
    command: tuple[str, ...]  # without the port: "--port N" is added
    env: dict[str, str] | None = None
    start_timeout_s: float = 600.0
    description: str = "the model server"


class SharedServer:
    """One server per host and key, started by its first user and stopped by its last."""

    def __init__(self, state_dir: Path, spec: ServerSpec) -> None:
        self.state_dir = Path(state_dir)
        self.spec = spec
        self._started: ServerProcess | None = None

    @property
    def state_path(self) -> Path:
        return self.state_dir / f"{self.spec.key}.json"

    @property
    def lock_path(self) -> Path:
        return self.state_dir / f"{self.spec.key}.lock"

    @property
    def log_path(self) -> Path:
        return self.state_dir / f"{self.spec.key}.log"

    def acquire(self) -> LLMEndpoint:
        """Use the running server, or start it. Raises ServerStartError (with the log tail)."""
        me = os.getpid()
        with self._locked():
            state = self._read_state()
            if state is not None and self._usable(state):
                state["users"] = sorted(set(_live(state["users"])) | {me})
                self._write_state(state)
                return LLMEndpoint(state["base_url"], state["model"])
            if state is not None:  # its server died or hangs: clear it away
                stop_process_group(int(state["pid"]), grace_s=5.0)
            port = free_loopback_port()
            base_url = f"http://127.0.0.1:{port}/v1"
            with contextlib.suppress(FileNotFoundError):
                self.log_path.unlink()
            server = ServerProcess.launch(
                (*self.spec.command, "--port", str(port)), base_url, self.log_path, env=self.spec.env
            )
            self._started = server
            model = server.wait_ready(self.spec.start_timeout_s, what=self.spec.description)
            self._write_state(
                {
                    "key": self.spec.key,
                    "base_url": base_url,
                    "model": model,
                    "pid": server.pid,
                    "users": [me],
                    "log": str(self.log_path),
                    "command": list(self.spec.command),
                    "started_at": time.time(),
                }
            )
            self._watch(server.pid)
            return LLMEndpoint(base_url, model)

    def release(self) -> None:
        """Stop using the server; the last user stops it."""
        me = os.getpid()
        with self._locked():
            state = self._read_state()
            if state is None:
                return
            state["users"] = [pid for pid in _live(state["users"]) if pid != me]
            if state["users"]:
                self._write_state(state)
            else:
                self.state_path.unlink()
                stop_process_group(int(state["pid"]))
        if self._started is not None and self._started.popen is not None:
            self._started.popen.poll()  # reap it if a later user already stopped it

    @contextlib.contextmanager
    def use(self) -> Iterator[LLMEndpoint]:
        endpoint = self.acquire()
        try:
            yield endpoint
        finally:
            self.release()

    def _watch(self, server_pid: int) -> None:
        command = [sys.executable, "-m", __name__, "watch-users", str(self.state_dir), self.spec.key, str(server_pid)]
        subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, start_new_session=True)

    def stop_if_unused(self, server_pid: int) -> bool:
        """Stop the server when none of its users is alive; True when it is gone (or replaced)."""
        with self._locked():
            state = self._read_state()
            if state is None or int(state["pid"]) != server_pid or not process_alive(server_pid):
                return True
            if _live(state["users"]):
                return False
            self.state_path.unlink()
        stop_process_group(server_pid)
        return True

    def _usable(self, state: dict[str, Any]) -> bool:
        if not process_alive(int(state["pid"])):
            return False
        try:
            return bool(served_models(state["base_url"], timeout_s=10.0))
        except (OSError, ValueError, KeyError, TypeError):
            return False

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        lock_fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(lock_fd)  # closing drops the flock

    def _read_state(self) -> dict[str, Any] | None:
        try:
            state: dict[str, Any] = json.loads(self.state_path.read_text())
        except FileNotFoundError:
            return None
        except ValueError:  # a torn write from a killed process: treat as no server
            return None
        return state

    def _write_state(self, state: dict[str, Any]) -> None:
        write_json_atomic(self.state_path, state)


def _live(pids: Sequence[int]) -> list[int]:
    return [pid for pid in pids if process_alive(int(pid))]


# --- holding a GPU lease for as long as a server lives ------------------------------------------


def hold_gpus_command(
    count: int, lock_dir: Path, inventory: Sequence[str], owner: str, command: Sequence[str], timeout_s: float
) -> list[str]:
    """The command that runs `command` with `count` leased GPUs (see `hold_gpus_and_run`)."""
    return [
        sys.executable,
        "-m",
        "pytest_innovator.llm.server_process",
        "hold-gpus",
        "--count",
        str(count),
        "--lock-dir",
        str(lock_dir),
        "--inventory",
        ",".join(inventory),
        "--owner",
        owner,
        "--timeout",
        str(timeout_s),
        "--",
        *command,
    ]


def hold_gpus_and_run(
    count: int,
    lock_dir: Path,
    inventory: Sequence[str],
    owner: str,
    command: Sequence[str],
    timeout_s: float | None = None,
) -> int:
    """Lease `count` GPUs, run `command` with CUDA_VISIBLE_DEVICES set, release when it exits."""
    from ..gpus import GpuLeaser

    leaser = GpuLeaser(lock_dir, inventory)
    with leaser.lease(count, owner=f"{owner} (pid {os.getpid()})", timeout=timeout_s) as lease:
        print(f"leased GPUs {lease.cuda_visible_devices() or '(none)'} for {owner}", flush=True)
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": lease.cuda_visible_devices()}
        child = subprocess.Popen(list(command), env=env)

        def forward(signum: int, _frame: Any) -> None:
            child.send_signal(signum)

        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, forward)
        return child.wait()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pytest_innovator.llm.server_process")
    commands = parser.add_subparsers(dest="action", required=True)
    hold = commands.add_parser("hold-gpus", help="run a command while holding a GPU lease")
    hold.add_argument("--count", type=int, required=True)
    hold.add_argument("--lock-dir", type=Path, required=True)
    hold.add_argument("--inventory", required=True, help="comma-separated device ids of the host")
    hold.add_argument("--owner", default="model server")
    hold.add_argument("--timeout", type=float, default=None, help="seconds to wait for free GPUs")
    hold.add_argument("command", nargs=argparse.REMAINDER)
    watch = commands.add_parser("watch-users", help="stop a shared server when none of its users is alive")
    watch.add_argument("state_dir", type=Path)
    watch.add_argument("key")
    watch.add_argument("server_pid", type=int)
    args = parser.parse_args(argv)
    if args.action == "watch-users":
        shared = SharedServer(args.state_dir, ServerSpec(key=args.key, command=()))
        while not shared.stop_if_unused(args.server_pid):
            time.sleep(WATCH_INTERVAL_S)
        return 0
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to run after --")
    inventory = [device for device in args.inventory.split(",") if device]
    try:
        return hold_gpus_and_run(args.count, args.lock_dir, inventory, args.owner, command, args.timeout)
    except (ValueError, TimeoutError) as exc:
        print(f"cannot lease GPUs: {exc}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
