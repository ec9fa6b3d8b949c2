"""grader_kit.run_untrusted and program_failure: how graders run the agent's code."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from pytest_innovator.grader_kit import isolation_available, program_failure, run_untrusted

needs_bwrap = pytest.mark.skipif(not isolation_available(), reason="bubblewrap is not usable here")


def run_python(source: str, workdir: Path, **limits: float) -> str | None:
    workdir.mkdir(exist_ok=True)
    return program_failure(
        [sys.executable, "-c", source],
        cwd=workdir,
        timeout=limits.get("timeout", 60),
        cpu_seconds=int(limits.get("cpu_seconds", 30)),
        activity="training",
        failed="train.py failed",
        rerun_hint="run it yourself to see the error",
    )


def test_a_program_that_succeeds_has_no_failure(tmp_path: Path) -> None:
    assert run_python("open('out.txt', 'w').write('done')", tmp_path / "work") is None
    assert (tmp_path / "work" / "out.txt").read_text() == "done"


def test_cpu_time_limit_stops_a_busy_program(tmp_path: Path) -> None:
    failure = run_python("while True: pass", tmp_path / "work", cpu_seconds=1)
    assert failure == ("training was stopped: it used more than 1 seconds of CPU time (or too much memory)")


def test_wall_clock_timeout_stops_a_sleeping_program(tmp_path: Path) -> None:
    failure = run_python("import time; time.sleep(60)", tmp_path / "work", timeout=1)
    assert failure == "training did not finish within 1 seconds of wall-clock time"


def test_error_output_is_passed_back_only_from_a_sandbox(tmp_path: Path) -> None:
    failure = run_python("raise SystemExit('the loss is not a scalar')", tmp_path / "work")
    assert failure is not None and failure.startswith("train.py failed (exit status 1)")
    if isolation_available():
        assert "the loss is not a scalar" in failure
    else:
        assert failure.endswith("; run it yourself to see the error")
        assert "the loss is not a scalar" not in failure


@needs_bwrap
def test_sandbox_shows_only_the_work_directory(tmp_path: Path) -> None:
    secret = tmp_path / "grader" / "labels.txt"
    secret.parent.mkdir()
    secret.write_text("hidden")
    workdir = tmp_path / "work"
    workdir.mkdir()
    probe = (
        "import os, sys\n"
        f"print(os.path.exists({str(secret)!r}), os.path.exists({str(secret.parent)!r}))\n"
        "print(os.getcwd(), sorted(os.listdir('.')))\n"
        "print(os.listdir('/proc/1/cwd') if os.path.exists('/proc/1/cwd') else None)\n"
    )
    (workdir / "input.txt").write_text("for the program")
    proc = run_untrusted([sys.executable, "-c", probe], cwd=workdir, timeout=60)
    assert proc.returncode == 0, proc.stderr
    grader_visible, work_listing, _ = proc.stdout.splitlines()
    assert grader_visible == "False False"
    assert work_listing == f"{workdir} ['input.txt']"


@needs_bwrap
def test_sandbox_has_no_network(tmp_path: Path) -> None:
    probe = "import socket; print(sorted(name for _, name in socket.if_nameindex()))"
    proc = run_untrusted([sys.executable, "-c", probe], cwd=tmp_path, timeout=60)
    assert proc.stdout.strip() == "['lo']"


@needs_bwrap
def test_nothing_the_program_started_outlives_it(tmp_path: Path) -> None:
    marker = tmp_path / "late.txt"
    late_writer = f"import time; time.sleep(2); open({str(marker)!r}, 'w').write('x')"
    # The child leaves the process group too: only the sandbox's PID namespace can catch it.
    source = (
        f"import subprocess, sys\nsubprocess.Popen([sys.executable, '-c', {late_writer!r}], start_new_session=True)\n"
    )
    proc = run_untrusted([sys.executable, "-c", source], cwd=tmp_path, timeout=60)
    assert proc.returncode == 0, proc.stderr
    time.sleep(4)
    assert not marker.exists()
