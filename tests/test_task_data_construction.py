"""End to end checks of task_suites/mini/data_construction.

The grader runs through the harness's own pytest_innovator.grading.run_grader: a scratch copy of
grader/, a submission directory holding train.jsonl, the JSON request on stdin and the framed
result. Training the model takes about 30 s of CPU, so the calibration checks are slow.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_innovator.grading import GradeOutcome, run_grader
from pytest_innovator.task import Task, load_task

TASK_DIR = Path(__file__).resolve().parent.parent / "task_suites" / "mini" / "data_construction"


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


def grade_text(
    task: Task, train_text: str | None, tmp_path: Path, *, seed: int = 0
) -> GradeOutcome:
    def fill(submission: Path) -> None:
        if train_text is not None:
            (submission / "train.jsonl").write_text(train_text, encoding="utf-8")

    return run_grader(task, fill, tmp_path / "grader.log", seed=seed)


def test_task_directory_is_complete(task: Task) -> None:
    for name in (*task.spec.outputs, *task.spec.protected):
        assert (task.workspace_dir / name).exists(), name
    assert task.hint_path is not None and task.hint_path.is_file()
    assert (TASK_DIR / "README.md").is_file()
    # The grader trains with the very recipe the agent develops against.
    assert (task.grader_dir / "seq2seq.py").read_bytes() == (
        task.workspace_dir / "seq2seq.py"
    ).read_bytes()


def test_data_files_are_regenerated_byte_for_byte(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(TASK_DIR / "grader" / "make_data.py"), str(tmp_path)], check=True
    )
    for relative in (
        "grader/data/test.jsonl",
        "workspace/data/examples.jsonl",
        "workspace/data/sample_inputs.txt",
    ):
        assert (tmp_path / relative).read_bytes() == (TASK_DIR / relative).read_bytes(), relative


def test_hidden_test_inputs_are_not_in_the_workspace(task: Task) -> None:
    test_inputs = {
        json.loads(line)["input"]
        for line in (task.grader_dir / "data" / "test.jsonl").read_text().splitlines()
    }
    sample = set((task.workspace_dir / "data" / "sample_inputs.txt").read_text().splitlines())
    examples = {
        json.loads(line)["input"]
        for line in (task.workspace_dir / "data" / "examples.jsonl").read_text().splitlines()
    }
    assert len(test_inputs) == 1000
    assert not test_inputs & (sample | examples)


def test_reference_solution_fits_the_rules(task: Task, tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location(
        "data_construction_seq2seq", task.workspace_dir / "seq2seq.py"
    )
    assert spec is not None and spec.loader is not None
    seq2seq = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(seq2seq)
    workspace = apply_solution(task, tmp_path)
    assert len(seq2seq.load_pairs(workspace / "train.jsonl")) == seq2seq.MAX_PAIRS


@pytest.mark.parametrize(
    ("train_text", "expected"),
    [
        (None, "no train.jsonl"),
        ("", "holds no pairs"),
        ('{"input": "5 March 2021"}\n', "'output' must be a non-empty string"),
        ('{"input": "5 März 2021", "output": "2021-03-05"}\n', "printable ASCII"),
        ('{"input": "5 March 2021", "output": "2021-03-05T00:00"}\n', "at most 12 allowed"),
        ("not json\n", "line 1: not valid JSON"),
        ('{"input": "1/2/21", "output": "2021-01-02"}\n' * 3001, "more than 3000 pairs"),
        ("\udcff", "cannot be used"),
    ],
)
def test_rule_breaking_file_is_invalid_with_the_reason(
    task: Task, tmp_path: Path, train_text: str | None, expected: str
) -> None:
    def fill(submission: Path) -> None:
        if train_text is not None:
            data = train_text.encode("utf-8", "surrogateescape")
            (submission / "train.jsonl").write_bytes(data)

    outcome = run_grader(task, fill, tmp_path / "grader.log")
    assert outcome.status == "invalid"
    assert expected in outcome.message


@pytest.mark.slow
def test_untouched_workspace_scores_the_baseline(task: Task, tmp_path: Path) -> None:
    outcome = grade_text(
        task, (task.workspace_dir / "train.jsonl").read_text(encoding="utf-8"), tmp_path
    )
    assert outcome.status == "scored"
    assert outcome.metric == pytest.approx(task.spec.scoring.baseline, abs=1e-9)


@pytest.mark.slow
def test_reference_solution_scores_the_reference(task: Task, tmp_path: Path) -> None:
    workspace = apply_solution(task, tmp_path)
    outcome = grade_text(task, (workspace / "train.jsonl").read_text(encoding="utf-8"), tmp_path)
    assert outcome.status == "scored", outcome.message
    assert outcome.metric == pytest.approx(task.spec.scoring.reference, abs=1e-9)
    assert outcome.metrics["train_pairs"] == 3000
