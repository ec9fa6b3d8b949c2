"""Helpers shared by the end to end checks of the mini suite's tasks (tests/test_task_*.py).

Each task's test file loads its task with `task_fixture`, and then imports the task's modules
(`import_from`), copies its workspace with or without the reference solution (`workspace_copy`),
copies the task with a changed grader (`edited_task`), and grades submissions the way the harness
does, through pytest_innovator.grading.run_grader (`grade_files`, `grade_workspace`).
"""

from __future__ import annotations

import contextlib
import importlib.util
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import ModuleType

import pytest

from pytest_innovator.grading import GradeOutcome, run_grader
from pytest_innovator.task import Task, load_task
from pytest_innovator.workspace import command_environment

MINI_SUITE = Path(__file__).resolve().parent.parent / "task_suites" / "mini"
CALIBRATED_WITH = "torch 2.13.0+cpu"

# Python source that fails on import either way; the error names each grader file it could read.
# It looks in run_grader's scratch directories (tempfile.TemporaryDirectory(prefix=
# "innovator-grade-<task id>-")), in its parent's working directory and in the task's directory.
GRADER_FILES_PROBE = """
import glob, os

paths = glob.glob({temp_dir!r} + "/innovator-grade-*/grader/*")
paths += [f"/proc/{{os.getppid()}}/cwd/grade.py", {task_dir!r}]
readable = []
for path in paths:
    try:
        if os.path.isdir(path):
            os.listdir(path)
        else:
            open(path, "rb").read()
        readable.append(path)
    except OSError:
        pass
raise RuntimeError(f"readable: {{readable or 'nothing'}}")
"""


def task_fixture(task_dir: Path) -> Callable[[], Task]:
    """A module-scoped fixture named `task`: the task in task_dir. Use as `task = task_fixture(…)`."""

    @pytest.fixture(scope="module", name="task")
    def task() -> Task:
        return load_task(task_dir)

    return task


def import_from(path: Path, name: str) -> ModuleType:
    """The Python file at path, imported as a module called name."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def workspace_copy(task: Task, tmp_path: Path, *, apply_solution: bool) -> Path:
    """tmp_path/workspace: a copy of the task's workspace, the reference solution applied or not.

    The solution command runs the way the harness runs it: cwd the workspace,
    INNOVATOR_SOLUTION_DIR a copy of the task's solution/, and this interpreter first on PATH.
    """
    workspace = tmp_path / "workspace"
    shutil.copytree(task.workspace_dir, workspace)
    if apply_solution:
        assert task.spec.solution is not None
        solution_copy = tmp_path / "solution"
        shutil.copytree(task.solution_dir, solution_copy)
        env = command_environment({"INNOVATOR_SOLUTION_DIR": str(solution_copy)})
        subprocess.run(["bash", "-c", task.spec.solution.command], cwd=workspace, env=env, check=True)
    return workspace


def torch_build() -> str:
    """Which torch build and CPU run here: graded runs pin their numerics, but another build of
    torch (or of MKL or oneDNN in it) may change a metric, and so does an AMD EPYC against the
    Intel CPU of the calibration; a calibration check that fails names both (task_suites/mini/README.md)."""
    import torch

    return (
        f"here torch {torch.__version__} on {cpu_signature()!r}; task.toml was calibrated with {CALIBRATED_WITH} "
        "on an Intel CPU (task_suites/mini/README.md, Calibration)"
    )


def cpu_signature() -> str:
    """The CPU's vendor and model name, as /proc/cpuinfo gives them."""
    fields = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            name, _, value = line.partition(":")
            fields.setdefault(name.strip(), value.strip())
    return f"{fields.get('vendor_id', '?')} {fields.get('model name', '?')}"


# The pinned numerics give the same metric on every Intel CPU tried (simulated ones included), but
# not on AMD EPYC (Zen 4): there the same submissions, pinned, measure these (deterministically,
# to the last bit), and task.toml's calibration is the Intel one.
MEASURED_ELSEWHERE = {
    "AuthenticAMD AMD EPYC": {
        ("data_construction", "reference"): 0.745,
        ("data_filtering", "baseline"): 1.2018005381772123,
        ("data_filtering", "reference"): 0.6038903374074491,
        ("loss_design", "baseline"): 0.544375,
        ("loss_design", "reference"): 0.6917916666666666,
        ("reward_design", "reference"): 0.835,
    }
}


def calibrated(task: Task, which: str) -> float:
    """The metric the untouched workspace ("baseline") or the reference solution ("reference")
    gets on this CPU: task.toml's, or what was measured on this kind of CPU where it differs."""
    measured = MEASURED_ELSEWHERE.get(cpu_signature(), {})
    return measured.get((task.id, which), getattr(task.spec.scoring, which))


def edited_task(task: Task, tmp_path: Path, grader_edits: dict[str, str]) -> Task:
    """A copy of the whole task in tmp_path whose grader/grade.py has each old text replaced.

    For checks that need a changed grader (a lower limit, say); each old text must occur.
    """
    root = tmp_path / "edited_task" / task.root.name
    shutil.copytree(task.root, root, ignore=shutil.ignore_patterns("__pycache__"))
    grade_py = root / "grader" / "grade.py"
    source = grade_py.read_text(encoding="utf-8")
    for old, new in grader_edits.items():
        assert old in source, old
        source = source.replace(old, new)
    grade_py.write_text(source, encoding="utf-8")
    return load_task(root)


def grade_files(task: Task, files: Mapping[str, str | bytes], tmp_path: Path, *, seed: int = 0) -> GradeOutcome:
    """Grade a submission holding `files` (name: text or bytes) through run_grader.

    Text is written as UTF-8. The grader's log is tmp_path/grader.log.
    """

    def fill(submission: Path) -> None:
        for name, content in files.items():
            if isinstance(content, bytes):
                (submission / name).write_bytes(content)
            else:
                (submission / name).write_text(content, encoding="utf-8")

    return run_grader(task, fill, tmp_path / "grader.log", seed=seed)


def grade_workspace(task: Task, tmp_path: Path, *, apply_solution: bool, seed: int = 0) -> GradeOutcome:
    """Grade the declared outputs of a workspace copy (see workspace_copy) through run_grader."""
    workspace = workspace_copy(task, tmp_path, apply_solution=apply_solution)
    files = {name: (workspace / name).read_bytes() for name in task.spec.outputs}
    return grade_files(task, files, tmp_path, seed=seed)


def grader_files_probe(task: Task) -> str:
    """GRADER_FILES_PROBE looking for the files of task's grader, as submitted code.

    Graded, its import error should say "readable: nothing" where the grader sandboxes the
    submitted code; check_probe_finds_grader_files is the control.
    """
    return GRADER_FILES_PROBE.format(temp_dir=tempfile.gettempdir(), task_dir=str(task.root))


def check_probe_finds_grader_files(task: Task) -> None:
    """Control for grader_files_probe(task): run here, unsandboxed, it names the task's directory
    and a readable scratch copy of a grader."""
    with tempfile.TemporaryDirectory(prefix="innovator-grade-control-") as scratch:
        grade_py = Path(scratch) / "grader" / "grade.py"
        grade_py.parent.mkdir()
        grade_py.write_text("# the grader\n", encoding="utf-8")
        with pytest.raises(RuntimeError, match="readable: ") as raised:
            exec(compile(grader_files_probe(task), "probe", "exec"), {})  # noqa: S102
    assert str(grade_py) in str(raised.value)
    assert str(task.root) in str(raised.value)


def check_task_directory(task: Task, same_in_grader: Iterable[str]) -> None:
    """The workspace holds the outputs and protected files; hint and README are there; and the
    grader's copy of each file in same_in_grader is byte for byte the workspace's."""
    for name in (*task.spec.outputs, *task.spec.protected):
        assert (task.workspace_dir / name).exists(), name
    assert task.hint_path is not None and task.hint_path.is_file()
    assert (task.root / "README.md").is_file()
    for name in same_in_grader:
        assert (task.grader_dir / name).read_bytes() == (task.workspace_dir / name).read_bytes(), name


def check_make_data_regenerates(task: Task, tmp_path: Path, relative_paths: Iterable[str]) -> None:
    """grader/make_data.py, run into tmp_path, writes each of relative_paths byte for byte."""
    subprocess.run([sys.executable, str(task.grader_dir / "make_data.py"), str(tmp_path)], check=True)
    for relative in relative_paths:
        assert (tmp_path / relative).read_bytes() == (task.root / relative).read_bytes(), relative
