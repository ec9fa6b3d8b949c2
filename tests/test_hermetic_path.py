"""Processes started by the harness and by these tests run `python3` as the harness's interpreter.

On a fresh machine the first `python3` on PATH is the system's, which has none of the project's
packages. Here PATH starts with a directory whose `python3` is that bare interpreter: the oracle's
solution command, the grader and the tests' own helper that applies a reference solution must
still get the interpreter running pytest.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from pytest_innovator.sandbox import bwrap_path
from pytest_innovator.task import load_task

from .conftest import FIXTURES
from .task_checks import workspace_copy

pytest_plugins = ["pytester"]

BARE_PYTHON = Path("/usr/bin/python3")
# The solution copies answer.txt with a python3 that must import the project first. The grader's
# command, `python3 grade.py`, imports pytest_innovator.grader_kit already.
SOLUTION = (
    "python3 -c 'import os, shutil, pytest_innovator; "
    'shutil.copy(os.environ[\\"INNOVATOR_SOLUTION_DIR\\"] + \\"/answer.txt\\", \\"answer.txt\\")'
    "'"
)


@pytest.fixture
def foreign_python_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """PATH: a directory holding a `python3` that cannot import the project, then /usr/bin:/bin."""
    if not BARE_PYTHON.exists():
        pytest.skip(f"no {BARE_PYTHON} to stand for a fresh machine's interpreter")
    foreign_bin = tmp_path / "foreign-bin"
    foreign_bin.mkdir()
    (foreign_bin / "python3").symlink_to(BARE_PYTHON)
    path = f"{foreign_bin}:/usr/bin:/bin"
    probe = subprocess.run(
        ["python3", "-c", "import pytest_innovator"],
        cwd=tmp_path,  # not the checkout, whose package a bare python3 imports from the cwd
        env={"PATH": path},
        capture_output=True,
    )
    if probe.returncode == 0:
        pytest.skip(f"{BARE_PYTHON} imports the project, so it cannot stand for a foreign python3")
    monkeypatch.setenv("PATH", path)


def number_task_with_python_solution(root: Path) -> Path:
    """A copy of the fixtures' `number` task under root whose solution runs python3."""
    task_dir = root / "number"
    shutil.copytree(FIXTURES / "tasks" / "number", task_dir)
    toml = task_dir / "task.toml"
    text = toml.read_text()
    old = 'command = "cp \\"$INNOVATOR_SOLUTION_DIR/answer.txt\\" answer.txt"'
    assert old in text
    toml.write_text(text.replace(old, f'command = "{SOLUTION}"'))
    return task_dir


@pytest.mark.usefixtures("foreign_python_first")
@pytest.mark.parametrize("backend", ["local", "sandbox"])
def test_oracle_and_grader_run_the_harness_python(pytester: pytest.Pytester, backend: str) -> None:
    if backend == "sandbox" and bwrap_path() is None:
        pytest.skip("bubblewrap cannot create a sandbox here")
    suite = pytester.path / "suite"
    suite.mkdir()
    number_task_with_python_solution(suite)
    result = pytester.runpytest_subprocess("suite", "--innovator-agent", "oracle", "--innovator-backend", backend)
    result.assert_outcomes(passed=1)


@pytest.mark.usefixtures("foreign_python_first")
def test_solution_helper_runs_the_harness_python(tmp_path: Path) -> None:
    task = load_task(number_task_with_python_solution(tmp_path))
    workspace = workspace_copy(task, tmp_path, apply_solution=True)
    assert (workspace / "answer.txt").read_text().strip() == "0.9"
