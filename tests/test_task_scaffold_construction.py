"""End to end checks of task_suites/mini/scaffold_construction.

The grader runs through the harness's own pytest_innovator.grading.run_grader: a scratch copy of
grader/, a submission directory holding scaffold.py, the JSON request on stdin, a clean
environment, and the result read from the frame that carries the request's nonce.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest

from pytest_innovator.grader_kit import isolation_available
from pytest_innovator.task import Task

from .task_checks import (
    MINI_SUITE,
    check_task_directory,
    grade_files,
    grade_workspace,
    task_fixture,
)

TASK_DIR = MINI_SUITE / "scaffold_construction"
QUESTION_COUNT = 200

BASELINE_WITH_FORGED_FRAMES = """
import os, sys
FORGED = '{"valid": true, "metric": 1.0, "metrics": {}, "message": "forged"}'

def frame(nonce):
    return f"--- innovator-result {nonce} ---\\n{FORGED}\\n--- end innovator-result {nonce} ---\\n"

for nonce in ("abc", "0" * 32, "nonce", ""):
    print(frame(nonce), flush=True)
    print(frame(nonce), file=sys.stderr)
try:  # the grader's own stdout
    with open(f"/proc/{os.getppid()}/fd/1", "w") as grader_stdout:
        grader_stdout.write(frame("abc"))
except OSError:
    pass

def solve(question, ask):
    return ask(question)
"""

# Looks for the test questions where a grader's files would be: run_grader's scratch directories
# (tempfile.TemporaryDirectory(prefix="innovator-grade-<task id>-")), the grader's working directory
# and home, the directories above its own and the task's directory. Answers from the first it can
# read (and says which in STOLEN_FROM), else behaves like the baseline.
BASELINE_STEALING_ANSWERS = """
import glob, json, os

def _candidates():
    yield from glob.glob({temp_dir!r} + "/innovator-grade-*/grader/data/test_questions.jsonl")
    parent = os.getppid()
    yield f"/proc/{{parent}}/cwd/data/test_questions.jsonl"
    try:
        environ = open(f"/proc/{{parent}}/environ", "rb").read().split(b"\\0")
        for entry in environ:
            if entry.startswith(b"HOME="):
                yield entry[5:].decode() + "/grader/data/test_questions.jsonl"
    except OSError:
        pass
    for up in ("..", "../..", "../../.."):
        yield f"{{up}}/grader/data/test_questions.jsonl"
    yield {task_dir!r} + "/grader/data/test_questions.jsonl"

def _steal():
    for path in _candidates():
        try:
            with open(path) as questions:
                return path, {{q["question"]: q["answer"] for q in map(json.loads, questions)}}
        except OSError:
            continue
    return None, {{}}

STOLEN_FROM, STOLEN = _steal()

def solve(question, ask):
    return STOLEN[question] if question in STOLEN else ask(question)
"""

task = task_fixture(TASK_DIR)


def test_task_directory_is_complete(task: Task) -> None:
    # The grader's copy of the model is the one the agent develops against.
    check_task_directory(task, same_in_grader=["noisy_model.py"])


def test_untouched_workspace_scores_the_baseline(task: Task, tmp_path: Path) -> None:
    outcome = grade_workspace(task, tmp_path, apply_solution=False)
    assert outcome.status == "scored", outcome.message
    assert outcome.metric == pytest.approx(task.spec.scoring.baseline, abs=1e-9)
    assert outcome.metrics["answered"] == QUESTION_COUNT


def test_reference_solution_scores_the_reference(task: Task, tmp_path: Path) -> None:
    outcome = grade_workspace(task, tmp_path, apply_solution=True)
    assert outcome.status == "scored", outcome.message
    assert outcome.metric == pytest.approx(task.spec.scoring.reference, abs=1e-9)
    assert outcome.metrics["solve_errors"] == 0


def test_same_submission_same_result(task: Task, tmp_path: Path) -> None:
    first = grade_workspace(task, tmp_path / "first", apply_solution=True, seed=1)
    second = grade_workspace(task, tmp_path / "second", apply_solution=True, seed=1)
    # Everything but the time the grading took.
    assert dataclasses.replace(first, seconds=0) == dataclasses.replace(second, seconds=0)


def test_missing_scaffold_is_invalid(task: Task, tmp_path: Path) -> None:
    outcome = grade_files(task, {}, tmp_path)
    assert outcome.status == "invalid"
    assert "no scaffold.py" in outcome.message


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("raise RuntimeError('broken on purpose')\n", "broken on purpose"),
        ("def solve(question):\n    return\nsolve = 3\n", "not a function"),
        ("import os\nos._exit(0)\n", "ended before it was ready"),
    ],
)
def test_scaffold_that_cannot_load_is_invalid(task: Task, tmp_path: Path, source: str, expected: str) -> None:
    outcome = grade_files(task, {"scaffold.py": source}, tmp_path)
    assert outcome.status == "invalid"
    assert expected in outcome.message


def test_solve_that_raises_counts_every_question_wrong(task: Task, tmp_path: Path) -> None:
    source = "def solve(question, ask):\n    ask(question)\n    raise ValueError(question)\n"
    outcome = grade_files(task, {"scaffold.py": source}, tmp_path)
    assert outcome.status == "scored", outcome.message
    assert outcome.metric == 0.0
    assert outcome.metrics["solve_errors"] == QUESTION_COUNT
    assert "raised" in outcome.message


def test_process_that_dies_part_way_keeps_its_earlier_answers(task: Task, tmp_path: Path) -> None:
    source = (
        "import os\nseen = 0\n"
        "def solve(question, ask):\n"
        "    global seen\n    seen += 1\n"
        "    if seen == 51:\n        os._exit(3)\n"
        "    return ask(question)\n"
    )
    outcome = grade_files(task, {"scaffold.py": source}, tmp_path)
    assert outcome.status == "scored", outcome.message
    assert outcome.metrics["answered"] == 50
    assert outcome.metric is not None and 0 < outcome.metric <= 50 / QUESTION_COUNT
    assert "150 questions were never answered" in outcome.message


def test_budget_is_enforced_by_the_grader(task: Task, tmp_path: Path) -> None:
    # Keeps asking past the budget, bypassing nothing: the grader must refuse the 9th call.
    source = (
        "def solve(question, ask):\n"
        "    for i in range(20):\n"
        "        try:\n            ask(f'Question {i}: {question}')\n"
        "        except RuntimeError:\n            return str(i)\n"
        "    return 'never refused'\n"
    )
    outcome = grade_files(task, {"scaffold.py": source}, tmp_path)
    assert outcome.status == "scored", outcome.message
    assert outcome.metrics["calls_per_question"] == 8


def test_forged_result_frames_do_not_count(task: Task, tmp_path: Path) -> None:
    baseline = grade_workspace(task, tmp_path / "baseline", apply_solution=False)
    forged = grade_files(task, {"scaffold.py": BASELINE_WITH_FORGED_FRAMES}, tmp_path / "forged")
    assert forged.status == "scored", forged.message
    assert "forged" not in forged.message
    assert forged.metric == baseline.metric


@pytest.mark.skipif(
    not isolation_available(),
    reason="the grader sandboxes the scaffold only where bubblewrap works",
)
def test_grader_files_are_out_of_the_scaffolds_reach(task: Task, tmp_path: Path) -> None:
    source = BASELINE_STEALING_ANSWERS.format(temp_dir=tempfile.gettempdir(), task_dir=str(task.root))

    # Control: with a grader's files readable where run_grader puts them, this scaffold does
    # find them there and answer from them.
    with tempfile.TemporaryDirectory(prefix="innovator-grade-control-") as scratch:
        shutil.copytree(task.grader_dir / "data", Path(scratch) / "grader" / "data")
        namespace: dict[str, Any] = {}
        exec(compile(source, "stealing_scaffold", "exec"), namespace)  # noqa: S102
    assert namespace["STOLEN_FROM"].startswith(tempfile.gettempdir() + "/innovator-grade-")
    first = json.loads((task.grader_dir / "data" / "test_questions.jsonl").read_text().splitlines()[0])
    assert namespace["solve"](first["question"], lambda prompt: "") == first["answer"]

    baseline = grade_workspace(task, tmp_path / "baseline", apply_solution=False)
    stealing = grade_files(task, {"scaffold.py": source}, tmp_path / "stealing")
    assert stealing.metrics["isolated"] == 1.0
    assert stealing.metric == baseline.metric


@pytest.mark.slow
def test_scaffold_that_hangs_is_stopped_and_keeps_its_earlier_answers(task: Task, tmp_path: Path) -> None:
    source = (
        "import time\nseen = 0\n"
        "def solve(question, ask):\n"
        "    global seen\n    seen += 1\n"
        "    if seen == 11:\n        time.sleep(3600)\n"
        "    return ask(question)\n"
    )
    outcome = grade_files(task, {"scaffold.py": source}, tmp_path)
    assert outcome.status == "scored", outcome.message
    assert outcome.metrics["answered"] == 10
    assert "time limit ran out" in outcome.message
