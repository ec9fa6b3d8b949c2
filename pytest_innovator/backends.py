"""The workspace backends: name -> how to make a workspace, what it needs and what it protects.

The `workspace` fixture, the choices of `--innovator-backend` and docs/backends.md all read this
table. Each backend's module is imported only when the backend is used, so a host without the
`server` extra can still run the `local` and `sandbox` backends.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import InnovatorError, pip_hint
from .gpus import GpuLease, gpu_device_nodes
from .provision import ProvisionReport
from .sandbox import bwrap_path
from .task import Task
from .workspace import LocalWorkspace, Workspace

DEFAULT_DOCKER_IMAGE = "innovator-test:bookworm"  # what scripts/docker-test-image.sh builds


class BackendUnavailable(InnovatorError):
    """The backend the user asked for cannot run here; the message says how to fix that."""


@dataclass(frozen=True)
class BackendSettings:
    """What the backends read of the plugin's settings."""

    docker_image: str = DEFAULT_DOCKER_IMAGE
    remote_url: str = ""
    remote_token_file: str = ""
    cache_dir: Path | None = None  # datasets' unpacked environments (None: datasets.default_cache_dir())
    pool: Path | None = None  # a hosts.toml: the remote backend's servers are the pool's (hosts/pool.py)


@dataclass(frozen=True)
class WorkspaceRequest:
    task: Task
    run_dir: Path
    env: dict[str, str]
    gpu_lease: GpuLease  # or, with a pool of hosts, a hosts.pool.PoolLease (the same attributes and more)
    hidden: Sequence[Path]  # what commands (and graders) must not see: the task's hidden parts, results
    settings: BackendSettings


@dataclass(frozen=True)
class Backend:
    name: str
    protects: str  # one line: what it keeps the agent from
    extra: str | None  # the pip extra it needs, if any
    check: Callable[[BackendSettings], None]  # raises BackendUnavailable with the fix
    create: Callable[[WorkspaceRequest], tuple[Workspace, ProvisionReport]]


def _always(settings: BackendSettings) -> None:
    pass


def _check_sandbox(settings: BackendSettings) -> None:
    if bwrap_path() is None:
        raise BackendUnavailable(
            "the sandbox backend needs bubblewrap, which is missing or cannot create a "
            "sandbox here: apt-get install bubblewrap (or --innovator-backend local, "
            "for agents you trust)"
        )


def _check_docker(settings: BackendSettings) -> None:
    try:
        from .remote.docker import DockerBackendError, docker_client
    except ImportError as exc:
        raise BackendUnavailable(f"the docker backend needs the server extra ({exc}): {pip_hint('server')}") from None
    try:
        client = docker_client()
        image_present = bool(client.images.list(name=settings.docker_image))
    except DockerBackendError as exc:
        raise BackendUnavailable(str(exc)) from None
    if not image_present:
        raise BackendUnavailable(
            f"docker image {settings.docker_image!r} not found: build the test image with "
            "scripts/docker-test-image.sh, or name another with --innovator-docker-image"
        )


def _remote_token(settings: BackendSettings) -> str:
    if not settings.remote_url or not settings.remote_token_file:
        raise BackendUnavailable(
            "the remote backend needs --innovator-remote-url and --innovator-remote-token-file "
            "(a session server started with: pytest-innovator serve --root DIR)"
        )
    try:
        return Path(settings.remote_token_file).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise BackendUnavailable(f"cannot read the remote token file: {exc}") from None


def _check_remote(settings: BackendSettings) -> None:
    try:
        from .remote.client import Connection, RemoteError, ServerUnreachable
    except ImportError as exc:
        raise BackendUnavailable(f"the remote backend needs the server extra ({exc}): {pip_hint('server')}") from None
    if settings.pool is not None:
        _check_pool(settings.pool)
        return
    token = _remote_token(settings)
    connection = Connection(settings.remote_url, token, retries=0)
    try:
        connection.request("GET", "/v1/health")
    except (ServerUnreachable, RemoteError, OSError) as exc:
        raise BackendUnavailable(
            f"no session server answers at {settings.remote_url} ({exc}): start one there "
            "with pytest-innovator serve --root DIR, or fix --innovator-remote-url"
        ) from None
    finally:
        connection.close()


def _check_pool(path: Path) -> None:
    from .hosts.pool import PoolError, ask_hosts, load_pool, silent_hosts

    try:
        answers, problems = ask_hosts(load_pool(path))
    except PoolError as exc:
        raise BackendUnavailable(str(exc)) from None
    if not answers:
        raise BackendUnavailable(f"no host of {path} answers ({silent_hosts(problems)}): start their session servers")


def _create_host(request: WorkspaceRequest, *, sandboxed: bool) -> tuple[Workspace, ProvisionReport]:
    return LocalWorkspace.create(
        request.task,
        request.run_dir,
        env=request.env,
        hidden=request.hidden if sandboxed else (),
        devices=gpu_device_nodes(request.gpu_lease.devices),
        cache_dir=request.settings.cache_dir,
    )


def _create_docker(request: WorkspaceRequest) -> tuple[Workspace, ProvisionReport]:
    from .remote.docker import DockerBackendError, create_docker_workspace

    try:
        return create_docker_workspace(
            request.task,
            request.run_dir,
            request.env,
            request.gpu_lease,
            image=request.settings.docker_image,
            hidden=request.hidden,
            cache_dir=request.settings.cache_dir,
        )
    except DockerBackendError as exc:
        raise BackendUnavailable(str(exc)) from None


def _create_remote(request: WorkspaceRequest) -> tuple[Workspace, ProvisionReport]:
    from .hosts.pool import PoolLease
    from .remote.client import connect_remote_workspace

    lease, task, run_dir, env, hidden = request.gpu_lease, request.task, request.run_dir, request.env, request.hidden
    if not isinstance(lease, PoolLease):
        token = _remote_token(request.settings)
        return connect_remote_workspace(
            task, run_dir, env, base_url=request.settings.remote_url, token=token, grader_hidden=hidden
        )
    # On the pool host whose GPUs the item leased; an item that spans hosts gets one on each.
    made = []
    try:
        for number, held in enumerate(lease.hosts):
            workspace, report = connect_remote_workspace(
                task,
                run_dir if number == 0 else run_dir / "hosts" / held.host.name,
                {**env, "CUDA_VISIBLE_DEVICES": held.cuda_visible_devices()},
                base_url=held.host.url,
                token=held.host.token(),
                grader_hidden=hidden,
                lease_id=held.lease_id,
                alive_check=held.alive_check,
                host_name=held.host.name,
                from_task=True,
            )
            made.append((held, workspace, report))
    except BaseException:
        for _, workspace, _ in made:
            workspace.close()
        raise
    first = made[0][1]
    if len(made) > 1:
        from .hosts.spanning import SpanningSessions

        first.companions = [workspace for _, workspace, _ in made[1:]]
        first.sessions = SpanningSessions(lease.host.name, {h.host.name: w.sessions for h, w, _ in made})
    first.held_hosts = {held.host.name: held.devices for held, _, _ in made}
    return first, made[0][2]


BACKENDS: dict[str, Backend] = {
    backend.name: backend
    for backend in [
        Backend(
            "sandbox",
            "every command and the grader in bubblewrap: only the workspace writable, hidden task parts "
            "and results invisible, own PID namespace, no network unless the task allows it",
            None,
            _check_sandbox,
            lambda request: _create_host(request, sandboxed=True),
        ),
        Backend(
            "local",
            "file tools confined to the workspace, secrets kept out of the environment, sessions reaped; "
            "shell commands are NOT sandboxed",
            None,
            _always,
            lambda request: _create_host(request, sandboxed=False),
        ),
        Backend(
            "docker",
            "one container per item (memory, CPU and process limits; no network); graders in containers of their own",
            "server",
            _check_docker,
            _create_docker,
        ),
        Backend(
            "remote",
            "the workspace on another host's session server (sandboxed there as that server is)",
            "server",
            _check_remote,
            _create_remote,
        ),
    ]
}


def default_backend() -> str:
    """sandbox where bubblewrap works, else local."""
    return "sandbox" if bwrap_path() else "local"
