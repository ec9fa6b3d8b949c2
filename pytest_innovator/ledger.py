"""The evaluation ledger: budget, every evaluation, hint use, time and steps of an episode.

It is persisted as JSON in the run directory whenever an evaluation, the hint or the end of the
episode changes it (written to a temporary file, synced and renamed, so a crash leaves the
previous version), which is what lets a resume continue with the budget that was left rather than
a fresh one. Steps and working time between those saves are in the trajectory, one line a step.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from .rundir import write_json_atomic
from .scores import with_hint_penalty

LEDGER_SCHEMA = 1

EvalKind = Literal["agent", "final"]
EvalStatus = Literal["scored", "invalid", "grader_failed"]


@dataclass
class Evaluation:
    index: int
    kind: EvalKind
    status: EvalStatus
    metric: float | None
    score: float | None  # normalised, before the hint penalty; None for a grader failure
    message: str
    step: int
    working_time_s: float
    at: float  # wall clock, seconds since the epoch
    grader_seconds: float
    metrics: dict[str, float] = field(default_factory=dict)
    log: str = ""  # the grader's output, relative to the run directory


# A budget this large is no limit: MLGym's validate (mlgym.py). Shown as "unlimited" / "∞".
UNLIMITED_EVALS = 1_000_000


def budget_text(budget: int | None, *, short: bool = False) -> str:
    if budget is not None and budget >= UNLIMITED_EVALS:
        return "∞" if short else "unlimited"
    return "?" if budget is None else str(budget)


@dataclass
class EvalLedger:
    task_id: str
    budget: int
    hint_penalty: float
    evaluations: list[Evaluation] = field(default_factory=list)
    hint_viewed: bool = False
    hint_viewed_step: int | None = None
    steps: int = 0
    working_time_s: float = 0.0
    end_reason: str | None = None
    protected_start: dict[str, Any] = field(default_factory=dict)
    protected_changes: list[dict[str, Any]] = field(default_factory=list)
    monitor: list[dict[str, Any]] = field(default_factory=list)  # flags raised by the monitor (disk, ...)

    @property
    def agent_evals_used(self) -> int:
        """Evaluations the agent asked for that counted: a grader failure costs the agent nothing."""
        return sum(1 for e in self.evaluations if e.kind == "agent" and e.status != "grader_failed")

    @property
    def evals_remaining(self) -> int:
        return max(0, self.budget - self.agent_evals_used)

    def effective(self, score: float | None) -> float | None:
        if score is None:
            return None
        return with_hint_penalty(score, self.hint_viewed, self.hint_penalty)

    @property
    def final_evaluation(self) -> Evaluation | None:
        finals = [e for e in self.evaluations if e.kind == "final"]
        return finals[-1] if finals else None

    @property
    def final_score(self) -> float | None:
        final = self.final_evaluation
        return None if final is None else self.effective(final.score)

    @property
    def best_evaluation(self) -> Evaluation | None:
        scored = [e for e in self.evaluations if e.score is not None]
        return max(scored, key=lambda e: e.score or 0.0) if scored else None

    @property
    def best_score(self) -> float | None:
        best = self.best_evaluation
        return None if best is None else self.effective(best.score)

    def record(self, evaluation: Evaluation) -> None:
        self.evaluations.append(evaluation)

    def next_index(self) -> int:
        return len(self.evaluations) + 1

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["schema"] = LEDGER_SCHEMA
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EvalLedger:
        data = dict(data)
        schema = data.pop("schema", None)
        if schema != LEDGER_SCHEMA:
            raise ValueError(f"ledger schema {schema!r} is not supported (expected {LEDGER_SCHEMA})")
        data["evaluations"] = [Evaluation(**e) for e in data.get("evaluations", [])]
        return cls(**data)

    def save(self, path: Path) -> None:
        write_json_atomic(path, self.to_json())

    @classmethod
    def load(cls, path: Path) -> EvalLedger:
        return cls.from_json(json.loads(path.read_text(encoding="utf-8")))
