"""Resuming items of an earlier run, and branching from any of its snapshots.

``--innovator-resume RUN_DIR`` re-runs each item of that run from its last snapshot, or carries
its result over when it had finished. ``--innovator-resume RUN_DIR/ITEM@SNAPSHOT`` starts that
item again from the named snapshot (a branch: its history after the snapshot is not kept).

What a resume keeps: the workspace as the snapshot saved it, the ledger (the evaluation budget
is never reset: evaluations recorded after the snapshot are kept too, and so is a viewed hint),
the working time used (downtime does not count), the agent's saved state, the item's memory as it
was at the snapshot, and the trajectory up to the snapshot, followed by a ``resume`` event. What
it cannot keep: processes. The agent is told which sessions existed and what they were running.

An item with no snapshot (lost before its first one, or on a pool host, whose workspaces are not
snapshotted) starts again from the beginning, but what its earlier attempt spent stays spent: its
evaluations count against the budget and a viewed hint keeps its penalty (``spent_before``).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InnovatorError
from ..ledger import EvalLedger
from ..rundir import RunDir, write_json_atomic, write_text_atomic
from .store import SnapshotStore


class ResumeError(InnovatorError):
    """A resume target that cannot be used; the message says what to give instead."""


@dataclass(frozen=True)
class ResumeTarget:
    run_dir: Path  # an earlier run's directory: <results>/runs/<run id>
    item: str | None  # one item's task id, for a branch
    snapshot: str | None  # a snapshot name, for a branch


def parse_resume_option(value: str) -> ResumeTarget:
    """RUN_DIR or RUN_DIR/ITEM@SNAPSHOT."""
    if "@" in value:
        path, _, snapshot = value.rpartition("@")
        item_dir = Path(path).resolve()
        if not (RunDir(item_dir).snapshots).is_dir():
            raise ResumeError(f"{item_dir} has no snapshots/; give RUN_DIR/ITEM@SNAPSHOT with an item's run directory")
        return ResumeTarget(item_dir.parent, item_dir.name, snapshot)
    run_dir = Path(value).resolve()
    if not run_dir.is_dir():
        raise ResumeError(f"{run_dir}: no such run directory; give <results>/runs/<run id>")
    return ResumeTarget(run_dir, None, None)


@dataclass(frozen=True)
class ResumePoint:
    item_dir: Path  # the earlier run's directory for this item
    snapshot: str
    state: dict[str, Any]
    branch: bool


def finished_result(target: ResumeTarget, task_id: str) -> dict[str, Any] | None:
    """The result of an item that finished in the earlier run (never for a branch)."""
    if target.snapshot is not None:
        return None
    path = RunDir(target.run_dir / task_id).result
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def resume_point(target: ResumeTarget, task_id: str) -> ResumePoint | None:
    """Where this item starts again, or None to start it afresh (no snapshot, or not the branched item)."""
    if target.item is not None and target.item != task_id:
        return None
    item_dir = target.run_dir / task_id
    store = SnapshotStore(RunDir(item_dir).snapshots)
    if not (RunDir(item_dir).snapshots).is_dir():
        return None
    if target.snapshot is not None:
        names = [info.name for info in store.list()]
        if target.snapshot not in names:
            raise ResumeError(f"{item_dir}: no snapshot {target.snapshot!r}; it has {', '.join(names) or 'none'}")
        name = target.snapshot
    else:
        latest = store.latest()
        if latest is None:
            return None
        name = latest.name
    return ResumePoint(item_dir, name, store.load_state(name), branch=target.snapshot is not None)


def spent_before(target: ResumeTarget, task_id: str) -> tuple[Path, EvalLedger] | None:
    """The earlier attempt's directory and ledger, for an item that starts again from the beginning."""
    if target.item is not None and target.item != task_id:
        return None
    item_dir = target.run_dir / task_id
    path = RunDir(item_dir).ledger
    return (item_dir, EvalLedger.load(path)) if path.is_file() else None


def merged_ledger(point: ResumePoint) -> EvalLedger:
    """The snapshot's ledger, plus (when continuing, not branching) what happened after it that
    must not be undone: later evaluations keep their budget spent, a viewed hint stays viewed."""
    ledger = EvalLedger.from_json(point.state["ledger"])
    ledger.end_reason = None
    latest_path = RunDir(point.item_dir).ledger
    if point.branch or not latest_path.is_file():
        return ledger
    latest = EvalLedger.load(latest_path)
    known = {e.index for e in ledger.evaluations}
    ledger.evaluations += [e for e in latest.evaluations if e.index not in known and e.kind == "agent"]
    if latest.hint_viewed and not ledger.hint_viewed:
        ledger.hint_viewed, ledger.hint_viewed_step = True, latest.hint_viewed_step
    ledger.protected_changes += [c for c in latest.protected_changes if c not in ledger.protected_changes]
    return ledger


def prepare_run_dir(point: ResumePoint, run_dir: Path) -> dict[str, Any]:
    """Fill a new item run directory from the resume point; returns what ResearchEnv(resumed=...) takes."""
    store = SnapshotStore(RunDir(point.item_dir).snapshots)
    layer = next(info.layer for info in store.list() if info.name == point.snapshot)
    # An overlay's upper layer goes back under the item's layers; workspace.py mounts it again.
    store.restore(point.snapshot, RunDir(run_dir).workspace_upper if layer else RunDir(run_dir).workspace)
    merged_ledger(point).save(RunDir(run_dir).ledger)
    with open(RunDir(point.item_dir).trajectory, "rb") as source, open(RunDir(run_dir).trajectory, "wb") as dest:
        dest.write(source.read(point.state["trajectory_bytes"]))
    if point.state.get("memory") is not None:  # the item's memory as it was at the snapshot
        write_text_atomic(RunDir(run_dir).memory, point.state["memory"])
    old_sessions = RunDir(point.item_dir).sessions
    if old_sessions.is_dir():  # the lost sessions' output, for the record
        shutil.copytree(
            old_sessions, RunDir(run_dir).sessions / "before-resume", ignore=shutil.ignore_patterns("*.ctl")
        )
    old_mailbox = RunDir(point.item_dir).guidance
    if old_mailbox.is_dir():  # messages sent to the earlier run; those delivered before the snapshot stay delivered
        shutil.copytree(old_mailbox, RunDir(run_dir).guidance, dirs_exist_ok=True)
    resumed = {
        "source": str(point.item_dir),
        "snapshot": point.snapshot,
        "step": point.state["ledger"]["steps"],
        "branch": point.branch,
        "agent": point.state.get("agent"),
        "agent_name": point.state.get("agent_name"),
        "sessions": point.state.get("sessions", []),
        "guidance_delivered": point.state.get("guidance_delivered", []),
    }
    write_json_atomic(RunDir(run_dir).resume_record, {k: v for k, v in resumed.items() if k != "agent"})
    return resumed
