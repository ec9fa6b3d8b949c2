"""Raw metric -> score in [0, 100]: baseline -> 0, reference -> reference score, linear, clipped
(scoring mode "linear"), the metric itself, clipped (mode "as_is": the grader already scores), or
the percentage by which it beats the baseline, clipped (mode "improvement": MLGym's tasks)."""

from __future__ import annotations

import math

from .task import Scoring

MINIMUM_GAIN_SCORE = 0.01  # mode "improvement": the least score of a metric that beats the baseline at all


def normalize(metric: float, scoring: Scoring) -> float:
    """Works for both directions: for 'minimize' the reference is below the baseline."""
    if not math.isfinite(metric):
        raise ValueError(f"metric must be finite, got {metric!r}")
    if scoring.mode == "as_is":
        return min(100.0, max(0.0, metric))
    if scoring.mode == "improvement":
        assert scoring.baseline is not None
        gain = metric - scoring.baseline if scoring.direction == "maximize" else scoring.baseline - metric
        if gain <= 0:
            return 0.0
        if scoring.baseline == 0:  # no scale to take a percentage of: any gain is a full improvement
            return 100.0
        return min(100.0, max(MINIMUM_GAIN_SCORE, 100.0 * gain / abs(scoring.baseline)))
    assert scoring.baseline is not None and scoring.reference is not None  # the linear mode requires them
    fraction = (metric - scoring.baseline) / (scoring.reference - scoring.baseline)
    return min(100.0, max(0.0, scoring.reference_score * fraction))


def with_hint_penalty(score: float, hint_viewed: bool, penalty: float) -> float:
    return score * (1.0 - penalty) if hint_viewed else score
