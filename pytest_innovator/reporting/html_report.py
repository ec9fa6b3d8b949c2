"""One self-contained HTML file for a run: its leaderboard, each item's evaluations over time and a
trajectory viewer.

It opens without a network (inline CSS, JS and SVG plots). Session and grader logs are linked by
relative path, never inlined. Trajectories are embedded as compact JSON, a small index of every
line plus the full lines in chunks, and the page renders 200 rows at a time and parses a chunk only
when one of its lines is opened, so a 5,000-step trajectory stays quick to open.
"""

from __future__ import annotations

import json
import os
import time
from html import escape
from pathlib import Path
from typing import Any

from ..errors import InnovatorError, pip_hint
from ..ledger import EvalLedger
from ..rundir import RunDir, results_log_path, write_text_atomic
from . import leaderboard as lb
from .html_assets import CSS, JS
from .result_inputs import deduplicate, read_result_files, read_results_log

CHUNK_LINES = 200
SUMMARY_CHARS = 160


class ReportError(InnovatorError):
    """A directory the report cannot be made from; the message says what to give instead."""


def item_dirs(run_dir: Path) -> list[Path]:
    if (RunDir(run_dir).ledger).is_file():
        return [run_dir]
    found = sorted(d for d in run_dir.iterdir() if (RunDir(d).ledger).is_file()) if run_dir.is_dir() else []
    if not found:
        raise ReportError(
            f"{run_dir}: no item directories (with a ledger.json) in it; give a run directory, <results>/runs/<run id>"
        )
    return found


def read_lines(path: Path) -> list[dict[str, Any]]:
    """A trajectory's lines; a partial last line (the item is still running) is left out."""
    records = []
    if path.exists():
        with open(path, encoding="utf-8") as f:
            for line in f:
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:
                    break
    return records


def run_records(run_dir: Path, dirs: list[Path]) -> list[dict[str, Any]]:
    """The finished items of the run, with outcomes from the results log when it is beside the run."""
    run_id = dirs[0].parent.name
    records = [r for d in dirs if (RunDir(d).result).is_file() for r in read_result_files(d)]
    log = results_log_path(dirs[0].parent.parent.parent)
    if log.is_file():
        records += [r for r in read_results_log(log) if r["run_id"] == run_id]
    return deduplicate(records)


def _json_block(element_id: str, data: Any) -> str:
    # "<" escaped as \u003c keeps "</script>" in an observation from ending the block.
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False, default=str).replace("<", "\\u003c")
    return f'<script type="application/json" id="{element_id}">{text}</script>'


def _summary(line: dict[str, Any]) -> str:
    if line.get("type") == "step":
        arguments = line.get("arguments")
        if line.get("tool") == "think" and isinstance(arguments, dict):
            text = str(arguments.get("thought", ""))
        else:
            text = json.dumps(arguments, ensure_ascii=False, default=str) if arguments else ""
        first = (line.get("observation") or "").strip().split("\n", 1)[0]
        text = f"{text} → {first}" if first else text
    else:
        shown = {
            k: v for k, v in line.items() if k not in ("type", "event", "step", "t", "wall", "traceback", "message")
        }
        text = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in shown.items())
        if line.get("message"):
            text += " · " + str(line["message"]).split("\n", 1)[0]
    return text[:SUMMARY_CHARS]


def _link(target: Path, out_dir: Path) -> str:
    return Path(os.path.relpath(target, out_dir)).as_posix()


def _size(path: Path) -> str:
    size = float(path.stat().st_size)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return ""


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "–"
    return f"{value:.{digits}f}" if isinstance(value, float) else escape(str(value))


def _table(header: list[str], rows: list[list[str]], table_id: str = "") -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(cell if cell.startswith("<td") else f"<td>{cell}</td>" for cell in row) + "</tr>"
        for row in rows
    )
    ident = f' id="{table_id}"' if table_id else ""
    return f"<table{ident}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _num(value: Any, digits: int = 1) -> str:
    return f'<td class="num">{_fmt(value, digits)}</td>'


def leaderboard_html(board: dict[str, Any]) -> str:
    rows = [
        [
            escape(r["agent"]),
            str(r["overall"]["tasks"]),
            _num(r["overall"]["final"]["mean"]),
            _num(r["overall"]["best"]["mean"]),
            _num(r["overall"]["best_attempt_at_k"]),
            _num(r["overall"]["best_submission_at_k"]),
            _num(r["aup"].get("best_attempt"), 3),
            _num(r["totals"]["evals_used"], 0),
            f"{r['totals']['hints_used']}/{r['items']}",
            _num(r["totals"]["working_time_s"]),
            _num(r["totals"]["tokens"], 0),
            _num(r["totals"]["cost_usd"], 2),
        ]
        for r in board["agents"]
    ]
    header = [
        "agent",
        "tasks",
        "final",
        "best",
        "Best Attempt@k",
        "Best Submission@k",
        "AUP",
        "evals",
        "hints",
        "time (s)",
        "tokens",
        "cost ($)",
    ]
    domains = sorted({d for r in board["agents"] for d in r["domains"]})
    domain_rows = [
        [
            escape(r["agent"]),
            *(
                f"{_fmt(r['domains'][d]['final']['mean'])} / {_fmt(r['domains'][d]['best']['mean'])}"
                if d in r["domains"]
                else "–"
                for d in domains
            ),
        ]
        for r in board["agents"]
    ]
    html = (
        _table(header, rows, "agents-table")
        + "<h3>Per domain (final / best)</h3>"
        + _table(["agent", *domains], domain_rows, "domains-table")
    )
    experiments = [r for r in board["agents"] if r.get("experiments")]
    if experiments:  # EXP-Bench's phases and conjunctions (docs/experiments.md)
        phases, conjunctions = lb.EXPERIMENT_PHASES, lb.EXPERIMENT_CONJUNCTIONS
        experiment_rows = [
            [
                escape(r["agent"]),
                str(r["experiments"]["items"]),
                *(str(r["experiments"]["phase_failures"][key]) for key in phases),
                str(r["experiments"]["flagged"]),
                *(_num(100 * r["experiments"]["conjunctions"][key]) + " %" for key in conjunctions),
            ]
            for r in experiments
        ]
        header = ["agent", "items", *(f"{key} failed" for key in phases), "flagged", *map("·".join, conjunctions)]
        html += "<h3>Experiments (phases failed; conjunctions passed)</h3>" + _table(
            header, experiment_rows, "experiments-table"
        )
    return html


def build_report(run_dir: Path, out: Path) -> str:
    dirs = item_dirs(run_dir)
    run_id = dirs[0].parent.name
    out_dir = out.parent
    records = {r["innovator_task"]: r for r in run_records(run_dir, dirs)}
    board = lb.build(list(records.values()), history=[])
    try:
        from .plots import ledger_series, score_over_time_figure, svg_text
    except ImportError as exc:
        raise ReportError(f"the HTML report needs matplotlib ({exc}): {pip_hint('report')}") from None

    item_rows, sections, blocks, items_meta = [], [], [], []
    for number, item_dir in enumerate(dirs):
        ledger = EvalLedger.load(RunDir(item_dir).ledger)
        lines = read_lines(RunDir(item_dir).trajectory)
        header = lines[0] if lines and lines[0].get("type") == "header" else {}
        task = ledger.task_id
        record = records.get(task, {})
        outcome = record.get("outcome") or ("finished" if (RunDir(item_dir).result).exists() else "running")
        agent = record.get("agent") or header.get("agent", "")
        # The ledger is saved on evaluations and at the end; a running item's trajectory is newer.
        steps = max([ledger.steps, *(line.get("step", 0) for line in lines[1:])])
        working_time_s = max([ledger.working_time_s, *(line.get("t", 0.0) for line in lines[1:])])
        item_rows.append(
            [
                f'<a href="#item-{number}">{escape(task)}</a>',
                escape(str(record.get("innovator_domain", "–"))),
                escape(agent),
                f'<td class="outcome-{escape(outcome)}">{escape(outcome)}</td>',
                _num(record.get("score_final", ledger.final_score)),
                _num(record.get("score_best", ledger.best_score)),
                f"{ledger.agent_evals_used}/{ledger.budget}",
                "yes" if ledger.hint_viewed else "no",
                _num(steps, 0),
                _num(round(working_time_s, 1)),
                escape(ledger.end_reason or "–"),
            ]
        )
        evaluations = [
            [
                str(e.index),
                e.kind,
                f'<a href="#" data-jump-item="{number}" data-jump-step="{e.step}">{e.step}</a>',
                _num(e.working_time_s),
                e.status,
                _num(e.metric, 4),
                _num(ledger.effective(e.score), 2),
                f'<td class="small">{escape(e.message[:300])}</td>',
                f'<a href="{escape(_link(item_dir / e.log, out_dir))}">log</a>' if e.log else "–",
            ]
            for e in ledger.evaluations
        ]
        plot = (
            svg_text(score_over_time_figure(task, [ledger_series(agent, RunDir(item_dir).ledger)]), ids=str(number))
            if ledger.evaluations
            else ""
        )
        logs = sorted((RunDir(item_dir).sessions).glob("*.log")) if (RunDir(item_dir).sessions).is_dir() else []
        extra_logs = [p for p in (RunDir(item_dir).llm_messages, RunDir(item_dir).trajectory) if p.exists()]
        log_links = " · ".join(
            f'<a href="{escape(_link(p, out_dir))}">{escape(p.name)}</a> <span class="muted">({_size(p)})</span>'
            for p in [*logs, *extra_logs]
        )
        hint = (
            f" · hint viewed at step {ledger.hint_viewed_step} (scores × {1 - ledger.hint_penalty:g})"
            if ledger.hint_viewed
            else ""
        )
        sections.append(
            f'<h3 id="item-{number}">{escape(task)} <span class="muted small">{escape(agent)}</span></h3>'
            f'<p class="small">logs: {log_links or "none"}{hint}</p>'
            f'<div class="plot">{plot}</div>'
            + _table(
                ["#", "kind", "step", "time (s)", "status", "metric", "score", "message", "grader"],
                evaluations,
                f"evaluations-{number}",
            )
        )
        body = [line for line in lines if line.get("type") in ("step", "event")]
        index: list[list[Any]] = [
            [
                row,
                line.get("step"),
                "step" if line["type"] == "step" else line.get("event", "event"),
                line.get("tool", "") if line["type"] == "step" else f"event:{line.get('event', '')}",
                line.get("t"),
                line.get("ok") if line["type"] == "step" else None,
                _summary(line),
            ]
            for row, line in enumerate(body)
        ]
        labels: dict[str, int] = {}
        for entry in index:
            labels[entry[3]] = labels.get(entry[3], 0) + 1
        blocks.append(_json_block(f"idx-{number}", index))
        blocks += [
            _json_block(f"chunk-{number}-{c}", body[start : start + CHUNK_LINES])
            for c, start in enumerate(range(0, len(body), CHUNK_LINES))
        ]
        items_meta.append(
            {
                "task": task,
                "agent": agent,
                "rows": len(body),
                "labels": sorted(labels.items()),
                "sessions": {p.stem: _link(p, out_dir) for p in logs},
            }
        )

    options = "".join(
        f'<option value="{i}">{escape(m["task"])} ({m["rows"]} rows)</option>' for i, m in enumerate(items_meta)
    )
    item_header = [
        "task",
        "domain",
        "agent",
        "outcome",
        "final",
        "best",
        "evals",
        "hint",
        "steps",
        "time (s)",
        "ended by",
    ]
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>pytest-innovator run {escape(run_id)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><style>{CSS}</style></head>
<body>
<h1>Run {escape(run_id)}</h1>
<p class="muted">{len(dirs)} items · report written {time.strftime("%Y-%m-%d %H:%M:%S")} from {escape(str(run_dir))}</p>
<nav><a href="#leaderboard">Leaderboard</a><a href="#evaluations">Evaluations</a><a
href="#trajectory">Trajectory</a></nav>
<section id="leaderboard"><h2>Leaderboard</h2>{leaderboard_html(board)}
<h3>Items</h3>{_table(item_header, item_rows, "items-table")}</section>
<section id="evaluations"><h2>Evaluations over time</h2>{"".join(sections)}</section>
<section id="trajectory"><h2>Trajectory</h2>
<div id="controls"><label>item <select id="item">{options}</select></label>
<label>show <select id="filter"></select></label>
<form id="jump-form" style="display:inline"><label>jump to step
<input id="jump" type="number" min="0" style="width:80px"></label>
<button type="submit" id="jump-go">go</button></form>
<span id="pager"><button id="prev">◀</button> <span id="page-info"></span> <button id="next">▶</button></span></div>
<div id="steps"></div></section>
{_json_block("items-meta", {"chunk": CHUNK_LINES, "items": items_meta})}
{"".join(blocks)}
<script>{JS}</script>
</body></html>
"""


def write_report(run_dir: Path, out: Path | None = None) -> Path:
    out = out or run_dir / "report.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out, build_report(run_dir, out))
    return out
