"""Performance profiles and AUP against examples computed by hand.

With τ_max = 0.4 the grid step is Δ = 0.4 / 499 and τ_i = iΔ; a ratio r is counted from the first
i with iΔ >= log10 r, i.e. i >= log10(r) · 499 / 0.4. The AUP is Δ · Σ_{i=0}^{498} ρ(τ_i).
"""

from __future__ import annotations

import math

import pytest

from pytest_innovator.reporting.profiles import (
    ProfileError,
    area_under,
    performance_profiles,
    profile_curve,
    task_ratios,
)


def test_two_agents_two_tasks_by_hand() -> None:
    # t1: A 80, B 40 -> r_A = 1, r_B = 2. t2: A 0 (infeasible), B 20 -> r_B = 1.
    # Worst feasible ratio 2, so infeasible = 2.1; log10 2.1 = 0.3222 -> τ_max = 0.4.
    profiles = performance_profiles({"A": {"t1": 80, "t2": 0}, "B": {"t1": 40, "t2": 20}})
    assert profiles.ratios == {"A": {"t1": 1.0, "t2": 2.1}, "B": {"t1": 2.0, "t2": 1.0}}
    assert profiles.infeasible == {"A": ["t2"], "B": []}
    assert profiles.infeasible_ratio == pytest.approx(2.1)
    assert profiles.tau_max == pytest.approx(0.4)
    assert len(profiles.tau) == 500 and profiles.tau[0] == 0 and profiles.tau[-1] == pytest.approx(0.4)
    step = 0.4 / 499
    # A: ρ = 1/2 for i <= 401 (log10 2.1 · 499/0.4 = 401.97), 1 from i = 402: 402 · 0.5 + 97 · 1 = 298
    assert profiles.aup["A"] == pytest.approx(298 * step)
    # B: ρ = 1/2 for i <= 375 (log10 2 · 499/0.4 = 375.5), 1 from i = 376: 376 · 0.5 + 123 = 311
    assert profiles.aup["B"] == pytest.approx(311 * step)
    assert profiles.rho["A"][401] == 0.5 and profiles.rho["A"][402] == 1.0


def test_a_best_score_of_zero_makes_every_agent_infeasible_on_that_task() -> None:
    # MLGym divides by zero here. t2: nobody beat the baseline: both at the infeasible ratio 2.1.
    profiles = performance_profiles({"A": {"t1": 50, "t2": 0}, "B": {"t1": 25, "t2": 0}})
    assert profiles.ratios["A"] == {"t1": 1.0, "t2": pytest.approx(2.1)}
    assert profiles.ratios["B"] == {"t1": 2.0, "t2": pytest.approx(2.1)}
    step = 0.4 / 499
    assert profiles.aup["A"] == pytest.approx(298 * step)
    # B: 0 for i <= 375, 1/2 for 376..401 (26 points), 1 for 402..498 (97 points): 13 + 97 = 110
    assert profiles.aup["B"] == pytest.approx(110 * step)


def test_nothing_feasible_anywhere() -> None:
    # Infeasible ratio 1 × 1.05; τ_max = 0.1, Δ = 0.1/499; log10 1.05 · 4990 = 105.7: ρ = 1 from i = 106.
    profiles = performance_profiles({"A": {"t1": 0.0}, "B": {"t1": None}})
    assert profiles.infeasible_ratio == pytest.approx(1.05)
    assert profiles.tau_max == pytest.approx(0.1)
    assert profiles.aup["A"] == pytest.approx(393 * 0.1 / 499)
    assert profiles.aup["A"] == profiles.aup["B"]


def test_a_task_an_agent_never_ran_is_infeasible() -> None:
    profiles = performance_profiles({"A": {"t1": 10, "t2": 10}, "B": {"t1": 20}})
    assert profiles.ratios["A"] == {"t1": 2.0, "t2": 1.0}
    assert profiles.ratios["B"] == {"t1": 1.0, "t2": pytest.approx(2.1)}
    assert profiles.infeasible["B"] == ["t2"]


def test_the_best_on_every_task_scores_tau_max() -> None:
    profiles = performance_profiles({"A": {"t1": 90, "t2": 70}, "B": {"t1": 45, "t2": 7}})
    assert profiles.ratios["B"] == {"t1": 2.0, "t2": 10.0}
    assert profiles.tau_max == pytest.approx(1.1)  # log10(10 × 1.05) = 1.021, rounded up
    assert profiles.aup["A"] == pytest.approx(1.1)


def test_minimize_uses_score_over_best() -> None:
    assert task_ratios({"A": 2.0, "B": 4.0, "C": None}, "minimize") == {"A": 1.0, "B": 2.0, "C": None}


def test_minimize_with_a_best_of_zero() -> None:
    assert task_ratios({"A": 0.0, "B": 3.0}, "minimize") == {"A": 1.0, "B": None}


def test_maximize_raw_zero_is_infeasible() -> None:
    assert task_ratios({"A": 0.5, "B": 0.0}, "maximize") == {"A": 1.0, "B": None}


def test_negative_raw_metrics_need_a_baseline() -> None:
    with pytest.raises(ProfileError, match="task 'nll'.*B scored below 0.*baseline"):
        task_ratios({"A": -1.0, "B": -2.0}, "maximize", task="nll")


def test_negative_metrics_with_a_baseline_use_the_improvement() -> None:
    # maximize, baseline -5: gains A 4, B 2, C -1 (worse than the baseline: infeasible)
    assert task_ratios({"A": -1.0, "B": -3.0, "C": -6.0}, "maximize", baseline=-5.0) == {"A": 1.0, "B": 2.0, "C": None}
    # minimize, baseline 10: gains A 12, B 6; D equals the baseline: infeasible
    assert task_ratios({"A": -2.0, "B": 4.0, "D": 10.0}, "minimize", baseline=10.0) == {"A": 1.0, "B": 2.0, "D": None}


def test_directions_and_baselines_per_task() -> None:
    profiles = performance_profiles(
        {"A": {"acc": 0.9, "loss": 1.0}, "B": {"acc": 0.6, "loss": 0.5}},
        direction={"acc": "maximize", "loss": "minimize"},
        baseline={"acc": 0.3, "loss": None},
    )
    assert profiles.ratios["A"] == {"acc": 1.0, "loss": 2.0}
    assert profiles.ratios["B"] == {"acc": pytest.approx(2.0), "loss": 1.0}


def test_a_bad_direction_is_named() -> None:
    with pytest.raises(ProfileError, match="direction must be 'maximize' or 'minimize', got 'up'"):
        task_ratios({"A": 1.0}, "up")  # type: ignore[arg-type]


def test_curve_and_area_on_a_small_grid() -> None:
    tau = [0.0, 0.1, 0.2, 0.3]
    rho = profile_curve([1.0, 10**0.15, 10**0.25, 100.0], tau)
    assert rho == [0.25, 0.25, 0.5, 0.75]
    assert area_under(rho, tau) == pytest.approx(0.1 * (0.25 + 0.25 + 0.5))
    assert math.isclose(area_under([1.0, 1.0], [0.0, 0.5]), 0.5)
