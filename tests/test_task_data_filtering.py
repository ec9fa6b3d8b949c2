"""End to end checks of task_suites/mini/data_filtering.

The grader runs through the harness's own pytest_innovator.grading.run_grader: a scratch copy of
grader/, a submission directory holding selection.txt, the JSON request on stdin and the framed
result. Training the model takes about 20 s of CPU, so the calibration checks are slow.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

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

TASK_DIR = MINI_SUITE / "data_filtering"

task = task_fixture(TASK_DIR)


@pytest.fixture(scope="module")
def lm() -> ModuleType:
    return import_from(TASK_DIR / "workspace" / "lm.py", "data_filtering_lm")


def test_task_directory_is_complete(task: Task) -> None:
    # The grader trains and evaluates with the very recipe the agent develops against.
    check_task_directory(task, same_in_grader=["lm.py"])


def test_data_files_are_regenerated_byte_for_byte(task: Task, tmp_path: Path) -> None:
    check_make_data_regenerates(
        task,
        tmp_path,
        ["workspace/corpus.jsonl", "workspace/data/dev_text.txt", "grader/data/heldout.txt"],
    )


def test_graders_corpus_is_the_workspace_corpus(task: Task, lm: ModuleType) -> None:
    make_data = import_from(task.grader_dir / "make_data.py", "data_filtering_make_data")
    assert make_data.corpus_documents() == lm.load_corpus(task.workspace_dir / "corpus.jsonl")


def test_held_out_text_is_not_in_the_workspace(task: Task) -> None:
    heldout = (task.grader_dir / "data" / "heldout.txt").read_text(encoding="utf-8")
    visible = (task.workspace_dir / "corpus.jsonl").read_text(encoding="utf-8")
    visible += (task.workspace_dir / "data" / "dev_text.txt").read_text(encoding="utf-8")
    paragraphs = [p for p in heldout.split("\n\n")[1:-1] if len(p) > 200]
    assert len(paragraphs) > 20
    assert not any(json.dumps(p)[1:-1] in visible or p in visible for p in paragraphs)


def test_shipped_selection_is_what_the_starting_pipeline_writes(task: Task, tmp_path: Path) -> None:
    workspace = workspace_copy(task, tmp_path, apply_solution=False)
    (workspace / "selection.txt").unlink()
    subprocess.run([sys.executable, "make_selection.py"], cwd=workspace, check=True, capture_output=True)
    assert (workspace / "selection.txt").read_bytes() == (task.workspace_dir / "selection.txt").read_bytes()


def test_reference_selection_fits_the_budget(task: Task, lm: ModuleType, tmp_path: Path) -> None:
    workspace = workspace_copy(task, tmp_path, apply_solution=True)
    corpus = lm.load_corpus(workspace / "corpus.jsonl")
    ids = lm.read_selection(workspace / "selection.txt", corpus)
    assert lm.BUDGET_BYTES - 1000 < len(lm.training_bytes(ids, corpus)) <= lm.BUDGET_BYTES


@pytest.mark.parametrize(
    ("selection", "expected"),
    [
        (None, "no selection.txt"),
        ("", "the selection is empty"),
        ("d00001\nnot-an-id\n", "line 2: 'not-an-id' is not a document id"),
        ("d00001\n\nd00001\n", "line 3: d00001 is selected twice"),
        ("".join(f"d{i:05d}\n" for i in range(2026)), "passes the budget of 300000 bytes"),
    ],
)
def test_rule_breaking_selection_is_invalid_with_the_reason(
    task: Task, tmp_path: Path, selection: str | None, expected: str
) -> None:
    files = {} if selection is None else {"selection.txt": selection}
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
