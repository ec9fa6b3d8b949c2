"""Grade with a dataset's own evaluation, InnovatorBench's way (standard library and grader_kit only).

    python -m pytest_innovator.dataset_evaluation EVALUATIONS/task_N WORKSPACE  < request

The harness runs it as a grader (grading.grader_argv), under the interpreter the user named for
the dataset, in the grader's sandbox: the workspace read-only at WORKSPACE (/workspace), the
evaluations folder visible, nothing the agent can reach. It imports, as ResearchGym does,
`<evaluations>.task_N.task.evaluation.TaskBenchmark` and `...task.config.TaskConfig` with the
evaluations folder's parent on sys.path, builds
`TaskBenchmark(TaskConfig(eval_workspace=EVALUATIONS, workspace=WORKSPACE))` and calls
`validate()`. The score is `min(sum of the results' scores, 100)`, already on the 0-100 scale
(the task's scoring mode is as_is); each result's `to_dict()` goes to the grader log, its numbers
into the sub-metrics (`<i>.<key path>`). An evaluation that raises is a grader failure: the
traceback is in the grader log and the exit status is not 0.
"""

from __future__ import annotations

import importlib
import json
import math
import sys
from pathlib import Path
from typing import Any

from pytest_innovator.grader_kit import read_request, report

SCORE_CAP = 100.0


def numbers(value: Any, prefix: str) -> dict[str, float]:
    """The finite numbers inside a result's dict, by their dotted key path."""
    if isinstance(value, bool):
        return {}
    if isinstance(value, (int, float)):
        return {prefix: float(value)} if math.isfinite(value) else {}
    if isinstance(value, dict):
        found: dict[str, float] = {}
        for key, item in value.items():
            found.update(numbers(item, f"{prefix}.{key}"))
        return found
    return {}


def result_score(result: dict[str, Any], index: int) -> float:
    try:
        score = result["eval_results"]["score"]
    except (KeyError, TypeError):
        raise ValueError(f"result {index} has no eval_results.score: {result!r}") from None
    if isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score):
        raise ValueError(f"result {index}: eval_results.score is not a finite number: {score!r}")
    return float(score)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    evaluation, workspace = Path(argv[0]), argv[1]
    request = read_request()
    evaluations = evaluation.parent
    sys.path.insert(0, str(evaluations.parent))
    package = f"{evaluations.name}.{evaluation.name}.task"
    benchmark_class = importlib.import_module(f"{package}.evaluation").TaskBenchmark
    config_class = importlib.import_module(f"{package}.config").TaskConfig
    results = benchmark_class(config_class(eval_workspace=str(evaluations), workspace=workspace)).validate()
    dicts = [result.to_dict() for result in results]
    print(json.dumps(dicts, indent=1, default=str), file=sys.stderr)
    scores = [result_score(result, i) for i, result in enumerate(dicts)]
    total = sum(scores)
    metrics: dict[str, float] = {}
    for i, result in enumerate(dicts):
        metrics.update(numbers(result, str(i)))
    capped = f", capped at {SCORE_CAP:g}" if total > SCORE_CAP else ""
    parts = " + ".join(f"{s:g}" for s in scores) or "no results"
    report(
        request,
        valid=True,
        metric=min(total, SCORE_CAP),
        metrics=metrics,
        message=f"{evaluation.name}: {parts} = {total:g}{capped}",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
