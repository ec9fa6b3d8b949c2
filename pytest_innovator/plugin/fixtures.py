"""The plugin's fixtures: innovator_task, innovator_run_dir, gpu_lease, workspace, sessions,
agent, research_env (function-scoped) and research_services (once per process). A user's own test
can ask for them with ``@pytest.mark.innovator_task("mini/scaffold_construction")``.

`innovator_task` comes first: an item whose task needs what this host or this harness cannot give
(GPUs and their memory, a second host, web or literature tools with no provider configured, an API
model, its dataset, its workspace at a fixed path on a backend that cannot place it) is skipped
there with everything it lacks, before anything is made for it; a dataset that lacks the task's
files is an error naming them.
"""

from __future__ import annotations

import os
import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..backends import BACKENDS, BackendUnavailable, WorkspaceRequest
from ..rundir import RunDir, write_json_atomic
from ..task import Task, TaskError, load_task
from .items import record_result, restarted_key, result_key, resume_target_key, resumed_key, task_key
from .options import OPTION_BY_NAME, Settings, run_id_key, settings_key, uses_embedded_model


def _task_for(request: pytest.FixtureRequest) -> Task:
    node = request.node
    if task_key in node.stash:
        return node.stash[task_key]
    marker = node.get_closest_marker("innovator_task")
    if marker is None or not marker.args:
        raise pytest.UsageError(
            f"{node.nodeid}: innovator fixtures need a task; add @pytest.mark.innovator_task('suite/task')"
        )
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
    """The item's task, its dataset bound; skipped where it cannot run (see unmet_requirements)."""
    task = _task_for(request)
    settings: Settings = request.config.stash[settings_key]
    unmet = unmet_requirements(task, settings)
    if unmet:
        pytest.skip(f"task {task.id} needs " + "; ".join(unmet))
    needed_memory = task.spec.resources.gpu_memory
    if task.spec.resources.gpus and needed_memory and settings.gpu_memory is None:
        warnings.warn(
            f"GPU memory not checked: {OPTION_BY_NAME['gpus'].flag} names the GPUs by hand "
            f"(a task needs {_gib(needed_memory)} per GPU)",
            stacklevel=1,
        )
    if task.spec.dataset is None:
        return task
    try:
        name = task.spec.dataset.name
        root = task.dataset_root or settings.datasets[name]  # bound already where the suite lives (MLGym)
        return task.with_dataset(root, settings.evaluation_pythons.get(name))
    except TaskError as exc:
        missing = str(exc)
    pytest.fail(missing, pytrace=False)  # outside the except: the message alone, not two chained errors


# NVML reports a GPU's memory after what the driver reserves: an "80 GB" H100 shows 79.6 GiB, a
# "24 GB" A10 22.5 GiB. A GPU with this share of the memory a task asks for counts as big enough.
GPU_MEMORY_SHARE = 0.9


def _gpus(count: int) -> str:
    return f"{count} GPU" if count == 1 else f"{count} GPUs"


def _gib(size: int) -> str:
    return f"{size / 2**30:.1f}".removesuffix(".0") + " GiB"


def usable_gpus(task: Task, settings: Settings) -> tuple[str, ...]:
    """This host's GPUs with the memory the task needs: all of them when it names none or when
    their memory is not known (named by hand)."""
    needed = task.spec.resources.gpu_memory
    if needed is None or settings.gpu_memory is None:
        return settings.gpus
    memory = settings.gpu_memory
    return tuple(d for d in settings.gpus if memory.get(d, needed) >= GPU_MEMORY_SHARE * needed)


def unmet_requirements(task: Task, settings: Settings) -> list[str]:
    """What the task needs that this host or this harness cannot give, one phrase each."""
    spec = task.spec
    unmet = []
    if spec.dataset is not None and task.dataset_root is None and spec.dataset.name not in settings.datasets:
        name, option = spec.dataset.name, OPTION_BY_NAME["datasets"]
        source = f"; get it from {spec.dataset.source}" if spec.dataset.source else ""
        unmet.append(
            f"dataset {name!r} (give its path with {option.flag} {name}=PATH, environment variable "
            f"{option.env_var.replace('<NAME>', name.upper())} or ini key {option.ini_key}{source})"
        )
    resources = spec.resources
    if resources.hosts > 1 and settings.hosts is None:
        unmet.append(
            f"{resources.hosts} hosts (an item spans hosts only on a pool of session servers: "
            f"{OPTION_BY_NAME['hosts'].flag} hosts.toml, docs/scale.md)"
        )
    usable = usable_gpus(task, settings)
    if resources.gpus > len(usable) and settings.hosts is None:  # a pool's hosts are asked at lease time
        unmet.append(_gpu_shortfall(task, settings, usable))
    if spec.experiment is not None and not settings.judge_model:
        judge_flag = OPTION_BY_NAME["judge_model"].flag
        unmet.append(f"a judge for its phases (name its model with {judge_flag}; docs/experiments.md)")
    offered = offered_groups(task)
    if "web" in offered and settings.search_provider is None:
        unmet.append(
            f"web search and browsing tools for the agent (name their provider with "
            f"{OPTION_BY_NAME['search_provider'].flag} serper, bing or offline; docs/agents.md)"
        )
    if "literature" in offered and settings.literature_provider is None:
        unmet.append(
            f"literature search for the agent (name its provider with {OPTION_BY_NAME['literature_provider'].flag} "
            "semantic_scholar, arxiv or offline; docs/agents.md)"
        )
    if spec.requires.api_model and not settings.task_api_url:
        unmet.append(
            f"an API model its code calls, OpenAI or Azure (an OpenAI-compatible endpoint: "
            f"{OPTION_BY_NAME['task_api_url'].flag} URL, its key in ${settings.task_api_key_env})"
        )
    served_as_is = settings.backend == "local" or (settings.backend == "remote" and settings.hosts is None)
    if spec.workspace_path and served_as_is:  # a pool host makes the workspace as the sandbox backend does
        unmet.append(
            f"its workspace at {spec.workspace_path}, which the {settings.backend} backend cannot give "
            f"(use {OPTION_BY_NAME['backend'].flag} sandbox or docker)"
        )
    return unmet


def offered_groups(task: Task) -> tuple[str, ...]:
    """The optional tool groups the task offers its agent: those it names, and web tools when it
    requires them (as ResearchEnv.tools offers them)."""
    return task.spec.tools + (("web",) if task.spec.requires.web_tools else ())


def _gpu_shortfall(task: Task, settings: Settings, usable: tuple[str, ...]) -> str:
    needed, memory = task.spec.resources.gpus, task.spec.resources.gpu_memory
    flag = OPTION_BY_NAME["gpus"].flag
    if memory is None or settings.gpu_memory is None or not settings.gpus:
        host = ",".join(settings.gpus) or "none detected"
        if memory is not None and settings.gpus:
            host += f"; their memory is not known: {flag} names them by hand"
        what = _gpus(needed) if memory is None else f"{_gpus(needed)} with {_gib(memory)} each"
        return f"{what}, this host has {len(settings.gpus)} ({host}): name them with {flag}"
    known = settings.gpu_memory
    host = ", ".join(f"{d}: {_gib(known[d]) if d in known else 'memory unknown'}" for d in settings.gpus)
    return f"{_gpus(needed)} with {_gib(memory)} each, this host has {len(usable)} such ({host}): name them with {flag}"


@pytest.fixture
def innovator_run_dir(request: pytest.FixtureRequest, innovator_task: Task) -> Path:
    settings: Settings = request.config.stash[settings_key]
    run_dir = RunDir.of(settings.results, request.config.stash[run_id_key], innovator_task.id).path
    if run_dir.exists():  # the same task collected twice in one run (e.g. through two paths)
        run_dir = run_dir.with_name(f"{innovator_task.id}-{uuid.uuid4().hex[:6]}")
    run_dir.mkdir(parents=True)
    return run_dir


@pytest.fixture
def gpu_lease(request: pytest.FixtureRequest, innovator_task: Task, innovator_run_dir: Path) -> Iterator[Any]:
    settings: Settings = request.config.stash[settings_key]
    owner = f"{request.node.nodeid} (pid {os.getpid()})"
    count = innovator_task.spec.resources.gpus
    if settings.hosts is not None:
        lease, release, where = _pool_lease(innovator_task, settings.hosts, count, owner)
    else:
        from ..gpus import GpuLeaser

        # innovator_task skipped the item unless enough of these are there
        leaser = GpuLeaser(settings.gpu_lock_dir, usable_gpus(innovator_task, settings))
        lease = leaser.acquire(count, owner=owner)
        release, where = (lambda: leaser.release(lease)), {"host": settings.host}
    record = {**where, "devices": list(lease.devices), "acquired_at": lease.acquired_at, "owner": lease.owner}
    record_path = RunDir(innovator_run_dir).gpu_lease
    write_json_atomic(record_path, record)
    try:
        yield lease
    finally:
        # Stamped before the release: the next holder's acquired_at is then never earlier.
        record["released_at"] = time.time()
        release()
        write_json_atomic(record_path, record)


def _pool_lease(task: Task, hosts_file: Path, count: int, owner: str) -> tuple[Any, Any, dict[str, Any]]:
    """GPUs on a host of the pool (on each of its hosts, for a task that spans several): the lease,
    how to release it, and where it is (for the record)."""
    from ..hosts.pool import PoolCannotHold, PoolError, lease_from_pool, load_pool

    try:
        lease = lease_from_pool(load_pool(hosts_file), count, holder=owner, spread=task.spec.resources.hosts)
    except PoolCannotHold as exc:
        pytest.skip(f"task {task.id} needs {exc}")
    except PoolError as exc:
        pytest.fail(f"task {task.id}: no host of the pool {hosts_file} can be leased: {exc}", pytrace=False)
    where: dict[str, Any] = {"host": lease.host.name, "url": lease.host.url, "labels": list(lease.host.labels)}
    where["lease"] = lease.lease_id
    if lease.companions:
        where["more_hosts"] = [
            {"host": other.host.name, "url": other.host.url, "lease": other.lease_id, "devices": list(other.devices)}
            for other in lease.companions
        ]
    return lease, lease.release, where


def hidden_paths(task: Task, settings: Settings) -> list[Path]:
    """What sandboxed commands must not see: this task's directory and its sibling tasks (graders,
    solutions, hints), and the results directory (ledgers, other items' workspaces)."""
    siblings = [d for d in task.root.parent.iterdir() if (d / "task.toml").is_file()]
    dataset = [task.dataset_root] if task.dataset_root else []  # its evaluations and hints
    return sorted({task.root, *siblings, *dataset, settings.results})


def task_api_environment(task: Task, settings: Settings) -> dict[str, str]:
    """The API model a task's code calls, as the openai client reads it from the environment."""
    if not task.spec.requires.api_model or not settings.task_api_url:
        return {}
    return {"OPENAI_BASE_URL": settings.task_api_url, "OPENAI_API_KEY": os.environ.get(settings.task_api_key_env, "")}


@pytest.fixture
def workspace(
    request: pytest.FixtureRequest, innovator_task: Task, innovator_run_dir: Path, gpu_lease: Any
) -> Iterator[Any]:
    settings: Settings = request.config.stash[settings_key]
    if resume_target_key in request.config.stash:
        from ..snapshots.resume import prepare_run_dir, resume_point, spent_before

        point = resume_point(request.config.stash[resume_target_key], innovator_task.id)
        if point is not None:
            request.node.stash[resumed_key] = prepare_run_dir(point, innovator_run_dir)
        elif spent := spent_before(request.config.stash[resume_target_key], innovator_task.id):
            request.node.stash[restarted_key] = spent
    workspace_request = WorkspaceRequest(
        task=innovator_task,
        run_dir=innovator_run_dir,
        gpu_lease=gpu_lease,
        env={
            "CUDA_VISIBLE_DEVICES": gpu_lease.cuda_visible_devices(),
            "INNOVATOR_TASK": innovator_task.id,
            **task_api_environment(innovator_task, settings),
        },
        hidden=hidden_paths(innovator_task, settings),
        settings=settings.backend_settings(),
    )
    try:
        ws, _ = BACKENDS[settings.backend].create(workspace_request)
    except BackendUnavailable as exc:
        pytest.fail(f"--innovator-backend {settings.backend}: {exc}", pytrace=False)
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


@pytest.fixture
def agent(request: pytest.FixtureRequest) -> Any:
    from ..agents import AgentError, load_agent

    settings: Settings = request.config.stash[settings_key]
    options = settings.agent_options()
    if settings.agent == "react" and settings.vllm_model:
        if settings.base_url:
            raise pytest.UsageError(
                "--innovator-vllm-model starts a vLLM server for the agent; --innovator-base-url points it at "
                "another endpoint: give one of them"
            )
        endpoint = request.getfixturevalue("vllm_server")  # started once per host, shared by its workers
        options.update(base_url=endpoint.base_url, model=endpoint.model)
    elif uses_embedded_model(settings):
        endpoint = request.getfixturevalue("embedded_llm_server")
        options.update(
            base_url=endpoint.base_url,
            model=endpoint.model,
            context_tokens=min(settings.context_tokens, EMBEDDED_CONTEXT_TOKENS),
            reply_tokens=settings.reply_tokens or EMBEDDED_REPLY_TOKENS,
        )
    try:
        return load_agent(settings.agent, options)
    except (AgentError, ValueError) as exc:
        raise pytest.UsageError(str(exc)) from None


@pytest.fixture(scope="session")
def research_services(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    """What the optional tools reach outside the workspace through (the search and literature
    providers), built once per process from the options; keys stay in this process."""
    from ..errors import InnovatorError
    from ..research_tools.providers import build_services

    settings: Settings = request.config.stash[settings_key]
    try:
        services, client = build_services(
            settings.search_provider, settings.literature_provider, settings.offline_corpus, settings.api_base_urls
        )
    except InnovatorError as exc:  # a broken corpus, a missing extra
        raise pytest.UsageError(str(exc)) from None
    services["memory"] = settings.memory_ranking
    if settings.judge_model:
        services["judge"] = build_judge(settings)
    try:
        yield services
    finally:
        if client is not None:
            client.close()


def build_judge(settings: Settings) -> Any:
    """The judge of experiment tasks, on its own endpoint and key, with the agent's retry settings."""
    from ..experiments.judge import Judge
    from ..llm.client import DEFAULT_PRICES, LLMClient, RetryPolicy, load_price_table

    prices = dict(DEFAULT_PRICES)
    if settings.price_table:
        prices.update(load_price_table(settings.price_table))
    client = LLMClient(
        model=settings.judge_model,
        base_url=settings.judge_base_url or None,
        api_key=os.environ.get(settings.judge_api_key_env, "") or "unset",
        timeout_s=settings.llm_timeout,
        retry=RetryPolicy(retries=settings.llm_retries, base_delay_s=settings.llm_backoff),
        prices=prices,
    )
    return Judge(client, samples=settings.judge_samples)


@pytest.fixture
def research_env(
    request: pytest.FixtureRequest,
    innovator_task: Task,
    workspace: Any,
    innovator_run_dir: Path,
    gpu_lease: Any,
    research_services: dict[str, Any],
) -> Iterator[Any]:
    from ..agents import agent_label
    from ..env import Limits, ResearchEnv, SnapshotPolicy
    from ..gpu_monitor import GpuMemoryMonitor

    settings: Settings = request.config.stash[settings_key]
    spec = innovator_task.spec
    limits = Limits(
        time_limit_s=spec.time_limit * settings.time_scale,
        step_limit=settings.max_steps or spec.step_limit,
        eval_budget=settings.max_evals if settings.max_evals is not None else spec.eval_budget,
        hints=settings.hints,  # type: ignore[arg-type]
    )
    agent_name = (
        settings.agent if "agent" not in request.fixturenames else agent_label(request.getfixturevalue("agent"))
    )
    snapshots = SnapshotPolicy(
        every_steps=settings.snapshot_steps or spec.snapshot_steps,
        every_minutes=settings.snapshot_minutes or spec.snapshot_minutes or 30.0,
        keep_last=settings.snapshot_keep,
    )
    gpu_memory = None  # the leased GPUs are this host's, except with the remote backend
    if gpu_lease.devices and settings.backend != "remote":
        record = RunDir(innovator_run_dir).gpu_memory
        gpu_memory = GpuMemoryMonitor(gpu_lease.devices, spec.resources.gpu_memory, record).start()
    env = ResearchEnv(
        innovator_task,
        workspace,
        innovator_run_dir,
        limits,
        agent_name=agent_name,
        snapshots=snapshots,
        resumed=request.node.stash.get(resumed_key, None),
        gpu_memory=gpu_memory,
        services=research_services,
    )
    if restarted_key in request.node.stash:
        env.keep_spent(*request.node.stash[restarted_key])
    try:
        yield env
    finally:
        if gpu_memory is not None:
            gpu_memory.close()
        # The body records the result however it ends; a user's own test may not: then the
        # episode ends here, as the test left it.
        if result_key not in request.node.stash:
            record_result(request.node, env.finalize("agent_returned"))
