from __future__ import annotations

import math

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from pytest_innovator.scores import normalize, with_hint_penalty
from pytest_innovator.task import Scoring

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)


@st.composite
def scorings(draw: st.DrawFn) -> Scoring:
    direction = draw(st.sampled_from(["maximize", "minimize"]))
    baseline = draw(finite)
    gap = draw(st.floats(min_value=1e-3, max_value=1e5))
    reference = baseline + gap if direction == "maximize" else baseline - gap
    reference_score = draw(st.floats(min_value=1, max_value=100))
    return Scoring(direction=direction, baseline=baseline, reference=reference, reference_score=reference_score)


@given(scorings())
def test_anchors(scoring: Scoring) -> None:
    assert normalize(scoring.baseline, scoring) == 0
    assert math.isclose(normalize(scoring.reference, scoring), scoring.reference_score, rel_tol=1e-6)


@given(scorings(), finite)
def test_clipped_to_0_100(scoring: Scoring, metric: float) -> None:
    assert 0 <= normalize(metric, scoring) <= 100


@given(scorings(), finite, finite)
def test_monotone_in_the_right_direction(scoring: Scoring, a: float, b: float) -> None:
    assume(a < b)
    if scoring.direction == "maximize":
        assert normalize(a, scoring) <= normalize(b, scoring)
    else:
        assert normalize(a, scoring) >= normalize(b, scoring)


def test_linear_between_and_beyond() -> None:
    scoring = Scoring(baseline=0.2, reference=0.6, direction="maximize")
    assert normalize(0.4, scoring) == pytest.approx(40)
    assert normalize(0.7, scoring) == pytest.approx(100)  # 100 beyond: clipped
    assert normalize(0.65, scoring) == pytest.approx(90)
    minimize = Scoring(baseline=2.0, reference=1.5, direction="minimize")
    assert normalize(1.75, minimize) == pytest.approx(40)
    assert normalize(3.0, minimize) == 0


def test_as_is_uses_the_metric_clipped() -> None:
    scoring = Scoring(mode="as_is")
    assert [normalize(m, scoring) for m in (-3, 0, 42.5, 100, 130)] == [0, 0, 42.5, 100, 100]


@pytest.mark.parametrize("metric", [math.nan, math.inf, -math.inf])
def test_non_finite_metric_is_refused(metric: float) -> None:
    with pytest.raises(ValueError):
        normalize(metric, Scoring(baseline=0, reference=1))


@given(st.floats(min_value=0, max_value=100), st.floats(min_value=0, max_value=1))
def test_hint_penalty(score: float, penalty: float) -> None:
    assert with_hint_penalty(score, False, penalty) == score
    assert with_hint_penalty(score, True, penalty) == pytest.approx(score * (1 - penalty))
