"""Plots (matplotlib, PNG and SVG): score over working time per task, performance profiles,
per-domain bars. Needs the `report` extra (`pip install 'pytest-innovator[report]'`).

Figures are built with matplotlib's object API (no pyplot), so importing this module never
changes a user's matplotlib backend or global state.
"""

from __future__ import annotations

import io
import json
import math
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
from matplotlib.figure import Figure

from ..ledger import EvalLedger
from ..rundir import RunDir
from . import leaderboard as lb
from .profiles import performance_profiles
from .result_inputs import InputError, deduplicate, read_input

SVG_SETTINGS: Any = {"svg.fonttype": "none", "svg.hashsalt": "pytest-innovator"}  # text stays text; stable ids


@dataclass
class EvalSeries:
    """One item's evaluations: (working time in seconds, score after the hint penalty, kind)."""

    label: str
    points: list[tuple[float, float, str]]


def ledger_series(label: str, ledger_path: Path) -> EvalSeries:
    ledger = EvalLedger.load(ledger_path)
    points: list[tuple[float, float, str]] = [
        (e.working_time_s, ledger.effective(e.score) or 0.0, e.kind) for e in ledger.evaluations if e.score is not None
    ]
    return EvalSeries(label, points)


def item_dir(item: dict[str, Any], roots: Iterable[Path]) -> Path | None:
    """The item's run directory: where it was recorded, or below one of the results directories read
    (runs copied from another machine keep their layout, not their absolute paths)."""
    candidates = [Path(item["run_dir"])] if item.get("run_dir") else []
    name = Path(item["run_dir"]).name if item.get("run_dir") else item["innovator_task"]
    candidates += [root / "runs" / item["run_id"] / name for root in roots]
    return next((c for c in candidates if (RunDir(c).ledger).is_file()), None)


# --- figures ---------------------------------------------------------------------------------


def score_over_time_figure(task: str, series: list[EvalSeries]) -> Figure:
    figure = Figure(figsize=(7, 4), layout="constrained")
    axes = figure.add_subplot()
    longest = max((t for s in series for t, _, _ in s.points), default=0.0)
    scale, unit = (3600.0, "h") if longest > 7200 else (60.0, "min") if longest > 120 else (1.0, "s")
    colors: dict[str, Any] = {}
    for s in series:
        if not s.points:
            continue
        color = colors.setdefault(s.label, f"C{len(colors) % 10}")
        times = [t / scale for t, _, _ in s.points]
        scores = [score for _, score, _ in s.points]
        axes.plot(times, scores, "-", color=color, alpha=0.4, linewidth=1)
        agent_points = [(t / scale, score) for t, score, kind in s.points if kind == "agent"]
        final_points = [(t / scale, score) for t, score, kind in s.points if kind == "final"]
        if agent_points:
            axes.plot(*zip(*agent_points), "o", color=color, label=f"{s.label} (evaluate)")
        if final_points:
            axes.plot(*zip(*final_points), "*", color=color, markersize=12, label=f"{s.label} (final)")
    axes.set_xlabel(f"working time ({unit})")
    axes.set_ylabel("score (0–100)")
    axes.set_ylim(-2, 102)
    axes.set_title(f"{task}: every evaluation over working time")
    axes.grid(alpha=0.3)
    handles, labels = axes.get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    if unique:
        axes.legend(unique.values(), unique.keys(), fontsize="small", loc="best")
    return figure


def profile_figure(board: dict[str, Any], kind: str) -> Figure:
    """ρ(τ) for every agent, recomputed from the leaderboard's per-task Best@k scores."""
    key = lb.PROFILE_KINDS[kind]
    values = {
        row["agent"]: {task: row["tasks"].get(task, {}).get(key) for task in board["tasks"]} for row in board["agents"]
    }
    profiles = performance_profiles(values, "maximize", baseline=0.0)
    figure = Figure(figsize=(7, 4), layout="constrained")
    axes = figure.add_subplot()
    for agent in values:
        axes.step(profiles.tau, profiles.rho[agent], where="post", label=f"{agent} (AUP {profiles.aup[agent]:.3f})")
    axes.set_xlabel("τ (log10 of the ratio to the best agent)")
    axes.set_ylabel("ρ(τ): fraction of tasks")
    axes.set_ylim(-0.02, 1.02)
    axes.set_title(f"performance profiles ({kind.replace('_', ' ')}@k)")
    axes.grid(alpha=0.3)
    if values:
        axes.legend(fontsize="small", loc="lower right")
    return figure


def domain_figure(board: dict[str, Any]) -> Figure:
    """Per-domain means (final and best) for every agent, with standard errors where known."""
    domains = sorted({d for row in board["agents"] for d in row["domains"]}) + ["overall"]
    agents = board["agents"]
    figure = Figure(figsize=(max(6.0, 1.6 * len(domains) + 2), 6), layout="constrained")
    width = 0.8 / max(1, len(agents))
    for panel, kind in enumerate(("final", "best")):
        axes = figure.add_subplot(2, 1, panel + 1)
        for index, row in enumerate(agents):
            stats = [
                row["overall"][kind] if d == "overall" else row["domains"].get(d, {}).get(kind, {}) for d in domains
            ]
            means = [s.get("mean") or 0.0 for s in stats]
            errors = [s["se"] if s.get("se") is not None else math.nan for s in stats]  # no bar when unknown
            positions = [i - 0.4 + width * (index + 0.5) for i in range(len(domains))]
            axes.bar(positions, means, width, yerr=errors, capsize=3, label=row["agent"], color=f"C{index % 10}")
        axes.set_xticks(range(len(domains)), [d.replace("_", " ") for d in domains], fontsize="small")
        axes.set_ylabel(f"{kind} score")
        axes.set_ylim(0, 100)
        axes.grid(axis="y", alpha=0.3)
        if panel == 0:
            axes.set_title("per-domain means (task-weighted), ± standard error")
            if agents:
                axes.legend(fontsize="small")
    return figure


# --- output ----------------------------------------------------------------------------------


def save_figure(figure: Figure, stem: Path) -> list[Path]:
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".png"), stem.with_suffix(".svg")]
    figure.savefig(paths[0], dpi=120)
    with matplotlib.rc_context(SVG_SETTINGS):
        figure.savefig(paths[1], metadata={"Date": None})
    return paths


def svg_text(figure: Figure, ids: str = "") -> str:
    """The figure as an <svg> element to inline in HTML (no XML prolog); `ids` keeps the element ids
    of several figures in one page apart."""
    buffer = io.StringIO()
    with matplotlib.rc_context({**SVG_SETTINGS, "svg.hashsalt": f"pytest-innovator-{ids}"}):
        figure.savefig(buffer, format="svg", metadata={"Date": None})
    text = buffer.getvalue()
    return text[text.index("<svg") :]


def _file_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


def read_plot_inputs(paths: list[Path]) -> list[dict[str, Any]]:
    """Items of results logs, results directories, JUnit XML and leaderboard JSON files."""
    items: list[dict[str, Any]] = []
    for path in paths:
        if path.suffix == ".json" and path.is_file():
            board = json.loads(path.read_text(encoding="utf-8"))
            if board.get("schema") != lb.LEADERBOARD_SCHEMA:
                raise InputError(f"{path}: a .json input must be a leaderboard written by pytest-innovator")
            items += [{**i, "sources": [str(path)]} for i in board["items"]]
        else:
            items += read_input(path)
    return deduplicate(items)


def write_plots(inputs: list[Path], out_dir: Path) -> list[Path]:
    items = read_plot_inputs(inputs)
    board = lb.build(items, history=[])
    roots = [p for p in inputs if p.is_dir()]
    written: list[Path] = []
    by_task: dict[str, list[EvalSeries]] = defaultdict(list)
    for item in sorted(items, key=lb.item_key):
        found = item_dir(item, roots)
        if found is not None:
            by_task[item["innovator_task"]].append(ledger_series(item["agent"], RunDir(found).ledger))
    for task, series in sorted(by_task.items()):
        written += save_figure(score_over_time_figure(task, series), out_dir / f"score_over_time-{_file_name(task)}")
    for kind in lb.PROFILE_KINDS:
        written += save_figure(profile_figure(board, kind), out_dir / f"profile-{kind}")
    written += save_figure(domain_figure(board), out_dir / "domains")
    return written
