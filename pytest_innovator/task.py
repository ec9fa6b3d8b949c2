"""Task directories: the `task.toml` schema, its loader and the paths of a task.

A bad file raises `TaskError` whose message names the file, the field and what is wrong, e.g.
``task_suites/x/task.toml: scoring.direction: must be 'maximize' or 'minimize', got 'up'``.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import InnovatorError

KNOWN_DOMAINS = (
    "data_construction",
    "data_filtering",
    "data_augmentation",
    "loss_design",
    "reward_design",
    "scaffold_construction",
)

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)?\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B?|B)?\s*$", re.IGNORECASE)


class TaskError(InnovatorError):
    """A task directory or task.toml that cannot be used; the message says what to change."""


def parse_duration(value: str | int | float) -> float:
    """Seconds from "90s", "20m", "36h", "2d" or a plain number of seconds."""
    if isinstance(value, bool):
        raise ValueError(f"must be a duration like '90s', '20m' or '36h', got {value!r}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ValueError(f"must be a duration like '90s', '20m' or '36h', got {value!r}")
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if seconds <= 0:
        raise ValueError(f"must be a positive duration, got {value!r}")
    return seconds


def parse_size(value: str | int) -> int:
    """Bytes from "200M", "2G", "512MiB" or a plain number of bytes (powers of 1024)."""
    if isinstance(value, bool):
        raise ValueError(f"must be a size like '200M' or '2G', got {value!r}")
    if isinstance(value, int):
        size = value
    else:
        match = _SIZE.match(str(value))
        if not match:
            raise ValueError(f"must be a size like '200M' or '2G', got {value!r}")
        unit = (match.group(2) or "B").upper()[0]
        size = int(float(match.group(1)) * 1024 ** "BKMGT".index(unit))
    if size <= 0:
        raise ValueError(f"must be a positive size, got {value!r}")
    return size


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Resources(_Strict):
    gpus: int = Field(0, ge=0)
    cpus: float = Field(1, gt=0)
    memory: int = parse_size("2G")
    hosts: int = Field(1, ge=1)
    disk: int = parse_size("1G")

    @field_validator("memory", "disk", mode="before")
    @classmethod
    def _size(cls, value: Any) -> int:
        return parse_size(value)


class Grader(_Strict):
    command: str = Field(min_length=1)
    timeout: float = 600.0

    @field_validator("timeout", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float:
        return parse_duration(value)


class Scoring(_Strict):
    metric: str = "metric"
    direction: Literal["maximize", "minimize"] = "maximize"
    baseline: float
    reference: float
    reference_score: float = Field(80.0, gt=0, le=100)

    @field_validator("direction", mode="before")
    @classmethod
    def _direction(cls, value: Any) -> Any:
        if value not in ("maximize", "minimize"):
            raise ValueError(f"must be 'maximize' or 'minimize', got {value!r}")
        return value

    @model_validator(mode="after")
    def _reference_beats_baseline(self) -> Scoring:
        better = self.reference > self.baseline if self.direction == "maximize" else self.reference < self.baseline
        if not better:
            raise ValueError(
                f"reference ({self.reference}) must be better than baseline ({self.baseline}) "
                f"when direction is {self.direction!r}"
            )
        return self


class Hint(_Strict):
    file: str = "hint.md"
    penalty: float = Field(0.1, ge=0, le=1)


class Solution(_Strict):
    command: str = Field(min_length=1)


class TaskSpec(_Strict):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_\-]*$")
    name: str
    domain: str = Field(pattern=r"^[a-z0-9][a-z0-9_]*$")
    version: str = "1"
    instruction: str = "instruction.md"
    time_limit: float = 3600.0
    step_limit: int = Field(4000, ge=1)
    eval_budget: int = Field(3, ge=0)
    outputs: tuple[str, ...] = Field(min_length=1)
    protected: tuple[str, ...] = ()
    read_only: tuple[str, ...] = ()
    network: bool = False
    snapshot_steps: int | None = Field(None, ge=1)
    snapshot_minutes: float | None = Field(None, gt=0)
    resources: Resources = Resources()
    grader: Grader
    scoring: Scoring
    hint: Hint | None = None
    solution: Solution | None = None

    @field_validator("time_limit", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float:
        return parse_duration(value)

    @field_validator("outputs", "protected", "read_only")
    @classmethod
    def _relative(cls, paths: tuple[str, ...]) -> tuple[str, ...]:
        for path in paths:
            if path.startswith("/") or ".." in Path(path).parts:
                raise ValueError(f"paths are relative to the workspace and stay inside it, got {path!r}")
        return paths


@dataclass(frozen=True)
class Task:
    """A loaded task: its spec and every path of its directory, named in one place."""

    spec: TaskSpec
    root: Path

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def toml_path(self) -> Path:
        return self.root / "task.toml"

    @property
    def instruction_path(self) -> Path:
        return self.root / self.spec.instruction

    @property
    def workspace_dir(self) -> Path:
        return self.root / "workspace"

    @property
    def grader_dir(self) -> Path:
        return self.root / "grader"

    @property
    def solution_dir(self) -> Path:
        return self.root / "solution"

    @property
    def hint_path(self) -> Path | None:
        return self.root / self.spec.hint.file if self.spec.hint else None

    @property
    def hidden_paths(self) -> tuple[Path, ...]:
        """Parts of the task the agent must never see."""
        paths = [self.grader_dir, self.solution_dir, self.root / "README.md"]
        if self.hint_path:
            paths.append(self.hint_path)
        return tuple(paths)

    def instruction(self) -> str:
        return self.instruction_path.read_text(encoding="utf-8")


def _field_name(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc) or "(top level)"


def _describe(error: dict[str, Any]) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        return "unknown key (check the spelling; see docs/task-format.md)"
    if kind == "missing":
        return "required field is missing"
    message = str(error["msg"])
    return message.removeprefix("Value error, ")


def load_task(path: Path | str) -> Task:
    """Load a task from its directory or its task.toml; raise TaskError on any problem."""
    path = Path(path)
    toml_path = path / "task.toml" if path.is_dir() else path
    root = toml_path.parent
    try:
        data = tomllib.loads(toml_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TaskError(f"{toml_path}: no such file") from None
    except tomllib.TOMLDecodeError as exc:
        raise TaskError(f"{toml_path}: not valid TOML: {exc}") from None
    try:
        spec = TaskSpec.model_validate(data)
    except ValidationError as exc:
        lines = [f"{toml_path}: {_field_name(e['loc'])}: {_describe(e)}" for e in exc.errors()]
        raise TaskError("\n".join(lines)) from None
    task = Task(spec=spec, root=root)
    problems = []
    if not task.instruction_path.is_file():
        problems.append(f"instruction: file {spec.instruction!r} not found in the task directory")
    if not task.workspace_dir.is_dir():
        problems.append("workspace/: directory not found (the agent's starter files go there)")
    if not task.grader_dir.is_dir():
        problems.append("grader/: directory not found (the grading program and held-out data go there)")
    if task.hint_path and not task.hint_path.is_file():
        problems.append(f"hint.file: file {spec.hint.file!r} not found in the task directory")  # type: ignore[union-attr]
    if spec.solution and not task.solution_dir.is_dir():
        problems.append("solution.command: given, but the solution/ directory is missing")
    if problems:
        raise TaskError("\n".join(f"{toml_path}: {p}" for p in problems))
    return task


def find_tasks(root: Path) -> list[Path]:
    """Every task.toml below root, sorted."""
    return sorted(root.rglob("task.toml"))
