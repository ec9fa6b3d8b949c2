"""MLGym's performance profiles and the area under them (AUP).

For each task, each method's ratio to the best method on that task (r >= 1, 1 = the best);
infeasible or missing results get the worst feasible ratio over all tasks and methods × 1.05.
ρ_m(τ) is the fraction of tasks whose log10 r <= τ, on a grid of 500 points from 0 to τ_max (log10
of the largest ratio, rounded up to the next 0.1); AUP is the left step sum of ρ_m over the grid.

Two ways to form a ratio (docs/leaderboard.md explains why):
- with a baseline, on the improvement over it: gain = value - baseline (maximize) or
  baseline - value (minimize), feasible when gain > 0, r = best gain / gain. Our 0-100 scores are
  exactly this with baseline 0. Independent of the metric's offset and sign, so negative metrics work.
- without one, on the raw values as MLGym does: r = best / value (maximize) or value / best
  (minimize). Needs values >= 0; a value whose ratio would be infinite (0 when maximizing, or
  anything but the best when the best is 0 while minimizing) is infeasible.
A task where no method is feasible (a best score of 0) gives every method the infeasible ratio.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from ..errors import InnovatorError

Direction = Literal["maximize", "minimize"]

INFEASIBLE_FACTOR = 1.05
TAU_POINTS = 500
TAU_STEP = 0.1  # τ_max is log10 of the largest ratio rounded up to a multiple of this


class ProfileError(InnovatorError, ValueError):
    """Values that cannot form ratios; the message says what to give instead."""


@dataclass(frozen=True)
class Profiles:
    ratios: dict[str, dict[str, float]]  # method -> task -> r (infeasible ones filled in)
    infeasible: dict[str, list[str]]  # method -> tasks where it was infeasible or missing
    infeasible_ratio: float
    tau_max: float
    tau: list[float]
    rho: dict[str, list[float]]  # method -> ρ(τ) on the grid
    aup: dict[str, float]


def task_ratios(
    values: Mapping[str, float | None], direction: Direction = "maximize", baseline: float | None = None, task: str = ""
) -> dict[str, float | None]:
    """Each method's ratio to the best on one task; None where it is infeasible or missing."""
    if direction not in ("maximize", "minimize"):
        raise ProfileError(f"task {task!r}: direction must be 'maximize' or 'minimize', got {direction!r}")
    present = {m: v for m, v in values.items() if v is not None and math.isfinite(v)}
    if baseline is not None:
        sign = 1.0 if direction == "maximize" else -1.0
        gains = {m: sign * (v - baseline) for m, v in present.items()}
        feasible = {m: g for m, g in gains.items() if g > 0}
        best = max(feasible.values(), default=None)
        return {m: (best / feasible[m] if m in feasible and best is not None else None) for m in values}
    negative = sorted(m for m, v in present.items() if v < 0)
    if negative:
        raise ProfileError(
            f"task {task!r}: {', '.join(negative)} scored below 0; ratios of raw values need metrics >= 0: "
            "give the task's baseline to take ratios of the improvement over it"
        )
    if direction == "maximize":
        feasible = {m: v for m, v in present.items() if v > 0}
        best = max(feasible.values(), default=None)
        return {m: (best / feasible[m] if m in feasible and best is not None else None) for m in values}
    best = min(present.values(), default=None)
    if best == 0:
        return {m: (1.0 if present.get(m) == 0 else None) for m in values}
    return {m: (present[m] / best if m in present and best is not None else None) for m in values}


def tau_max_for(largest_ratio: float) -> float:
    exponent = math.log10(largest_ratio) / TAU_STEP
    return max(1, math.ceil(round(exponent, 9))) * TAU_STEP


def performance_profiles(
    values: Mapping[str, Mapping[str, float | None]],
    direction: Direction | Mapping[str, Direction] = "maximize",
    baseline: float | None | Mapping[str, float | None] = None,
    points: int = TAU_POINTS,
) -> Profiles:
    """values[method][task] -> profiles over the union of tasks; a task a method lacks is missing.

    `direction` and `baseline` are one value for every task or a mapping task -> value.
    """
    methods = sorted(values)
    tasks = sorted({task for per_task in values.values() for task in per_task})
    by_task: dict[str, dict[str, float | None]] = {}
    for task in tasks:
        task_direction = direction if isinstance(direction, str) else direction.get(task, "maximize")
        task_baseline = baseline.get(task) if isinstance(baseline, Mapping) else baseline
        by_task[task] = task_ratios({m: values[m].get(task) for m in methods}, task_direction, task_baseline, task)
    feasible_ratios = [r for per_method in by_task.values() for r in per_method.values() if r is not None]
    infeasible_ratio = max(feasible_ratios, default=1.0) * INFEASIBLE_FACTOR
    ratios = {m: {t: _or(by_task[t][m], infeasible_ratio) for t in tasks} for m in methods}
    infeasible = {m: [t for t in tasks if by_task[t][m] is None] for m in methods}
    tau_max = tau_max_for(infeasible_ratio)
    tau = [tau_max * i / (points - 1) for i in range(points)]
    rho = {m: profile_curve(list(ratios[m].values()), tau) for m in methods}
    return Profiles(
        ratios=ratios,
        infeasible=infeasible,
        infeasible_ratio=infeasible_ratio,
        tau_max=tau_max,
        tau=tau,
        rho=rho,
        aup={m: area_under(rho[m], tau) for m in methods},
    )


def profile_curve(ratios: list[float], tau: list[float]) -> list[float]:
    """ρ(τ): the fraction of the tasks whose log10 ratio is at most τ."""
    if not ratios:
        return [0.0 for _ in tau]
    logs = [math.log10(r) for r in ratios]
    return [sum(1 for x in logs if x <= t + 1e-12) / len(logs) for t in tau]


def area_under(rho: list[float], tau: list[float]) -> float:
    """Left step sum: each ρ(τ_i) holds until τ_{i+1}."""
    return sum(rho[i] * (tau[i + 1] - tau[i]) for i in range(len(tau) - 1))


def _or(ratio: float | None, infeasible_ratio: float) -> float:
    return infeasible_ratio if ratio is None else ratio
