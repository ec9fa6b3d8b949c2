"""End to end checks of task_suites/mini/scaffold_construction.

The grader is driven the way the harness drives it: a scratch copy of grader/ in a private
directory, a submission directory holding scaffold.py, the JSON request on stdin, a clean
environment, and the result read from the frame that carries the request's nonce.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pytest_innovator.grader_kit import isolation_available
from pytest_innovator.grading import parse_result
from pytest_innovator.task import Task, load_task

TASK_DIR = Path(__file__).resolve().parent.parent / "task_suites" / "mini" / "scaffold_construction"
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

# Looks for the test questions where a grader's files would be; answers from them when found,
# else behaves like the baseline. {scratch} is filled in by the test.
BASELINE_STEALING_ANSWERS = """
import json, os

def _candidates():
    yield {scratch!r} + "/grader/data/test_questions.jsonl"
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

def _steal():
    for path in _candidates():
        try:
            with open(path) as questions:
                return {{q["question"]: q["answer"] for q in map(json.loads, questions)}}
        except OSError:
            continue
    return {{}}

STOLEN = _steal()

def solve(question, ask):
    return STOLEN[question] if question in STOLEN else ask(question)
"""


@pytest.fixture(scope="module")
def task() -> Task:
    return load_task(TASK_DIR)


def make_workspace(task: Task, tmp_path: Path, *, apply_solution: bool) -> Path:
    workspace = tmp_path / "workspace"
    shutil.copytree(task.workspace_dir, workspace)
    if apply_solution:
        assert task.spec.solution is not None
        solution_copy = tmp_path / "solution"
        shutil.copytree(task.solution_dir, solution_copy)
        env = {**os.environ, "INNOVATOR_SOLUTION_DIR": str(solution_copy)}
        subprocess.run(
            ["bash", "-c", task.spec.solution.command], cwd=workspace, env=env, check=True
        )
    return workspace


def grade(
    task: Task, scaffold_source: str | None, tmp_path: Path, *, seed: int = 0
) -> dict[str, Any]:
    """Run the task's grader on a submission holding `scaffold_source` as scaffold.py."""
    scratch = tmp_path / "scratch"
    scratch.mkdir(mode=0o700, parents=True)
    shutil.copytree(task.grader_dir, scratch / "grader")
    submission = scratch / "submission"
    submission.mkdir()
    if scaffold_source is not None:
        (submission / "scaffold.py").write_text(scaffold_source, encoding="utf-8")
    nonce = secrets.token_hex(16)
    request = {
        "protocol": 1,
        "task_id": task.id,
        "submission_dir": str(submission),
        "seed": seed,
        "nonce": nonce,
    }
    env = {
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "LANG": "C.UTF-8",
        "HOME": str(scratch),
    }
    proc = subprocess.run(
        ["bash", "-c", task.spec.grader.command],
        cwd=scratch / "grader",
        env=env,
        input=json.dumps(request),
        capture_output=True,
        text=True,
        timeout=task.spec.grader.timeout,
    )
    shutil.rmtree(scratch)
    assert proc.returncode == 0, proc.stderr
    result = parse_result(proc.stdout, nonce)
    assert result is not None, f"no result frame in: {proc.stdout[-2000:]}"
    return result


def grade_workspace(
    task: Task, tmp_path: Path, *, apply_solution: bool, seed: int = 0
) -> dict[str, Any]:
    workspace = make_workspace(task, tmp_path, apply_solution=apply_solution)
    return grade(task, (workspace / "scaffold.py").read_text(encoding="utf-8"), tmp_path, seed=seed)


def test_task_directory_is_complete(task: Task) -> None:
    for name in (*task.spec.outputs, *task.spec.protected):
        assert (task.workspace_dir / name).exists(), name
    assert task.hint_path is not None and task.hint_path.is_file()
    assert (TASK_DIR / "README.md").is_file()
    # The grader's copy of the model is the one the agent develops against.
    assert (task.grader_dir / "noisy_model.py").read_bytes() == (
        task.workspace_dir / "noisy_model.py"
    ).read_bytes()


def test_untouched_workspace_scores_the_baseline(task: Task, tmp_path: Path) -> None:
    result = grade_workspace(task, tmp_path, apply_solution=False)
    assert result["valid"] is True
    assert result["metric"] == pytest.approx(task.spec.scoring.baseline, abs=1e-9)
    assert result["metrics"]["answered"] == QUESTION_COUNT


def test_reference_solution_scores_the_reference(task: Task, tmp_path: Path) -> None:
    result = grade_workspace(task, tmp_path, apply_solution=True)
    assert result["valid"] is True
    assert result["metric"] == pytest.approx(task.spec.scoring.reference, abs=1e-9)
    assert result["metrics"]["solve_errors"] == 0


def test_same_submission_same_result(task: Task, tmp_path: Path) -> None:
    first = grade_workspace(task, tmp_path / "first", apply_solution=True, seed=1)
    second = grade_workspace(task, tmp_path / "second", apply_solution=True, seed=1)
    assert first == second


def test_missing_scaffold_is_invalid(task: Task, tmp_path: Path) -> None:
    result = grade(task, None, tmp_path)
    assert result["valid"] is False
    assert "no scaffold.py" in result["message"]


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("raise RuntimeError('broken on purpose')\n", "broken on purpose"),
        ("def solve(question):\n    return\nsolve = 3\n", "not a function"),
        ("import os\nos._exit(0)\n", "ended before it was ready"),
    ],
)
def test_scaffold_that_cannot_load_is_invalid(
    task: Task, tmp_path: Path, source: str, expected: str
) -> None:
    result = grade(task, source, tmp_path)
    assert result["valid"] is False
    assert expected in result["message"]


def test_solve_that_raises_counts_every_question_wrong(task: Task, tmp_path: Path) -> None:
    source = "def solve(question, ask):\n    ask(question)\n    raise ValueError(question)\n"
    result = grade(task, source, tmp_path)
    assert result["valid"] is True
    assert result["metric"] == 0.0
    assert result["metrics"]["solve_errors"] == QUESTION_COUNT
    assert "raised" in result["message"]


def test_process_that_dies_part_way_keeps_its_earlier_answers(task: Task, tmp_path: Path) -> None:
    source = (
        "import os\nseen = 0\n"
        "def solve(question, ask):\n"
        "    global seen\n    seen += 1\n"
        "    if seen == 51:\n        os._exit(3)\n"
        "    return ask(question)\n"
    )
    result = grade(task, source, tmp_path)
    assert result["valid"] is True
    assert result["metrics"]["answered"] == 50
    assert 0 < result["metric"] <= 50 / QUESTION_COUNT
    assert "150 questions were never answered" in result["message"]


def test_budget_is_enforced_by_the_grader(task: Task, tmp_path: Path) -> None:
    # Keeps asking past the budget, bypassing nothing: the grader must refuse the 9th call.
    source = (
        "def solve(question, ask):\n"
        "    for i in range(20):\n"
        "        try:\n            ask(f'Question {i}: {question}')\n"
        "        except RuntimeError:\n            return str(i)\n"
        "    return 'never refused'\n"
    )
    result = grade(task, source, tmp_path)
    assert result["valid"] is True
    assert result["metrics"]["calls_per_question"] == 8


def test_forged_result_frames_do_not_count(task: Task, tmp_path: Path) -> None:
    baseline = grade_workspace(task, tmp_path / "baseline", apply_solution=False)
    forged = grade(task, BASELINE_WITH_FORGED_FRAMES, tmp_path / "forged")
    assert forged["valid"] is True
    assert "forged" not in forged["message"]
    assert forged["metric"] == baseline["metric"]


@pytest.mark.skipif(
    not isolation_available(), reason="the grader sandboxes the scaffold only where bubblewrap works"
)
def test_grader_files_are_out_of_the_scaffolds_reach(task: Task, tmp_path: Path) -> None:
    scratch = tmp_path / "stealing" / "scratch"
    source = BASELINE_STEALING_ANSWERS.format(scratch=str(scratch))

    # Control: with the grader's files readable, this scaffold does answer from them.
    (scratch / "grader").mkdir(parents=True)
    shutil.copytree(task.grader_dir / "data", scratch / "grader" / "data")
    namespace: dict[str, Any] = {}
    exec(compile(source, "stealing_scaffold", "exec"), namespace)
    first = json.loads(
        (task.grader_dir / "data" / "test_questions.jsonl").read_text().splitlines()[0]
    )
    assert namespace["solve"](first["question"], lambda prompt: "") == first["answer"]
    shutil.rmtree(scratch)

    baseline = grade_workspace(task, tmp_path / "baseline", apply_solution=False)
    stealing = grade(task, source, tmp_path / "stealing")
    assert stealing["metrics"]["isolated"] == 1.0
    assert stealing["metric"] == baseline["metric"]


@pytest.mark.slow
def test_scaffold_that_hangs_is_stopped_and_keeps_its_earlier_answers(
    task: Task, tmp_path: Path
) -> None:
    source = (
        "import time\nseen = 0\n"
        "def solve(question, ask):\n"
        "    global seen\n    seen += 1\n"
        "    if seen == 11:\n        time.sleep(3600)\n"
        "    return ask(question)\n"
    )
    result = grade(task, source, tmp_path)
    assert result["valid"] is True
    assert result["metrics"]["answered"] == 10
    assert "time limit ran out" in result["message"]
