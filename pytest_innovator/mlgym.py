"""MLGym's task configs as tasks, read where they are in an MLGym checkout (docs/mlgym.md).

An MLGym checkout holds `configs/tasks/<task>.yaml` (the task), `configs/datasets/<name>.yaml` (the
datasets a task names in `dataset_configs`, relative to `configs/`) and `data/<task>/` (starter
code, evaluate.py, local data; paths in the configs are relative to the checkout). `load_mlgym_task`
turns one task config into the `Task` a task.toml gives, reading the checkout's files in place:

- the workspace, as MLGym lays it out: each local dataset's `data_path` copied to `data/`, each
  `starter_code` path copied to the workspace's top level under its own name;
- the instruction: `description` with `{dataset_docs}` filled in as MLGym fills it;
- the grader: the task's evaluate.py (`evaluation_paths`, the first one) run by
  mlgym_evaluation.py for its `task_entrypoint`, from the checkout's pristine copies;
- the scoring: the first metric of `baseline_scores`, its direction from its name
  (`metric_direction`), mode "improvement" (MLGym has no reference solution);
- `training_timeout` as the evaluation's timeout, `evaluation_read_only` as protected files,
  validate and submit (and memory, seeded from `memory_path`) as tools.

A config that cannot be used raises TaskError naming the file and the field.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from typing import Any

from pydantic import ValidationError

from .ledger import UNLIMITED_EVALS  # validate is unlimited in MLGym (unless --innovator-max-evals)
from .task import (
    MLGYM_ENTRYPOINTS,
    Dataset,
    Grader,
    MLGymEvaluation,
    Scoring,
    Task,
    TaskError,
    TaskSpec,
    memory_seed_problems,
)

DATASET_NAME = "mlgym"  # the name --innovator-evaluation-python takes for MLGym's evaluations
DEFAULT_TRAINING_TIMEOUT = 3600.0  # MLGym's MLGYM_AGENT_LONG_TIMEOUT
TIME_LIMIT_TRAINING_RUNS = 4  # an item's working time: room for this many training runs
TASK_KEYS = {
    "id",
    "name",
    "description",
    "task_entrypoint",
    "dataset_configs",
    "training_timeout",
    "requirements_path",
    "benchmark_name",
    "use_generic_conda",
    "starter_code",
    "baseline_paths",
    "baseline_scores",
    "sample_submission",
    "evaluation_paths",
    "evaluation_read_only",
    "secret_files",
    "memory_path",
}
DATASET_KEYS = {"name", "description", "data_path", "is_local", "train_split", "valid_split", "test_split"}
# Metrics where lower is better; every other metric is maximised (MLGym keeps the direction of
# each task's metric in its analysis code, not in the config).
LOWER_IS_BETTER = re.compile(r"loss|error|rmse|mse|mae|perplexity|time|regret|distance", re.IGNORECASE)


def checkout_root(config: Path) -> Path | None:
    """The checkout a task config belongs to: the parent of its `configs/tasks/` folder."""
    for parent in config.parents:
        if parent.name == "tasks" and parent.parent.name == "configs":
            return parent.parent.parent
    return None


def is_task_config(path: Path) -> bool:
    """A YAML file in an MLGym checkout's configs/tasks/ that names a task_entrypoint (other YAML
    files there are not tasks)."""
    if path.suffix not in (".yaml", ".yml") or checkout_root(path) is None:
        return False
    return re.search(r"^task_entrypoint\s*:", path.read_text(encoding="utf-8", errors="replace"), re.M) is not None


def metric_direction(metric: str) -> str:
    return "minimize" if LOWER_IS_BETTER.search(metric) else "maximize"


class _Problems:
    """The problems of one config file, each `file: field: what is wrong`."""

    def __init__(self, path: Path):
        self.path = path
        self.lines: list[str] = []

    def add(self, field: str, message: str) -> None:
        self.lines.append(f"{self.path}: {field}: {message}")

    def raise_any(self) -> None:
        if self.lines:
            raise TaskError("\n".join(self.lines))


def _read_yaml(path: Path, problems: _Problems, field: str) -> dict[str, Any] | None:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        problems.add(field, f"{path} not found")
        return None
    except yaml.YAMLError as exc:
        problems.add(field, f"{path} is not valid YAML: {exc}")
        return None
    if not isinstance(data, dict):
        problems.add(field, f"{path} holds no mapping of keys")
        return None
    return data


def _relative(value: Any, problems: _Problems, field: str) -> str | None:
    """A path of the checkout as a config gives it (relative, staying inside the checkout)."""
    if not isinstance(value, str) or not value.strip():
        problems.add(field, f"must be a path relative to the checkout, got {value!r}")
        return None
    path = PurePosixPath(value.strip())
    if path.is_absolute() or ".." in path.parts:
        problems.add(field, f"must be a path relative to the checkout and inside it, got {value!r}")
        return None
    return str(path)


def _strings(data: dict[str, Any], key: str, problems: _Problems) -> list[str]:
    value = data.get(key) or []
    if not isinstance(value, list):
        problems.add(key, f"must be a list, got {value!r}")
        return []
    return value


def _datasets(root: Path, data: dict[str, Any], problems: _Problems) -> tuple[str, dict[str, str], list[str]]:
    """The dataset docs, the workspace parts of the local datasets (data/<entry> -> checkout path)
    and a phrase for each hub dataset."""
    docs, parts, hub = "", {}, []
    for i, value in enumerate(_strings(data, "dataset_configs", problems)):
        field = f"dataset_configs[{i}]"
        relative = _relative(value, problems, field)
        if relative is None:
            continue
        dataset_file = root / "configs" / relative
        dataset = _read_yaml(dataset_file, problems, field)
        if dataset is None:
            continue
        dataset_problems = _Problems(dataset_file)
        for key in sorted(set(dataset) - DATASET_KEYS):
            dataset_problems.add(key, f"unknown key (MLGym's dataset configs have {', '.join(sorted(DATASET_KEYS))})")
        for key in ("name", "description", "data_path"):
            if not isinstance(dataset.get(key), str):
                dataset_problems.add(key, "required field is missing" if key not in dataset else "must be a string")
        problems.lines += dataset_problems.lines
        if dataset_problems.lines:
            continue
        docs += f"{dataset['name'].upper()}:\n{dataset['description']}\n\n"
        if not dataset.get("is_local", False):
            hub.append(f"the hub dataset {dataset['data_path']!r} ({dataset_file})")
            continue
        data_path = _relative(dataset["data_path"], _Problems(dataset_file), "data_path")
        if data_path is None or not (root / data_path).is_dir():
            missing = f"{root / str(dataset['data_path'])} is not a directory"
            problems.add(f"{field}: {dataset_file}: data_path", missing)
            continue
        for entry in sorted((root / data_path).iterdir()):
            parts[f"data/{entry.name}"] = f"{data_path}/{entry.name}"
    return docs, parts, hub


def _starter_code(root: Path, data: dict[str, Any], problems: _Problems) -> dict[str, str]:
    """Workspace top-level name -> checkout path of each starter code file or folder."""
    parts: dict[str, str] = {}
    for i, value in enumerate(_strings(data, "starter_code", problems)):
        relative = _relative(value, problems, f"starter_code[{i}]")
        if relative is None:
            continue
        if not (root / relative).exists():
            problems.add(f"starter_code[{i}]", f"{root / relative} not found")
            continue
        parts[PurePosixPath(relative).name] = relative
    return parts


def _pristine(workspace_path: str, parts: dict[str, str]) -> str | None:
    """The checkout's file that the workspace parts put at workspace_path."""
    path = PurePosixPath(workspace_path)
    for length in range(len(path.parts), 0, -1):
        head = str(PurePosixPath(*path.parts[:length]))
        if head in parts:
            return str(PurePosixPath(parts[head], *path.parts[length:]))
    return None


def _evaluation(root: Path, data: dict[str, Any], parts: dict[str, str], problems: _Problems) -> dict[str, str]:
    files: dict[str, str] = {}
    paths = _strings(data, "evaluation_paths", problems)
    if not data.get("evaluation_paths"):
        problems.add("evaluation_paths", "required: the evaluation script's path in the workspace, e.g. [evaluate.py]")
    for i, value in enumerate(paths):
        relative = _relative(value, problems, f"evaluation_paths[{i}]")
        if relative is None:
            continue
        pristine = _pristine(relative, parts)
        if pristine is None or not (root / pristine).is_file():
            problems.add(
                f"evaluation_paths[{i}]",
                f"{relative!r} is not a file the starter code or a local dataset puts in the workspace",
            )
            continue
        files[relative] = pristine
    return files


def _baseline(data: dict[str, Any], problems: _Problems) -> dict[str, float]:
    scores = data.get("baseline_scores")
    first = scores[0] if isinstance(scores, list) and scores else None
    if not isinstance(first, dict) or not first:
        problems.add(
            "baseline_scores",
            "required: a list of {metric: value}, e.g. [{Accuracy: 0.76}] (an item passes when it beats the "
            f"baseline; baseline scripts are not run), got {scores!r}",
        )
        return {}
    numbers = {str(k): v for k, v in first.items()}
    wrong = [k for k, v in numbers.items() if isinstance(v, bool) or not isinstance(v, (int, float))]
    if wrong:
        given = ", ".join(f"{k}: {numbers[k]!r}" for k in wrong)
        problems.add("baseline_scores[0]", f"values must be numbers, got {given}")
        return {}
    return {k: float(v) for k, v in numbers.items()}


def _training_timeout(data: dict[str, Any], problems: _Problems) -> float:
    value = data.get("training_timeout")
    if value is None:
        return DEFAULT_TRAINING_TIMEOUT
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        problems.add("training_timeout", f"must be a positive number of seconds, got {value!r}")
        return DEFAULT_TRAINING_TIMEOUT
    return float(value)


def load_mlgym_task(config: Path) -> Task:
    """The Task of an MLGym task config; raise TaskError naming the file and the field."""
    config = Path(config)
    problems = _Problems(config)
    root = checkout_root(config)
    if root is None:
        raise TaskError(f"{config}: not inside an MLGym checkout's configs/tasks/ folder")
    data = _read_yaml(config, problems, "(file)")
    problems.raise_any()
    assert data is not None
    for key in sorted(set(data) - TASK_KEYS):
        problems.add(key, "unknown key (check the spelling against MLGym's TaskConfig)")
    for key in ("id", "name", "description", "task_entrypoint"):
        if not isinstance(data.get(key), str) or not data[key].strip():
            problems.add(key, "required field is missing" if key not in data else "must be a non-empty string")
    entrypoint = data.get("task_entrypoint")
    if isinstance(entrypoint, str) and entrypoint not in MLGYM_ENTRYPOINTS:
        problems.add("task_entrypoint", f"unknown task class {entrypoint!r}; known: {', '.join(MLGYM_ENTRYPOINTS)}")
    docs, data_parts, hub = _datasets(root, data, problems)
    parts = {**data_parts, **_starter_code(root, data, problems)}  # MLGym copies starter code after the data
    files = _evaluation(root, data, parts, problems)
    baseline = _baseline(data, problems)
    timeout = _training_timeout(data, problems)
    for key in ("sample_submission", "memory_path"):
        if data.get(key) is not None:
            relative = _relative(data[key], problems, key)
            if key == "sample_submission" and relative is not None and not (root / relative).is_file():
                problems.add(key, f"{root / relative} not found")
    description = ""
    if isinstance(data.get("description"), str):
        try:
            description = data["description"].format(dataset_docs=docs)
        except (KeyError, IndexError, ValueError) as exc:
            problems.add("description", f"cannot fill in {{dataset_docs}} (double any other brace): {exc!r}")
    problems.raise_any()

    metric = next(iter(baseline))
    read_only = tuple(files) if data.get("evaluation_read_only") else ()
    fields: dict[str, Any] = {
        "id": data["id"],
        "name": data["name"],
        "domain": "mlgym",
        "time_limit": TIME_LIMIT_TRAINING_RUNS * timeout,
        "eval_budget": UNLIMITED_EVALS,
        "outputs": ("submission.csv",) if entrypoint == "CSVSubmissionTasks" else (next(iter(files)),),
        "protected": read_only,
        "read_only": read_only,
        "tools": ("mlgym", "memory"),
        "grader": Grader(command=None, timeout=timeout),
        "scoring": Scoring(
            mode="improvement", metric=metric, direction=metric_direction(metric), baseline=baseline[metric]
        ),
        "dataset": Dataset(name=DATASET_NAME, source="the MLGym checkout", workspace=parts),
        "mlgym": MLGymEvaluation(
            entrypoint=entrypoint,
            config=str(config.relative_to(root)),
            script=next(iter(files)),
            files=files,
            baseline=baseline,
            hub_datasets=tuple(hub),
        ),
    }
    memory = data.get("memory_path")
    if memory and (root / memory).is_file():
        fields["memory_seed"] = str(PurePosixPath(memory))  # MLGym starts an empty memory where it is missing
    try:
        spec = TaskSpec(**fields)
    except ValidationError as exc:
        lines = [f"{config}: {'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
        raise TaskError("\n".join(lines)) from None
    task = Task(spec=spec, root=root, dataset_root=root, instruction_text=description, config_path=config)
    seed_problems = memory_seed_problems(task)
    if seed_problems:
        raise TaskError("\n".join(f"{config}: {p}" for p in seed_problems))
    return task
