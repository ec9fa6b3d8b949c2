"""Raw metric -> score in [0, 100]: baseline -> 0, reference -> reference score, linear, clipped
(scoring mode "linear"), or the metric itself, clipped (mode "as_is": the grader already scores)."""

from __future__ import annotations

import math

from .task import Scoring


def normalize(metric: float, scoring: Scoring) -> float:
    """Works for both directions: for 'minimize' the reference is below the baseline."""
    if not math.isfinite(metric):
        raise ValueError(f"metric must be finite, got {metric!r}")
    if scoring.mode == "as_is":
        return min(100.0, max(0.0, metric))
    assert scoring.baseline is not None and scoring.reference is not None  # the linear mode requires them
    fraction = (metric - scoring.baseline) / (scoring.reference - scoring.baseline)
    return min(100.0, max(0.0, scoring.reference_score * fraction))


def with_hint_penalty(score: float, hint_viewed: bool, penalty: float) -> float:
    return score * (1.0 - penalty) if hint_viewed else score
