"""The `docker` backend: one container per item, with the session server inside, driven as `remote`.

The container is made from an image (the task does not name one: the caller passes the
`--innovator-docker-image` setting) with:

* the item's workspace bind-mounted at the task's `workspace_path`, or else at its host path (the
  files of the task's `read_only` list, shared with the task by hard link, bind-mounted read-only
  over it; a dataset's environment, mounted inside it on the host, with it), the session logs directory,
  and a small socket directory; nothing else of the host but the harness's Python installation,
  read-only. The task's grader, solution and hint, the run's ledger and results, and the other
  items' workspaces are not in the container at all;
* a read-only root filesystem and a fresh /tmp; no capabilities, no new privileges; its own PID
  namespace with an init; the task's resources as limits (cpus, memory without extra swap,
  a pids limit); the leased GPUs as device requests; no network unless the task allows it
  (then the host's network, as the sandbox backend does).

The session server runs with the harness's own interpreter, mounted at its own path: the image
needs no Python and no packages, so any image with bash, a glibc at least as new as the host's
and the C libraries that Python's modules link (libssl, libffi, zlib; see
scripts/docker-test-image.sh) works, and server and client are always the same version. It
listens on a unix socket in the bind-mounted socket directory, so it needs no network.

The harness does not trust what runs in the container: file reads and writes, the copy of the
outputs for the grader and the protected-file checks work on the bind-mounted workspace from the
host side (with the local backend's confinement), so a process that replaces the session server
cannot forge them. Sessions and one-shot commands go through the server. The grader runs in a
second container of the same image, with only its scratch directory mounted (and, for a dataset's
own evaluation, the workspace and the evaluation's folder read-only, the network if the task has it).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import site
import sys
import sysconfig
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import httpx

from ..backends import DEFAULT_DOCKER_IMAGE
from ..datasets import EnvironmentMounts
from ..errors import InnovatorError
from ..grader_kit import ALONE_IN_CONTAINER
from ..grading import GraderAccess, grader_environment
from ..limits import Cgroup, LimitSpec
from ..protected import FileState, ProtectedChange
from ..provision import ProvisionReport
from ..rundir import RunDir
from ..sandbox import SYSTEM_DIRS, python_paths
from ..task import Task
from ..workspace import DirEntry, LocalWorkspace, provision_item_workspace, provisioning_text
from .client import RemoteError, RemoteWorkspace, ServerUnreachable

if TYPE_CHECKING:
    import docker  # type: ignore[import-untyped]
    from docker.models.containers import Container  # type: ignore[import-untyped]

    from ..gpus import GpuLease

DEFAULT_IMAGE = DEFAULT_DOCKER_IMAGE
DEFAULT_PIDS_LIMIT = 4096
ITEM_LABEL = "pytest-innovator.item"
SOCKET_DIR_INSIDE = "/run/innovator"
SERVER_START_TIMEOUT_S = 60.0
CONTAINER_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SYSTEM_ROOTS = (*SYSTEM_DIRS, "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")


class DockerBackendError(InnovatorError):
    """The docker backend cannot run here; the message says what to change."""


def docker_client() -> docker.DockerClient:
    """A client of the daemon DOCKER_HOST names (or the local one), checked with a ping."""
    try:
        import docker
    except ImportError:
        raise DockerBackendError("the docker backend needs the docker package: pip install docker") from None
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as exc:
        raise DockerBackendError(
            f"cannot reach the Docker daemon ({exc}): start it (see docs/backends.md, "
            "'dockerd --bridge=none --iptables=false') or set DOCKER_HOST"
        ) from None
    return client


def _is_system_path(path: Path) -> bool:
    return any(path == Path(root) or Path(root) in path.parents for root in SYSTEM_ROOTS)


def container_python_mounts() -> list[tuple[Path, Path]]:
    """What of the harness's Python the container needs, as (host path, container path), none of
    it covering the image's system directories.

    A Python installed under /usr (a distribution's, or a venv made from it) is mounted by its own
    parts (interpreter, standard library, site-packages), not by the image's whole /usr. Docker
    cannot mount a symlink, so the interpreter is also mounted at each system path that the
    harness's `python3` reaches it through (a venv's bin/python3 -> /usr/bin/python3 -> python3.11).
    """
    paths = {p for p in python_paths() if not _is_system_path(p)}
    interpreter = Path(sys.executable).resolve()
    links: list[Path] = []
    if len(paths) < len(python_paths()):
        config = sysconfig.get_paths()
        own_parts = [
            interpreter,
            *(Path(config[k]) for k in ("stdlib", "platstdlib", "purelib", "platlib")),
            *(Path(p) for p in site.getsitepackages()),
        ]
        paths.update(p.resolve() for p in own_parts if p.exists())
        links = [p for p in symlinks_followed(Path(sys.executable)) if _is_system_path(p)]
    existing = sorted(paths)
    outermost = [p for p in existing if not any(q != p and q in p.parents for q in existing)]
    return [(p, p) for p in outermost] + [(interpreter, link) for link in links]


def symlinks_followed(path: Path) -> list[Path]:
    """The symlinks met on the way from path to the file it names, as the paths they are found at."""
    links = []
    while path.is_symlink() and path not in links:
        links.append(path)
        path = Path(os.path.normpath(path.parent / path.readlink()))
    return links


def package_parent() -> str:
    """The directory holding this package: PYTHONPATH in containers, so they import the mounted copy
    whether the harness found it through an editable install or through PYTHONPATH."""
    import pytest_innovator

    return str(Path(pytest_innovator.__file__).resolve().parent.parent)


def _mount(source: Path | str, target: Path | str, *, read_only: bool) -> Any:
    from docker.types import Mount  # type: ignore[import-untyped]

    return Mount(str(target), str(source), type="bind", read_only=read_only)


def workspace_inside(task: Task, host_root: Path) -> Path:
    """Where containers see the workspace: the task's workspace_path, or else its host path."""
    return Path(task.spec.workspace_path or host_root)


def container_options(
    task: Task,
    host_root: Path,
    log_dir: Path,
    socket_dir: Path,
    *,
    image: str,
    env: dict[str, str],
    lease: GpuLease | None,
    linked_paths: Sequence[str] = (),
    hidden: Sequence[Path] = (),
    pids_limit: int = DEFAULT_PIDS_LIMIT,
    label: str = "",
) -> dict[str, Any]:
    """Keyword arguments of `containers.run` for an item's container (see the module docstring)."""
    from docker.types import DeviceRequest, Mount  # type: ignore[import-untyped]

    python = container_python_mounts()
    python_mounts = [target for _, target in python]
    mounts = [_mount(source, target, read_only=True) for source, target in python]
    inside = workspace_inside(task, host_root)
    # Hidden task parts that lie inside a mounted directory (a checkout installed in develop mode).
    for path in hidden:
        if any(m == path or m in path.parents for m in python_mounts):
            empty = Mount(str(path), None, type="tmpfs") if path.is_dir() else _mount("/dev/null", path, read_only=True)
            mounts.append(empty)
    mounts += [
        _mount(host_root, inside, read_only=False),
        *(_mount(host_root / p, inside / p, read_only=True) for p in linked_paths),
        _mount(log_dir, log_dir, read_only=False),
        _mount(socket_dir, SOCKET_DIR_INSIDE, read_only=False),
    ]
    resources = task.spec.resources
    environment = {"PATH": CONTAINER_PATH, "HOME": "/tmp", "LANG": "C.UTF-8", **env, "PYTHONPATH": package_parent()}
    # The leased GPUs appear in the container as devices 0..n-1; the host's numbers would be wrong.
    environment.pop("CUDA_VISIBLE_DEVICES", None)
    command = [
        sys.executable,
        "-m",
        "pytest_innovator.cli",
        "serve",
        "--workspace",
        str(inside),
        "--log-dir",
        str(log_dir),
        "--uds",
        f"{SOCKET_DIR_INSIDE}/server.sock",
        "--token-file",
        f"{SOCKET_DIR_INSIDE}/token",
        "--sandbox",
        "off",
    ]
    for linked in linked_paths:
        command += ["--read-only", linked]
    devices = list(lease.devices) if lease is not None else []
    return {
        "image": image,
        "command": command,
        "user": f"{os.getuid()}:{os.getgid()}",
        "working_dir": str(inside),
        "environment": environment,
        "mounts": mounts,
        "tmpfs": {"/tmp": "rw,exec,mode=1777"},
        "read_only": True,
        "init": True,
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
        "network_mode": "host" if task.spec.network else "none",
        "nano_cpus": int(resources.cpus * 1e9),
        "mem_limit": resources.memory,
        "memswap_limit": resources.memory,
        "pids_limit": pids_limit,
        "device_requests": [DeviceRequest(device_ids=devices, capabilities=[["gpu"]])] if devices else [],
        "labels": {ITEM_LABEL: label},
    }


class DockerWorkspace(RemoteWorkspace):
    """An item's container: sessions and commands through its session server, files from the host."""

    backend = "docker"

    def __init__(
        self,
        client: docker.DockerClient,
        container: Container,
        socket_dir: Path,
        token: str,
        host_root: Path,
        linked: frozenset[Path],
        *,
        task: Task,
        image: str,
        label: str,
        lease: GpuLease | None,
        hidden: Sequence[Path],
        pids_limit: int,
        environment: EnvironmentMounts | None = None,
    ):
        self.client = client
        self.container = container
        self.socket_dir = socket_dir
        self.host_root = host_root
        self.image = image
        self.label = label
        self.task = task
        self.lease = lease
        self.hidden = list(hidden)
        self.pids_limit = pids_limit
        self.environment = environment or EnvironmentMounts([])
        self.provisioning, self.provisioning_note = "copy", ""  # set by create_docker_workspace
        resources = task.spec.resources
        # Docker enforces the limits; its cgroup's counters tell what they did, where it is this host's.
        self.cgroup = Cgroup.of_container(container.id, LimitSpec(resources.memory, resources.cpus, pids_limit))
        transport = httpx.HTTPTransport(uds=str(socket_dir / "server.sock"))
        super().__init__("http://container", token, transport=transport, alive_check=self._check_alive)
        # Host-side file operations, confined to the workspace as the local backend confines them.
        self.files = LocalWorkspace(host_root, cast(Any, self.sessions), {})
        self.files.root = self.root  # the server's: where the container shows the workspace
        self.files.linked = linked

    @property
    def protects(self) -> str:
        resources = self.task.spec.resources
        network = "the host's network" if self.task.spec.network else "no network"
        return (
            f"docker backend (image {self.image}): only the workspace is writable; the grader, the hint, the "
            "solution and the results are not in the container; own PID namespace; limits "
            f"cpus={resources.cpus:g}, memory={resources.memory // (1 << 20)} MiB, pids={self.pids_limit}; "
            f"{network}; {provisioning_text(self.provisioning, self.provisioning_note)}"
        )

    @property
    def limits_text(self) -> str:
        resources = self.task.spec.resources
        disk = self.overlay.disk_text() if self.overlay else "disk only monitored"
        return (
            f"limits by docker: memory {resources.memory / 2**30:.3g} GiB without swap, "
            f"{resources.cpus:g} CPUs, {self.pids_limit} processes, {disk}"
            + ("" if self.cgroup else " (what they did is not reported: the container's cgroup is not on this host)")
        )

    def limit_events(self) -> list[str]:
        said = self.cgroup.new_events() if self.cgroup else []
        return said + (self.overlay.newly_full() if self.overlay else [])

    def _check_alive(self) -> None:
        import docker

        try:
            self.container.reload()
        except docker.errors.DockerException as exc:  # the container is gone altogether
            raise ServerUnreachable(f"the item's container {self.container.name} is gone ({exc})") from None
        if self.container.status != "running":
            code = self.container.attrs.get("State", {}).get("ExitCode")
            raise ServerUnreachable(
                f"the item's container {self.container.name} has stopped (exit code {code}); its sessions are gone"
            )

    def read_file(self, path: str) -> bytes:
        return self.files.read_file(path)

    def write_file(self, path: str, data: bytes) -> None:
        self.files.write_file(path, data)

    def list_dir(self, path: str, depth: int = 1) -> list[DirEntry]:
        return self.files.list_dir(path, depth)

    def copy_out(self, path: str, dest: Path) -> bool:
        return self.files.copy_out(path, dest)

    def disk_usage(self) -> int:
        return self.files.disk_usage()

    def protected_state(self, patterns: Sequence[str]) -> dict[str, FileState]:
        return self.files.protected_state(patterns)

    def protected_changes(self, before: dict[str, FileState], patterns: Sequence[str]) -> list[ProtectedChange]:
        return self.files.protected_changes(before, patterns)

    def wrap_grader(self, argv: list[str], scratch: Path, access: GraderAccess = GraderAccess()) -> list[str]:
        """`docker run` of the grader in a fresh container of the same image: only its scratch
        directory (its copy of grader/ and the submission), the harness's Python and what `access`
        gives (read-only) are mounted; the host's network only when `access` has it.

        The grader keeps Docker's default capabilities (the agent's container has none): run as
        root, grader_kit.run_untrusted drops the agent's code to `nobody` in here, which cannot
        read the grader's 0700 scratch directory (the test image has no bubblewrap)."""
        docker_cli = shutil.which("docker")
        if docker_cli is None:
            raise DockerBackendError(
                "the docker command is needed to run the grader in a container: "
                "apt-get install docker.io (or docker-ce-cli)"
            )
        resources = self.task.spec.resources
        command = [docker_cli]
        if "DOCKER_HOST" in os.environ:
            command += ["--host", os.environ["DOCKER_HOST"]]
        command += [
            "run",
            "--rm",
            "-i",
            "--init",
            "--network",
            "host" if access.network else "none",
            "--user",
            f"{os.getuid()}:{os.getgid()}",
            "--label",
            f"{ITEM_LABEL}={self.label}",
            "--read-only",
            "--tmpfs",
            "/tmp:rw,exec,mode=1777",
            "--security-opt",
            "no-new-privileges",
            "--cpus",
            f"{resources.cpus:g}",
            "--memory",
            str(resources.memory),
            "--memory-swap",
            str(resources.memory),
            "--pids-limit",
            str(self.pids_limit),
            "--workdir",
            str(scratch / "grader"),
            "--volume",
            f"{scratch}:{scratch}",
        ]
        python = container_python_mounts()
        python_mounts = [target for _, target in python]
        if any(Path("/root") in path.parents for path in python_mounts):
            # `nobody` must reach the interpreter through /root, which images keep 0700 (and
            # Docker copies that mode onto a tmpfs): open the tmpfs before the grader starts.
            command += ["--tmpfs", "/root:rw"]
            argv = ["sh", "-c", 'chmod 0755 /root && exec "$@"', "sh", *argv]
        for source, target in python:
            command += ["--volume", f"{source}:{target}:ro"]
        for path in self.hidden:
            if any(m == path or m in path.parents for m in python_mounts):
                command += ["--tmpfs", str(path)] if path.is_dir() else ["--volume", f"/dev/null:{path}:ro"]
        for path in access.readable:  # a dataset's evaluation folder, inside a hidden dataset
            command += ["--volume", f"{path}:{path}:ro"]
        if access.workspace:
            inside = workspace_inside(self.task, self.host_root)
            command += ["--volume", f"{self.host_root}:{inside}:ro"]
            # A bind's read-only flag does not reach the mounts inside it (the environment's overlays).
            for point in self.environment.points:
                command += ["--volume", f"{point}:{inside / point.relative_to(self.host_root)}:ro"]
        if self.lease is not None and self.lease.devices:
            command += ["--gpus", f'"device={",".join(self.lease.devices)}"']
        environment = {
            **grader_environment(scratch),
            "PATH": f"{Path(sys.executable).parent}:{CONTAINER_PATH}",
            "PYTHONPATH": package_parent(),
            ALONE_IN_CONTAINER: "1",
        }
        for name, value in environment.items():
            command += ["--env", f"{name}={value}"]
        return [*command, self.image, *argv]

    def close(self) -> None:
        try:
            super().close()
        except (ServerUnreachable, RemoteError):
            pass  # the container died or its server was replaced: removing it ends everything anyway
        finally:
            import docker

            for container in self.client.containers.list(all=True, filters={"label": f"{ITEM_LABEL}={self.label}"}):
                with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                    container.remove(force=True)  # a grader's may be going already (--rm)
            shutil.rmtree(self.socket_dir, ignore_errors=True)
            self.environment.unmount()
            if self.overlay is not None:
                self.overlay.unmount()


def create_docker_workspace(
    task: Task,
    run_dir: Path,
    env: dict[str, str] | None = None,
    lease: GpuLease | None = None,
    *,
    image: str = DEFAULT_IMAGE,
    hidden: Sequence[Path] = (),
    pids_limit: int | None = None,
    client: docker.DockerClient | None = None,
    start_timeout: float = SERVER_START_TIMEOUT_S,
    cache_dir: Path | None = None,
) -> tuple[DockerWorkspace, ProvisionReport]:
    """Provision run_dir/workspace and start the item's container; the counterpart of
    LocalWorkspace.create. `hidden` lists host paths the container must not see even where a
    mounted directory holds them (the plugin's hidden_paths); `cache_dir` holds the unpacked
    environments of datasets (datasets.py). `pids_limit` defaults to the task's `processes`."""
    import docker

    pids_limit = pids_limit or task.spec.resources.processes

    client = client or docker_client()
    try:
        client.images.get(image)
    except docker.errors.ImageNotFound:
        raise DockerBackendError(
            f"docker image {image!r} not found: build the test image with "
            "scripts/docker-test-image.sh, or name another with --innovator-docker-image"
        ) from None
    host_root = RunDir(run_dir).workspace
    report, overlay, environment = provision_item_workspace(task, run_dir, shared=True, cache_dir=cache_dir)
    mounts = [environment, *([overlay] if overlay else [])]  # unmounted in this order
    log_dir = run_dir / "sessions"
    log_dir.mkdir(parents=True, exist_ok=True)
    # A unix socket's path holds at most 107 bytes, so the socket lives in a short directory.
    socket_dir = Path(tempfile.mkdtemp(prefix="pti-docker-"))
    token = secrets.token_urlsafe(32)
    descriptor = os.open(socket_dir / "token", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with open(descriptor, "w", encoding="utf-8") as stream:
        stream.write(token)
    label = f"innovator-{task.id}-{uuid.uuid4().hex[:8]}"
    options = container_options(
        task,
        host_root,
        log_dir,
        socket_dir,
        image=image,
        env=dict(env or {}),
        lease=lease,
        linked_paths=report.linked_paths,
        hidden=hidden,
        pids_limit=pids_limit,
        label=label,
    )
    try:
        container = client.containers.run(name=label, detach=True, **options)
    except docker.errors.DockerException as exc:
        shutil.rmtree(socket_dir, ignore_errors=True)
        for mount in mounts:
            mount.unmount()
        raise DockerBackendError(f"cannot start a container of {image!r} for task {task.id}: {exc}") from None
    try:
        _wait_for_server(container, socket_dir / "server.sock", token, start_timeout)
        linked = frozenset((host_root / p).resolve() for p in report.linked_paths)
        workspace = DockerWorkspace(
            client,
            container,
            socket_dir,
            token,
            host_root,
            linked,
            task=task,
            image=image,
            label=label,
            lease=lease,
            hidden=hidden,
            pids_limit=pids_limit,
            environment=environment,
        )
        workspace.overlay = overlay
        workspace.provisioning, workspace.provisioning_note = report.strategy, report.note
    except BaseException:
        container.remove(force=True)
        shutil.rmtree(socket_dir, ignore_errors=True)
        for mount in mounts:
            mount.unmount()
        raise
    return workspace, report


def _wait_for_server(container: Container, socket_path: Path, token: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    with httpx.Client(
        transport=httpx.HTTPTransport(uds=str(socket_path)),
        base_url="http://container",
        headers={"Authorization": f"Bearer {token}"},
        timeout=5.0,
    ) as probe:
        while time.monotonic() < deadline:
            if socket_path.exists():
                try:
                    if probe.get("/v1/health").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
            container.reload()
            if container.status not in ("created", "running"):
                output = container.logs(tail=30).decode("utf-8", "replace").strip()
                raise DockerBackendError(
                    f"the session server in container {container.name} exited (status {container.status}): {output}\n"
                    f"The image needs bash, a glibc at least as new as the host's, and the C libraries that the "
                    f"harness's Python ({sys.executable}) links (see scripts/docker-test-image.sh): use such an image, "
                    "or run the harness from a Python built for a system no newer than the image's"
                )
            time.sleep(0.05)
    raise DockerBackendError(f"the session server in container {container.name} did not answer within {timeout:g} s")
