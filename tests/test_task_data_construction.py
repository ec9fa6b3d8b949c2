"""End to end checks of task_suites/mini/data_construction.

The grader runs through the harness's own pytest_innovator.grading.run_grader: a scratch copy of
grader/, a submission directory holding train.jsonl, the JSON request on stdin and the framed
result. Training the model takes about 30 s of CPU, so the calibration checks are slow.
"""

from __future__ import annotations

import json
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
    import_from,
    task_fixture,
    torch_build,
    workspace_copy,
)

TASK_DIR = MINI_SUITE / "data_construction"

task = task_fixture(TASK_DIR)


def test_task_directory_is_complete(task: Task) -> None:
    # The grader trains with the very recipe the agent develops against.
    check_task_directory(task, same_in_grader=["seq2seq.py"])


def test_data_files_are_regenerated_byte_for_byte(task: Task, tmp_path: Path) -> None:
    check_make_data_regenerates(
        task,
        tmp_path,
        [
            "grader/data/test.jsonl",
            "workspace/data/examples.jsonl",
            "workspace/data/sample_inputs.txt",
        ],
    )


def test_hidden_test_inputs_are_not_in_the_workspace(task: Task) -> None:
    test_inputs = {
        json.loads(line)["input"] for line in (task.grader_dir / "data" / "test.jsonl").read_text().splitlines()
    }
    sample = set((task.workspace_dir / "data" / "sample_inputs.txt").read_text().splitlines())
    examples = {
        json.loads(line)["input"] for line in (task.workspace_dir / "data" / "examples.jsonl").read_text().splitlines()
    }
    assert len(test_inputs) == 1000
    assert not test_inputs & (sample | examples)


def test_reference_solution_fits_the_rules(task: Task, tmp_path: Path) -> None:
    seq2seq = import_from(task.workspace_dir / "seq2seq.py", "data_construction_seq2seq")
    workspace = workspace_copy(task, tmp_path, apply_solution=True)
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
    files: dict[str, str | bytes] = {}
    if train_text is not None:
        files["train.jsonl"] = train_text.encode("utf-8", "surrogateescape")
    outcome = grade_files(task, files, tmp_path)
    assert outcome.status == "invalid"
    assert expected in outcome.message


@pytest.mark.slow
def test_untouched_workspace_scores_the_baseline(task: Task, tmp_path: Path) -> None:
    outcome = grade_workspace(task, tmp_path, apply_solution=False)
    assert outcome.status == "scored"
    assert outcome.metric == pytest.approx(calibrated(task, "baseline"), abs=1e-9), torch_build()


@pytest.mark.slow
def test_reference_solution_scores_the_reference(task: Task, tmp_path: Path) -> None:
    outcome = grade_workspace(task, tmp_path, apply_solution=True)
    assert outcome.status == "scored", outcome.message
    assert outcome.metric == pytest.approx(calibrated(task, "reference"), abs=1e-9), torch_build()
    assert outcome.metrics["train_pairs"] == 3000
