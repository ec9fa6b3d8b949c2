"""The workspaces a session server serves: the one given on its command line (id ``main``) and
those created through the API under its ``--root``, each made under a GPU lease or none."""

from __future__ import annotations

import secrets
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path

from ..datasets import DatasetError
from ..gpus import gpu_device_nodes
from ..grading import GradeOutcome, grade_workspace
from ..limits import Limits, LimitSpec
from ..rundir import RunDir
from ..sandbox import Sandbox
from ..sessions import SessionManager
from ..task import Task, TaskError, load_task
from ..workspace import LocalWorkspace, command_environment
from .errors import ApiError
from .leases import LeaseTable

MAIN_WORKSPACE = "main"


@dataclass
class Served:
    """A workspace the server serves, with the directory for what it keeps beside it."""

    id: str
    workspace: LocalWorkspace
    state_dir: Path  # exposed copies go here; for a provisioned workspace, everything of it
    provisioned: bool
    label: str = ""
    lease_id: str | None = None  # the GPU lease it was made under: it is closed when that expires
    task: Task | None = None  # the task it was made from (remote/routes/tasks.py): graded here
    exposed: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def grade(self, seed: int, index: int) -> tuple[GradeOutcome, str]:
        """The task's grader on this workspace, as ResearchEnv runs it on the harness's host; and its log."""
        assert self.task is not None
        log_path = RunDir(self.state_dir).grader_log(index)
        outcome = grade_workspace(self.task, self.workspace, log_path, seed)
        return outcome, log_path.read_text(encoding="utf-8", errors="replace")


class Registry:
    def __init__(self, root: Path | None, sandboxed: bool, gpus: tuple[str, ...] = ()):
        self.root = root
        self.sandboxed = sandboxed
        self.served: dict[str, Served] = {}
        self.lock = threading.Lock()
        log = root / "leases.jsonl" if root else None
        self.leases = LeaseTable(gpus, log, on_expire=lambda lease: self.close_leased(lease.id))

    def add_existing(self, directory: Path, log_dir: Path, state_dir: Path, read_only: list[str]) -> Served:
        """Serve an existing directory (the `--workspace` of a container or a host) as `main`."""
        env = command_environment()
        sandbox = self._sandbox(directory, log_dir, network=False) if self.sandboxed else None
        sessions = SessionManager(directory, log_dir, env=env, wrap=sandbox.argv if sandbox else None)
        workspace = LocalWorkspace(directory, sessions, env, sandbox)
        workspace.linked = frozenset((directory / p).resolve() for p in read_only)
        served = Served(MAIN_WORKSPACE, workspace, state_dir, provisioned=False)
        self.served[served.id] = served
        return served

    def require_root(self) -> Path:
        if self.root is None:
            raise ApiError(
                409,
                "request",
                "this server serves one workspace and creates none: start it with "
                "--root DIR to let clients create workspaces",
            )
        return self.root

    def provision_task(
        self,
        task_dir: Path,
        dataset: str | None,
        dataset_python: str | None,
        env: dict[str, str],
        devices: tuple[str, ...],
        lease_id: str | None,
    ) -> Served:
        """A workspace made from an uploaded task as the sandbox backend makes it (or the local
        backend, with --sandbox off), its commands seeing the lease's GPUs."""
        root = self.require_root()
        if not task_dir.is_dir():
            raise ApiError(404, "request", f"no task {task_dir.name} on this server: upload it with PUT /v1/tasks/")
        try:
            task = load_task(task_dir)
            if task.spec.dataset is not None:
                if dataset is None or not Path(dataset).is_dir():
                    raise ApiError(
                        400,
                        "request",
                        f"task {task.id} takes its files from dataset {task.spec.dataset.name!r}, which is not at "
                        f"{dataset} on this host: put it there (the harness gives its own path)",
                    )
                task = task.with_dataset(Path(dataset), Path(dataset_python) if dataset_python else None)
            workspace_id = secrets.token_hex(8)
            state_dir = root / workspace_id
            hidden = [root, *([task.dataset_root] if task.dataset_root else [])] if self.sandboxed else []
            env = {**env, "CUDA_VISIBLE_DEVICES": ",".join(devices)} if lease_id else env
            workspace, _ = LocalWorkspace.create(
                task, state_dir, env, hidden=hidden, devices=gpu_device_nodes(devices), cache_dir=root / "cache"
            )
        except (TaskError, DatasetError) as exc:
            raise ApiError(400, "request", str(exc)) from None
        served = Served(
            workspace_id, workspace, state_dir, provisioned=True, label=task.id, lease_id=lease_id, task=task
        )
        with self.lock:
            self.served[workspace_id] = served
        return served

    def provision(
        self,
        env: dict[str, str],
        network: bool,
        label: str,
        devices: tuple[str, ...] = (),
        lease_id: str | None = None,
        limits: LimitSpec | None = None,
    ) -> Served:
        """A new workspace; with devices (a lease's), its commands see those GPUs and no others; with
        limits, its sandboxed commands run under them (limits.py)."""
        root = self.require_root()
        workspace_id = secrets.token_hex(8)
        state_dir = root / workspace_id
        directory, log_dir = state_dir / "workspace", state_dir / "sessions"
        directory.mkdir(parents=True)
        log_dir.mkdir()
        command_env = command_environment({**env, "CUDA_VISIBLE_DEVICES": ",".join(devices)} if lease_id else env)
        sandbox = self._sandbox(directory, log_dir, network, gpu_device_nodes(devices)) if self.sandboxed else None
        bounds = Limits(label or workspace_id, limits) if sandbox and limits else None
        wrap = (bounds.bound(sandbox.argv) if bounds else sandbox.argv) if sandbox else None
        workspace = LocalWorkspace(
            directory, SessionManager(directory, log_dir, env=command_env, wrap=wrap), command_env, sandbox
        )
        workspace.limits = bounds
        served = Served(
            workspace_id,
            workspace,
            state_dir,
            provisioned=True,
            label=label,
            lease_id=lease_id,
        )
        with self.lock:
            self.served[workspace_id] = served
        return served

    def _sandbox(self, directory: Path, log_dir: Path, network: bool, devices: list[Path] | None = None) -> Sandbox:
        hidden = [self.root] if self.root else []  # the other workspaces of this server
        return Sandbox(
            writable=[directory],
            readonly=[log_dir],
            hidden=hidden,
            network=network,
            chdir=directory,
            devices=devices or [],
        )

    def get(self, workspace_id: str) -> Served:
        with self.lock:
            served = self.served.get(workspace_id)
            if served is None:
                raise ApiError(
                    404,
                    "workspace",
                    f"there is no workspace {workspace_id!r} on this server; create one with POST /v1/workspaces",
                )
            return served

    def remove(self, workspace_id: str) -> None:
        served = self.get(workspace_id)
        if not served.provisioned:
            raise ApiError(
                409,
                "request",
                f"workspace {workspace_id!r} was given on the command line and is "
                "not removed through the API; stop the server instead",
            )
        with self.lock:
            self.served.pop(workspace_id, None)
        served.workspace.close()
        shutil.rmtree(served.state_dir, ignore_errors=True)

    def close_leased(self, lease_id: str) -> None:
        """End the commands of the workspaces made under a lease that expired (their files stay)."""
        with self.lock:
            served = [item for item in self.served.values() if item.lease_id == lease_id]
        for item in served:
            item.workspace.close()

    def close_all(self) -> None:
        with self.lock:
            served = list(self.served.values())
        for item in served:
            item.workspace.close()
