from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_innovator.task import TaskError, load_task, parse_duration, parse_size

from .conftest import FIXTURES


def test_loads_the_fixture_task() -> None:
    task = load_task(FIXTURES / "tasks" / "number")
    assert task.id == "number"
    assert task.spec.time_limit == 300
    assert task.spec.grader.timeout == 5
    assert task.spec.eval_budget == 3
    assert task.spec.scoring.reference_score == 80
    assert task.spec.hint is not None and task.spec.hint.penalty == 0.25
    assert task.grader_dir in task.hidden_paths and task.solution_dir in task.hidden_paths


def test_bad_direction_names_file_field_and_value() -> None:
    with pytest.raises(TaskError) as exc:
        load_task(FIXTURES / "tasks" / "broken")
    message = str(exc.value)
    assert "broken/task.toml: scoring.direction: must be 'maximize' or 'minimize', got 'up'" in message


@pytest.mark.parametrize(
    ("replace", "by", "expected"),
    [
        ("eval_budget = 3", "eval_budget = 3\nbudget = 4", "budget: unknown key"),
        ('time_limit = "5m"', 'time_limit = "five minutes"', "time_limit: must be a duration like"),
        ("baseline = 0.2", "baseline = 0.95", "reference (0.9) must be better than baseline (0.95)"),
        ('outputs = ["answer.txt"]', 'outputs = ["../escape.txt"]', "outputs: Value error, paths are relative"),
        ('command = "python3 grade.py"', "", "grader.command: required field is missing"),
        ('id = "number"', 'id = "number"\nid = "again"', "not valid TOML"),
        ('id = "number"', 'id = "number"\nworkspace_path = "/usr"', "workspace_path: must be a directory just below /"),
        ('id = "number"', 'id = "number"\nworkspace_path = "/a/b"', "workspace_path: must be a directory just below /"),
        ('id = "number"', 'id = "number"\nworkspace_path = "workspace"', "workspace_path: must be a directory just"),
    ],
)
def test_bad_fields_are_named(number_task_dir: Path, replace: str, by: str, expected: str) -> None:
    toml = number_task_dir / "task.toml"
    toml.write_text(toml.read_text().replace(replace, by, 1))
    with pytest.raises(TaskError) as exc:
        load_task(number_task_dir)
    assert str(toml) in str(exc.value)
    assert expected.replace("Value error, ", "") in str(exc.value)


def test_missing_parts_of_the_directory(number_task_dir: Path) -> None:
    (number_task_dir / "hint.md").unlink()
    with pytest.raises(TaskError, match=r"hint.file: file 'hint.md' not found"):
        load_task(number_task_dir)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("20m", 1200), ("36h", 129600), ("1.5h", 5400), ("2d", 172800), (45, 45), ("10", 10)],
)
def test_parse_duration_examples(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == seconds


@given(st.integers(min_value=1, max_value=10**6), st.sampled_from(["s", "m", "h", "d"]))
def test_parse_duration_units(n: int, unit: str) -> None:
    factor = {"s": 1, "m": 60, "h": 3600, "d": 86400}[unit]
    assert parse_duration(f"{n}{unit}") == n * factor
    assert parse_duration(f" {n} {unit} ") == n * factor


@given(st.text(max_size=12))
def test_parse_duration_rejects_or_parses(text: str) -> None:
    try:
        value = parse_duration(text)
    except ValueError as exc:
        assert "duration" in str(exc)
    else:
        assert value > 0


@pytest.mark.parametrize("bad", ["0s", "-5m", "1y", "", "m", True])
def test_parse_duration_rejects(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)  # type: ignore[arg-type]


def test_parse_size() -> None:
    assert parse_size("200M") == 200 * 1024**2
    assert parse_size("2G") == 2 * 1024**3
    assert parse_size("512MiB") == 512 * 1024**2
    assert parse_size(1000) == 1000
    with pytest.raises(ValueError):
        parse_size("lots")


DATASET_TASK = """
id = "ds"
name = "A task that takes its files from a dataset"
domain = "loss_design"
outputs = ["data/outputs"]

[resources]
gpus = 2
gpu_memory = "24G"

[requires]
api_model = true

[grader]
timeout = "5000s"

[scoring]
mode = "as_is"
metric = "score"

[hint]
penalty = 0.1

[dataset]
name = "bench"
source = "https://example.org/bench"
instruction = "gym/ds/task/task_description.md"
environment = "conda/env/conda.tar"
evaluation = "evaluations/ds"
hint = "evaluations/ds/hint.md"

[dataset.workspace]
task = "gym/ds/task"
data = "gym/ds/data"
"""


def dataset_task_dir(tmp_path: Path, text: str = DATASET_TASK) -> Path:
    """A task directory holding only its task.toml: everything else comes from the dataset."""
    root = tmp_path / "suite" / "ds"
    root.mkdir(parents=True)
    (root / "task.toml").write_text(text)
    return root


def make_dataset(root: Path, files: list[str]) -> Path:
    for relative in files:
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if "." in path.name:
            path.write_text(relative)
        else:
            path.mkdir(exist_ok=True)
    return root


def test_a_dataset_task_needs_no_files_beside_its_toml(tmp_path: Path) -> None:
    task = load_task(dataset_task_dir(tmp_path))
    spec = task.spec
    assert spec.dataset is not None and spec.dataset.name == "bench"
    assert spec.grader.command is None and spec.grader.timeout == 5000
    assert spec.scoring.mode == "as_is" and spec.scoring.baseline is None
    assert spec.resources.gpu_memory == 24 * 1024**3 and spec.requires.api_model and not spec.requires.web_tools
    assert spec.dataset.files() == {
        "dataset.instruction": "gym/ds/task/task_description.md",
        "dataset.environment": "conda/env/conda.tar",
        "dataset.evaluation": "evaluations/ds",
        "dataset.hint": "evaluations/ds/hint.md",
        "dataset.workspace.task": "gym/ds/task",
        "dataset.workspace.data": "gym/ds/data",
    }
    assert task.dataset_root is None and task.root / "hint.md" not in task.hidden_paths
    with pytest.raises(RuntimeError, match="not bound"):
        task.instruction()


def test_binding_the_dataset_reads_from_it_and_hides_its_evaluation(tmp_path: Path) -> None:
    task = load_task(dataset_task_dir(tmp_path))
    assert task.spec.dataset is not None
    data = make_dataset(tmp_path / "data", list(task.spec.dataset.files().values()))
    bound = task.with_dataset(data)
    assert bound.instruction() == "gym/ds/task/task_description.md"
    assert bound.hint_path == data / "evaluations/ds/hint.md"
    assert {data / "evaluations/ds", data / "evaluations/ds/hint.md"} <= set(bound.hidden_paths)


def test_a_dataset_without_a_task_file_names_each_missing_path(tmp_path: Path) -> None:
    task = load_task(dataset_task_dir(tmp_path))
    data = make_dataset(tmp_path / "data", ["gym/ds/task/task_description.md", "evaluations/ds/hint.md"])
    with pytest.raises(TaskError) as exc:
        task.with_dataset(data)
    lines = str(exc.value).splitlines()
    assert f"{task.toml_path}: dataset.environment: {data}/conda/env/conda.tar not found in dataset 'bench'" in lines
    assert f"{task.toml_path}: dataset.workspace.data: {data}/gym/ds/data not found in dataset 'bench'" in lines
    assert len(lines) == 2  # the instruction and the hint are there, and the directories holding them


@pytest.mark.parametrize(
    ("replace", "by", "expected"),
    [
        ('name = "bench"', 'name = "Bench-1"', "dataset.name: must be lower case letters, digits and _"),
        ('evaluation = "evaluations/ds"', 'evaluation = "../evaluations/ds"', "dataset.evaluation: paths are relative"),
        ('environment = "conda', 'environment = "/conda', "dataset.environment: paths are relative to the dataset"),
        ('task = "gym/ds/task"', '"/task" = "gym/ds/task"', "dataset.workspace: paths are relative to the workspace"),
        ('data = "gym/ds/data"', 'data = "."', "dataset.workspace: paths are relative to the dataset's root"),
        ('source = "https', 'url = "x"\nsource = "https', "dataset.url: unknown key"),
        ('timeout = "5000s"', 'timeout = "5000s"\ncommand = ""', "grader.command: String should have at least 1"),
        ("api_model = true", "api_model = true\nbrowser = true", "requires.browser: unknown key"),
        ("gpus = 2", "gpus = 0", "resources.gpu_memory: given, but gpus is 0"),
        ('gpu_memory = "24G"', 'gpu_memory = "lots"', "resources.gpu_memory: must be a size like"),
        ('mode = "as_is"', 'mode = "as_is"\nbaseline = 0.3', "scoring.baseline: not used when mode is 'as_is'"),
        (
            'mode = "as_is"',
            'mode = "scaled"',
            "scoring.mode: must be 'linear' or 'as_is' or 'improvement', got 'scaled'",
        ),
        ('mode = "as_is"', 'mode = "linear"', "scoring.reference: required field is missing"),
        ("[hint]\npenalty = 0.1", "", "hint: required with dataset.hint"),
        ("penalty = 0.1", 'penalty = 0.1\nfile = "hint.md"', "hint.file: given, but dataset.hint names the hint"),
        ('domain = "loss_design"', 'domain = "loss_design"\ninstruction = "i.md"', "instruction: given, but dataset"),
    ],
)
def test_bad_dataset_task_fields_are_named(tmp_path: Path, replace: str, by: str, expected: str) -> None:
    assert replace in DATASET_TASK
    root = dataset_task_dir(tmp_path, DATASET_TASK.replace(replace, by, 1))
    with pytest.raises(TaskError) as exc:
        load_task(root)
    assert f"{root / 'task.toml'}: {expected}" in str(exc.value)


def test_a_dataset_section_that_takes_nothing(tmp_path: Path) -> None:
    text = DATASET_TASK.split("[dataset]")[0].replace("[hint]\npenalty = 0.1\n", "") + '[dataset]\nname = "bench"\n'
    with pytest.raises(TaskError) as exc:
        load_task(dataset_task_dir(tmp_path, text))
    assert "task.toml: dataset: names no files: give instruction, workspace, environment, evaluation or hint" in str(
        exc.value
    )


def test_without_the_dataset_evaluation_a_grader_command_is_required(tmp_path: Path) -> None:
    root = dataset_task_dir(tmp_path, DATASET_TASK.replace('evaluation = "evaluations/ds"\n', ""))
    with pytest.raises(TaskError, match=r"grader.command: required field is missing \(or name the dataset's own"):
        load_task(root)


def test_a_dataset_part_falls_back_to_the_task_directory(tmp_path: Path) -> None:
    """A dataset may provide only some parts: the rest is the task directory's, checked as before."""
    text = DATASET_TASK.replace('instruction = "gym/ds/task/task_description.md"\n', "")
    with pytest.raises(TaskError, match=r"instruction: file 'instruction.md' not found in the task directory"):
        load_task(dataset_task_dir(tmp_path, text))
