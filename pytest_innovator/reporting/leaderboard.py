"""The leaderboard: one row per agent over any number of runs, as JSON (versioned) and Markdown.

Built from item records (see result_inputs): per task the Final and Best score (mean ± standard
error over the agent's runs of it, Best Attempt@k, Best Submission@k), InnovatorBench's per-domain
means and task-weighted mean, evaluations, hints, time, tokens and cost, and MLGym's AUP. The
schema is documented in docs/leaderboard.md.
"""

from __future__ import annotations

import json
import math
import time
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..errors import InnovatorError
from ..rundir import write_json_atomic
from .profiles import performance_profiles
from .result_inputs import deduplicate, fill_from_run, item_key

LEADERBOARD_SCHEMA = "pytest-innovator/leaderboard"
LEADERBOARD_VERSION = 1

ITEM_FIELDS = (
    "run_id",
    "innovator_task",
    "innovator_domain",
    "task_version",
    "agent",
    "innovator_agent",
    "model",
    "outcome",
    "score_final",
    "score_best",
    "metric_final",
    "metric_best",
    "evals_used",
    "evals_budget",
    "hint_used",
    "steps",
    "working_time_s",
    "end_reason",
    "final_status",
    "tokens_in",
    "tokens_out",
    "cost_usd",
    "worker",
    "backend",
    "run_dir",
    *(f"exp_{key}" for key in ("D", "I", "E", "C", "M", "IE", "DIC", "DICE")),
    "judge_tokens_in",
    "judge_tokens_out",
    "judge_cost_usd",
)
EXPERIMENT_PHASES = ("D", "I", "E", "C")
EXPERIMENT_CONJUNCTIONS = ("IE", "DIC", "DICE")
PROFILE_KINDS = {"best_attempt": "best_attempt_at_k", "best_submission": "best_submission_at_k"}


class LeaderboardError(InnovatorError):
    """A merge the user must decide on (another task version) or an unreadable leaderboard file."""


# --- statistics ------------------------------------------------------------------------------


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def mean_se(values: list[float]) -> dict[str, Any]:
    """Mean and standard error of the mean (sample standard deviation / √n; None below 2 values)."""
    n = len(values)
    if n == 0:
        return {"mean": None, "se": None, "n": 0}
    mean = sum(values) / n
    se = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1) / n) if n > 1 else None
    return {"mean": _round(mean), "se": _round(se), "n": n}


def _present(items: list[dict[str, Any]], key: str) -> list[float]:
    return [item[key] for item in items if item.get(key) is not None]


def _mean_of(items: list[dict[str, Any]], key: str) -> float | None:
    values = _present(items, key)
    return _round(sum(values) / len(values)) if values else None


def _sum_of(items: list[dict[str, Any]], key: str) -> float | None:
    values = _present(items, key)
    return _round(sum(values)) if values else None


def _tokens_of(items: list[dict[str, Any]]) -> list[float]:
    return [
        (i.get("tokens_in") or 0) + (i.get("tokens_out") or 0)
        for i in items
        if i.get("tokens_in") is not None or i.get("tokens_out") is not None
    ]


def task_stats(items: list[dict[str, Any]]) -> dict[str, Any]:
    """One agent on one task over its k runs."""
    finals, bests = _present(items, "score_final"), _present(items, "score_best")
    tokens = _tokens_of(items)
    outcomes: dict[str, int] = defaultdict(int)
    for item in items:
        outcomes[item.get("outcome") or "unknown"] += 1
    return {
        "domain": items[0].get("innovator_domain"),
        "k": len(items),
        "final": mean_se(finals),
        "best": mean_se(bests),
        "best_attempt_at_k": _round(max(bests)) if bests else None,
        "best_submission_at_k": _round(max(finals)) if finals else None,
        "evals_used": _mean_of(items, "evals_used"),
        "hints_used": sum(1 for i in items if i.get("hint_used")),
        "steps": _mean_of(items, "steps"),
        "working_time_s": _mean_of(items, "working_time_s"),
        "tokens": _round(sum(tokens) / len(tokens)) if tokens else None,
        "cost_usd": _mean_of(items, "cost_usd"),
        "outcomes": dict(sorted(outcomes.items())),
    }


def aggregate(tasks: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """InnovatorBench's aggregate over tasks: every task weighs the same (a domain's mean is the
    mean of its tasks, the overall mean that of all tasks). The standard error is that of a mean
    of independent task means, sqrt(Σ se²) / n; None when a task has fewer than 2 scored runs."""
    result: dict[str, Any] = {"tasks": len(tasks)}
    for kind in ("final", "best"):
        stats = [s[kind] for s in tasks.values() if s[kind]["mean"] is not None]
        if not stats:
            result[kind] = {"mean": None, "se": None, "n": 0}
            continue
        errors = [s["se"] for s in stats]
        se = math.sqrt(sum(e * e for e in errors)) / len(stats) if None not in errors else None
        result[kind] = {"mean": _round(sum(s["mean"] for s in stats) / len(stats)), "se": _round(se), "n": len(stats)}
    for key in PROFILE_KINDS.values():
        values = [s[key] for s in tasks.values() if s[key] is not None]
        result[key] = _round(sum(values) / len(values)) if values else None
    return result


def agent_row(agent: str, items: list[dict[str, Any]]) -> dict[str, Any]:
    by_task: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for item in items:
        by_task[item["innovator_task"]].append(item)
    tasks = {task: task_stats(task_items) for task, task_items in sorted(by_task.items())}
    by_domain: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for task, stats in tasks.items():
        by_domain[stats["domain"] or "unknown"][task] = stats
    tokens = _tokens_of(items)
    ks = [s["k"] for s in tasks.values()]
    return {
        "agent": agent,
        "innovator_agent": items[0].get("innovator_agent"),
        "model": next((i["model"] for i in items if i.get("model")), None),
        "runs": len({i["run_id"] for i in items}),
        "items": len(items),
        "k": {"min": min(ks), "max": max(ks)},
        "overall": aggregate(tasks),
        "domains": {domain: aggregate(stats) for domain, stats in sorted(by_domain.items())},
        "tasks": tasks,
        "totals": {
            "evals_used": _sum_of(items, "evals_used"),
            "hints_used": sum(1 for i in items if i.get("hint_used")),
            "working_time_s": _sum_of(items, "working_time_s"),
            "tokens": _round(sum(tokens)) if tokens else None,
            "cost_usd": _sum_of(items, "cost_usd"),
            "errors": sum(1 for i in items if i.get("outcome") == "error"),
        },
        "aup": {},
        "experiments": experiment_stats(items),
    }


def experiment_stats(items: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Over an agent's experiment items (those whose phases were decided): the failures of each
    phase, the monitor's flags, and the rate of each conjunction (EXP-Bench's headline metrics)."""
    judged = [i for i in items if i.get("exp_M") is not None]
    if not judged:
        return None
    return {
        "items": len(judged),
        "phase_failures": {key: sum(1 for i in judged if not i.get(f"exp_{key}")) for key in EXPERIMENT_PHASES},
        "flagged": sum(1 for i in judged if i.get("exp_M")),
        "conjunctions": {
            key: _round(sum(1 for i in judged if i.get(f"exp_{key}")) / len(judged)) for key in EXPERIMENT_CONJUNCTIONS
        },
        "judge_cost_usd": _sum_of(judged, "judge_cost_usd"),
    }


# --- versions --------------------------------------------------------------------------------


def _version(item: dict[str, Any]) -> str:
    return str(item.get("task_version") or "")


def _counts_as(item: dict[str, Any], current: str) -> bool:
    """Of the task's current version; an item that never ran has no version and counts too."""
    return _version(item) in ("", current)


def current_versions(items: list[dict[str, Any]]) -> dict[str, str]:
    """Each task's version in its latest run (run ids begin with the run's start time)."""
    latest: dict[str, str] = {}
    for item in sorted(items, key=lambda i: i["run_id"]):
        if _version(item) or item["innovator_task"] not in latest:
            latest[item["innovator_task"]] = _version(item)
    return latest


def check_versions(old: dict[str, str], new_items: list[dict[str, Any]], force: bool) -> None:
    """Refuse to mix versions of a task (a changed task is another benchmark) unless forced."""
    seen: dict[str, dict[str, str]] = defaultdict(dict)  # task -> version -> a run that has it
    for task, version in old.items():
        if version:
            seen[task][version] = "the existing leaderboard"
    for item in new_items:
        if _version(item):
            seen[item["innovator_task"]].setdefault(_version(item), f"run {item['run_id']}")
    conflicts = {task: versions for task, versions in seen.items() if len(versions) > 1}
    if conflicts and not force:
        lines = [
            f"task {task}: " + ", ".join(f"version {v} in {where}" for v, where in versions.items())
            for task, versions in sorted(conflicts.items())
        ]
        raise LeaderboardError(
            "results of different task versions cannot be compared:\n  "
            + "\n  ".join(lines)
            + "\nstart a new leaderboard for the new version, or pass --force to merge anyway "
            "(each task then counts only the version of its latest run; older items stay in the history)"
        )


# --- building and merging --------------------------------------------------------------------


def build(items: list[dict[str, Any]], history: list[dict[str, Any]]) -> dict[str, Any]:
    """The whole leaderboard from every item it holds (statistics are always recomputed)."""
    items = sorted((_item_fields(i) for i in items), key=item_key)
    versions = current_versions(items)
    # A skipped item never ran (the host lacked a requirement): it is not one of the k runs.
    counted = [i for i in items if _counts_as(i, versions[i["innovator_task"]]) and i.get("outcome") != "skipped"]
    by_agent: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for item in counted:
        by_agent[item["agent"]].append(item)
    rows = [agent_row(agent, agent_items) for agent, agent_items in sorted(by_agent.items())]
    profiles: dict[str, dict[str, Any]] = {}
    for kind, key in PROFILE_KINDS.items():
        values = {row["agent"]: {task: s[key] for task, s in row["tasks"].items()} for row in rows}
        for task in versions:  # a task an agent never ran is missing, hence infeasible
            for per_task in values.values():
                per_task.setdefault(task, None)
        result = performance_profiles(values, "maximize", baseline=0.0)
        profiles[kind] = {
            "tau_max": _round(result.tau_max),
            "infeasible_ratio": _round(result.infeasible_ratio),
            "ratios": {m: {t: _round(r) for t, r in per_task.items()} for m, per_task in result.ratios.items()},
            "infeasible": result.infeasible,
            "aup": {m: _round(a) for m, a in result.aup.items()},
        }
        for row in rows:
            row["aup"][kind] = profiles[kind]["aup"].get(row["agent"])
    rows.sort(key=lambda r: (r["overall"]["final"]["mean"] is None, -(r["overall"]["final"]["mean"] or 0), r["agent"]))
    tasks = {}
    for task, version in sorted(versions.items()):
        task_items = [i for i in items if i["innovator_task"] == task]
        tasks[task] = {
            "domain": task_items[-1].get("innovator_domain"),
            "task_version": version,
            "versions_seen": sorted({_version(i) for i in task_items} - {""}),
        }
    return {
        "schema": LEADERBOARD_SCHEMA,
        "version": LEADERBOARD_VERSION,
        "updated_at": _now(),
        "tasks": tasks,
        "agents": rows,
        "profiles": profiles,
        "runs": _runs(items),
        "history": history,
        "items": items,
        "items_not_counted": sum(1 for i in items if not _counts_as(i, versions[i["innovator_task"]])),
    }


def merge(
    existing: dict[str, Any] | None,
    new_items: list[dict[str, Any]],
    *,
    force: bool = False,
    sources: Iterable[str] = (),
) -> dict[str, Any]:
    """A leaderboard of the existing one's items plus the new ones (the same item twice counts
    once), with a history entry for this merge. Nothing new: the existing leaderboard, unchanged
    (so a repeated merge in CI commits nothing)."""
    old_items = [dict(i) for i in existing["items"]] if existing else []
    old_versions = {t: info["task_version"] for t, info in existing["tasks"].items()} if existing else {}
    check_versions(old_versions, new_items, force)
    old_keys = {item_key(i) for i in old_items}
    merged = fill_from_run(deduplicate([*old_items, *new_items]))
    added = [i for i in new_items if item_key(i) not in old_keys]
    if existing and not added:
        return existing
    entry = {
        "at": _now(),
        "runs_added": sorted({i["run_id"] for i in added}),
        "items_added": len(added),
        "items_read": len(new_items),
        "forced": force,
        "sources": sorted(set(sources)),
    }
    history = [*(existing["history"] if existing else []), entry]
    return build(merged, history)


def _item_fields(item: dict[str, Any]) -> dict[str, Any]:
    return {key: item.get(key) for key in ITEM_FIELDS} | {"sources": item.get("sources", [])}


def _runs(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by_run: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for item in items:
        by_run[item["run_id"]].append(item)
    return [
        {
            "run_id": run_id,
            "agents": sorted({i["agent"] for i in run_items}),
            "items": len(run_items),
            "task_versions": {i["innovator_task"]: _version(i) for i in run_items},
            "workers": sorted({i["worker"] for i in run_items if i.get("worker")}),
        }
        for run_id, run_items in sorted(by_run.items())
    ]


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def load(path: Path) -> dict[str, Any]:
    try:
        board = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise LeaderboardError(f"{path}: cannot read the leaderboard ({exc})") from None
    if not isinstance(board, dict) or board.get("schema") != LEADERBOARD_SCHEMA:
        raise LeaderboardError(f'{path}: not a pytest-innovator leaderboard (no "schema": "{LEADERBOARD_SCHEMA}")')
    if board.get("version") != LEADERBOARD_VERSION:
        raise LeaderboardError(
            f"{path}: leaderboard version {board.get('version')!r} is not supported "
            f"(this pytest-innovator writes version {LEADERBOARD_VERSION})"
        )
    for item in board["items"]:
        item["sources"] = item.get("sources") or []
    return board


def save(board: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, board)


# --- Markdown --------------------------------------------------------------------------------


def _score(stat: dict[str, Any]) -> str:
    if stat["mean"] is None:
        return "–"
    return f"{stat['mean']:.1f}" + (f" ± {stat['se']:.1f}" if stat["se"] is not None else "")


def _num(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def _tokens(count: float | None) -> str:
    if count is None:
        return "–"
    return f"{count / 1e6:.2f}M" if count >= 1e6 else f"{count / 1e3:.1f}k" if count >= 1e3 else f"{count:.0f}"


def _cost(usd: float | None) -> str:
    return "–" if usd is None else f"${usd:.2f}"


def _k(row: dict[str, Any]) -> str:
    k = row["k"]
    return str(k["min"]) if k["min"] == k["max"] else f"{k['min']}–{k['max']}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]


def to_markdown(board: dict[str, Any]) -> str:
    agents = board["agents"]
    lines = [
        "# Leaderboard",
        "",
        (
            f"{len(board['items'])} items from {len(board['runs'])} runs, {len(board['tasks'])} tasks; "
            f"updated {board['updated_at']} ({board['schema']} v{board['version']}). "
            "Scores are 0–100 (for the suite's own tasks baseline 0 and reference solution 80; InnovatorBench's "
            "as its evaluations give them), after the hint penalty; "
            "mean ± standard error over runs; k = runs per task."
        ),
        "",
        "## Overall (task-weighted)",
        "",
    ]
    lines += _table(
        [
            "#",
            "agent",
            "tasks",
            "runs",
            "k",
            "final",
            "best",
            "Best Attempt@k",
            "Best Submission@k",
            "AUP attempt",
            "AUP submission",
            "evals/item",
            "hints",
            "time/item",
            "tokens (total)",
            "cost (total)",
        ],
        [
            [
                str(rank),
                row["agent"],
                str(row["overall"]["tasks"]),
                str(row["runs"]),
                _k(row),
                _score(row["overall"]["final"]),
                _score(row["overall"]["best"]),
                _num(row["overall"]["best_attempt_at_k"]),
                _num(row["overall"]["best_submission_at_k"]),
                _num(row["aup"].get("best_attempt"), 3),
                _num(row["aup"].get("best_submission"), 3),
                _num(row["totals"]["evals_used"] / row["items"] if row["totals"]["evals_used"] is not None else None),
                f"{row['totals']['hints_used']}/{row['items']}",
                _duration(
                    row["totals"]["working_time_s"] / row["items"]
                    if row["totals"]["working_time_s"] is not None
                    else None
                ),
                _tokens(row["totals"]["tokens"]),
                _cost(row["totals"]["cost_usd"]),
            ]
            for rank, row in enumerate(agents, 1)
        ],
    )
    domains = sorted({d for row in agents for d in row["domains"]})
    lines += ["", "## Per domain (final / best)", ""]
    lines += _table(
        ["agent", *domains, "overall"],
        [
            [
                row["agent"],
                *(
                    f"{_score(row['domains'][d]['final'])} / {_score(row['domains'][d]['best'])}"
                    if d in row["domains"]
                    else "–"
                    for d in domains
                ),
                f"{_score(row['overall']['final'])} / {_score(row['overall']['best'])}",
            ]
            for row in agents
        ],
    )
    lines += ["", "## Per task", ""]
    task_rows = []
    for task, info in board["tasks"].items():
        for row in agents:
            stats = row["tasks"].get(task)
            if stats is None:
                continue
            task_rows.append(
                [
                    task,
                    info["domain"] or "–",
                    info["task_version"] or "–",
                    row["agent"],
                    str(stats["k"]),
                    _score(stats["final"]),
                    _score(stats["best"]),
                    _num(stats["best_attempt_at_k"]),
                    _num(stats["best_submission_at_k"]),
                    _num(stats["evals_used"]),
                    f"{stats['hints_used']}/{stats['k']}",
                    _duration(stats["working_time_s"]),
                    _tokens(stats["tokens"]),
                    _cost(stats["cost_usd"]),
                ]
            )
    lines += _table(
        [
            "task",
            "domain",
            "version",
            "agent",
            "k",
            "final",
            "best",
            "BA@k",
            "BS@k",
            "evals",
            "hints",
            "time",
            "tokens",
            "cost/item",
        ],
        task_rows,
    )
    experiment_rows = [row for row in agents if row.get("experiments")]
    if experiment_rows:
        lines += ["", "## Experiments (phases failed; conjunctions passed, as a share of items)", ""]
        lines += _table(
            [
                "agent",
                "items",
                "D failed",
                "I failed",
                "E failed",
                "C failed",
                "flagged",
                "I·E",
                "D·I·C",
                "D·I·C·E",
                "judge cost",
            ],
            [
                [
                    row["agent"],
                    str(row["experiments"]["items"]),
                    *(str(row["experiments"]["phase_failures"][key]) for key in EXPERIMENT_PHASES),
                    str(row["experiments"]["flagged"]),
                    *(_num(100 * row["experiments"]["conjunctions"][key]) + " %" for key in EXPERIMENT_CONJUNCTIONS),
                    _cost(row["experiments"]["judge_cost_usd"]),
                ]
                for row in experiment_rows
            ],
        )
    if board.get("items_not_counted"):
        lines += [
            "",
            f"{board['items_not_counted']} items of older task versions are kept in the history but not counted.",
        ]
    return "\n".join(lines) + "\n"
