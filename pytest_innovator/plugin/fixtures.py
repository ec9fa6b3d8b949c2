"""The plugin's fixtures (all function-scoped): innovator_task, innovator_run_dir, gpu_lease,
workspace, sessions, agent, research_env. A user's own test can ask for them with
``@pytest.mark.innovator_task("mini/scaffold_construction")``."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..backends import BACKENDS, BackendUnavailable, WorkspaceRequest
from ..rundir import RunDir, write_json_atomic
from ..task import Task, load_task
from .items import record_result, result_key, resume_target_key, resumed_key, task_key
from .options import Settings, run_id_key, settings_key


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
    return _task_for(request)


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
    from ..gpus import GpuLeaser

    settings: Settings = request.config.stash[settings_key]
    needed = innovator_task.spec.resources.gpus
    if needed > len(settings.gpus):
        pytest.skip(
            f"task {innovator_task.id} needs {needed} GPUs, this host has {len(settings.gpus)} "
            f"({','.join(settings.gpus) or 'none detected'}); name them with --innovator-gpus"
        )
    leaser = GpuLeaser(settings.gpu_lock_dir, settings.gpus)
    lease = leaser.acquire(needed, owner=f"{request.node.nodeid} (pid {os.getpid()})")
    record = {"devices": list(lease.devices), "acquired_at": lease.acquired_at, "owner": lease.owner}
    record_path = RunDir(innovator_run_dir).gpu_lease
    write_json_atomic(record_path, record)
    try:
        yield lease
    finally:
        leaser.release(lease)
        record["released_at"] = time.time()
        write_json_atomic(record_path, record)


def hidden_paths(task: Task, settings: Settings) -> list[Path]:
    """What sandboxed commands must not see: this task's directory and its sibling tasks (graders,
    solutions, hints), and the results directory (ledgers, other items' workspaces)."""
    siblings = [d for d in task.root.parent.iterdir() if (d / "task.toml").is_file()]
    return sorted({task.root, *siblings, settings.results})


@pytest.fixture
def workspace(
    request: pytest.FixtureRequest, innovator_task: Task, innovator_run_dir: Path, gpu_lease: Any
) -> Iterator[Any]:
    settings: Settings = request.config.stash[settings_key]
    if resume_target_key in request.config.stash:
        from ..snapshots.resume import prepare_run_dir, resume_point

        point = resume_point(request.config.stash[resume_target_key], innovator_task.id)
        if point is not None:
            request.node.stash[resumed_key] = prepare_run_dir(point, innovator_run_dir)
    workspace_request = WorkspaceRequest(
        task=innovator_task,
        run_dir=innovator_run_dir,
        gpu_lease=gpu_lease,
        env={"CUDA_VISIBLE_DEVICES": gpu_lease.cuda_visible_devices(), "INNOVATOR_TASK": innovator_task.id},
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


def uses_embedded_model(settings: Settings) -> bool:
    """The react agent with no endpoint and no key configured runs on the embedded model."""
    return (
        settings.agent == "react"
        and not settings.base_url
        and not settings.model
        and not os.environ.get(settings.api_key_env)
    )


@pytest.fixture
def agent(request: pytest.FixtureRequest) -> Any:
    from ..agents import AgentError, load_agent

    settings: Settings = request.config.stash[settings_key]
    options = settings.agent_options()
    if uses_embedded_model(settings):
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


@pytest.fixture
def research_env(
    request: pytest.FixtureRequest, innovator_task: Task, workspace: Any, innovator_run_dir: Path
) -> Iterator[Any]:
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
    agent_name = (
        settings.agent if "agent" not in request.fixturenames else agent_label(request.getfixturevalue("agent"))
    )
    snapshots = SnapshotPolicy(
        every_steps=settings.snapshot_steps or spec.snapshot_steps,
        every_minutes=settings.snapshot_minutes or spec.snapshot_minutes or 30.0,
        keep_last=settings.snapshot_keep,
    )
    env = ResearchEnv(
        innovator_task,
        workspace,
        innovator_run_dir,
        limits,
        agent_name=agent_name,
        snapshots=snapshots,
        resumed=request.node.stash.get(resumed_key, None),
    )
    try:
        yield env
    finally:
        # The body records the result however it ends; a user's own test may not: then the
        # episode ends here, as the test left it.
        if result_key not in request.node.stash:
            record_result(request.node, env.finalize("agent_returned"))
