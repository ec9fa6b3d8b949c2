"""Running a task's grader out of process and reading its framed JSON result.

The grader runs in a fresh scratch directory outside the workspace: a copy of the task's grader/
and a submission directory holding copies of the declared outputs. It never runs inside the
harness process. See grader_kit.py for the protocol.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from .grader_kit import PROTOCOL, numerics_environment, result_frame
from .sandbox import python_first
from .task import Task

GradeStatus = Literal["scored", "invalid", "grader_failed"]


@dataclass(frozen=True)
class GradeOutcome:
    status: GradeStatus
    metric: float | None
    message: str
    seconds: float
    metrics: dict[str, float] = field(default_factory=dict)


def grader_environment(scratch: Path) -> dict[str, str]:
    """A small, clean environment with the pinned numerics; `python3` resolves to the harness's
    interpreter."""
    clean = {
        "PATH": python_first(os.environ.get("PATH")),
        "LANG": "C.UTF-8",
        "HOME": str(scratch),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    return numerics_environment(clean)


def parse_result(stdout: str, nonce: str) -> dict[str, object] | None:
    """The JSON object between the last pair of frame lines carrying `nonce`, or None."""
    start, end = result_frame(nonce)
    lines = stdout.splitlines()
    for i in range(len(lines) - 1, -1, -1):
        if lines[i] == end and i >= 2 and lines[i - 2] == start:
            try:
                value = json.loads(lines[i - 1])
            except json.JSONDecodeError:
                return None
            return value if isinstance(value, dict) else None
    return None


def _outcome_from_result(result: dict[str, object], seconds: float) -> GradeOutcome:
    message = str(result.get("message", ""))
    raw_metrics = result.get("metrics") or {}
    metrics = (
        {str(k): float(v) for k, v in raw_metrics.items() if isinstance(v, (int, float))}
        if isinstance(raw_metrics, dict)
        else {}
    )
    if not result.get("valid"):
        return GradeOutcome("invalid", None, message or "invalid submission", seconds, metrics)
    metric = result.get("metric")
    if not isinstance(metric, (int, float)) or isinstance(metric, bool) or not math.isfinite(metric):
        return GradeOutcome(
            "grader_failed", None, f"grader reported a valid result without a finite metric: {metric!r}", seconds
        )
    return GradeOutcome("scored", float(metric), message, seconds, metrics)


def run_grader(
    task: Task,
    fill_submission: Callable[[Path], None],
    log_path: Path,
    *,
    seed: int = 0,
    wrap: Callable[[list[str], Path], list[str]] | None = None,
) -> GradeOutcome:
    """Grade once. `fill_submission(dir)` copies the declared outputs into dir.

    A non-zero exit, a timeout or a missing/garbled result frame is a grader failure; a result
    with valid=false is an invalid submission (the agent's zero, with the grader's reason).
    """
    started = time.monotonic()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"innovator-grade-{task.id}-") as tmp:
        scratch = Path(tmp)
        shutil.copytree(task.grader_dir, scratch / "grader", symlinks=True)
        submission = scratch / "submission"
        submission.mkdir()
        fill_submission(submission)
        nonce = secrets.token_hex(16)
        request = {
            "protocol": PROTOCOL,
            "task_id": task.id,
            "submission_dir": str(submission),
            "seed": seed,
            "nonce": nonce,
        }
        argv = ["bash", "-c", task.spec.grader.command]
        if wrap is not None:
            argv = wrap(argv, scratch)
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                argv,
                cwd=scratch / "grader",
                env=grader_environment(scratch),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                start_new_session=True,
            )
            try:
                stdout, _ = proc.communicate(json.dumps(request).encode(), timeout=task.spec.grader.timeout)
                timed_out = False
            except subprocess.TimeoutExpired:
                _kill_group(proc.pid)
                stdout, _ = proc.communicate()
                timed_out = True
            finally:
                _kill_group(proc.pid)
            log.write(b"\n--- stdout ---\n" + stdout)
    seconds = time.monotonic() - started
    if timed_out:
        return GradeOutcome("grader_failed", None, f"grader timed out after {task.spec.grader.timeout:g}s", seconds)
    if proc.returncode != 0:
        return GradeOutcome(
            "grader_failed", None, f"grader exited with status {proc.returncode} (see {log_path.name})", seconds
        )
    result = parse_result(stdout.decode("utf-8", "replace"), nonce)
    if result is None:
        return GradeOutcome("grader_failed", None, "grader printed no result frame (see grader_kit.report)", seconds)
    return _outcome_from_result(result, seconds)


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
