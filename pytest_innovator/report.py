"""What the user sees: the verdict of an item, the results log and the terminal summary.

The results log (``<results>/results.jsonl``) is written on the controller only, one JSON line per
finished item, flushed at once, so a run that dies keeps every item that finished.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from .ledger import EvalLedger
from .results import RESULTS_SCHEMA, EpisodeResult
from .trajectory import read_trajectory

if TYPE_CHECKING:
    from .env import ResearchEnv
    from .options import Settings

TRAJECTORY_TAIL_STEPS = 8


class ScoreFailure(Exception):
    """An item whose final score is below the pass score, or whose final grading failed."""


def score_table(ledger: EvalLedger) -> str:
    rows = [f"  {'#':>2}  {'kind':<6} {'step':>5} {'time':>8}  {'status':<13} {'metric':>10} {'score':>7}"]
    for e in ledger.evaluations:
        metric = "-" if e.metric is None else f"{e.metric:.4g}"
        score = "-" if e.score is None else f"{ledger.effective(e.score):.2f}"
        rows.append(f"  {e.index:>2}  {e.kind:<6} {e.step:>5} {e.working_time_s:>7.1f}s  {e.status:<13} {metric:>10} {score:>7}")
    if ledger.hint_viewed:
        rows.append(f"  (hint viewed at step {ledger.hint_viewed_step}: scores multiplied by {1 - ledger.hint_penalty:g})")
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


def verdict(result: EpisodeResult, pass_score: float, env: ResearchEnv) -> ScoreFailure | None:
    final = env.ledger.final_evaluation
    last_message = (final.message if final else "").strip() or "(no message)"
    if result.final_status == "grader_failed":
        headline = f"harness error: the final evaluation's grader failed: {last_message}"
    elif result.score_final is None or result.score_final < pass_score:
        headline = (f"final score {result.score_final or 0:.2f} is below the pass score {pass_score:g} "
                    f"(task {result.innovator_task}, agent {result.innovator_agent}, ended by {result.end_reason})")
    else:
        return None
    return ScoreFailure(
        f"{headline}\n\nevaluations:\n{score_table(env.ledger)}\n\nlast evaluation's message:\n  {last_message}"
        f"\n\nlast steps of the trajectory:\n{trajectory_tail(env.run_dir / 'trajectory.jsonl')}"
        f"\n\nrun directory: {result.run_dir}"
    )


def _outcome(phases: dict[str, str], properties: dict[str, Any]) -> str:
    if phases.get("setup") == "failed":
        return "error"
    if phases.get("setup") == "skipped":
        return "skipped"
    if properties.get("final_status") == "grader_failed":
        return "error"
    return phases.get("call", "error")


class ResultsReporter:
    """Controller-side: the results log and the terminal summary."""

    def __init__(self, config: pytest.Config, settings: Settings, run_id: str):
        self.config = config
        self.settings = settings
        self.run_id = run_id
        self.log_path = settings.results / "results.jsonl"
        self.records: list[dict[str, Any]] = []
        self._phases: dict[str, dict[str, str]] = defaultdict(dict)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if "innovator" not in report.keywords and "innovator_task" not in report.keywords:
            return
        self._phases[report.nodeid][report.when] = report.outcome
        if report.when != "teardown":
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

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.records:
            return
        write = terminalreporter.write_line
        terminalreporter.section(f"innovator results (run {self.run_id})")
        write(f"{'task':<28} {'domain':<22} {'final':>6} {'best':>6} {'evals':>6} {'hint':>4} {'time':>8}  outcome")
        for r in self.records:
            evals = f"{r.get('evals_used', '-')}/{r.get('evals_budget', '-')}"
            hint = "yes" if r.get("hint_used") else "no"
            time_s = r.get("working_time_s")
            write(f"{r['innovator_task']:<28} {r.get('innovator_domain', '-'):<22} {_fmt(r.get('score_final')):>6} "
                  f"{_fmt(r.get('score_best')):>6} {evals:>6} {hint:>4} {_fmt(time_s, 's'):>8}  {r['outcome']}")
        scored = [r for r in self.records if r.get("score_final") is not None]
        if scored:
            by_domain: dict[str, list[dict[str, Any]]] = defaultdict(list)
            for r in scored:
                by_domain[r["innovator_domain"]].append(r)
            means = ", ".join(f"{d} {_mean(rs, 'score_final'):.1f}" for d, rs in sorted(by_domain.items()))
            write(f"domain means (final): {means}")
            write(f"overall (task-weighted) mean: final {_mean(scored, 'score_final'):.1f}, "
                  f"best {_mean(scored, 'score_best'):.1f} over {len(scored)} task(s)")
        write(f"results log: {self.log_path}")


def _worker_id(report: pytest.TestReport) -> str | None:
    """The xdist worker that ran the item (the controller's report carries its node), else None."""
    gateway = getattr(getattr(report, "node", None), "gateway", None)
    return getattr(gateway, "id", None)


def _mean(records: list[dict[str, Any]], key: str) -> float:
    values = [r[key] for r in records if r.get(key) is not None]
    return sum(values) / len(values) if values else 0.0


def _fmt(value: Any, unit: str = "") -> str:
    return "-" if value is None else f"{value:.1f}{unit}"
