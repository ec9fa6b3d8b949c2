"""End to end checks of task_suites/mini/data_augmentation.

The grader runs through the harness's own pytest_innovator.grading.run_grader: a scratch copy of
grader/, a submission directory holding augmented.jsonl, the JSON request on stdin and the
framed result. A grading takes about 8 s of CPU, so the calibration checks are marked slow.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_innovator.task import Task

from .task_checks import (
    MINI_SUITE,
    calibrated,
    check_make_data_regenerates,
    check_task_directory,
    grade_files,
    grade_workspace,
    task_fixture,
    torch_build,
    workspace_copy,
)

TASK_DIR = MINI_SUITE / "data_augmentation"

task = task_fixture(TASK_DIR)


def test_task_directory_is_complete(task: Task) -> None:
    # The grader trains with the very recipe the agent develops against.
    check_task_directory(task, same_in_grader=["classifier.py"])


def test_data_files_are_regenerated_byte_for_byte(task: Task, tmp_path: Path) -> None:
    check_make_data_regenerates(task, tmp_path, ["grader/data/test.jsonl", "workspace/data/train.jsonl"])


def test_test_messages_are_balanced_and_hidden(task: Task) -> None:
    test = [json.loads(line) for line in (task.grader_dir / "data" / "test.jsonl").read_text().splitlines()]
    train = [json.loads(line) for line in (task.workspace_dir / "data" / "train.jsonl").read_text().splitlines()]
    counts: dict[str, int] = {}
    for row in test:
        counts[row["label"]] = counts.get(row["label"], 0) + 1
    assert len(counts) == 8 and set(counts.values()) == {100}
    assert not {row["text"] for row in test} & {row["text"] for row in train}


def test_untouched_augmented_file_is_the_starting_pipelines_output(task: Task, tmp_path: Path) -> None:
    workspace = workspace_copy(task, tmp_path, apply_solution=False)
    (workspace / "augmented.jsonl").unlink()
    subprocess.run([sys.executable, "augment.py"], cwd=workspace, check=True, capture_output=True)
    assert (workspace / "augmented.jsonl").read_bytes() == (task.workspace_dir / "augmented.jsonl").read_bytes()


@pytest.mark.parametrize(
    ("augmented", "expected"),
    [
        (None, "no augmented.jsonl"),
        ("", "holds no examples"),
        ('{"text": "I lost my card", "label": "lost"}\n', "'label' must be one of check_balance"),
        ('{"text": "", "label": "lost_card"}\n', "'text' must be a non-empty string"),
        ('{"text": "' + "a" * 201 + '", "label": "lost_card"}\n', "at most 200 allowed"),
        ('["I lost my card", "lost_card"]\n', "expected an object"),
        ('{"text": "I lost my card", "label": "lost_card"}\n' * 20_001, "more than 20000 examples"),
    ],
)
def test_rule_breaking_file_is_invalid_with_the_reason(
    task: Task, tmp_path: Path, augmented: str | None, expected: str
) -> None:
    files = {} if augmented is None else {"augmented.jsonl": augmented}
    outcome = grade_files(task, files, tmp_path)
    assert outcome.status == "invalid"
    assert expected in outcome.message


@pytest.mark.slow
def test_untouched_workspace_scores_the_baseline(task: Task, tmp_path: Path) -> None:
    outcome = grade_workspace(task, tmp_path, apply_solution=False)
    assert outcome.status == "scored", outcome.message
    assert outcome.metric == pytest.approx(calibrated(task, "baseline"), abs=1e-9), torch_build()


@pytest.mark.slow
def test_reference_solution_scores_the_reference(task: Task, tmp_path: Path) -> None:
    outcome = grade_workspace(task, tmp_path, apply_solution=True)
    assert outcome.status == "scored", outcome.message
    assert outcome.metric == pytest.approx(calibrated(task, "reference"), abs=1e-9), torch_build()


@pytest.mark.slow
def test_same_submission_same_result(task: Task, tmp_path: Path) -> None:
    workspace = workspace_copy(task, tmp_path, apply_solution=True)
    files = {"augmented.jsonl": (workspace / "augmented.jsonl").read_text(encoding="utf-8")}
    first = grade_files(task, files, tmp_path / "first", seed=1)
    second = grade_files(task, files, tmp_path / "second", seed=1)
    assert first.metric == second.metric and first.metrics["examples"] == second.metrics["examples"]
