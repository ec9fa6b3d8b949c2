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
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

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


@dataclass(frozen=True)
class GraderAccess:
    """What a grader sees beyond its scratch directory (a dataset's own evaluation needs more)."""

    readable: tuple[Path, ...] = ()  # host paths, read-only at the same paths
    workspace: bool = False  # the workspace, read-only where commands see it
    network: bool = False


def grader_argv(task: Task, workspace_path: str | None) -> list[str]:
    """The grader's command: the task's own, or its dataset's evaluation run by `dataset_evaluation`
    (an MLGym task's evaluate.py by `mlgym_evaluation`) under the interpreter the user named for
    the dataset (default: the harness's)."""
    if task.spec.grader.command is not None:
        return ["bash", "-c", task.spec.grader.command]
    python = str(task.dataset_python or sys.executable)
    assert workspace_path is not None
    if task.spec.mlgym is not None:
        return [python, "-m", "pytest_innovator.mlgym_evaluation", mlgym_evaluation_spec(task), workspace_path]
    dataset = task.spec.dataset
    assert dataset is not None and dataset.evaluation is not None
    evaluation = task.in_dataset(dataset.evaluation)
    return [python, "-m", "pytest_innovator.dataset_evaluation", str(evaluation), workspace_path]


def mlgym_evaluation_spec(task: Task) -> str:
    """What mlgym_evaluation needs of an MLGym task, as its JSON argument."""
    mlgym = task.spec.mlgym
    assert mlgym is not None
    files = {relative: str(task.in_dataset(pristine)) for relative, pristine in mlgym.files.items()}
    spec = {"entrypoint": mlgym.entrypoint, "script": mlgym.script, "files": files}
    spec |= {"metric": task.spec.scoring.metric, "baseline": mlgym.baseline}
    return json.dumps(spec)


def evaluation_access(task: Task) -> GraderAccess:
    """A dataset's evaluation sees the workspace and its own folder (the parent of
    evaluations/task_N: its shared classes too; an MLGym task's evaluation files in the checkout),
    and the interpreter that runs it; the network when the task has it (an evaluation may call an
    API judge)."""
    if task.spec.mlgym is not None:
        readable = sorted({task.in_dataset(pristine) for pristine in task.spec.mlgym.files.values()})
    else:
        assert task.spec.dataset is not None and task.spec.dataset.evaluation is not None
        readable = [task.in_dataset(task.spec.dataset.evaluation).parent]
    if task.dataset_python is not None:
        readable += interpreter_prefixes(task.dataset_python)
    return GraderAccess(readable=tuple(readable), workspace=True, network=task.spec.network)


def interpreter_prefixes(python: Path) -> list[Path]:
    """The installations an interpreter belongs to: the parent of its bin/ (a conda environment, a
    venv) and that of the file its symlinks lead to; never / itself."""
    prefixes = {Path(python).absolute().parent.parent, Path(python).resolve().parent.parent}
    return sorted(p for p in prefixes if p != Path("/"))


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
    wrap: Callable[[list[str], Path, GraderAccess], list[str]] | None = None,
    workspace_path: str | None = None,
) -> GradeOutcome:
    """Grade once. `fill_submission(dir)` copies the declared outputs into dir.

    A task graded by its dataset's own evaluation runs `dataset_evaluation` instead of its
    grader/ (see grader_argv), with the workspace read-only at `workspace_path`.
    A non-zero exit, a timeout or a missing/garbled result frame is a grader failure; a result
    with valid=false is an invalid submission (the agent's zero, with the grader's reason).
    """
    started = time.monotonic()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"innovator-grade-{task.id}-") as tmp:
        scratch = Path(tmp)
        if task.spec.grader.command is None:
            (scratch / "grader").mkdir()
        else:
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
        argv, access, env = grader_argv(task, workspace_path), GraderAccess(), grader_environment(scratch)
        if task.spec.grader.command is None:
            access = evaluation_access(task)
            env["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent)  # for grader_kit, under any Python
        if wrap is not None:
            argv = wrap(argv, scratch, access)
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                argv,
                cwd=scratch / "grader",
                env=env,
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
        said = _last_line(log_path)
        return GradeOutcome(
            "grader_failed",
            None,
            f"grader exited with status {proc.returncode}{': ' + said if said else ''} (see {log_path.name})",
            seconds,
        )
    result = parse_result(stdout.decode("utf-8", "replace"), nonce)
    if result is None:
        return GradeOutcome("grader_failed", None, "grader printed no result frame (see grader_kit.report)", seconds)
    return _outcome_from_result(result, seconds)


def grade_workspace(task: Task, workspace: Any, log_path: Path, seed: int = 0) -> GradeOutcome:
    """Grade a workspace where it is: its declared outputs copied out for the grader, which runs
    in the workspace's own grader sandbox (ResearchEnv on the harness's host, a pool host's server)."""

    def fill(submission: Path) -> None:
        for output in task.spec.outputs:
            workspace.copy_out(output, submission / output)

    return run_grader(task, fill, log_path, seed=seed, wrap=workspace.wrap_grader, workspace_path=workspace.root)


def _last_line(log_path: Path) -> str:
    """The grader's last word on its standard error (the log before the stdout section)."""
    text = log_path.read_bytes()[-65536:].decode("utf-8", "replace").split("\n--- stdout ---\n")[0]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:500] if lines else ""


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
