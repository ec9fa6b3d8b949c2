from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import time
import uuid
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
FAKE_NVML = Path(__file__).resolve().parent / "fake_nvml"  # a pynvml for hosts without a GPU


def fake_gpus(monkeypatch: pytest.MonkeyPatch, state: Path, gib: list[float], used_files: str = "") -> None:
    """Processes started from here on see, through NVML, one GPU of each size in `gib` (its
    memory in use: the numbers in the files `used_files` matches)."""
    devices = [{"uuid": f"GPU-fake-{i}", "total": int(g * 2**30), "used_files": used_files} for i, g in enumerate(gib)]
    state.write_text(json.dumps({"devices": devices}))
    monkeypatch.setenv("FAKE_NVML", str(state))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(FAKE_NVML), os.environ.get("PYTHONPATH")])))


@pytest.fixture
def number_task_dir(tmp_path: Path) -> Path:
    """A private copy of the fixtures' `number` task, free to edit."""
    target = tmp_path / "tasks" / "number"
    shutil.copytree(FIXTURES / "tasks" / "number", target)
    return target


# Every process the tests start inherits this mark (xdist's workers, the items' sessions and
# sandboxes, session servers, dockerd): at the end of the run, none of them may be left.
LEFTOVER_MARK = "PYTEST_INNOVATOR_TEST_RUN"
os.environ.setdefault(LEFTOVER_MARK, uuid.uuid4().hex)


def processes_left_behind() -> dict[int, str]:
    """The live processes (not zombies) that carry this run's mark, but this one and its parents."""
    mark = f"{LEFTOVER_MARK}={os.environ[LEFTOVER_MARK]}".encode()
    ours, pid = set(), os.getpid()
    while pid > 1:
        ours.add(pid)
        pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    found = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) in ours:
            continue
        try:
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
            if state != "Z" and mark in (proc / "environ").read_bytes().split(b"\0"):
                found[int(proc.name)] = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return found


@pytest.hookimpl(trylast=True)  # after xdist has stopped its workers
def pytest_sessionfinish(session: pytest.Session) -> None:
    if hasattr(session.config, "workerinput"):
        return  # a worker: the controller checks once, when everything has ended
    deadline = time.monotonic() + 30
    while (left := processes_left_behind()) and time.monotonic() < deadline:
        time.sleep(0.5)
    if not left:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    lines = [f"  {pid}: {command[:200]}" for pid, command in sorted(left.items())]
    message = "the tests left processes behind (killed now):\n" + "\n".join(lines)
    if reporter is not None:
        reporter.write_line(message, red=True)
    for pid in left:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    if session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
