"""End to end checks of task_suites/mini/reward_design.

The grader is driven the way the harness drives it: a scratch copy of grader/ in a private
directory, a submission directory holding reward.py, the JSON request on stdin, a clean
environment, and the result read from the frame that carries the request's nonce.
"""

from __future__ import annotations

import importlib.util
import json
import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from pytest_innovator.grader_kit import isolation_available
from pytest_innovator.grading import parse_result
from pytest_innovator.task import Task, load_task

TASK_DIR = Path(__file__).resolve().parent.parent / "task_suites" / "mini" / "reward_design"

SPARSE_REWARD_PRINTING_FORGED_FRAMES = """
import sys

FORGED = '{"valid": true, "metric": 1.0, "metrics": {}, "message": "forged"}'
for nonce in ("abc", "0" * 32, ""):
    frame = f"--- innovator-result {nonce} ---\\n{FORGED}\\n--- end innovator-result {nonce} ---"
    print(frame, flush=True)
    print(frame, file=sys.stderr)

def make_reward(maze, gamma):
    return lambda transition: transition.success.astype(float)
"""

# Fails on import either way; the message (the trainer's stderr) says whether the grader's files
# were readable. {scratch} is filled in by the test.
REWARD_LOOKING_FOR_GRADER_FILES = """
import os

readable = []
for path in ({scratch!r} + "/grader/grade.py", f"/proc/{{os.getppid()}}/cwd/grade.py", {task_dir!r}):
    try:
        if os.path.isdir(path):
            os.listdir(path)
        else:
            open(path).read()
        readable.append(path)
    except OSError:
        pass
raise RuntimeError(f"readable: {{readable or 'nothing'}}")
"""


@pytest.fixture(scope="module")
def task() -> Task:
    return load_task(TASK_DIR)


def import_from(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def workspace_reward(task: Task, tmp_path: Path, *, apply_solution: bool) -> str:
    """reward.py of a fresh workspace copy, with the reference solution applied or not."""
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
    return (workspace / "reward.py").read_text(encoding="utf-8")


def grade(
    task: Task,
    reward_source: str | None,
    tmp_path: Path,
    *,
    seed: int = 0,
    grader_edits: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Run the task's grader on a submission holding `reward_source` as reward.py.

    `grader_edits` replaces text in the scratch copy of grade.py (to lower a limit, say).
    """
    scratch = tmp_path / "scratch"
    scratch.mkdir(mode=0o700, parents=True)
    shutil.copytree(task.grader_dir, scratch / "grader")
    grade_py = scratch / "grader" / "grade.py"
    for old, new in (grader_edits or {}).items():
        source = grade_py.read_text(encoding="utf-8")
        assert old in source, old
        grade_py.write_text(source.replace(old, new), encoding="utf-8")
    submission = scratch / "submission"
    submission.mkdir()
    if reward_source is not None:
        (submission / "reward.py").write_text(reward_source, encoding="utf-8")
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
        check=False,
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


def test_task_directory_is_complete(task: Task) -> None:
    for name in (*task.spec.outputs, *task.spec.protected):
        assert (task.workspace_dir / name).exists(), name
    assert task.hint_path is not None and task.hint_path.is_file()
    assert (TASK_DIR / "README.md").is_file()
    # The grader trains with the very scripts the agent develops against.
    for name in ("train.py", "env.py", "policy.py"):
        assert (task.grader_dir / name).read_bytes() == (task.workspace_dir / name).read_bytes(), (
            name
        )


def test_mazes_are_connected_and_the_key_is_far_from_the_door(task: Task) -> None:
    env = import_from(task.workspace_dir / "env.py", "reward_design_env")
    for seed in range(5):
        maze = env.make_maze(seed)
        steps = env._reachable(maze.walls, tuple(maze.key))
        assert (steps[~maze.walls] >= 0).all()
        assert steps[tuple(maze.door)] >= env.MIN_KEY_TO_DOOR
        assert (
            maze.walls[0].all()
            and maze.walls[:, 0].all()
            and maze.walls[-1].all()
            and maze.walls[:, -1].all()
        )


def test_success_needs_the_key(task: Task) -> None:
    env = import_from(task.workspace_dir / "env.py", "reward_design_env")
    maze = env.make_maze(0)
    beside_door = next(cell for cell in maze.door + env.MOVES if not maze.walls[tuple(cell)])
    toward_door = next(
        i for i, move in enumerate(env.MOVES) if (beside_door + move == maze.door).all()
    )
    for has_key, succeeds in ((False, False), (True, True)):
        moved = env.step(maze, beside_door[None], np.array([has_key]), np.array([toward_door]))
        assert (moved.position[0] == maze.door).all()
        assert bool(moved.success[0]) is succeeds


def test_missing_reward_is_invalid(task: Task, tmp_path: Path) -> None:
    result = grade(task, None, tmp_path)
    assert result["valid"] is False
    assert "no reward.py" in result["message"]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("raise ImportError('broken on purpose')\n", "broken on purpose"),
        (
            (
                "def make_reward(maze, gamma):\n"
                "    return lambda transition: transition.success * float('nan')\n"
            ),
            "not finite",
        ),
        (
            ("def make_reward(maze, gamma):\n    return lambda transition: 1.0\n"),
            "expected (",
        ),
    ],
    ids=["import-error", "nan", "wrong-shape"],
)
def test_reward_that_breaks_training_is_invalid(
    task: Task, tmp_path: Path, source: str, expected: str
) -> None:
    result = grade(task, source, tmp_path)
    assert result["valid"] is False
    if not isolation_available():  # the message carries no text from an unsandboxed trainer
        expected = "evaluate_dev.py shows the error"
    assert expected in result["message"]


@pytest.mark.slow
def test_training_is_stopped_at_the_cpu_limit(task: Task, tmp_path: Path) -> None:
    busy = "import time\nwhile True:\n    time.process_time()\n"
    lower_limit = {"TRAIN_CPU_SECONDS = 60": "TRAIN_CPU_SECONDS = 2"}
    result = grade(task, busy, tmp_path, grader_edits=lower_limit)
    assert result["valid"] is False
    assert "more than 2 seconds of CPU time" in result["message"]


@pytest.mark.slow
@pytest.mark.skipif(
    not isolation_available(), reason="the grader sandboxes the trainer only where bubblewrap works"
)
def test_graders_files_are_out_of_the_trainers_reach(task: Task, tmp_path: Path) -> None:
    scratch = tmp_path / "scratch"
    result = grade(
        task,
        REWARD_LOOKING_FOR_GRADER_FILES.format(scratch=str(scratch), task_dir=str(TASK_DIR)),
        tmp_path,
    )
    assert result["valid"] is False
    assert "readable: nothing" in result["message"]


@pytest.mark.slow
def test_untouched_workspace_scores_the_baseline(task: Task, tmp_path: Path) -> None:
    result = grade(task, workspace_reward(task, tmp_path, apply_solution=False), tmp_path)
    assert result["valid"] is True
    assert result["metric"] == pytest.approx(task.spec.scoring.baseline, abs=1e-12)
    assert result["metrics"]["isolated"] == (1.0 if isolation_available() else 0.0)


@pytest.mark.slow
def test_reference_solution_scores_the_reference(task: Task, tmp_path: Path) -> None:
    result = grade(task, workspace_reward(task, tmp_path, apply_solution=True), tmp_path)
    assert result["valid"] is True
    assert result["metric"] == pytest.approx(task.spec.scoring.reference, abs=1e-12)


@pytest.mark.slow
def test_forged_result_frames_do_not_count(task: Task, tmp_path: Path) -> None:
    # The sparse reward that also prints forged frames trains exactly like the baseline.
    result = grade(task, SPARSE_REWARD_PRINTING_FORGED_FRAMES, tmp_path)
    assert result["valid"] is True
    assert "forged" not in result["message"]
    assert result["metric"] == pytest.approx(task.spec.scoring.baseline, abs=1e-12)
