"""Keep/drop labels for every step of a finished trajectory, stored beside it in ``labels.json``
(the trajectory stays untouched): rules for what is plainly sub-optimal, and a person's marks,
which win over the rules and are kept when the labels are made again.

Rules built: a failing step repeated unchanged right after it failed (``repeated_failure``); a
file written and then written back to an earlier content of it, which drops the writes in between
(``reverted_edit``); an evaluation with only read-only steps since the previous one, which scored
the same (``unchanged_evaluation``). Not built: a healthy long job killed early, steps after
ignored guidance, labels judged by a model.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

from ..errors import InnovatorError
from ..rundir import RunDir, write_json_atomic
from ..trajectory import read_trajectory

LABELS_SCHEMA = "pytest-innovator/labels"
LABELS_VERSION = 1
READ_ONLY_TOOLS = frozenset(
    {"think", "read_file", "list_files", "search_files", "find_files", "list_sessions", "list_hosts", "memory_read"}
)
EVALUATION_TOOLS = frozenset({"evaluate", "validate"})
FAILED_COMMAND = re.compile(r"finished, exit code (-?\d+)")


class LabelError(InnovatorError):
    """A trajectory that cannot be labelled, or a mark that does not fit it."""


def finished_steps(item_dir: Path) -> list[dict[str, Any]]:
    path = RunDir(item_dir).trajectory
    if not path.is_file():
        raise LabelError(
            f"{item_dir} has no trajectory.jsonl; give an item's run directory <results>/runs/<run id>/<task id>"
        )
    records = read_trajectory(path)
    if not any(r.get("event") == "end" for r in records):
        raise LabelError(
            f"{item_dir}: the trajectory has no end event (the item is still running or was lost); "
            "label it once it has ended"
        )
    return [r for r in records if r["type"] == "step"]


def failed(step: dict[str, Any]) -> bool:
    if not step["ok"]:
        return True
    exit_code = FAILED_COMMAND.search(step.get("observation", "")[:300])
    return exit_code is not None and int(exit_code.group(1)) != 0


def arguments_of(step: dict[str, Any]) -> dict[str, Any]:
    """A step's arguments as an object (an agent may have sent them as JSON text)."""
    arguments = step["arguments"]
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError:
            return {}
    return arguments if isinstance(arguments, dict) else {}


def same_call(one: dict[str, Any], other: dict[str, Any]) -> bool:
    if one["tool"] != other["tool"]:
        return False
    if one["arguments"] == other["arguments"]:
        return True
    parsed = arguments_of(one)  # the same object sent as text and as an object; unreadable text is never the same
    return bool(parsed) and parsed == arguments_of(other)


def rule_labels(records: list[dict[str, Any]]) -> dict[int, tuple[str, str]]:
    """step -> (rule, reason) for each step a rule drops."""
    steps = [r for r in records if r["type"] == "step"]
    drops: dict[int, tuple[str, str]] = {}
    for before, step in zip(steps, steps[1:]):
        if failed(before) and failed(step) and same_call(before, step):
            drops[step["step"]] = ("repeated_failure", f"repeats step {before['step']} unchanged, which had failed")
    contents: dict[str, list[tuple[int, str]]] = {}  # path -> the writes to it so far (step, content)
    for step in steps:
        arguments = arguments_of(step)
        if step["tool"] != "write_file" or not step["ok"] or "path" not in arguments:
            continue
        history = contents.setdefault(str(arguments["path"]), [])
        earlier = [i for i, (_, content) in enumerate(history) if content == arguments.get("content")]
        if earlier:
            for reverted, _ in history[earlier[-1] + 1 :]:
                drops[reverted] = ("reverted_edit", f"written back to its earlier content at step {step['step']}")
        history.append((step["step"], arguments.get("content")))
    scores = {r["step"]: r.get("score") for r in records if r.get("event") == "evaluation" and r.get("kind") == "agent"}
    since_evaluation: int | None = None  # the step of the previous evaluation, while only read-only steps follow it
    for step in steps:
        if step["tool"] in EVALUATION_TOOLS:
            if since_evaluation is not None and scores.get(step["step"]) == scores.get(since_evaluation):
                drops[step["step"]] = (
                    "unchanged_evaluation",
                    f"evaluates again what step {since_evaluation} evaluated (only read-only steps since; same score)",
                )
            since_evaluation = step["step"]
        elif step["tool"] not in READ_ONLY_TOOLS:
            since_evaluation = None
    return drops


def load_marks(item_dir: Path) -> list[dict[str, Any]]:
    path = RunDir(item_dir).labels
    return json.loads(path.read_text(encoding="utf-8")).get("marks", []) if path.is_file() else []


def label(item_dir: Path, mark: dict[str, Any] | None = None) -> dict[str, Any]:
    """Label every step (and add a person's mark first, if given); writes and returns labels.json."""
    steps = finished_steps(item_dir)
    records = read_trajectory(RunDir(item_dir).trajectory)
    marks = load_marks(item_dir)
    if mark is not None:
        known = {s["step"] for s in steps}
        if mark["step"] not in known:
            raise LabelError(
                f"{item_dir} has no step {mark['step']}; its steps are {min(known, default=0)}..{max(known, default=0)}"
            )
        marks = [m for m in marks if m["step"] != mark["step"]] + [{**mark, "at": time.time()}]
    by_person = {m["step"]: m for m in marks}
    drops = rule_labels(records)
    labelled = []
    for step in steps:
        number = step["step"]
        if number in by_person:
            m = by_person[number]
            labelled.append(
                {"step": number, "label": m["label"], "reason": m["reason"], "source": f"person:{m['author']}"}
            )
        elif number in drops:
            rule, reason = drops[number]
            labelled.append({"step": number, "label": "drop", "reason": reason, "source": f"rule:{rule}"})
        else:
            labelled.append({"step": number, "label": "keep", "reason": "no rule drops it", "source": "default"})
    labels = {
        "schema": LABELS_SCHEMA,
        "version": LABELS_VERSION,
        "trajectory": RunDir(item_dir).trajectory.name,
        "steps": labelled,
        "marks": marks,
    }
    write_json_atomic(RunDir(item_dir).labels, labels)
    return labels


def read_labels(item_dir: Path) -> dict[int, dict[str, Any]]:
    """step -> its label, or {} where the item was never labelled (every step is kept)."""
    path = RunDir(item_dir).labels
    if not path.is_file():
        return {}
    return {entry["step"]: entry for entry in json.loads(path.read_text(encoding="utf-8"))["steps"]}
