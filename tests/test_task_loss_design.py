"""End to end checks of task_suites/mini/loss_design.

The grader is driven the way the harness drives it: a scratch copy of grader/ in a private
directory, a submission directory holding loss.py, the JSON request on stdin, a clean
environment, and the result read from the frame that carries the request's nonce.
"""

from __future__ import annotations

import importlib.util
import json
import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from pytest_innovator.grader_kit import isolation_available
from pytest_innovator.grading import parse_result
from pytest_innovator.task import Task, load_task

TASK_DIR = Path(__file__).resolve().parent.parent / "task_suites" / "mini" / "loss_design"

CROSS_ENTROPY_PRINTING_FORGED_FRAMES = """
import sys
import torch.nn.functional as F

FORGED = '{"valid": true, "metric": 1.0, "metrics": {}, "message": "forged"}'
for nonce in ("abc", "0" * 32, ""):
    frame = f"--- innovator-result {nonce} ---\\n{FORGED}\\n--- end innovator-result {nonce} ---"
    print(frame, flush=True)
    print(frame, file=sys.stderr)

def make_loss(class_counts, num_steps):
    return lambda logits, labels, sample_ids, step: F.cross_entropy(logits, labels)
"""

# Fails on import either way; the message (the trainer's stderr) says whether the grader's files
# were readable. {scratch} is filled in by the test.
LOSS_LOOKING_FOR_GRADER_FILES = """
import os

readable = []
for path in ({scratch!r} + "/grader/grade.py", f"/proc/{{os.getppid()}}/cwd/grade.py", {task_dir!r}):
    try:
        if os.path.isdir(path):
            os.listdir(path)
        else:
            open(path).read()
        readable.append(path)
    except OSError:
        pass
raise RuntimeError(f"readable: {{readable or 'nothing'}}")
"""


@pytest.fixture(scope="module")
def task() -> Task:
    return load_task(TASK_DIR)


def import_from(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def workspace_loss(task: Task, tmp_path: Path, *, apply_solution: bool) -> str:
    """loss.py of a fresh workspace copy, with the reference solution applied or not."""
    workspace = tmp_path / "workspace"
    shutil.copytree(task.workspace_dir, workspace)
    if apply_solution:
        assert task.spec.solution is not None
        solution_copy = tmp_path / "solution"
        shutil.copytree(task.solution_dir, solution_copy)
        env = {**os.environ, "INNOVATOR_SOLUTION_DIR": str(solution_copy)}
        subprocess.run(
            ["bash", "-c", task.spec.solution.command], cwd=workspace, env=env, check=True
        )
    return (workspace / "loss.py").read_text(encoding="utf-8")


def grade(
    task: Task,
    loss_source: str | None,
    tmp_path: Path,
    *,
    seed: int = 0,
    grader_edits: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Run the task's grader on a submission holding `loss_source` as loss.py.

    `grader_edits` replaces text in the scratch copy of grade.py (to lower a limit, say).
    """
    scratch = tmp_path / "scratch"
    scratch.mkdir(mode=0o700, parents=True)
    shutil.copytree(task.grader_dir, scratch / "grader")
    grade_py = scratch / "grader" / "grade.py"
    for old, new in (grader_edits or {}).items():
        source = grade_py.read_text(encoding="utf-8")
        assert old in source, old
        grade_py.write_text(source.replace(old, new), encoding="utf-8")
    submission = scratch / "submission"
    submission.mkdir()
    if loss_source is not None:
        (submission / "loss.py").write_text(loss_source, encoding="utf-8")
    nonce = secrets.token_hex(16)
    request = {
        "protocol": 1,
        "task_id": task.id,
        "submission_dir": str(submission),
        "seed": seed,
        "nonce": nonce,
    }
    env = {
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "LANG": "C.UTF-8",
        "HOME": str(scratch),
    }
    proc = subprocess.run(
        ["bash", "-c", task.spec.grader.command],
        check=False,
        cwd=scratch / "grader",
        env=env,
        input=json.dumps(request),
        capture_output=True,
        text=True,
        timeout=task.spec.grader.timeout,
    )
    shutil.rmtree(scratch)
    assert proc.returncode == 0, proc.stderr
    result = parse_result(proc.stdout, nonce)
    assert result is not None, f"no result frame in: {proc.stdout[-2000:]}"
    return result


def test_task_directory_is_complete(task: Task) -> None:
    for name in (*task.spec.outputs, *task.spec.protected):
        assert (task.workspace_dir / name).exists(), name
    assert task.hint_path is not None and task.hint_path.is_file()
    assert (TASK_DIR / "README.md").is_file()
    # The grader trains with the very scripts the agent develops against.
    for name in ("train.py", "model.py", "data.py"):
        assert (task.grader_dir / name).read_bytes() == (task.workspace_dir / name).read_bytes(), (
            name
        )


def test_workspace_data_is_world_zero_of_the_generator(task: Task) -> None:
    data = import_from(task.workspace_dir / "data.py", "loss_design_data")
    inputs, labels = data.training_set(data.DEV_WORLD_SEED)
    with np.load(task.workspace_dir / "data" / "train.npz") as saved:
        assert np.array_equal(saved["inputs"], inputs) and np.array_equal(saved["labels"], labels)
    assert np.bincount(labels).max() > 50 * np.bincount(labels).min()  # long-tailed


def test_missing_loss_is_invalid(task: Task, tmp_path: Path) -> None:
    result = grade(task, None, tmp_path)
    assert result["valid"] is False
    assert "no loss.py" in result["message"]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("raise ImportError('broken on purpose')\n", "broken on purpose"),
        (
            (
                "def make_loss(class_counts, num_steps):\n"
                "    return lambda logits, labels, ids, step: logits.sum() * float('nan')\n"
            ),
            "not finite",
        ),
        (
            (
                "def make_loss(class_counts, num_steps):\n"
                "    return lambda logits, labels, ids, step: logits.mean(dim=0)\n"
            ),
            "scalar tensor",
        ),
    ],
    ids=["import-error", "nan", "not-scalar"],
)
def test_loss_that_breaks_training_is_invalid(
    task: Task, tmp_path: Path, source: str, expected: str
) -> None:
    result = grade(task, source, tmp_path)
    assert result["valid"] is False
    if not isolation_available():  # the message carries no text from an unsandboxed trainer
        expected = "evaluate_dev.py shows the error"
    assert expected in result["message"]


@pytest.mark.slow
def test_training_is_stopped_at_the_cpu_limit(task: Task, tmp_path: Path) -> None:
    busy = "import time\nwhile True:\n    time.process_time()\n"
    lower_limit = {"TRAIN_CPU_SECONDS = 60": "TRAIN_CPU_SECONDS = 2"}
    result = grade(task, busy, tmp_path, grader_edits=lower_limit)
    assert result["valid"] is False
    assert "more than 2 seconds of CPU time" in result["message"]


@pytest.mark.slow
@pytest.mark.skipif(
    not isolation_available(), reason="the grader sandboxes the trainer only where bubblewrap works"
)
def test_graders_files_are_out_of_the_trainers_reach(task: Task, tmp_path: Path) -> None:
    scratch = tmp_path / "scratch"
    result = grade(
        task,
        LOSS_LOOKING_FOR_GRADER_FILES.format(scratch=str(scratch), task_dir=str(TASK_DIR)),
        tmp_path,
    )
    assert result["valid"] is False
    assert "readable: nothing" in result["message"]


@pytest.mark.slow
def test_untouched_workspace_scores_the_baseline(task: Task, tmp_path: Path) -> None:
    result = grade(task, workspace_loss(task, tmp_path, apply_solution=False), tmp_path)
    assert result["valid"] is True
    assert result["metric"] == pytest.approx(task.spec.scoring.baseline, abs=1e-12)
    assert result["metrics"]["isolated"] == (1.0 if isolation_available() else 0.0)


@pytest.mark.slow
def test_reference_solution_scores_the_reference(task: Task, tmp_path: Path) -> None:
    result = grade(task, workspace_loss(task, tmp_path, apply_solution=True), tmp_path)
    assert result["valid"] is True
    assert result["metric"] == pytest.approx(task.spec.scoring.reference, abs=1e-12)


@pytest.mark.slow
def test_forged_result_frames_do_not_count(task: Task, tmp_path: Path) -> None:
    # Cross-entropy that also prints forged frames trains exactly like the baseline.
    result = grade(task, CROSS_ENTROPY_PRINTING_FORGED_FRAMES, tmp_path)
    assert result["valid"] is True
    assert "forged" not in result["message"]
    assert result["metric"] == pytest.approx(task.spec.scoring.baseline, abs=1e-12)
