"""End to end checks of task_suites/mini/data_augmentation.

The grader runs through the harness's own pytest_innovator.grading.run_grader: a scratch copy of
grader/, a submission directory holding augmented.jsonl, the JSON request on stdin and the
framed result. A grading takes about 8 s of CPU, so the calibration checks are marked slow.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_innovator.grading import GradeOutcome, run_grader
from pytest_innovator.task import Task, load_task

TASK_DIR = Path(__file__).resolve().parent.parent / "task_suites" / "mini" / "data_augmentation"


@pytest.fixture(scope="module")
def task() -> Task:
    return load_task(TASK_DIR)


def apply_solution(task: Task, tmp_path: Path) -> Path:
    workspace = tmp_path / "workspace"
    shutil.copytree(task.workspace_dir, workspace)
    solution_copy = tmp_path / "solution"
    shutil.copytree(task.solution_dir, solution_copy)
    assert task.spec.solution is not None
    env = {**os.environ, "INNOVATOR_SOLUTION_DIR": str(solution_copy)}
    subprocess.run(["bash", "-c", task.spec.solution.command], cwd=workspace, env=env, check=True)
    return workspace


def grade_text(task: Task, augmented: str | None, tmp_path: Path, *, seed: int = 0) -> GradeOutcome:
    def fill(submission: Path) -> None:
        if augmented is not None:
            (submission / "augmented.jsonl").write_text(augmented, encoding="utf-8")

    return run_grader(task, fill, tmp_path / "grader.log", seed=seed)


def test_task_directory_is_complete(task: Task) -> None:
    for name in (*task.spec.outputs, *task.spec.protected):
        assert (task.workspace_dir / name).exists(), name
    assert task.hint_path is not None and task.hint_path.is_file()
    assert (TASK_DIR / "README.md").is_file()
    # The grader trains with the very recipe the agent develops against.
    assert (task.grader_dir / "classifier.py").read_bytes() == (
        task.workspace_dir / "classifier.py"
    ).read_bytes()


def test_data_files_are_regenerated_byte_for_byte(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(TASK_DIR / "grader" / "make_data.py"), str(tmp_path)], check=True
    )
    for relative in ("grader/data/test.jsonl", "workspace/data/train.jsonl"):
        assert (tmp_path / relative).read_bytes() == (TASK_DIR / relative).read_bytes(), relative


def test_test_messages_are_balanced_and_hidden(task: Task) -> None:
    test = [
        json.loads(line)
        for line in (task.grader_dir / "data" / "test.jsonl").read_text().splitlines()
    ]
    train = [
        json.loads(line)
        for line in (task.workspace_dir / "data" / "train.jsonl").read_text().splitlines()
    ]
    counts: dict[str, int] = {}
    for row in test:
        counts[row["label"]] = counts.get(row["label"], 0) + 1
    assert len(counts) == 8 and set(counts.values()) == {100}
    assert not {row["text"] for row in test} & {row["text"] for row in train}


def test_untouched_augmented_file_is_the_starting_pipelines_output(
    task: Task, tmp_path: Path
) -> None:
    workspace = tmp_path / "workspace"
    shutil.copytree(task.workspace_dir, workspace)
    (workspace / "augmented.jsonl").unlink()
    subprocess.run([sys.executable, "augment.py"], cwd=workspace, check=True, capture_output=True)
    assert (workspace / "augmented.jsonl").read_bytes() == (
        task.workspace_dir / "augmented.jsonl"
    ).read_bytes()


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
    outcome = grade_text(task, augmented, tmp_path)
    assert outcome.status == "invalid"
    assert expected in outcome.message


@pytest.mark.slow
def test_untouched_workspace_scores_the_baseline(task: Task, tmp_path: Path) -> None:
    outcome = grade_text(
        task, (task.workspace_dir / "augmented.jsonl").read_text(encoding="utf-8"), tmp_path
    )
    assert outcome.status == "scored", outcome.message
    assert outcome.metric == pytest.approx(task.spec.scoring.baseline, abs=1e-9)


@pytest.mark.slow
def test_reference_solution_scores_the_reference(task: Task, tmp_path: Path) -> None:
    workspace = apply_solution(task, tmp_path)
    outcome = grade_text(
        task, (workspace / "augmented.jsonl").read_text(encoding="utf-8"), tmp_path
    )
    assert outcome.status == "scored", outcome.message
    assert outcome.metric == pytest.approx(task.spec.scoring.reference, abs=1e-9)


@pytest.mark.slow
def test_same_submission_same_result(task: Task, tmp_path: Path) -> None:
    workspace = apply_solution(task, tmp_path)
    augmented = (workspace / "augmented.jsonl").read_text(encoding="utf-8")
    first = grade_text(task, augmented, tmp_path / "first", seed=1)
    second = grade_text(task, augmented, tmp_path / "second", seed=1)
    assert first.metric == second.metric and first.metrics["examples"] == second.metrics["examples"]
