"""End to end checks of task_suites/mini/data_filtering.

The grader runs through the harness's own pytest_innovator.grading.run_grader: a scratch copy of
grader/, a submission directory holding selection.txt, the JSON request on stdin and the framed
result. Training the model takes about 20 s of CPU, so the calibration checks are slow.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from pytest_innovator.grading import GradeOutcome, run_grader
from pytest_innovator.task import Task, load_task

TASK_DIR = Path(__file__).resolve().parent.parent / "task_suites" / "mini" / "data_filtering"


def load_module(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def task() -> Task:
    return load_task(TASK_DIR)


@pytest.fixture(scope="module")
def lm() -> ModuleType:
    return load_module("data_filtering_lm", TASK_DIR / "workspace" / "lm.py")


def apply_solution(task: Task, tmp_path: Path) -> Path:
    workspace = tmp_path / "workspace"
    shutil.copytree(task.workspace_dir, workspace)
    solution_copy = tmp_path / "solution"
    shutil.copytree(task.solution_dir, solution_copy)
    assert task.spec.solution is not None
    env = {**os.environ, "INNOVATOR_SOLUTION_DIR": str(solution_copy)}
    subprocess.run(["bash", "-c", task.spec.solution.command], cwd=workspace, env=env, check=True)
    return workspace


def grade_text(task: Task, selection: str | None, tmp_path: Path, *, seed: int = 0) -> GradeOutcome:
    def fill(submission: Path) -> None:
        if selection is not None:
            (submission / "selection.txt").write_text(selection, encoding="utf-8")

    return run_grader(task, fill, tmp_path / "grader.log", seed=seed)


def test_task_directory_is_complete(task: Task) -> None:
    for name in (*task.spec.outputs, *task.spec.protected):
        assert (task.workspace_dir / name).exists(), name
    assert task.hint_path is not None and task.hint_path.is_file()
    assert (TASK_DIR / "README.md").is_file()
    # The grader trains and evaluates with the very recipe the agent develops against.
    assert (task.grader_dir / "lm.py").read_bytes() == (task.workspace_dir / "lm.py").read_bytes()


def test_data_files_are_regenerated_byte_for_byte(task: Task, tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(TASK_DIR / "grader" / "make_data.py"), str(tmp_path)], check=True
    )
    for relative in (
        "workspace/corpus.jsonl",
        "workspace/data/dev_text.txt",
        "grader/data/heldout.txt",
    ):
        assert (tmp_path / relative).read_bytes() == (TASK_DIR / relative).read_bytes(), relative


def test_graders_corpus_is_the_workspace_corpus(task: Task, lm: ModuleType) -> None:
    make_data = load_module("data_filtering_make_data", task.grader_dir / "make_data.py")
    assert make_data.corpus_documents() == lm.load_corpus(task.workspace_dir / "corpus.jsonl")


def test_held_out_text_is_not_in_the_workspace(task: Task) -> None:
    heldout = (task.grader_dir / "data" / "heldout.txt").read_text(encoding="utf-8")
    visible = (task.workspace_dir / "corpus.jsonl").read_text(encoding="utf-8")
    visible += (task.workspace_dir / "data" / "dev_text.txt").read_text(encoding="utf-8")
    paragraphs = [p for p in heldout.split("\n\n")[1:-1] if len(p) > 200]
    assert len(paragraphs) > 20
    assert not any(json.dumps(p)[1:-1] in visible or p in visible for p in paragraphs)


def test_shipped_selection_is_what_the_starting_pipeline_writes(task: Task, tmp_path: Path) -> None:
    workspace = tmp_path / "workspace"
    shutil.copytree(task.workspace_dir, workspace)
    (workspace / "selection.txt").unlink()
    subprocess.run(
        [sys.executable, "make_selection.py"], cwd=workspace, check=True, capture_output=True
    )
    assert (workspace / "selection.txt").read_bytes() == (
        task.workspace_dir / "selection.txt"
    ).read_bytes()


def test_reference_selection_fits_the_budget(task: Task, lm: ModuleType, tmp_path: Path) -> None:
    workspace = apply_solution(task, tmp_path)
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
    outcome = grade_text(task, selection, tmp_path)
    assert outcome.status == "invalid"
    assert expected in outcome.message


@pytest.mark.slow
def test_untouched_workspace_scores_the_baseline(task: Task, tmp_path: Path) -> None:
    outcome = grade_text(
        task, (task.workspace_dir / "selection.txt").read_text(encoding="utf-8"), tmp_path
    )
    assert outcome.status == "scored", outcome.message
    assert outcome.metric == pytest.approx(task.spec.scoring.baseline, abs=1e-9)


@pytest.mark.slow
def test_reference_solution_scores_the_reference(task: Task, tmp_path: Path) -> None:
    workspace = apply_solution(task, tmp_path)
    outcome = grade_text(task, (workspace / "selection.txt").read_text(encoding="utf-8"), tmp_path)
    assert outcome.status == "scored", outcome.message
    assert outcome.metric == pytest.approx(task.spec.scoring.reference, abs=1e-9)
