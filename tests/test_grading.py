from __future__ import annotations

from pathlib import Path

import pytest

from pytest_innovator.grading import parse_result, run_grader
from pytest_innovator.task import load_task


def grade(task_dir: Path, answer: str | None, tmp_path: Path):
    task = load_task(task_dir)

    def fill(submission: Path) -> None:
        if answer is not None:
            (submission / "answer.txt").write_text(answer)

    return run_grader(task, fill, tmp_path / "grader.log")


def test_scored(number_task_dir: Path, tmp_path: Path) -> None:
    outcome = grade(number_task_dir, "0.55", tmp_path)
    assert outcome.status == "scored"
    assert outcome.metric == 0.55  # not the forged frame's 1000
    assert outcome.metrics == {"doubled": 1.1}
    assert "read 0.55" in outcome.message


@pytest.mark.parametrize(
    ("answer", "status", "message"),
    [
        (None, "invalid", "answer.txt is missing"),
        ("seven", "invalid", "must hold a number"),
        ("crash", "grader_failed", "exited with status 3"),
        ("noframe", "grader_failed", "no result frame"),
        ("hang", "grader_failed", "timed out after 5s"),
    ],
)
def test_grader_paths(number_task_dir: Path, tmp_path: Path, answer: str | None, status: str, message: str) -> None:
    outcome = grade(number_task_dir, answer, tmp_path)
    assert outcome.status == status
    assert message in outcome.message
    assert outcome.metric is None


def test_grader_runs_on_a_scratch_copy(number_task_dir: Path, tmp_path: Path) -> None:
    (number_task_dir / "grader" / "grade.py").write_text(
        (number_task_dir / "grader" / "grade.py")
        .read_text()
        .replace("request = read_request()", "request = read_request()\nopen('scribble', 'w').write('x')")
    )
    assert grade(number_task_dir, "0.3", tmp_path).status == "scored"
    assert not (number_task_dir / "grader" / "scribble").exists()


def test_parse_result_needs_the_nonce() -> None:
    good = 'noise\n--- innovator-result n1 ---\n{"valid": true, "metric": 1}\n--- end innovator-result n1 ---\n'
    assert parse_result(good, "n1") == {"valid": True, "metric": 1}
    assert parse_result(good, "other") is None
    assert parse_result(good.replace("{", "[", 1), "n1") is None
