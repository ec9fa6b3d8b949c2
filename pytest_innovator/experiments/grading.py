"""Grading an experiment task phase by phase, as EXP-Bench does.

- D (design), I (implementation) and C (conclusion): the judge, with the rubric's part for the
  phase and what the agent delivered (the design file; the diff of the agent's changes against
  the starter files; the conclusion with the results files' final text).
- E (execution): the reproduction script rerun with bash, under the task's time limit, in a fresh
  directory made from the starter files plus the files the agent changed or added (results files
  left out, so the rerun must write them); a script that fails or times out fails E, otherwise its
  output and the results it wrote go to the judge.
- M (monitor): monitor.py's flags over the trajectory and the results files' final text. A flag
  zeroes the run (the judge is not asked) and is reported with its evidence.

A deliverable that is missing or empty fails its phase without asking the judge. The metric is
100 when D, I, E and C pass and nothing is flagged, else 0; each phase is a metric of its own
(1 or 0) for the item's properties. A judge that fails for good is a grader failure.
"""

from __future__ import annotations

import difflib
import shutil
import subprocess
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..grader_kit import run_untrusted
from ..grading import GradeOutcome
from ..task import Task
from ..trajectory import read_trajectory
from .judge import Judge, JudgeFailure, Verdict
from .monitor import monitor
from .rubric import load_rubric

PHASE_KEYS = {"design": "D", "implementation": "I", "execution": "E", "conclusion": "C"}
OUTPUT_CHARS = 6000  # of the rerun's output, what the judge reads (its end)


def grade_experiment(
    task: Task, workspace: Any, trajectory_path: Path, judge: Judge | None, log_path: Path
) -> GradeOutcome:
    started = time.monotonic()
    experiment = task.spec.experiment
    assert experiment is not None
    rubric = load_rubric(task)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"innovator-experiment-{task.id}-") as tmp:
        agent_copy = Path(tmp) / "agent"
        workspace.copy_out(".", agent_copy)
        results = {path: _text(agent_copy / path) for path in experiment.results}
        records = read_trajectory(trajectory_path) if trajectory_path.exists() else []
        flags = monitor(records, forbidden=rubric.forbidden, results={p: t for p, t in results.items() if t})
        lines: list[str] = []
        usage_before = replace(judge.usage) if judge is not None else None
        phases = dict.fromkeys(PHASE_KEYS.values(), 0.0)
        if flags:
            lines += [f"monitor flag {f.kind} (step {f.step}): {f.evidence}" for f in flags]
            lines.append("the monitor zeroes the run: the phases were not judged")
        else:
            if judge is None:
                return GradeOutcome(
                    "grader_failed", None, "experiment tasks need a judge: set --innovator-judge-model", 0.0
                )
            changes = _changes(task.workspace_dir, agent_copy, set(experiment.results))
            execution = _rerun(task, agent_copy, Path(tmp) / "fresh", changes)
            deliverables = {
                "design": _text(agent_copy / experiment.design),
                "implementation": "\n".join(_diff(task.workspace_dir, agent_copy, path) for path in changes),
                "execution": execution[1] if execution[0] else "",
                "conclusion": _conclusion(_text(agent_copy / experiment.conclusion), results),
            }
            rubrics = {
                "design": rubric.design_text(),
                "implementation": rubric.implementation_text(),
                "execution": rubric.execution_text(),
                "conclusion": rubric.conclusion_text(),
            }
            missing = {
                "design": f"{experiment.design} is missing or empty",
                "implementation": "no file of the starter files was changed or added",
                "execution": execution[1],
                "conclusion": f"{experiment.conclusion} is missing or empty",
            }
            absent = {
                "design": not deliverables["design"].strip(),
                "implementation": not changes,
                "execution": not execution[0],
                "conclusion": not _text(agent_copy / experiment.conclusion).strip(),
            }
            for phase, key in PHASE_KEYS.items():
                if absent[phase]:
                    lines.append(f"{key} fail: {missing[phase]}")
                    continue
                try:
                    verdict: Verdict = judge.judge(phase, rubrics[phase], deliverables[phase])
                except JudgeFailure as exc:
                    log_path.write_text("\n".join(lines + [str(exc)]) + "\n", encoding="utf-8")
                    return GradeOutcome("grader_failed", None, str(exc), time.monotonic() - started)
                phases[key] = 1.0 if verdict.passed else 0.0
                lines.append(f"{key} {'pass' if verdict.passed else 'fail'}: {verdict.reasons}")
    passed = not flags and all(phases.values())
    metrics = {**phases, "M": 1.0 if flags else 0.0}
    if judge is not None and usage_before is not None:  # the judge serves every item of the process
        usage = judge.usage
        metrics["judge_calls"] = float(usage.calls - usage_before.calls)
        metrics["judge_tokens_in"] = float(usage.tokens_in - usage_before.tokens_in)
        metrics["judge_tokens_out"] = float(usage.tokens_out - usage_before.tokens_out)
        metrics["judge_cost_usd"] = round(usage.cost_usd - usage_before.cost_usd, 6)
    log_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return GradeOutcome("scored", 100.0 if passed else 0.0, "\n".join(lines), time.monotonic() - started, metrics)


def _text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""
    except OSError:
        return ""


def _changes(starter: Path, agent_copy: Path, results: set[str]) -> list[str]:
    """The workspace files the agent changed or added (relative paths), results files left out."""
    changed = []
    for path in sorted(p for p in agent_copy.rglob("*") if p.is_file()):
        relative = path.relative_to(agent_copy).as_posix()
        if relative in results or "__pycache__" in path.parts:
            continue
        original = starter / relative
        if not original.is_file() or original.read_bytes() != path.read_bytes():
            changed.append(relative)
    return changed


def _diff(starter: Path, agent_copy: Path, relative: str) -> str:
    before = _text(starter / relative).splitlines(keepends=True)
    after = _text(agent_copy / relative).splitlines(keepends=True)
    return "".join(difflib.unified_diff(before, after, f"starter/{relative}", f"agent/{relative}"))


def _rerun(task: Task, agent_copy: Path, fresh: Path, changes: list[str]) -> tuple[bool, str]:
    """(whether the script ran to the end, what the judge reads or why it failed)."""
    experiment = task.spec.experiment
    assert experiment is not None
    if not (agent_copy / experiment.reproduction).is_file():
        return False, f"{experiment.reproduction} is missing"
    shutil.copytree(task.workspace_dir, fresh, symlinks=False)
    for relative in changes:
        (fresh / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(agent_copy / relative, fresh / relative)
    for relative in experiment.results:
        (fresh / relative).unlink(missing_ok=True)
    try:
        proc = run_untrusted(["bash", experiment.reproduction], cwd=fresh, timeout=experiment.execution_timeout)
    except subprocess.TimeoutExpired:
        return False, f"{experiment.reproduction} did not finish within {experiment.execution_timeout:g} s"
    output = (proc.stdout + proc.stderr)[-OUTPUT_CHARS:]
    if proc.returncode != 0:
        return False, f"{experiment.reproduction} exited with status {proc.returncode}: {output[-800:]}"
    written = {path: _text(fresh / path) for path in experiment.results}
    shown = "\n".join(f"--- {path} ---\n{text or '(not written)'}" for path, text in written.items())
    return True, f"exit status 0\n--- output (end) ---\n{output}\n{shown}"


def _conclusion(conclusion: str, results: dict[str, str]) -> str:
    shown = "\n".join(f"--- {path} ---\n{text or '(not written)'}" for path, text in results.items())
    return f"{conclusion}\n\n## The results files\n{shown}"
