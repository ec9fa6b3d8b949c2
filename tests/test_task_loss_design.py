"""End to end checks of task_suites/mini/loss_design.

The grader runs through the harness's own pytest_innovator.grading.run_grader: a scratch copy of
grader/, a submission directory holding loss.py, the JSON request on stdin, a clean environment,
and the result read from the frame that carries the request's nonce.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pytest_innovator.grader_kit import isolation_available
from pytest_innovator.task import Task

from .task_checks import (
    MINI_SUITE,
    check_probe_finds_grader_files,
    check_task_directory,
    edited_task,
    grade_files,
    grade_workspace,
    grader_files_probe,
    import_from,
    task_fixture,
)

TASK_DIR = MINI_SUITE / "loss_design"

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

task = task_fixture(TASK_DIR)


def test_task_directory_is_complete(task: Task) -> None:
    # The grader trains with the very scripts the agent develops against.
    check_task_directory(task, same_in_grader=["train.py", "model.py", "data.py"])


def test_workspace_data_is_world_zero_of_the_generator(task: Task) -> None:
    data = import_from(task.workspace_dir / "data.py", "loss_design_data")
    inputs, labels = data.training_set(data.DEV_WORLD_SEED)
    with np.load(task.workspace_dir / "data" / "train.npz") as saved:
        assert np.array_equal(saved["inputs"], inputs) and np.array_equal(saved["labels"], labels)
    assert np.bincount(labels).max() > 50 * np.bincount(labels).min()  # long-tailed


def test_missing_loss_is_invalid(task: Task, tmp_path: Path) -> None:
    outcome = grade_files(task, {}, tmp_path)
    assert outcome.status == "invalid"
    assert "no loss.py" in outcome.message


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
    outcome = grade_files(task, {"loss.py": source}, tmp_path)
    assert outcome.status == "invalid"
    if not isolation_available():  # the message carries no text from an unsandboxed trainer
        expected = "evaluate_dev.py shows the error"
    assert expected in outcome.message


@pytest.mark.slow
def test_training_is_stopped_at_the_cpu_limit(task: Task, tmp_path: Path) -> None:
    busy = "import time\nwhile True:\n    time.process_time()\n"
    lower_limit = edited_task(task, tmp_path, {"TRAIN_CPU_SECONDS = 60": "TRAIN_CPU_SECONDS = 2"})
    outcome = grade_files(lower_limit, {"loss.py": busy}, tmp_path)
    assert outcome.status == "invalid"
    assert "more than 2 seconds of CPU time" in outcome.message


@pytest.mark.slow
@pytest.mark.skipif(
    not isolation_available(), reason="the grader sandboxes the trainer only where bubblewrap works"
)
def test_graders_files_are_out_of_the_trainers_reach(task: Task, tmp_path: Path) -> None:
    check_probe_finds_grader_files(task)  # control: unsandboxed, the probe finds them
    outcome = grade_files(task, {"loss.py": grader_files_probe(task)}, tmp_path)
    assert outcome.status == "invalid"
    assert "readable: nothing" in outcome.message


@pytest.mark.slow
def test_untouched_workspace_scores_the_baseline(task: Task, tmp_path: Path) -> None:
    outcome = grade_workspace(task, tmp_path, apply_solution=False)
    assert outcome.status == "scored", outcome.message
    assert outcome.metric == pytest.approx(task.spec.scoring.baseline, abs=1e-12)
    assert outcome.metrics["isolated"] == (1.0 if isolation_available() else 0.0)


@pytest.mark.slow
def test_reference_solution_scores_the_reference(task: Task, tmp_path: Path) -> None:
    outcome = grade_workspace(task, tmp_path, apply_solution=True)
    assert outcome.status == "scored", outcome.message
    assert outcome.metric == pytest.approx(task.spec.scoring.reference, abs=1e-12)


@pytest.mark.slow
def test_forged_result_frames_do_not_count(task: Task, tmp_path: Path) -> None:
    # Cross-entropy that also prints forged frames trains exactly like the baseline.
    outcome = grade_files(task, {"loss.py": CROSS_ENTROPY_PRINTING_FORGED_FRAMES}, tmp_path)
    assert outcome.status == "scored", outcome.message
    assert "forged" not in outcome.message
    assert outcome.metric == pytest.approx(task.spec.scoring.baseline, abs=1e-12)
