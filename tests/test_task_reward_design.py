"""End to end checks of task_suites/mini/reward_design.

The grader runs through the harness's own pytest_innovator.grading.run_grader: a scratch copy of
grader/, a submission directory holding reward.py, the JSON request on stdin, a clean environment,
and the result read from the frame that carries the request's nonce.
The checks it shares with the other trainer task are in tests/test_trainer_tasks.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pytest_innovator.grader_kit import isolation_available
from pytest_innovator.task import Task

from .task_checks import (
    MINI_SUITE,
    check_task_directory,
    grade_files,
    import_from,
    task_fixture,
)

TASK_DIR = MINI_SUITE / "reward_design"

task = task_fixture(TASK_DIR)


def test_task_directory_is_complete(task: Task) -> None:
    # The grader trains with the very scripts the agent develops against.
    check_task_directory(task, same_in_grader=["train.py", "env.py", "policy.py"])


def test_mazes_are_connected_and_the_key_is_far_from_the_door(task: Task) -> None:
    env = import_from(task.workspace_dir / "env.py", "reward_design_env")
    for seed in range(5):
        maze = env.make_maze(seed)
        steps = env._reachable(maze.walls, tuple(maze.key))
        assert (steps[~maze.walls] >= 0).all()
        assert steps[tuple(maze.door)] >= env.MIN_KEY_TO_DOOR
        assert maze.walls[0].all() and maze.walls[:, 0].all() and maze.walls[-1].all() and maze.walls[:, -1].all()


def test_success_needs_the_key(task: Task) -> None:
    env = import_from(task.workspace_dir / "env.py", "reward_design_env")
    maze = env.make_maze(0)
    beside_door = next(cell for cell in maze.door + env.MOVES if not maze.walls[tuple(cell)])
    toward_door = next(i for i, move in enumerate(env.MOVES) if (beside_door + move == maze.door).all())
    for has_key, succeeds in ((False, False), (True, True)):
        moved = env.step(maze, beside_door[None], np.array([has_key]), np.array([toward_door]))
        assert (moved.position[0] == maze.door).all()
        assert bool(moved.success[0]) is succeeds


def test_missing_reward_is_invalid(task: Task, tmp_path: Path) -> None:
    outcome = grade_files(task, {}, tmp_path)
    assert outcome.status == "invalid"
    assert "no reward.py" in outcome.message


@pytest.mark.slow
@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("raise ImportError('broken on purpose')\n", "broken on purpose"),
        (
            ("def make_reward(maze, gamma):\n    return lambda transition: transition.success * float('nan')\n"),
            "not finite",
        ),
        (
            ("def make_reward(maze, gamma):\n    return lambda transition: 1.0\n"),
            "expected (",
        ),
    ],
    ids=["import-error", "nan", "wrong-shape"],
)
def test_reward_that_breaks_training_is_invalid(task: Task, tmp_path: Path, source: str, expected: str) -> None:
    outcome = grade_files(task, {"reward.py": source}, tmp_path)
    assert outcome.status == "invalid"
    if not isolation_available():  # the message carries no text from an unsandboxed trainer
        expected = "evaluate_dev.py shows the error"
    assert expected in outcome.message
