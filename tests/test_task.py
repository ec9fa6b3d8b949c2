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
