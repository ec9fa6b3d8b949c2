"""EXP-Bench's released task records as experiment items.

The dataset's layout: `<conference>/conference_data.jsonl` (one paper a line: `id`, `code_url`,
optionally `commit`) and `<conference>/<paper id>/<...>complete_final<...>.json`, whose
`questions` each become an item `<paper id>_<n>`. A question's repository is cloned from the
paper's `code_url` (at its `commit` where named) into the cache once, then copied without its
history and without the question's `source` files (the removed code) and README.md, as EXP-Bench
masks it. Its `design_complexity`, `requirements` and `expected_outcome` become the hidden rubric,
and the paper's title (and `paper_url`, `arxiv_id` where given) the names the monitor forbids.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from ..task import Task, TaskError, load_task

RESULTS_FILE = "results.txt"
DESIGN_KINDS = {
    "constant": "constant_variables",
    "independent": "independent_variables",
    "dependent": "dependent_variables",
}


def records_root(dataset: Path) -> Path:
    """Where the records are in the dataset the user named: its `dataset` folder, or itself."""
    return dataset / "dataset" if (dataset / "dataset").is_dir() else dataset


def is_task_record(path: Path) -> bool:
    return (
        path.suffix == ".json"
        and "complete_final" in path.name
        and (path.parent.parent / "conference_data.jsonl").is_file()
    )


def load_expbench_tasks(record: Path, cache_dir: Path) -> list[Task]:
    """One task per question of the record; TaskError names the record and what is wrong."""
    paper_id = record.parent.name
    paper = _paper(record, paper_id)
    try:
        questions = json.loads(record.read_text(encoding="utf-8"))["questions"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise TaskError(f"{record}: not an EXP-Bench task record with 'questions': {exc}") from None
    if not isinstance(questions, list) or not questions:
        raise TaskError(f"{record}: questions: must be a non-empty list")
    code_url = paper.get("code_url") or (paper.get("reproduce_eval") or {}).get("code")
    if not code_url:
        raise TaskError(f"{record.parent.parent / 'conference_data.jsonl'}: paper {paper_id!r} has no code_url")
    key = hashlib.sha256(f"{record.resolve()}\0{record.stat().st_mtime_ns}".encode()).hexdigest()[:16]
    root = cache_dir / "expbench" / key
    checkout = _clone(str(code_url), paper.get("commit"), cache_dir / "expbench" / "repos" / key, record)
    forbidden = [str(paper[key]) for key in ("title", "paper_url", "arxiv_id") if paper.get(key)]
    return [_task(record, root, checkout, paper_id, n, question, forbidden) for n, question in enumerate(questions)]


def _paper(record: Path, paper_id: str) -> dict[str, Any]:
    listing = record.parent.parent / "conference_data.jsonl"
    for number, line in enumerate(listing.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            raise TaskError(f"{listing}: line {number} is not JSON") from None
        if isinstance(entry, dict) and str(entry.get("id")) == paper_id:
            return entry
    raise TaskError(f"{listing}: no paper with id {paper_id!r} (the folder of {record.name})")


def _clone(code_url: str, commit: str | None, target: Path, record: Path) -> Path:
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        checkout = Path(tmp) / "checkout"
        steps = [["git", "clone", "--quiet", code_url, str(checkout)]]
        if commit:
            steps.append(["git", "-C", str(checkout), "checkout", "--quiet", str(commit)])
        for argv in steps:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=1800)
            if done.returncode != 0:
                raise TaskError(f"{record}: {' '.join(argv[:2])} {code_url} failed: {done.stderr.strip()[-300:]}")
        shutil.rmtree(checkout / ".git")
        os.replace(checkout, target)
    return target


def _strings(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [f"{name}: {', '.join(map(str, v)) if isinstance(v, list) else v}" for name, v in value.items()]
    if isinstance(value, list):
        return [str(v) for v in value]
    return [str(value)] if value else []


def _toml(data: dict[str, Any]) -> str:
    """TOML of flat keys and tables of strings and lists of strings (JSON strings are TOML strings)."""
    lines = [f"{k} = {json.dumps(v)}" for k, v in data.items() if not isinstance(v, (dict, list)) or _flat(v)]
    for name, table in data.items():
        if isinstance(table, dict):
            lines += ["", f"[{name}]", *(f"{k} = {json.dumps(v)}" for k, v in table.items())]
        elif isinstance(table, list) and not _flat(table):
            for entry in table:
                lines += ["", f"[[{name}]]", *(f"{k} = {json.dumps(v)}" for k, v in entry.items())]
    return "\n".join(lines) + "\n"


def _flat(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _task(
    record: Path, root: Path, checkout: Path, paper_id: str, n: int, question: dict[str, Any], forbidden: list[str]
) -> Task:
    task_id = re.sub(r"[^A-Za-z0-9_-]", "_", f"{paper_id}_{n}")
    where = f"{record}: questions[{n}]"
    if not isinstance(question, dict) or not question.get("question") or not question.get("expected_outcome"):
        raise TaskError(f"{where}: needs 'question' and 'expected_outcome'")
    removed = [
        str(p).removeprefix("/workspace/").lstrip("/")
        for p in question.get("masked_source") or question.get("source") or []
    ]
    design = question.get("design_complexity") or {}
    requirements = question.get("requirements") or question.get("method") or ""
    rubric = {
        "question": str(question["question"]),
        "forbidden": forbidden,
        "removed": removed,
        "design": {kind: _strings(design.get(field)) or ["(not given)"] for kind, field in DESIGN_KINDS.items()},
        "implementation": [
            {"requirement": text, "file": removed[0] if removed else "reproduce.sh"} for text in _strings(requirements)
        ],
        "conclusion": {"expected_outcome": str(question["expected_outcome"])},
    }
    directory = root / task_id
    if not (directory / "task.toml").is_file():
        staging = Path(tempfile.mkdtemp(dir=_made(root)))
        shutil.copytree(checkout, staging / "workspace", symlinks=True)
        for path in [*removed, "README.md"]:
            (staging / "workspace" / path).unlink(missing_ok=True)
        (staging / "grader").mkdir()
        (staging / "grader" / "rubric.toml").write_text(_toml(rubric), encoding="utf-8")
        (staging / "instruction.md").write_text(_instruction(question), encoding="utf-8")
        spec = {
            "id": task_id,
            "name": str(question["question"])[:120],
            "domain": "expbench",
            "time_limit": "10h",
            "eval_budget": 1,
            "outputs": ["design.md", "reproduce.sh", "conclusion.md", RESULTS_FILE],
            "experiment": {"results": [RESULTS_FILE]},
            "scoring": {"mode": "as_is", "metric": "DICE"},
        }
        (staging / "task.toml").write_text(_toml(spec), encoding="utf-8")
        try:
            os.replace(staging, directory)
        except OSError:  # another process made it first
            shutil.rmtree(staging, ignore_errors=True)
    try:
        return load_task(directory)
    except TaskError as exc:
        raise TaskError(f"{where}: {exc}") from None


def _made(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _instruction(question: dict[str, Any]) -> str:
    parts = [f"# {question['question']}", "", "## Method", "", str(question.get("method") or "(none given)")]
    if question.get("agent_instructions"):
        parts += ["", "## Instructions", "", str(question["agent_instructions"])]
    parts += [
        "",
        "## Deliverables (in the workspace)",
        "",
        "The repository's key code was removed: write it back where the method needs it.",
        "- `design.md`: the experiment's variables: constant, independent, dependent.",
        f"- `reproduce.sh`: runs the whole experiment (bash, from the workspace) and writes `{RESULTS_FILE}`; "
        "it is rerun from a clean copy of the repository plus your changes.",
        f"- `{RESULTS_FILE}`: the results, written by `reproduce.sh` (never by hand).",
        "- `conclusion.md`: the answer to the question, from your results.",
        "",
        "Do not use git or read the paper: either zeroes the run.",
    ]
    return "\n".join(parts) + "\n"
