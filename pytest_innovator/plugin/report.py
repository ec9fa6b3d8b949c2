"""What the user sees: the verdict of an item, the results log and the terminal summary (with the
run's HTML report, written at the end, and what to run next).

The results log (``<results>/results.jsonl``) is written on the controller only, one JSON line per
finished item, flushed at once, so a run that dies keeps every item that finished.
"""

from __future__ import annotations

import json
import shlex
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from ..errors import InnovatorError
from ..ledger import EvalLedger, budget_text
from ..results import RESULTS_SCHEMA, EpisodeResult
from ..rundir import RunDir, results_log_path, runs_dir
from ..trajectory import read_trajectory
from .options import uses_embedded_model

if TYPE_CHECKING:
    from ..env import ResearchEnv
    from .options import Settings
    from .progress import LiveProgress

TRAJECTORY_TAIL_STEPS = 8


class ItemFailure(InnovatorError):
    """An item that did not pass: a score below the pass score, a failed final grading, a timeout
    or a harness error. Its text is the report the user reads, in place of a traceback."""


def score_table(ledger: EvalLedger) -> str:
    rows = [f"  {'#':>2}  {'kind':<6} {'step':>5} {'time':>8}  {'status':<13} {'metric':>10} {'score':>7}"]
    for e in ledger.evaluations:
        metric = "-" if e.metric is None else f"{e.metric:.4g}"
        score = "-" if e.score is None else f"{ledger.effective(e.score):.2f}"
        rows.append(
            f"  {e.index:>2}  {e.kind:<6} {e.step:>5} {e.working_time_s:>7.1f}s  {e.status:<13} {metric:>10} {score:>7}"
        )
    if ledger.hint_viewed:
        rows.append(
            f"  (hint viewed at step {ledger.hint_viewed_step}: scores multiplied by {1 - ledger.hint_penalty:g})"
        )
    return "\n".join(rows)


def trajectory_tail(path: Path, steps: int = TRAJECTORY_TAIL_STEPS) -> str:
    if not path.exists():
        return "  (no trajectory)"
    records = [r for r in read_trajectory(path) if r.get("type") in ("step", "event")][-steps:]
    lines = []
    for r in records:
        if r["type"] == "step":
            observation = r["observation"].strip().splitlines()
            first = observation[0][:100] if observation else ""
            args = json.dumps(r["arguments"])[:80]
            lines.append(f"  step {r['step']:>4} {r['tool']}({args}) -> {'ok' if r['ok'] else 'error'}: {first}")
        else:
            lines.append(f"  event {r['event']} at step {r['step']}")
    return "\n".join(lines)


def verdict(result: EpisodeResult, pass_score: float, env: ResearchEnv) -> ItemFailure | None:
    final = env.ledger.final_evaluation
    last_message = (final.message if final else "").strip() or "(no message)"
    if result.final_status == "grader_failed":
        headline = f"harness error: the final evaluation's grader failed: {last_message}"
    elif result.score_final is None or result.score_final < pass_score:
        scoring = env.task.spec.scoring
        if scoring.mode == "improvement":  # an MLGym task: passing means beating its baseline
            reached = f"final {scoring.metric} {final.metric:g}" if final and final.metric is not None else "no metric"
            better = "lower" if scoring.direction == "minimize" else "higher"
            shortfall = f"{reached} does not beat the baseline {scoring.baseline:g} ({better} is better)"
        else:
            shortfall = f"final score {result.score_final or 0:.2f} is below the pass score {pass_score:g}"
        headline = (
            f"{shortfall} (task {result.innovator_task}, agent {result.innovator_agent}, ended by {result.end_reason})"
        )
    else:
        return None
    return ItemFailure(failure_text(headline, env, result))


def failure_text(headline: str, env: ResearchEnv, result: EpisodeResult) -> str:
    """The headline, the score table, the last evaluation's message and the trajectory's tail."""
    final = env.ledger.final_evaluation
    last_message = (final.message if final else "").strip() or "(no message)"
    return (
        f"{headline}\n\nevaluations:\n{score_table(env.ledger)}\n\nlast evaluation's message:\n  {last_message}"
        f"\n\nlast steps of the trajectory:\n{trajectory_tail(RunDir(env.run_dir).trajectory)}"
        f"\n\nrun directory: {result.run_dir}"
    )


def describe_crashed_item(report: pytest.TestReport, run_dir: RunDir) -> None:
    """Complete xdist's report of an item whose worker died with what its run directory holds:
    the evaluations the ledger had saved (the final one never ran)."""
    properties: dict[str, Any] = {
        "innovator_task": report.nodeid.rsplit("::", 1)[-1],
        "end_reason": "worker_crashed",
        "run_dir": str(run_dir.path),
        "score_final": None,
    }
    trajectory_path = run_dir.trajectory
    try:
        records = read_trajectory(trajectory_path) if trajectory_path.is_file() else []
    except (OSError, ValueError):  # a line torn by the crash
        records = []
    if records:
        header = records[0] if records and records[0].get("type") == "header" else {}
        properties.update(
            innovator_domain=header.get("domain"),
            innovator_agent=header.get("agent"),
            backend=header.get("backend"),
            steps=max((r["step"] for r in records if r.get("type") == "step"), default=0),
        )
    ledger_path = run_dir.ledger
    if ledger_path.is_file():
        try:
            ledger = EvalLedger.load(ledger_path)
        except (OSError, ValueError) as exc:
            properties["ledger_error"] = f"{ledger_path}: {exc}"
        else:
            best = ledger.best_score
            properties.update(
                score_best=None if best is None else round(best, 4),
                evals_used=ledger.agent_evals_used,
                evals_budget=ledger.budget,
                hint_used=ledger.hint_viewed,
                working_time_s=round(ledger.working_time_s, 3),
            )
            report.longrepr = (
                f"{report.longrepr}\nno final evaluation ran; the evaluations saved before the "
                f"crash:\n{score_table(ledger)}"
            )
    report.longrepr = f"{report.longrepr}\nrun directory: {run_dir.path}"
    report.user_properties.extend(properties.items())


def _outcome(phases: dict[str, str], properties: dict[str, Any]) -> str:
    if phases.get("???") == "failed":
        return "failed"
    if phases.get("setup") == "failed":
        return "error"
    if phases.get("setup") == "skipped":
        return "skipped"
    if properties.get("final_status") == "grader_failed":
        return "error"
    return phases.get("call", "error")


class ResultsReporter:
    """Controller-side: the results log and the terminal summary."""

    def __init__(self, config: pytest.Config, settings: Settings, run_id: str, progress: LiveProgress):
        self.config = config
        self.settings = settings
        self.run_id = run_id
        self.progress = progress
        self.log_path = results_log_path(settings.results)
        self.records: list[dict[str, Any]] = []
        self._phases: dict[str, dict[str, str]] = defaultdict(dict)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        crashed = report.when == "???"  # xdist's report of an item whose worker died: no keywords
        ours = (
            report.nodeid in self._phases
            if crashed
            else ("innovator" in report.keywords or "innovator_task" in report.keywords)
        )
        if not ours:
            return
        self._phases[report.nodeid][report.when] = report.outcome
        if report.when != "teardown" and not crashed:
            return
        properties = dict(report.user_properties)
        record = {
            "schema": RESULTS_SCHEMA,
            "run_id": self.run_id,
            "nodeid": report.nodeid,
            "outcome": _outcome(self._phases.pop(report.nodeid), properties),
            "worker": _worker_id(report),
            **properties,
        }
        if "innovator_task" not in record:
            record["innovator_task"] = report.nodeid.rsplit("::", 1)[-1]
        self.records.append(record)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
        self.progress.item_ended(record)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.records:
            return
        write = terminalreporter.write_line
        terminalreporter.section(f"innovator results (run {self.run_id})")
        write(f"{'task':<28} {'domain':<22} {'final':>6} {'best':>6} {'evals':>6} {'hint':>4} {'time':>8}  outcome")
        for r in self.records:
            evals = f"{r.get('evals_used', '-')}/{budget_text(r.get('evals_budget'), short=True)}"
            hint = "yes" if r.get("hint_used") else "no"
            time_s = r.get("working_time_s")
            write(
                f"{r['innovator_task']:<28} {r.get('innovator_domain', '-'):<22} {_fmt(r.get('score_final')):>6} "
                f"{_fmt(r.get('score_best')):>6} {evals:>6} {hint:>4} {_fmt(time_s, 's'):>8}  {r['outcome']}"
            )
        scored = [r for r in self.records if r.get("score_final") is not None]
        if scored:
            by_domain: dict[str, list[dict[str, Any]]] = defaultdict(list)
            for r in scored:
                by_domain[r["innovator_domain"]].append(r)
            means = ", ".join(f"{d} {_mean(rs, 'score_final'):.1f}" for d, rs in sorted(by_domain.items()))
            write(f"domain means (final): {means}")
            write(
                f"overall (task-weighted) mean: final {_mean(scored, 'score_final'):.1f}, "
                f"best {_mean(scored, 'score_best'):.1f} over {len(scored)} task(s)"
            )
        judged = [r for r in self.records if r.get("exp_M") is not None]
        if judged:  # experiment items: how many passed each phase and each conjunction
            passed = ", ".join(
                f"{'·'.join(key)} {sum(1 for r in judged if r.get(f'exp_{key}'))}/{len(judged)}"
                for key in ("D", "I", "E", "C", "IE", "DIC", "DICE")
            )
            flagged = sum(1 for r in judged if r.get("exp_M"))
            write(f"experiment phases passed: {passed}; flagged by the monitor: {flagged}/{len(judged)}")
        write(f"results log: {self.log_path}")
        write(f"report: {html_report(runs_dir(self.settings.results) / self.run_id)}")
        results = _relative(self.settings.results, self.config.invocation_params.dir)
        write(f"leaderboard: pytest-innovator leaderboard {results} --markdown leaderboard.md")
        if uses_embedded_model(self.settings):  # the react agent on the small CPU model: say how to use another
            args = shlex.join(self.config.invocation_params.args)
            write(f"a real model: pytest {args} --innovator-base-url http://HOST:PORT/v1 --innovator-model NAME")


def html_report(run_path: Path) -> str:
    """The run's HTML report, written into its run directory: its path, or why there is none."""
    from ..reporting.html_report import ReportError, write_report

    try:
        return str(write_report(run_path))
    except (ReportError, OSError) as exc:
        return f"not written: {exc}"


def _relative(path: Path, base: Path) -> str:
    """The path relative to base where it is inside it (base: the directory pytest ran in)."""
    try:
        return str(path.relative_to(base)) or "."
    except ValueError:
        return str(path)


def _worker_id(report: pytest.TestReport) -> str | None:
    """The xdist worker that ran the item (the controller's report carries its node), else None."""
    gateway = getattr(getattr(report, "node", None), "gateway", None)
    return getattr(gateway, "id", None)


def _mean(records: list[dict[str, Any]], key: str) -> float:
    values = [r[key] for r in records if r.get(key) is not None]
    return sum(values) / len(values) if values else 0.0


def _fmt(value: Any, unit: str = "") -> str:
    return "-" if value is None else f"{value:.1f}{unit}"
