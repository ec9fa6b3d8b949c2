"""End to end checks of task_suites/mini/loss_design.

The grader runs through the harness's own pytest_innovator.grading.run_grader: a scratch copy of
grader/, a submission directory holding loss.py, the JSON request on stdin, a clean environment,
and the result read from the frame that carries the request's nonce.
The checks it shares with the other trainer task are in tests/test_trainer_tasks.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pytest_innovator.grader_kit import isolation_available
from pytest_innovator.task import Task

from .task_checks import (
    MINI_SUITE,
    check_task_directory,
    grade_files,
    import_from,
    task_fixture,
)

TASK_DIR = MINI_SUITE / "loss_design"

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
def test_loss_that_breaks_training_is_invalid(task: Task, tmp_path: Path, source: str, expected: str) -> None:
    outcome = grade_files(task, {"loss.py": source}, tmp_path)
    assert outcome.status == "invalid"
    if not isolation_available():  # the message carries no text from an unsandboxed trainer
        expected = "evaluate_dev.py shows the error"
    assert expected in outcome.message
