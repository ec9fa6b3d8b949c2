"""Task directories: the `task.toml` schema, its loader and the paths of a task.

A bad file raises `TaskError` whose message names the file, the field and what is wrong, e.g.
``task_suites/x/task.toml: scoring.direction: must be 'maximize' or 'minimize', got 'up'``.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

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


def _field_problems(model: str, problems: list[tuple[tuple[str, ...], str]]) -> None:
    """Raise the problems a check across fields found, each at the field it is about (a plain
    ValueError would name only the section)."""
    if problems:
        details = [
            InitErrorDetails(type=PydanticCustomError("task_field", message), loc=loc, input=None)
            for loc, message in problems
        ]
        raise ValidationError.from_exception_data(model, details)


def _inside(path: str, root: str, *, whole: bool = True) -> str:
    """A path relative to root that stays inside it; `whole=False`: and is not root itself."""
    if path.startswith("/") or ".." in Path(path).parts or (not whole and Path(path) == Path(".")):
        raise ValueError(f"paths are relative to {root} and stay inside it, got {path!r}")
    return path


class Resources(_Strict):
    """What the item needs of a host. `gpus` and `gpu_memory` are per host (`hosts` of them)."""

    gpus: int = Field(0, ge=0)
    gpu_memory: int | None = None  # per GPU; None: any GPU will do
    cpus: float = Field(1, gt=0)
    memory: int = parse_size("2G")
    hosts: int = Field(1, ge=1)
    disk: int = parse_size("1G")
    processes: int = Field(4096, ge=16)  # processes and threads at once (the sandbox's and docker's limit)

    @field_validator("memory", "disk", mode="before")
    @classmethod
    def _size(cls, value: Any) -> int:
        return parse_size(value)

    @field_validator("gpu_memory", mode="before")
    @classmethod
    def _gpu_size(cls, value: Any) -> int | None:
        return None if value is None else parse_size(value)

    @model_validator(mode="after")
    def _memory_of_gpus(self) -> Resources:
        if self.gpu_memory is not None and self.gpus == 0:
            _field_problems("Resources", [(("gpu_memory",), "given, but gpus is 0")])
        return self


class Requires(_Strict):
    """What the item needs beyond a host's resources: services the harness or the user provides."""

    web_tools: bool = False  # the agent searches and browses the web through tools
    api_model: bool = False  # the task's own code calls a hosted model (OpenAI, Azure)


# Tools a task may offer beyond the core set (files, sessions, system): each group lives in its own
# module (tools.optional_tools). "mlgym" names evaluate and finish as MLGym does: validate, submit.
TOOL_GROUPS = ("memory", "web", "literature", "documents", "mlgym")


class Grader(_Strict):
    command: str | None = Field(None, min_length=1)  # None: the task names its dataset's evaluation instead
    timeout: float = 600.0

    @field_validator("timeout", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float:
        return parse_duration(value)


class Scoring(_Strict):
    """How the grader's metric becomes a score in [0, 100].

    mode "linear": baseline -> 0, reference -> reference_score, linear, clipped. mode "as_is": the
    metric already is a score in [0, 100] (a foreign evaluation that normalises, as InnovatorBench's
    do), used as it is, clipped; baseline, reference, direction and reference_score do not apply.
    mode "improvement" (MLGym's tasks, which have a baseline and no reference): the percentage by
    which the metric beats the baseline in the task's direction, 100 * gain / |baseline|, clipped;
    any gain scores at least 0.01 (reference and reference_score do not apply).
    """

    mode: Literal["linear", "as_is", "improvement"] = "linear"
    metric: str = "metric"
    direction: Literal["maximize", "minimize"] = "maximize"
    baseline: float | None = None
    reference: float | None = None
    reference_score: float = Field(80.0, gt=0, le=100)

    @field_validator("mode", "direction", mode="before")
    @classmethod
    def _one_of(cls, value: Any, info: ValidationInfo) -> Any:
        choices = get_args(cls.model_fields[str(info.field_name)].annotation)
        if value not in choices:
            raise ValueError(f"must be {' or '.join(map(repr, choices))}, got {value!r}")
        return value

    @model_validator(mode="after")
    def _fields_of_the_mode(self) -> Scoring:
        if self.mode == "as_is":
            unused = {"direction", "baseline", "reference", "reference_score"} & self.model_fields_set
            message = "not used when mode is 'as_is' (the metric is the score)"
            _field_problems("Scoring", [((name,), message) for name in sorted(unused)])
            return self
        if self.mode == "improvement":
            unused = {"reference", "reference_score"} & self.model_fields_set
            problems = [((name,), "not used when mode is 'improvement'") for name in sorted(unused)]
            if self.baseline is None:
                problems.append((("baseline",), "required field is missing"))
            _field_problems("Scoring", problems)
            return self
        missing = [name for name in ("baseline", "reference") if getattr(self, name) is None]
        _field_problems("Scoring", [((name,), "required field is missing") for name in missing])
        assert self.baseline is not None and self.reference is not None
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


class Dataset(_Strict):
    """Files the task takes from a dataset the user has (named by --innovator-dataset NAME=PATH);
    every path is relative to the dataset's root. The repository holds none of them."""

    name: str
    source: str = ""  # where to get the dataset, for the reason an item is skipped without it
    instruction: str | None = None  # the instruction, instead of the task directory's
    workspace: dict[str, str] = {}  # workspace path -> dataset path (file or directory) copied there
    environment: str | None = None  # a tar archive unpacked into the workspace (InnovatorBench: a conda env)
    evaluation: str | None = None  # the dataset's own evaluation program: grades the task, hidden from the agent
    hint: str | None = None  # the hint, instead of the task directory's (its penalty is in [hint])

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z0-9][a-z0-9_]*", value):
            raise ValueError(
                f"must be lower case letters, digits and _ (it is the NAME of --innovator-dataset NAME=PATH "
                f"and of INNOVATOR_DATASET_NAME), got {value!r}"
            )
        return value

    @field_validator("instruction", "environment", "evaluation", "hint")
    @classmethod
    def _in_dataset(cls, path: str | None) -> str | None:
        return None if path is None else _inside(path, "the dataset's root", whole=False)

    @field_validator("workspace")
    @classmethod
    def _workspace(cls, parts: dict[str, str]) -> dict[str, str]:
        for target, path in parts.items():
            _inside(target, "the workspace", whole=False)
            _inside(path, "the dataset's root", whole=False)
        return parts

    @model_validator(mode="after")
    def _takes_something(self) -> Dataset:
        if not (self.instruction or self.workspace or self.environment or self.evaluation or self.hint):
            raise ValueError("names no files: give instruction, workspace, environment, evaluation or hint")
        return self

    def files(self) -> dict[str, str]:
        """Each file the task takes, by the field that names it (e.g. "dataset.workspace.data")."""
        named = {"instruction": self.instruction, "environment": self.environment}
        named |= {"evaluation": self.evaluation, "hint": self.hint}
        files = {f"dataset.{field}": path for field, path in named.items() if path is not None}
        return files | {f"dataset.workspace.{target}": path for target, path in self.workspace.items()}


NO_DATASET = Dataset.model_construct(name="")  # what a task without [dataset] takes: nothing

# MLGym's task classes (task_entrypoint), each with its own evaluate.py command line and output rule.
MLGYM_ENTRYPOINTS = ("CSVSubmissionTasks", "ModelSubmissionTasks", "LMSubmissionTasks", "PythonSubmissionTasks")


class MLGymEvaluation(_Strict):
    """How an MLGym task's evaluate.py grades it (mlgym_evaluation.py runs it in the grader's sandbox).

    `files` maps each workspace path of the evaluation (the config's `evaluation_paths`) to the
    checkout's file the starter code copied there: the grader runs those pristine copies, never
    the agent's. `script` is the first of them (MLGym runs only the first)."""

    entrypoint: Literal[MLGYM_ENTRYPOINTS]  # type: ignore[valid-type]
    config: str  # the task config, relative to the checkout (for messages)
    script: str
    files: dict[str, str]
    baseline: dict[str, float] = {}  # the config's first baseline_scores entry
    hub_datasets: tuple[str, ...] = ()  # datasets on a hub (not in the checkout): the item is skipped


class Experiment(_Strict):
    """An experiment task (EXP-Bench's kind): the deliverables the agent leaves in the workspace
    and the hidden rubric they are judged against (experiments/grading.py)."""

    design: str = "design.md"  # the design: constant, independent and dependent variables
    reproduction: str = "reproduce.sh"  # run with bash from a fresh copy of the starter files plus the agent's changes
    conclusion: str = "conclusion.md"
    results: tuple[str, ...] = Field(min_length=1)  # files the reproduction script writes
    rubric: str = "rubric.toml"  # relative to grader/
    execution_timeout: float = 600.0

    @field_validator("design", "reproduction", "conclusion")
    @classmethod
    def _in_workspace(cls, path: str) -> str:
        return _inside(path, "the workspace", whole=False)

    @field_validator("results")
    @classmethod
    def _results_in_workspace(cls, paths: tuple[str, ...]) -> tuple[str, ...]:
        for path in paths:
            _inside(path, "the workspace", whole=False)
        return paths

    @field_validator("rubric")
    @classmethod
    def _in_grader(cls, path: str) -> str:
        return _inside(path, "grader/", whole=False)

    @field_validator("execution_timeout", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float:
        return parse_duration(value)

    def deliverables(self) -> tuple[str, ...]:
        return (self.design, self.reproduction, self.conclusion, *self.results)


# The root directories of a Linux system: a workspace mounted over one would hide it.
SYSTEM_ROOT_NAMES = frozenset(
    "bin boot dev etc home lib lib32 lib64 libx32 media mnt opt proc root run sbin srv sys tmp usr var".split()
)


class TaskSpec(_Strict):
    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_\-]*$")  # upper case for MLGym's ids (titanicSurvival)
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
    workspace_path: str | None = None  # where commands see the workspace (e.g. /workspace); default: its host path
    snapshot_steps: int | None = Field(None, ge=1)
    snapshot_minutes: float | None = Field(None, gt=0)
    resources: Resources = Resources()
    requires: Requires = Requires()
    tools: tuple[str, ...] = ()  # optional tool groups (TOOL_GROUPS) the agent is offered
    memory_seed: str | None = None  # a file of entries the item's memory starts with (tools has "memory")
    grader: Grader = Grader()  # an [experiment] or an MLGym task has no grader command
    scoring: Scoring
    hint: Hint | None = None
    solution: Solution | None = None
    dataset: Dataset | None = None
    mlgym: MLGymEvaluation | None = None  # an MLGym task config's evaluation (mlgym.py), instead of a grader
    experiment: Experiment | None = None  # judged phase by phase (experiments/), instead of a grader command

    @field_validator("time_limit", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float:
        return parse_duration(value)

    @field_validator("workspace_path")
    @classmethod
    def _top_level(cls, path: str | None) -> str | None:
        if path is not None and (Path(path).parent != Path("/") or Path(path).name in SYSTEM_ROOT_NAMES):
            raise ValueError(
                "must be a directory just below / that a system does not use, such as /workspace "
                f"(not one of /{', /'.join(sorted(SYSTEM_ROOT_NAMES))})"
            )
        return path

    @field_validator("outputs", "protected", "read_only")
    @classmethod
    def _relative(cls, paths: tuple[str, ...]) -> tuple[str, ...]:
        for path in paths:
            _inside(path, "the workspace")
        return paths

    @field_validator("tools")
    @classmethod
    def _known_groups(cls, groups: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [g for g in groups if g not in TOOL_GROUPS]
        if unknown:
            raise ValueError(f"unknown tool group(s) {', '.join(map(repr, unknown))}; known: {', '.join(TOOL_GROUPS)}")
        return groups

    @model_validator(mode="after")
    def _one_source_for_each_part(self) -> TaskSpec:
        """The grader, the instruction and the hint come from the task directory or the dataset."""
        dataset = self.dataset or NO_DATASET
        problems: list[tuple[tuple[str, ...], str]] = []
        if self.experiment is not None:
            problems += _experiment_problems(self)
        elif self.grader.command is None and dataset.evaluation is None and self.mlgym is None:
            missing = "required field is missing (or name the dataset's own evaluation in dataset.evaluation)"
            problems.append((("grader", "command"), missing))
        if dataset.instruction is not None and "instruction" in self.model_fields_set:
            problems.append((("instruction",), "given, but dataset.instruction names the instruction: keep one"))
        if dataset.hint is not None and self.hint is None:
            problems.append((("hint",), "required with dataset.hint: [hint] gives the hint's penalty"))
        if dataset.hint is not None and self.hint is not None and "file" in self.hint.model_fields_set:
            problems.append((("hint", "file"), "given, but dataset.hint names the hint: keep one"))
        _field_problems("TaskSpec", problems)
        return self


def _experiment_problems(spec: TaskSpec) -> list[tuple[tuple[str, ...], str]]:
    assert spec.experiment is not None
    problems: list[tuple[tuple[str, ...], str]] = []
    if spec.grader.command is not None:
        problems.append((("grader", "command"), "given, but [experiment] tasks are judged, not graded by a command"))
    if spec.dataset is not None or spec.mlgym is not None:
        problems.append((("experiment",), "cannot be combined with [dataset] or [mlgym]"))
    if spec.scoring.mode != "as_is":
        problems.append((("scoring", "mode"), "must be 'as_is' for [experiment] tasks (the score is 100 or 0)"))
    missing = [path for path in spec.experiment.deliverables() if path not in spec.outputs]
    if missing:
        problems.append((("outputs",), f"must list every deliverable of [experiment]; add {', '.join(missing)}"))
    return problems


@dataclass(frozen=True)
class Task:
    """A loaded task: its spec and every path of its directory, named in one place.

    A task that takes files from a dataset ([dataset]) finds them below `dataset_root`, which
    `with_dataset` sets once the user's copy of the dataset is known.
    """

    spec: TaskSpec
    root: Path
    dataset_root: Path | None = None
    dataset_python: Path | None = None  # the interpreter that runs the dataset's evaluation; None: the harness's
    instruction_text: str | None = None  # the instruction itself, from a foreign config (MLGym's description)
    config_path: Path | None = None  # the file the task was read from, where it is not root/task.toml

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def toml_path(self) -> Path:
        return self.config_path or self.root / "task.toml"

    @property
    def instruction_path(self) -> Path:
        if self.spec.dataset and self.spec.dataset.instruction:
            return self.in_dataset(self.spec.dataset.instruction)
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
    def rubric_path(self) -> Path | None:
        return self.grader_dir / self.spec.experiment.rubric if self.spec.experiment else None

    @property
    def hint_path(self) -> Path | None:
        if self.spec.hint is None:
            return None
        if self.spec.dataset and self.spec.dataset.hint:
            return self.in_dataset(self.spec.dataset.hint)
        return self.root / self.spec.hint.file

    @property
    def memory_seed_path(self) -> Path | None:
        """Relative to the task directory (an adapter may give an absolute path)."""
        return self.root / self.spec.memory_seed if self.spec.memory_seed else None

    @property
    def hidden_paths(self) -> tuple[Path, ...]:
        """Parts of the task the agent must never see."""
        paths = [self.grader_dir, self.solution_dir, self.root / "README.md"]
        dataset = self.spec.dataset or NO_DATASET
        bound = self.dataset_root is not None  # a dataset's parts are known once it is bound
        if dataset.evaluation and bound:
            paths.append(self.in_dataset(dataset.evaluation))
        if (dataset.hint is None or bound) and (hint := self.hint_path):
            paths.append(hint)
        return tuple(paths)

    def instruction(self) -> str:
        if self.instruction_text is not None:
            return self.instruction_text
        return self.instruction_path.read_text(encoding="utf-8")

    def in_dataset(self, path: str) -> Path:
        """A path of the task's dataset (relative to its root, as [dataset] names it)."""
        if self.dataset_root is None:  # the harness binds the dataset before anything reads from it
            raise RuntimeError(f"task {self.id}: its dataset is not bound yet (Task.with_dataset)")
        return self.dataset_root / path

    def with_dataset(self, dataset_root: Path, python: Path | None = None) -> Task:
        """This task reading its dataset's files from dataset_root (its evaluation run by `python`);
        TaskError names each file missing."""
        assert self.spec.dataset is not None
        bound = replace(self, dataset_root=dataset_root, dataset_python=python)
        missing = [
            f"{self.toml_path}: {field}: {bound.in_dataset(path)} not found in dataset {self.spec.dataset.name!r}"
            for field, path in self.spec.dataset.files().items()
            if not bound.in_dataset(path).exists()
        ]
        if missing:
            raise TaskError("\n".join(missing))
        return bound


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
    # Parts a dataset provides are checked when the dataset is bound (Task.with_dataset).
    dataset = spec.dataset or NO_DATASET
    problems = []
    if dataset.instruction is None and not task.instruction_path.is_file():
        problems.append(f"instruction: file {spec.instruction!r} not found in the task directory")
    if not (dataset.workspace or dataset.environment) and not task.workspace_dir.is_dir():
        problems.append("workspace/: directory not found (the agent's starter files go there)")
    if (spec.grader.command is not None or spec.experiment) and not task.grader_dir.is_dir():
        problems.append("grader/: directory not found (the grading program and held-out data go there)")
    if spec.hint and dataset.hint is None and not (root / spec.hint.file).is_file():
        problems.append(f"hint.file: file {spec.hint.file!r} not found in the task directory")
    if spec.solution and not task.solution_dir.is_dir():
        problems.append("solution.command: given, but the solution/ directory is missing")
    problems += memory_seed_problems(task)
    if spec.experiment is not None and task.grader_dir.is_dir():
        from .experiments.rubric import rubric_problems

        problems += rubric_problems(task)
    if problems:
        raise TaskError("\n".join(f"{toml_path}: {p}" for p in problems))
    return task


def memory_seed_problems(task: Task) -> list[str]:
    seed = task.memory_seed_path
    if seed is None:
        return []
    if "memory" not in task.spec.tools:
        return ['memory_seed: given, but tools does not offer "memory" (add it to tools)']
    if not seed.is_file():
        return [f"memory_seed: file {task.spec.memory_seed!r} not found in the task directory"]
    from .research_tools.memory import read_seed

    try:
        read_seed(seed)
    except ValueError as exc:
        return [f"memory_seed: {exc}"]
    return []


def find_tasks(root: Path) -> list[Path]:
    """Every task.toml below root, sorted."""
    return sorted(root.rglob("task.toml"))
