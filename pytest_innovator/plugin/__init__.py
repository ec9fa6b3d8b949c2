"""The pytest plugin: every task.toml becomes a test item whose body runs the agent.

Fixtures (all function-scoped): innovator_task, innovator_run_dir, gpu_lease, workspace,
sessions, research_env, agent. A user's own test can ask for them with
``@pytest.mark.innovator_task("mini/scaffold_construction")``.
"""

from __future__ import annotations

import json
import os
import time
import traceback
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..task import KNOWN_DOMAINS, Task, TaskError, load_task
from . import report
from .llm_servers import embedded_llm_server, vllm_server  # noqa: F401  (registers the fixtures)
from .options import Settings, add_options, resolve_settings
from .report import describe_crashed_item

settings_key = pytest.StashKey[Settings]()
run_id_key = pytest.StashKey[str]()
task_key = pytest.StashKey[Task]()
result_key = pytest.StashKey[Any]()
resume_target_key = pytest.StashKey[Any]()
carried_result_key = pytest.StashKey[dict]()
resumed_key = pytest.StashKey[dict]()

BUILTIN_MARKERS = {
    "innovator": "innovator(task, domain, ...): metadata of a benchmark task item",
    "innovator_task(path)": "run this test with the fixtures of the task at path (suite/task, relative to task_suites/ or the rootdir)",
    "gpu(n)": "the item needs n GPUs (leased exclusively for it)",
}


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    for marker, text in BUILTIN_MARKERS.items():
        config.addinivalue_line("markers", f"{marker}: {text}")
    for domain in KNOWN_DOMAINS:
        config.addinivalue_line("markers", f"{domain}: tasks of the {domain} domain")
    settings = resolve_settings(config)
    config.stash[settings_key] = settings
    if settings.resume:
        from ..snapshots.resume import ResumeError, parse_resume_option

        try:
            config.stash[resume_target_key] = parse_resume_option(settings.resume)
        except ResumeError as exc:
            raise pytest.UsageError(f"--innovator-resume: {exc}") from None
    workerinput = getattr(config, "workerinput", None)
    config.stash[run_id_key] = workerinput["innovator_run_id"] if workerinput else new_run_id()
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(XdistHooks(config), "innovator-xdist")
    if workerinput is None:
        config.pluginmanager.register(report.ResultsReporter(config, settings, config.stash[run_id_key]), "innovator-reporter")


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]


class XdistHooks:
    def __init__(self, config: pytest.Config):
        self.config = config

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        node.workerinput["innovator_run_id"] = node.config.stash[run_id_key]

    @pytest.hookimpl(optionalhook=True)
    def pytest_handlecrashitem(self, crashitem: str, report: pytest.TestReport, sched: Any) -> None:
        """A worker died running an item: what it had done is in the item's run directory."""
        config = self.config
        run_dir = config.stash[settings_key].results / "runs" / config.stash[run_id_key] / crashitem.rsplit("::", 1)[-1]
        describe_crashed_item(report, run_dir)


# --- collection ----------------------------------------------------------------------------

broken_task_files_key = pytest.StashKey[int]()


@pytest.hookimpl(tryfirst=True)
def pytest_runtestloop(session: pytest.Session) -> None:
    """A broken task file is reported as a collection error, but never stops the other tasks."""
    broken = session.config.stash.get(broken_task_files_key, 0)
    if broken and session.testsfailed == broken:
        session.config.option.continue_on_collection_errors = True

def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path.name == "task.toml":
        return TaskFile.from_parent(parent, path=file_path)
    return None


class TaskFile(pytest.File):
    def collect(self) -> Iterator[pytest.Item]:
        try:
            task = load_task(self.path)
        except TaskError as exc:
            self.config.stash[broken_task_files_key] = self.config.stash.get(broken_task_files_key, 0) + 1
            raise self.CollectError(str(exc)) from None
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
        item.add_marker(pytest.mark.innovator(task=task.id, domain=task.spec.domain, version=task.spec.version,
                                               time_limit_s=task.spec.time_limit, eval_budget=task.spec.eval_budget))
        item.add_marker(getattr(pytest.mark, task.spec.domain))
        if task.spec.resources.gpus:
            item.add_marker(pytest.mark.gpu(task.spec.resources.gpus))
        item.add_marker(pytest.mark.timeout(item_timeout(task, settings)))
        yield item

    class CollectError(Exception):
        pass

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        if isinstance(excinfo.value, self.CollectError):
            return str(excinfo.value)
        return super().repr_failure(excinfo)


def item_timeout(task: Task, settings: Settings) -> float:
    """Working time, every possible grader run, and a grace period: kills a hung item, never a slow honest one."""
    budget = settings.max_evals if settings.max_evals is not None else task.spec.eval_budget
    return round(task.spec.time_limit * settings.time_scale + task.spec.grader.timeout * (budget + 1) + settings.timeout_grace, 1)


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
    failure = report.verdict(result, settings.pass_score, research_env)
    if failure is not None:
        raise failure


def cut_off(node: pytest.Item, env: Any, exc: BaseException) -> BaseException:
    """Finish an episode something outside the agent ended: the final evaluation still runs and
    the item is reported with it. Returns the exception the body raises."""
    if isinstance(exc, KeyboardInterrupt):
        reason, headline = "interrupted", "interrupted"
    elif isinstance(exc, pytest.fail.Exception) and "pytest-timeout" in str(exc):
        reason, headline = "timeout", f"timed out after {item_timeout_of(node):g}s (pytest-timeout)"
    else:
        reason = "harness_error"
        headline = "harness error: " + "".join(traceback.format_exception_only(exc)).strip()
    try:
        result = env.finalize(reason)
    except Exception as second:
        record_result(node, None, end_reason=reason, run_dir=str(env.run_dir))
        text = (f"{headline}\nthe final evaluation could not run either: {type(second).__name__}: {second}"
                f"\nrun directory: {env.run_dir}\n\n" + "".join(traceback.format_exception(second)))
        return report.ItemFailure(text)
    record_result(node, result)
    if isinstance(exc, KeyboardInterrupt):
        return exc
    text = report.failure_text(f"{headline}; final score {result.score_final or 0:.2f}", env, result)
    if reason == "harness_error":
        text += "\n\n" + "".join(traceback.format_exception(exc))
    return report.ItemFailure(text)


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
            f"ended by {carried.get('end_reason')}; see that run directory for the evaluations and trajectory")


def record_result(node: pytest.Item, result: Any, **no_result: Any) -> None:
    """The item's properties, once; with no result (the final evaluation failed), what is known."""
    if result_key in node.stash:
        return
    node.stash[result_key] = result
    node.user_properties.extend(result.properties() if result is not None else no_result.items())


# --- fixtures ------------------------------------------------------------------------------

def _task_for(request: pytest.FixtureRequest) -> Task:
    node = request.node
    if task_key in node.stash:
        return node.stash[task_key]
    marker = node.get_closest_marker("innovator_task")
    if marker is None or not marker.args:
        raise pytest.UsageError(
            f"{node.nodeid}: innovator fixtures need a task; add @pytest.mark.innovator_task('suite/task')")
    return resolve_task_reference(str(marker.args[0]), request.config)


def resolve_task_reference(reference: str, config: pytest.Config) -> Task:
    root = Path(config.rootpath)
    candidates = [Path(reference), root / reference, root / "task_suites" / reference]
    for candidate in candidates:
        if (candidate / "task.toml").is_file() or candidate.name == "task.toml":
            return load_task(candidate)
    raise pytest.UsageError(f"innovator_task({reference!r}): no task.toml found at {', '.join(map(str, candidates))}")


@pytest.fixture
def innovator_task(request: pytest.FixtureRequest) -> Task:
    return _task_for(request)


@pytest.fixture
def innovator_run_dir(request: pytest.FixtureRequest, innovator_task: Task) -> Path:
    settings: Settings = request.config.stash[settings_key]
    run_dir = settings.results / "runs" / request.config.stash[run_id_key] / innovator_task.id
    if run_dir.exists():  # the same task collected twice in one run (e.g. through two paths)
        run_dir = run_dir.with_name(f"{innovator_task.id}-{uuid.uuid4().hex[:6]}")
    run_dir.mkdir(parents=True)
    return run_dir


@pytest.fixture
def gpu_lease(request: pytest.FixtureRequest, innovator_task: Task, innovator_run_dir: Path) -> Iterator[Any]:
    from ..gpus import GpuLeaser

    settings: Settings = request.config.stash[settings_key]
    needed = innovator_task.spec.resources.gpus
    if needed > len(settings.gpus):
        pytest.skip(f"task {innovator_task.id} needs {needed} GPUs, this host has {len(settings.gpus)} "
                    f"({','.join(settings.gpus) or 'none detected'}); name them with --innovator-gpus")
    leaser = GpuLeaser(settings.gpu_lock_dir, settings.gpus)
    lease = leaser.acquire(needed, owner=f"{request.node.nodeid} (pid {os.getpid()})")
    record = {"devices": list(lease.devices), "acquired_at": lease.acquired_at, "owner": lease.owner}
    (innovator_run_dir / "gpu_lease.json").write_text(json.dumps(record))
    try:
        yield lease
    finally:
        leaser.release(lease)
        record["released_at"] = time.time()
        (innovator_run_dir / "gpu_lease.json").write_text(json.dumps(record))


def hidden_paths(task: Task, settings: Settings) -> list[Path]:
    """What sandboxed commands must not see: this task's directory and its sibling tasks (graders,
    solutions, hints), and the results directory (ledgers, other items' workspaces)."""
    siblings = [d for d in task.root.parent.iterdir() if (d / "task.toml").is_file()]
    return sorted({task.root, *siblings, settings.results})


@pytest.fixture
def workspace(request: pytest.FixtureRequest, innovator_task: Task, innovator_run_dir: Path, gpu_lease: Any) -> Iterator[Any]:
    from ..workspace import LocalWorkspace

    settings: Settings = request.config.stash[settings_key]
    env = {"CUDA_VISIBLE_DEVICES": gpu_lease.cuda_visible_devices(), "INNOVATOR_TASK": innovator_task.id}
    hidden = hidden_paths(innovator_task, settings) if settings.backend != "local" else ()
    if resume_target_key in request.config.stash:
        from ..snapshots.resume import prepare_run_dir, resume_point

        point = resume_point(request.config.stash[resume_target_key], innovator_task.id)
        if point is not None:
            request.node.stash[resumed_key] = prepare_run_dir(point, innovator_run_dir)
    if settings.backend == "docker":
        from ..remote.docker import DockerBackendError, create_docker_workspace

        try:
            ws, _ = create_docker_workspace(innovator_task, innovator_run_dir, env, gpu_lease,
                                            image=settings.docker_image, hidden=hidden)
        except DockerBackendError as exc:
            pytest.skip(f"docker backend unavailable: {exc}")
    elif settings.backend == "remote":
        from ..remote.client import connect_remote_workspace

        if not settings.remote_url or not settings.remote_token_file:
            raise pytest.UsageError("--innovator-backend remote needs --innovator-remote-url and --innovator-remote-token-file")
        token = Path(settings.remote_token_file).read_text(encoding="utf-8").strip()
        ws, _ = connect_remote_workspace(innovator_task, innovator_run_dir, env, base_url=settings.remote_url,
                                         token=token, grader_hidden=hidden_paths(innovator_task, settings))
    else:
        from ..gpus import gpu_device_nodes

        ws, _ = LocalWorkspace.create(innovator_task, innovator_run_dir, env=env, hidden=hidden,
                                      devices=gpu_device_nodes(gpu_lease.devices))
    try:
        yield ws
    finally:
        ws.close()


@pytest.fixture
def sessions(workspace: Any) -> Any:
    return workspace.sessions


EMBEDDED_CONTEXT_TOKENS = 6000  # the embedded model's context is 8192 tokens
# One text-protocol action takes 30 to 80 tokens; the 135M model, left to run, rambles to its 512
# limit at a few tokens a second, so an uncapped reply costs a minute of working time.
EMBEDDED_REPLY_TOKENS = 160


def uses_embedded_model(settings: Settings) -> bool:
    """The react agent with no endpoint and no key configured runs on the embedded model."""
    return (settings.agent == "react" and not settings.base_url and not settings.model
            and not os.environ.get(settings.api_key_env))


@pytest.fixture
def agent(request: pytest.FixtureRequest) -> Any:
    from ..agents import AgentError, load_agent

    settings: Settings = request.config.stash[settings_key]
    options = settings.agent_options()
    if uses_embedded_model(settings):
        endpoint = request.getfixturevalue("embedded_llm_server")
        options.update(base_url=endpoint.base_url, model=endpoint.model,
                       context_tokens=min(settings.context_tokens, EMBEDDED_CONTEXT_TOKENS),
                       reply_tokens=settings.reply_tokens or EMBEDDED_REPLY_TOKENS)
    try:
        return load_agent(settings.agent, options)
    except (AgentError, ValueError) as exc:
        raise pytest.UsageError(str(exc)) from None


@pytest.fixture
def research_env(request: pytest.FixtureRequest, innovator_task: Task, workspace: Any, innovator_run_dir: Path) -> Iterator[Any]:
    from ..agents import agent_label
    from ..env import Limits, ResearchEnv, SnapshotPolicy

    settings: Settings = request.config.stash[settings_key]
    spec = innovator_task.spec
    limits = Limits(
        time_limit_s=spec.time_limit * settings.time_scale,
        step_limit=settings.max_steps or spec.step_limit,
        eval_budget=settings.max_evals if settings.max_evals is not None else spec.eval_budget,
        hints=settings.hints,  # type: ignore[arg-type]
    )
    agent_name = settings.agent if "agent" not in request.fixturenames else agent_label(request.getfixturevalue("agent"))
    snapshots = SnapshotPolicy(
        every_steps=settings.snapshot_steps or spec.snapshot_steps,
        every_minutes=settings.snapshot_minutes or spec.snapshot_minutes or 30.0,
        keep_last=settings.snapshot_keep,
    )
    env = ResearchEnv(innovator_task, workspace, innovator_run_dir, limits, agent_name=agent_name,
                      snapshots=snapshots, resumed=request.node.stash.get(resumed_key, None))
    try:
        yield env
    finally:
        # The body records the result however it ends; a user's own test may not: then the
        # episode ends here, as the test left it.
        if result_key not in request.node.stash:
            record_result(request.node, env.finalize("agent_returned"))
