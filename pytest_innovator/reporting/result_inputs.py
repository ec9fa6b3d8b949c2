"""Reading finished items back: results logs, results directories and JUnit XML files.

Every input becomes a list of item records (plain dicts of builtin values with the item
properties of docs/results.md, plus `run_id`, `outcome` and `agent`). One item of one run
(the same run id and task) read from several files (the results log and the JUnit XML of the same
run, or the XML of two xdist runs merged by hand) is counted once.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..errors import InnovatorError
from ..rundir import RESULT_FILE, RunDir, results_log_path

FLOAT_PROPERTIES = {
    "score_final",
    "score_best",
    "metric_final",
    "metric_best",
    "working_time_s",
    "cost_usd",
    "judge_cost_usd",
}
INT_PROPERTIES = {"evals_used", "evals_budget", "steps", "protected_changes", "tokens_in", "tokens_out", "llm_calls"}
BOOL_PROPERTIES = {"hint_used"}
TEXT_PROPERTIES = {
    "innovator_task",
    "innovator_domain",
    "innovator_agent",
    "end_reason",
    "run_dir",
    "final_status",
    "final_message",
    "backend",
    "task_version",
    "workspace_provisioning",
    "limits",
    "model",
    "nodeid",
    "run_id",
    "worker",
    "outcome",
}


class InputError(InnovatorError):
    """An input the leaderboard cannot read; the message says which file and what is wrong."""


def read_inputs(paths: Iterable[Path]) -> list[dict[str, Any]]:
    """Item records from results logs, results directories and JUnit XML files, duplicates merged."""
    records: list[dict[str, Any]] = []
    for path in paths:
        records.extend(read_input(path))
    return fill_from_run(deduplicate(records))


def fill_from_run(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """An item whose setup failed is logged without properties: it belongs to its run's agent, and
    its task's domain is known from other runs."""
    agents = {r["run_id"]: r for r in records if r.get("innovator_agent")}
    domains = {r["innovator_task"]: r["innovator_domain"] for r in records if r.get("innovator_domain")}
    for record in records:
        if not record.get("innovator_agent") and record["run_id"] in agents:
            sibling = agents[record["run_id"]]
            record.update(innovator_agent=sibling["innovator_agent"], agent=sibling["agent"])
        if not record.get("innovator_domain"):
            record["innovator_domain"] = domains.get(record["innovator_task"])
    return records


def read_input(path: Path) -> list[dict[str, Any]]:
    if path.is_dir():
        log = results_log_path(path)
        if log.is_file():
            return read_results_log(log)
        found = read_result_files(path)
        if not found:
            raise InputError(
                f"{path}: no results.jsonl and no run directory with a result.json below it; "
                "give the directory passed to --innovator-results"
            )
        return found
    if not path.is_file():
        raise InputError(f"{path}: no such file or directory")
    if path.suffix == ".xml":
        return read_junit_xml(path)
    return read_results_log(path)


def read_results_log(path: Path) -> list[dict[str, Any]]:
    records = []
    lines = path.read_text(encoding="utf-8").split("\n")
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            if number == len(lines):  # no newline after it: the run died while writing this line
                break
            if number == 1 and line.lstrip().startswith("<"):
                raise InputError(f"{path}: looks like XML; name JUnit XML files *.xml") from None
            raise InputError(f"{path}:{number}: not a JSON line ({exc.msg}); remove or repair it") from None
        if not isinstance(data, dict) or "innovator_task" not in data:
            raise InputError(f"{path}:{number}: not an item record of a results log (no innovator_task)")
        records.append(normalize(data, source=str(path)))
    return records


def read_result_files(root: Path) -> list[dict[str, Any]]:
    """Items of run directories (`runs/<run id>/<task>/result.json`) when there is no results log.

    `root` is a results directory, its `runs/`, one run or one item: only those depths are looked
    at, never inside workspaces (which may hold millions of files, and files named result.json).
    """
    records = []
    for pattern in (RESULT_FILE, f"*/{RESULT_FILE}", f"*/*/{RESULT_FILE}", f"runs/*/*/{RESULT_FILE}"):
        for result in sorted(root.glob(pattern)):
            item_dir = result.parent
            if not RunDir(item_dir).ledger.is_file():
                continue
            data = json.loads(result.read_text(encoding="utf-8"))
            data.setdefault("run_id", item_dir.parent.name)
            records.append(normalize(data, source=str(result)))
    return records


def read_junit_xml(path: Path) -> list[dict[str, Any]]:
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise InputError(f"{path}: not valid XML ({exc})") from None
    records = []
    for case in root.iter("testcase"):
        properties = {p.get("name", ""): p.get("value", "") for p in case.iterfind("properties/property")}
        if "innovator_task" not in properties:
            continue  # not a benchmark item, or one that never ran (setup error, skip): no properties
        data: dict[str, Any] = {name: typed(name, value) for name, value in properties.items()}
        data["outcome"] = _junit_outcome(case, data)
        data["nodeid"] = f"{case.get('classname', '')}::{case.get('name', '')}"
        records.append(normalize(data, source=str(path)))
    return records


def _junit_outcome(case: ET.Element, data: dict[str, Any]) -> str:
    if case.find("error") is not None or data.get("final_status") == "grader_failed":
        return "error"
    if case.find("failure") is not None:
        return "failed"
    if case.find("skipped") is not None:
        return "skipped"
    return "passed"


def typed(name: str, text: str) -> Any:
    """A property value from its text in JUnit XML (where every value is a string)."""
    if name in TEXT_PROPERTIES:
        return text
    if text == "None":
        return None
    if name in BOOL_PROPERTIES or text in ("True", "False"):
        return text == "True"
    for convert in (int, float):
        try:
            number = convert(text)
        except ValueError:
            continue
        return float(number) if name in FLOAT_PROPERTIES else number
    return text


def run_id_of(data: dict[str, Any]) -> str:
    """The run the episode happened in: the parent of its run directory (`<results>/runs/<run id>/<task>`).

    That is the record's own run id, except for an item a resumed run carried over from the run it
    resumed (`resumed_from`): the resumed run logs it under its own id, yet it is the earlier run's
    episode, and must count once with that run's record of it.
    """
    run_dir = data.get("run_dir")
    if run_dir:
        return Path(run_dir).parent.name
    if data.get("run_id"):
        return str(data["run_id"])
    raise InputError(f"item {data.get('innovator_task')!r} has neither run_id nor run_dir; cannot tell its run")


def agent_key(data: dict[str, Any]) -> str:
    """The leaderboard's row: name@version, with the model in brackets when known."""
    agent = str(data.get("innovator_agent") or "unknown")
    model = data.get("model")
    return f"{agent}[{model}]" if model and f"[{model}]" not in agent else agent


def normalize(data: dict[str, Any], source: str) -> dict[str, Any]:
    record = dict(data)
    record.pop("schema", None)
    for name in FLOAT_PROPERTIES & record.keys():  # result.json holds more digits than the properties
        if isinstance(record[name], float):
            record[name] = round(record[name], 4)
    record["run_id"] = run_id_of(record)
    record["agent"] = agent_key(record)
    record.setdefault("outcome", None)
    record["sources"] = [source]
    return record


def item_key(record: dict[str, Any]) -> tuple[str, str]:
    return record["run_id"], record["innovator_task"]


def deduplicate(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One record per run id and task. The one with more steps wins (a resumed item carries on the
    same ledger, so its later record has at least as many), then the later one; missing fields are
    taken from the other."""
    merged: dict[tuple[str, str], dict[str, Any]] = {}
    for record in records:
        key = item_key(record)
        seen = merged.get(key)
        if seen is None:
            merged[key] = record
            continue
        newer, older = (record, seen) if (record.get("steps") or 0) >= (seen.get("steps") or 0) else (seen, record)
        combined = {
            **{k: v for k, v in older.items() if v is not None},
            **{k: v for k, v in newer.items() if v is not None},
        }
        combined["sources"] = sorted(set(seen["sources"]) | set(record["sources"]))
        merged[key] = combined
    return list(merged.values())
