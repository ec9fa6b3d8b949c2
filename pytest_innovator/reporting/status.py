"""Live progress of a run from the files it keeps current, without touching the run.

Per item directory (`<results>/runs/<run id>/<task>/`): the last line of `trajectory.jsonl` gives
the step and working time (one line is appended and flushed per step), `ledger.json` the
evaluations and the best score so far (rewritten on each evaluation, hint and end, always whole:
it is replaced by a rename), `result.json` appears once the item finished. The plugin's live
progress in the terminal (plugin/progress.py) reads them the same way, through `read_item`.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InnovatorError
from ..ledger import EvalLedger, budget_text
from ..rundir import RunDir

TAIL_BYTES = 64 * 1024


class StatusError(InnovatorError):
    """A results directory without runs; the message says what to give instead."""


def first_line(path: Path) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            return json.loads(f.readline())
    except (OSError, json.JSONDecodeError):
        return {}


def last_records(path: Path, count: int = 1) -> list[dict[str, Any]]:
    """The last `count` complete lines of a JSON Lines file, reading only its end (the file may be
    large; the window read grows until it holds them)."""
    try:
        size = path.stat().st_size
    except OSError:
        return []
    window = TAIL_BYTES
    with open(path, "rb") as f:
        while True:
            start = max(0, size - window)
            f.seek(start)
            lines = f.read(size - start).split(b"\n")
            records = []
            for raw in lines[1:] if start > 0 else lines:  # the first piece may be a line's tail
                try:
                    records.append(json.loads(raw))
                except ValueError:  # empty, or the partial line being written right now
                    continue
            if len(records) >= count or start == 0:
                return records[-count:]
            window *= 4


def last_record(path: Path) -> dict[str, Any] | None:
    """The last complete line of a JSON Lines file (see last_records)."""
    records = last_records(path)
    return records[0] if records else None


@dataclass(frozen=True)
class ItemFiles:
    """What an item's run directory holds at one moment (each file may be missing yet)."""

    path: Path
    header: dict[str, Any]  # the trajectory's first line
    last: dict[str, Any]  # its last complete line
    ledger: EvalLedger | None
    result: dict[str, Any] | None
    lease: dict[str, Any]
    trajectory_mtime: float | None


def read_item(item_dir: Path) -> ItemFiles:
    run = RunDir(item_dir)
    try:
        trajectory_mtime: float | None = run.trajectory.stat().st_mtime
    except OSError:
        trajectory_mtime = None
    return ItemFiles(
        path=item_dir,
        header=first_line(run.trajectory),
        last=last_record(run.trajectory) or {},
        ledger=EvalLedger.load(run.ledger) if run.ledger.is_file() else None,
        result=json.loads(run.result.read_text(encoding="utf-8")) if run.result.is_file() else None,
        lease=first_line(run.gpu_lease),
        trajectory_mtime=trajectory_mtime,
    )


def item_progress(item: ItemFiles, now: float | None = None) -> dict[str, Any]:
    now = time.time() if now is None else now
    header, last, ledger, result = item.header, item.last, item.ledger, item.result
    limits = header.get("limits", {})
    if result is not None:
        state = "finished"
    elif "released_at" in item.lease:  # the item's teardown ran, yet it wrote no result
        state = "stopped"
    else:
        state = "running"
    scored = [e for e in ledger.evaluations if e.score is not None] if ledger else []
    started = last.get("type") != "header"
    working_time_s = last.get("t", 0.0) if started else 0.0
    if state == "running" and "wall" in last:  # the clock runs on during a long step (grading aside)
        working_time_s += max(0.0, now - last["wall"])
    return {
        "task": ledger.task_id if ledger else item.path.name,
        "agent": header.get("agent"),
        "state": state,
        # The ledger is saved during an evaluation, before that step's trajectory line is written.
        "step": max(last.get("step", 0) if started else 0, ledger.steps if ledger else 0),
        "step_limit": limits.get("step_limit"),
        "working_time_s": round(working_time_s, 1),
        "time_limit_s": limits.get("time_limit_s"),
        "evals_used": ledger.agent_evals_used if ledger else 0,
        "evals_budget": ledger.budget if ledger else limits.get("eval_budget"),
        "evaluations": len(ledger.evaluations) if ledger else 0,
        "best_score": ledger.best_score if ledger else None,
        "last_score": ledger.effective(scored[-1].score) if ledger and scored else None,
        "hint_used": ledger.hint_viewed if ledger else False,
        "score_final": result.get("score_final") if result else None,
        "end_reason": result.get("end_reason") if result else (ledger.end_reason if ledger else None),
        "idle_s": None if item.trajectory_mtime is None else round(now - item.trajectory_mtime, 1),
        "run_dir": str(item.path),
    }


def run_dirs(results_dir: Path) -> list[Path]:
    runs = results_dir / "runs"
    if not runs.is_dir():
        raise StatusError(
            f"{results_dir}: no runs/ directory; give the directory passed to --innovator-results (default .innovator)"
        )
    return sorted(d for d in runs.iterdir() if d.is_dir())


def run_progress(run_dir: Path, now: float | None = None) -> dict[str, Any]:
    items = [item_progress(read_item(d), now) for d in sorted(run_dir.iterdir()) if (RunDir(d).trajectory).exists()]
    order = {"running": 0, "stopped": 1, "finished": 2}
    items.sort(key=lambda i: (order[i["state"]], i["task"]))
    counts = {state: sum(1 for i in items if i["state"] == state) for state in order}
    return {"run_id": run_dir.name, "counts": counts, "items": items}


def collect_status(results_dir: Path, run_id: str | None = None, all_runs: bool = False) -> list[dict[str, Any]]:
    runs = run_dirs(results_dir)
    if run_id is not None:
        runs = [r for r in runs if r.name == run_id]
        if not runs:
            raise StatusError(
                f"{results_dir}: no run {run_id!r}; runs: {', '.join(r.name for r in run_dirs(results_dir))}"
            )
    elif not all_runs:
        runs = runs[-1:]  # run ids begin with the start time: the last is the latest
    now = time.time()
    return [run_progress(r, now) for r in runs]


def clock(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def score_text(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"


def step_text(item: dict[str, Any]) -> str:
    return f"{item['step']}/{item['step_limit'] or '?'}"


def working_time_text(item: dict[str, Any]) -> str:
    return f"{clock(item['working_time_s'])}/{clock(item['time_limit_s'])}"


def evals_text(item: dict[str, Any]) -> str:
    return f"{item['evals_used']}/{budget_text(item['evals_budget'], short=True)}"


def format_status(runs: list[dict[str, Any]]) -> str:
    lines = []
    for run in runs:
        counts = ", ".join(f"{n} {state}" for state, n in run["counts"].items() if n)
        lines.append(f"run {run['run_id']}: {counts or 'no items yet'}")
        # Names are never cut: an agent's label holds its model (react@1[smollm2-135m-instruct]).
        task_width = max([len("task"), *(len(i["task"]) for i in run["items"])])
        agent_width = max([len("agent"), *(len(str(i["agent"] or "")) for i in run["items"])])
        lines.append(
            f"  {'task':<{task_width}} {'agent':<{agent_width}} {'state':<9} {'step':>10} {'working time':>19} "
            f"{'evals':>6} {'best':>6} {'last':>6} {'final':>6} {'idle':>8}"
        )
        for i in run["items"]:
            idle = "" if i["state"] != "running" or i["idle_s"] is None else f"{i['idle_s']:.0f}s"
            lines.append(
                f"  {i['task']:<{task_width}} {str(i['agent'] or ''):<{agent_width}} {i['state']:<9} "
                f"{step_text(i):>10} {working_time_text(i):>19} {evals_text(i):>6} {score_text(i['best_score']):>6} "
                f"{score_text(i['last_score']):>6} {score_text(i['score_final']):>6} {idle:>8}"
            )
    return "\n".join(lines)


def show_status(
    results_dir: Path,
    *,
    run_id: str | None = None,
    all_runs: bool = False,
    as_json: bool = False,
    watch_s: float | None = None,
) -> int:
    while True:
        runs = collect_status(results_dir, run_id, all_runs)
        print(json.dumps({"runs": runs}, indent=1) if as_json else format_status(runs))
        sys.stdout.flush()
        running = any(run["counts"]["running"] for run in runs)
        if not watch_s or not running:
            return 0
        time.sleep(watch_s)
        if not as_json:
            print(f"--- {time.strftime('%H:%M:%S')}")
