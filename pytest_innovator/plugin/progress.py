"""Live progress in the terminal, written by the controller, with or without xdist.

xdist has no channel from a worker's item to the controller while the item runs, but every item
keeps its run directory current (reporting/status.py reads it). A thread of the controller reads
the run's directories every POLL_S seconds and writes a line when an item starts and one per
evaluation; the results reporter hands over each finished item's record (`item_ended`), which
first reads the item's directory once more, so an item's lines come in order: start, evaluations,
end. Every `--innovator-progress` seconds it writes one status line per running item.

Verbosity: by default every line; ``-q`` the evaluations and the ends; ``-qq`` none.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Generator
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import pytest

from ..ledger import EvalLedger, Evaluation, budget_text
from ..reporting.status import (
    ItemFiles,
    clock,
    evals_text,
    item_progress,
    read_item,
    score_text,
    step_text,
    working_time_text,
)
from ..rundir import runs_dir
from .options import Settings

POLL_S = 0.5
PREFIX = "innovator:"
MESSAGE_CHARS = 120

# The least pytest verbosity (-q is -1, -qq is -2) at which each kind of line is written.
STARTS = STATUS = 0
EVALUATIONS = ENDS = -1


def start_line(item: ItemFiles) -> str:
    header = item.header
    agent, _, model = str(header.get("agent") or "?").partition("[")  # agent_label: name@version[model]
    limits = header.get("limits", {})
    return (
        f"{PREFIX} {header.get('task') or item.path.name} started (agent {agent}, model {model.rstrip(']') or '–'}, "
        f"limits {clock(limits.get('time_limit_s'))} working time, {limits.get('step_limit', '?')} steps, "
        f"{budget_text(limits.get('eval_budget'))} evaluations)"
    )


def evaluation_line(task: str, ledger: EvalLedger, index: int) -> str:
    evaluation: Evaluation = ledger.evaluations[index]
    if evaluation.kind == "final":
        which = "final evaluation"
    else:
        counted = [e for e in ledger.evaluations[: index + 1] if e.kind == "agent" and e.status != "grader_failed"]
        which = f"evaluation {len(counted)}/{budget_text(ledger.budget, short=True)}"
    status = {"scored": "", "invalid": " (invalid)", "grader_failed": " (grader failed, not counted)"}
    metric = "–" if evaluation.metric is None else f"{evaluation.metric:.4g}"
    message = (evaluation.message.strip().splitlines() or [""])[0][:MESSAGE_CHARS]
    return (
        f"{PREFIX} {task} {which}: score {score_text(ledger.effective(evaluation.score))}, metric {metric}"
        f"{status.get(evaluation.status, '')}" + (f" - {message}" if message else "")
    )


def end_line(record: dict[str, Any]) -> str:
    final = score_text(record.get("score_final"))
    return (
        f"{PREFIX} {record['innovator_task']} ended ({record['outcome']}): final {final}"
        f", best {score_text(record.get('score_best'))}, ended by {record.get('end_reason') or '–'}, "
        f"{clock(record.get('working_time_s'))} working time"
    )


def status_line(progress: dict[str, Any]) -> str:
    idle = "–" if progress["idle_s"] is None else f"{progress['idle_s']:.0f}s"
    return (
        f"{PREFIX} {progress['task']} running: step {step_text(progress)}, working time "
        f"{working_time_text(progress)}, evaluations {evals_text(progress)}, best {score_text(progress['best_score'])}"
        f", idle {idle}"
    )


class LiveProgress:
    """Controller-side: reads the run's item directories and writes whole lines to the terminal."""

    def __init__(self, config: pytest.Config, settings: Settings, run_id: str):
        self.config = config
        self.run_path = runs_dir(settings.results) / run_id
        self.status_every_s = settings.progress
        self.verbosity = config.get_verbosity()
        # Held while this writes and while pytest writes a test's progress, so neither cuts into
        # the other's line; reentrant because the results reporter ends items inside a log report.
        self.lock = threading.RLock()
        self.evaluations_written: dict[Path, int] = {}  # items whose start line is written
        self.ended: set[Path] = set()
        self.since = time.time()  # a resumed item's earlier evaluations are not news
        self._stop = threading.Event()

    # --- hooks ---------------------------------------------------------------------------------

    @pytest.hookimpl(wrapper=True)
    def pytest_runtestloop(self, session: pytest.Session) -> Generator[None, object, object]:
        if session.config.option.collectonly or self.verbosity < ENDS:
            return (yield)
        watcher = threading.Thread(target=self._watch, name="innovator-progress", daemon=True)
        watcher.start()
        try:
            return (yield)
        finally:
            self._stop.set()
            watcher.join()

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_logstart(self) -> Generator[None, object, object]:
        with self.lock:
            return (yield)

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_logreport(self) -> Generator[None, object, object]:
        with self.lock:
            return (yield)

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_logfinish(self) -> Generator[None, object, object]:
        with self.lock:
            return (yield)

    # --- what is written -----------------------------------------------------------------------

    def item_ended(self, record: dict[str, Any]) -> None:
        """The results reporter's record of a finished item: its last evaluations, then its end."""
        run_dir = record.get("run_dir")
        # By name in this run's directory: the path the watcher reads, however the worker spelled it.
        item_dir = self.run_path / (Path(run_dir).name if run_dir else record["innovator_task"])
        if item_dir.is_dir():
            self._poll_item(item_dir)
        with self.lock:
            self.ended.add(item_dir)
            if record["outcome"] != "skipped" or item_dir in self.evaluations_written:
                self._write(end_line(record), ENDS)

    def _watch(self) -> None:
        next_status = time.monotonic() + (self.status_every_s or 0)
        while not self._stop.wait(POLL_S):
            self._poll()
            if self.status_every_s and time.monotonic() >= next_status:
                self._write_status()
                next_status = time.monotonic() + self.status_every_s
        self._poll()

    def _poll(self) -> None:
        if not self.run_path.is_dir():
            return
        for item_dir in sorted(self.run_path.iterdir()):
            if item_dir.is_dir() and item_dir not in self.ended:
                self._poll_item(item_dir)

    def _poll_item(self, item_dir: Path) -> None:
        item = read_item(item_dir)
        if not item.header:  # the item's episode has not begun
            return
        task = item.header.get("task") or item_dir.name
        evaluations = item.ledger.evaluations if item.ledger else []
        with self.lock:
            if item_dir in self.ended:
                return
            if item_dir not in self.evaluations_written:
                self.evaluations_written[item_dir] = 0
                self._write(start_line(item), STARTS)
            for index in range(self.evaluations_written[item_dir], len(evaluations)):
                if item.ledger is not None and evaluations[index].at >= self.since:
                    self._write(evaluation_line(task, item.ledger, index), EVALUATIONS)
            self.evaluations_written[item_dir] = max(self.evaluations_written[item_dir], len(evaluations))

    def _write_status(self) -> None:
        with self.lock:
            running = [d for d in self.evaluations_written if d not in self.ended]
        now = time.time()
        for item_dir in running:
            progress = item_progress(read_item(item_dir), now)
            with self.lock:
                if progress["state"] == "running" and item_dir not in self.ended:
                    self._write(status_line(progress), STATUS)

    def _write(self, line: str, least_verbosity: int) -> None:
        terminal = self.config.pluginmanager.get_plugin("terminalreporter")
        if terminal is None or self.verbosity < least_verbosity:
            return
        capture = self.config.pluginmanager.get_plugin("capturemanager")
        # Without xdist the item runs in this process, its output captured: pytest's live logging
        # suspends the capture the same way to write to the terminal.
        with self.lock, capture.global_and_fixture_disabled() if capture else nullcontext():
            terminal.ensure_newline()
            if terminal._tw.width_of_current_line:  # xdist's progress letters leave no mark in ensure_newline
                terminal._tw.line()
            terminal.write_line(line)
            terminal.flush()
