"""Grade an MLGym task with its own evaluate.py, MLGym's way (standard library and grader_kit only).

    python -m pytest_innovator.mlgym_evaluation SPEC WORKSPACE  < request

The harness runs it as a grader (grading.grader_argv) under the interpreter the user named for
MLGym (default: the harness's), in the grader's sandbox: the workspace read-only at WORKSPACE,
the checkout's evaluation files readable. SPEC is a JSON object: the task class (`entrypoint`),
the evaluation script's workspace path (`script`), every evaluation file's workspace path and the
checkout's pristine copy of it (`files`), the task's metric (`metric`) and the config's baseline
scores (`baseline`, shown beside the metrics as MLGym's validate shows them).

evaluate.py runs in a directory of its own (the current one, the grader's scratch): each top-level
entry of the workspace appears there as a link, except the evaluation files, which are the
checkout's (an agent's edits of them do not count). The command and the reading of its output are
MLGym's, per task class:

- CSVSubmissionTasks: `python evaluate.py --submission_file submission.csv`; all of stdout is JSON.
  Without submission.csv in the workspace the submission is invalid (the agent's zero).
- ModelSubmissionTasks: `python evaluate.py --config_fname <the first *.yaml of the workspace>`;
  the first line of stdout that starts with `{` is JSON. No *.yaml: invalid.
- LMSubmissionTasks: `torchrun --nproc_per_node=<GPUs> --standalone evaluate.py` (the GPUs of
  CUDA_VISIBLE_DEVICES); the first line that starts with `{`.
- PythonSubmissionTasks: `python evaluate.py`; all of stdout is JSON.

An evaluate.py that exits with a non-zero status, prints what these rules cannot read, or leaves
out the task's metric is a grader failure (the exit status is not 0 and the message names the
file), never the agent's zero. The metrics are the JSON object's numbers, exactly as printed.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from pytest_innovator.errors import InnovatorError
from pytest_innovator.grader_kit import invalid, read_request, report

WHOLE_OUTPUT = ("CSVSubmissionTasks", "PythonSubmissionTasks")  # the rest: the first line starting with {


class EvaluationFailed(InnovatorError):
    """evaluate.py crashed or printed nothing MLGym's rules can read: a grader failure."""


def submission_argument(entrypoint: str, workspace: Path) -> list[str] | str:
    """The submission arguments of evaluate.py, or why there is no submission (an invalid one)."""
    if entrypoint == "CSVSubmissionTasks":
        if not (workspace / "submission.csv").is_file():
            return "No submission file found: your code must write submission.csv in the workspace."
        return ["--submission_file", str(workspace / "submission.csv")]
    if entrypoint == "ModelSubmissionTasks":
        configs = sorted(p for p in workspace.rglob("*.yaml") if p.is_file())
        if not configs:
            return "No valid submission artefacts found: your code must write a *.yaml config in the workspace."
        return ["--config_fname", str(configs[0])]
    return []


def gpu_count(environment: dict[str, str]) -> int:
    devices = environment.get("CUDA_VISIBLE_DEVICES", "")
    return len([d for d in devices.split(",") if d.strip() and d.strip() != "-1"])


def evaluation_command(entrypoint: str, script: str, python: str, arguments: list[str], gpus: int) -> list[str]:
    """evaluate.py's command line as MLGym builds it for the task class."""
    if entrypoint == "LMSubmissionTasks":
        beside = Path(python).parent / "torchrun"  # the interpreter's own torchrun, else the one on PATH
        torchrun = str(beside) if beside.is_file() else "torchrun"
        return [torchrun, f"--nproc_per_node={gpus}", "--standalone", script]
    return [python, script, *arguments]


def parse_metrics(entrypoint: str, stdout: str, script: str) -> dict[str, Any]:
    """The JSON object of metrics evaluate.py printed, read by MLGym's rule for the task class."""
    text = stdout
    if entrypoint not in WHOLE_OUTPUT:
        lines = [line for line in stdout.split("\n") if line.strip().startswith("{")]
        if not lines:
            raise EvaluationFailed(f"{script} printed no line starting with '{{' (the metrics as JSON)")
        text = lines[0]
    try:
        metrics = json.loads(text)
    except json.JSONDecodeError as exc:
        where = "its output" if entrypoint in WHOLE_OUTPUT else "its first line starting with '{'"
        raise EvaluationFailed(f"{script}: {where} is not JSON ({exc}): {text.strip()[:300]!r}") from None
    if not isinstance(metrics, dict):
        raise EvaluationFailed(f"{script} printed {metrics!r}, not a JSON object of metrics")
    return metrics


def stage(workspace: Path, files: dict[str, str], run_dir: Path) -> None:
    """run_dir: the workspace's top-level entries as links, the evaluation files as pristine copies
    (the directories on their way made real, their other entries links)."""
    for entry in sorted(workspace.iterdir()):
        (run_dir / entry.name).symlink_to(entry)
    for relative, pristine in files.items():
        parts = Path(relative).parts
        here, source = run_dir, workspace
        for part in parts[:-1]:
            here, source = here / part, source / part
            if here.is_symlink():
                here.unlink()
            if not here.is_dir():
                here.mkdir()
                if source.is_dir():
                    for entry in sorted(source.iterdir()):
                        (here / entry.name).symlink_to(entry)
        target = here / parts[-1]
        if target.is_symlink() or target.exists():
            target.unlink()
        shutil.copyfile(pristine, target)


def numbers(metrics: dict[str, Any]) -> dict[str, float]:
    return {
        str(k): float(v)
        for k, v in metrics.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    }


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    spec, workspace = json.loads(argv[0]), Path(argv[1])
    request = read_request()
    entrypoint, script, metric = spec["entrypoint"], spec["script"], spec["metric"]
    submission = submission_argument(entrypoint, workspace)
    if isinstance(submission, str):
        invalid(request, submission)
        return 0
    run_dir = Path.cwd() / "evaluation"
    run_dir.mkdir()
    stage(workspace, spec["files"], run_dir)
    command = evaluation_command(entrypoint, script, sys.executable, submission, gpu_count(dict(os.environ)))
    print("$ " + " ".join(command), file=sys.stderr, flush=True)
    done = subprocess.run(command, cwd=run_dir, stdout=subprocess.PIPE, text=True, errors="replace")
    print(done.stdout, file=sys.stderr, flush=True)
    if done.returncode != 0:
        print(f"{script} exited with status {done.returncode}", file=sys.stderr)
        return 1
    try:
        metrics = parse_metrics(entrypoint, done.stdout, script)
    except EvaluationFailed as exc:
        print(exc, file=sys.stderr)
        return 1
    found = numbers(metrics)
    if metric not in found:
        print(f"{script} printed no number for the task's metric {metric!r}: {metrics!r}", file=sys.stderr)
        return 1
    baseline = f"\nBaseline Score: {json.dumps(spec['baseline'])}" if spec.get("baseline") else ""
    message = f"{script}: {json.dumps(metrics)}{baseline}"  # as MLGym's validate shows both
    report(request, valid=True, metric=found[metric], metrics=found, message=message)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
