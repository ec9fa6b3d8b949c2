"""Task items: a task.toml collected as a `TaskItem` whose body runs the agent, and how every way
the body can end (a score, a timeout, a harness error, a carried-over result) becomes its report."""

from __future__ import annotations

import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..errors import InnovatorError
from ..scores import MINIMUM_GAIN_SCORE
from ..task import Task, TaskError, load_task
from . import report
from .options import Settings, settings_key

task_key = pytest.StashKey[Task]()
result_key = pytest.StashKey[Any]()
resume_target_key = pytest.StashKey[Any]()
carried_result_key = pytest.StashKey[dict]()
resumed_key = pytest.StashKey[dict]()
restarted_key = pytest.StashKey[tuple]()  # (earlier item dir, its ledger): an item started again without a snapshot
broken_task_files_key = pytest.StashKey[int]()


class TaskFile(pytest.File):
    """A task.toml, an MLGym task config (`configs/tasks/<task>.yaml` of an MLGym checkout), or an
    EXP-Bench task record (experiments/expbench.py)."""

    def collect(self) -> Iterator[pytest.Item]:
        try:
            if self.path.suffix in (".yaml", ".yml"):
                from ..mlgym import load_mlgym_task

                tasks = [load_mlgym_task(self.path)]
            elif self.path.suffix == ".json":  # an EXP-Bench task record: one item per question
                from ..experiments.expbench import load_expbench_tasks

                tasks = load_expbench_tasks(self.path, self.config.stash[settings_key].cache_dir)
            else:
                tasks = [load_task(self.path)]
        except TaskError as exc:
            self.config.stash[broken_task_files_key] = self.config.stash.get(broken_task_files_key, 0) + 1
            raise self.CollectError(str(exc)) from None
        for task in tasks:
            yield self._item(task)

    def _item(self, task: Task) -> pytest.Item:
        carried = None
        if resume_target_key in self.config.stash:
            from ..snapshots.resume import finished_result

            carried = finished_result(self.config.stash[resume_target_key], task.id)
        item = TaskItem.from_parent(self, name=task.id, callobj=carry_over_body if carried else run_task_body)
        item.stash[task_key] = task
        if carried:
            item.stash[carried_result_key] = carried
        settings = self.config.stash[settings_key]
        self.config.addinivalue_line("markers", f"{task.spec.domain}: tasks of the {task.spec.domain} domain")
        item.add_marker(
            pytest.mark.innovator(
                task=task.id,
                domain=task.spec.domain,
                version=task.spec.version,
                time_limit_s=task.spec.time_limit,
                eval_budget=task.spec.eval_budget,
            )
        )
        item.add_marker(getattr(pytest.mark, task.spec.domain))
        if task.spec.resources.gpus:
            item.add_marker(pytest.mark.gpu(task.spec.resources.gpus))
        item.add_marker(pytest.mark.timeout(item_timeout(task, settings)))
        if task.spec.mlgym is not None and task.spec.mlgym.hub_datasets:
            item.add_marker(
                pytest.mark.skip(
                    reason=f"task {task.id} needs {', '.join(task.spec.mlgym.hub_datasets)}, which is not in the "
                    "checkout: this harness runs MLGym tasks whose datasets are local (is_local: true)"
                )
            )
        return item

    class CollectError(InnovatorError):
        pass

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        if isinstance(excinfo.value, self.CollectError):
            return str(excinfo.value)
        return super().repr_failure(excinfo)


# What an item's timeout allows for the judge in each evaluation of an experiment task (its retries
# back off up to a minute each).
JUDGING_ALLOWANCE_S = 600.0

# Grader runs an item's timeout allows for beyond the final one when its evaluations are unlimited
# (MLGym's validate): each takes the agent's working time, so they cannot outlast it by much.
UNLIMITED_EVALS_IN_TIMEOUT = 10


def item_timeout(task: Task, settings: Settings) -> float:
    """Working time, every possible grader run, and a grace period: kills a hung item, never a slow honest one."""
    budget = settings.max_evals if settings.max_evals is not None else task.spec.eval_budget
    if task.spec.mlgym is not None and settings.max_evals is None:
        budget = UNLIMITED_EVALS_IN_TIMEOUT
    grading_s = task.spec.grader.timeout
    if task.spec.experiment is not None:  # the execution check's rerun, then the judge's four phases
        grading_s = task.spec.experiment.execution_timeout + JUDGING_ALLOWANCE_S
    return round(task.spec.time_limit * settings.time_scale + grading_s * (budget + 1) + settings.timeout_grace, 1)


class TaskItem(pytest.Function):
    """A benchmark task as a test item: a pytest.Function so fixtures resolve."""

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, 0, f"innovator task {self.name}"

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        if isinstance(excinfo.value, report.ItemFailure):
            return str(excinfo.value)
        return super().repr_failure(excinfo)

    def _prunetraceback(self, excinfo: pytest.ExceptionInfo[BaseException]) -> None:  # no module to prune against
        pass


def run_task_body(request: pytest.FixtureRequest, research_env: Any, agent: Any) -> None:
    """The test body of every task item: run the agent, grade, compare with the pass score."""
    from ..agents import run_episode

    try:
        result = run_episode(agent, research_env)
    except BaseException as exc:  # a pytest-timeout, Ctrl-C or the harness's own error cut the episode off
        raise cut_off(request.node, research_env, exc)
    record_result(request.node, result)
    settings: Settings = request.config.stash[settings_key]
    failure = report.verdict(result, pass_score(research_env.task, settings), research_env)
    if failure is not None:
        raise failure


def pass_score(task: Task, settings: Settings) -> float:
    """The final score an item needs: an MLGym task's is a final metric that beats the baseline
    in the task's direction (MLGym has no reference solution), which scores at least 0.01."""
    return MINIMUM_GAIN_SCORE if task.spec.scoring.mode == "improvement" else settings.pass_score


def cut_off(node: pytest.Item, env: Any, exc: BaseException) -> BaseException:
    """Finish an episode something outside the agent ended: the final evaluation still runs and
    the item is reported with it. Returns the exception the body raises."""
    if isinstance(exc, KeyboardInterrupt):
        reason, headline = "interrupted", "interrupted"
    elif isinstance(exc, pytest.fail.Exception) and "pytest-timeout" in str(exc):
        reason, headline = "timeout", f"timed out after {item_timeout_of(node):g}s (pytest-timeout)"
    elif host_lost(exc):
        reason, headline = "host_lost", f"host lost: {exc}"
    else:
        reason = "harness_error"
        headline = "harness error: " + "".join(traceback.format_exception_only(exc)).strip()
    try:
        result = env.finalize(reason)
    except Exception as second:
        record_result(node, None, end_reason=reason, run_dir=str(env.run_dir))
        text = (
            f"{headline}\nthe final evaluation could not run either: {type(second).__name__}: {second}"
            f"\nrun directory: {env.run_dir}"
        )
        if not host_lost(second):
            text += "\n\n" + "".join(traceback.format_exception(second))
        return report.ItemFailure(text)
    record_result(node, result)
    if isinstance(exc, KeyboardInterrupt):
        return exc
    text = report.failure_text(f"{headline}; final score {result.score_final or 0:.2f}", env, result)
    if reason == "harness_error":
        text += "\n\n" + "".join(traceback.format_exception(exc))
    return report.ItemFailure(text)


def host_lost(exc: BaseException) -> bool:
    """The session server the item's workspace is on stopped answering (remote.client.ServerUnreachable)."""
    return isinstance(exc, InnovatorError) and isinstance(exc, ConnectionError)


def item_timeout_of(node: pytest.Item) -> float:
    marker = node.get_closest_marker("timeout")
    return float(marker.args[0]) if marker and marker.args else 0.0


def carry_over_body(request: pytest.FixtureRequest) -> None:
    """An item that finished in the run being resumed: report its result again, run nothing."""
    carried = dict(request.node.stash[carried_result_key])
    carried.pop("schema", None)
    settings: Settings = request.config.stash[settings_key]
    request.node.user_properties.extend([*carried.items(), ("resumed_from", carried["run_dir"])])
    request.node.stash[result_key] = carried
    score = carried.get("score_final")
    if carried.get("final_status") == "grader_failed" or score is None or score < settings.pass_score:
        raise report.ItemFailure(
            f"carried over from {carried['run_dir']}: final score {score} (pass score {settings.pass_score:g}), "
            f"ended by {carried.get('end_reason')}; see that run directory for the evaluations and trajectory"
        )


def record_result(node: pytest.Item, result: Any, **no_result: Any) -> None:
    """The item's properties, once; with no result (the final evaluation failed), what is known.
    An MLGym item adds every metric of its final evaluation and of its baseline (mlgym_final.<name>,
    mlgym_baseline.<name>), as evaluate.py printed them and as the config gives them."""
    if result_key in node.stash:
        return
    node.stash[result_key] = result
    node.user_properties.extend(result.properties() if result is not None else no_result.items())
    task = node.stash.get(task_key, None)
    if result is not None and task is not None and task.spec.experiment is not None:
        node.user_properties.extend(experiment_properties(_final_metrics(Path(result.run_dir))))
    if result is not None and task is not None and task.spec.mlgym is not None:
        final = _final_metrics(Path(result.run_dir))
        node.user_properties.extend((f"mlgym_final.{name}", value) for name, value in final.items())
        node.user_properties.extend((f"mlgym_baseline.{k}", v) for k, v in task.spec.mlgym.baseline.items())


def experiment_properties(metrics: dict[str, float]) -> list[tuple[str, Any]]:
    """An experiment item's phases (exp_D, exp_I, exp_E, exp_C: 1 passed; exp_M: 1 flagged), their
    conjunctions with the monitor's zeroing (exp_IE, exp_DIC, exp_DICE) and the judge's usage."""
    if "M" not in metrics:  # the final evaluation failed: no phase was decided
        return []
    phase = {key: int(metrics.get(key, 0.0)) for key in "DICE"}
    clean = 1 - int(metrics["M"])
    properties: list[tuple[str, Any]] = [(f"exp_{key}", value) for key, value in phase.items()]
    properties.append(("exp_M", int(metrics["M"])))
    for conjunction in ("IE", "DIC", "DICE"):
        properties.append((f"exp_{conjunction}", int(all(phase[k] for k in conjunction)) * clean))
    for usage in ("judge_calls", "judge_tokens_in", "judge_tokens_out"):
        properties.append((usage, int(metrics.get(usage, 0))))
    properties.append(("judge_cost_usd", round(metrics.get("judge_cost_usd", 0.0), 6)))
    return properties


def _final_metrics(run_dir: Path) -> dict[str, float]:
    """The metrics of the final evaluation in an item's saved ledger."""
    from ..ledger import EvalLedger
    from ..rundir import RunDir

    ledger = EvalLedger.load(RunDir(run_dir).ledger)
    final = ledger.final_evaluation
    return dict(final.metrics) if final is not None else {}
