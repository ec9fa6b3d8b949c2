"""The Workspace protocol and the host backends, `local` and `sandbox`.

A workspace is where the agent works: its files, its command sessions, one-shot commands. The
environment and the tools talk to this protocol only, so a sandbox, a container or a remote host
can stand behind it.

Both host backends confine the file tools to the workspace (paths are resolved, symlinks
included, and must stay inside), never copy hidden task parts in, reap every process a session
starts, and give commands the harness's environment minus anything that looks like a secret.
`local` runs shell commands as the harness's user with nothing else in the way: they can read the
grader and write outside the workspace. `sandbox` runs every command and the grader in bubblewrap
(see sandbox.py): the host read-only, the workspace the only writable place, the task's hidden
parts and the results directory invisible, its own PID namespace, no network unless the task
allows it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

from .datasets import EnvironmentMounts, dataset_layers, default_cache_dir, provision_from_dataset
from .errors import InnovatorError
from .grading import GraderAccess
from .limits import Limits, LimitSpec
from .mounts import (
    Mount,
    Overlay,
    apply_upper_layer,
    mount_overlay,
    mount_sized_filesystem,
    overlay_unavailable,
    readable_upper,
)
from .protected import FileState, ProtectedChange, check_protected, checksum_protected, matching_paths
from .provision import NOTHING_PROVISIONED, ProvisionReport, provision, scan_workspace
from .rundir import RunDir, write_json_atomic
from .sandbox import Sandbox, python_first
from .sessions import SessionManager
from .task import Task

SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|CREDENTIAL", re.IGNORECASE)


def command_environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The harness's environment without secrets (API keys, tokens), its Python first on PATH."""
    env = {k: v for k, v in os.environ.items() if not SECRET_NAME.search(k)}
    env.update(extra or {})
    env["PATH"] = python_first(env.get("PATH"))  # after `extra`: a PATH given there keeps it first
    return env


class WorkspaceError(InnovatorError):
    """A user-caused problem with a path or file (shown to the agent as an error observation)."""


@dataclass(frozen=True)
class DirEntry:
    path: str  # relative to the workspace root
    kind: str  # "file", "dir", "symlink", "other"
    size: int


@dataclass(frozen=True)
class ExecResult:
    exit_code: int | None  # None when it timed out
    output: str


class Workspace(Protocol):
    backend: str
    root: str  # the workspace's path as commands inside it see it
    host_root: Path | None  # its directory on this host; None where it lives elsewhere (remote)
    sessions: SessionManager
    protects: str  # one line for the session header: what this backend protects
    provisioning: str  # how the workspace was made: ProvisionReport.strategy, or "host" (remote)
    overlay: Overlay | None  # the workspace's overlay, when it is one on this host
    limits_text: str  # what bounds the item's processes (memory, CPU, processes), for its properties

    def read_file(self, path: str) -> bytes: ...
    def write_file(self, path: str, data: bytes) -> None: ...
    def list_dir(self, path: str, depth: int = 1) -> list[DirEntry]: ...
    def exec(self, command: str, timeout: float) -> ExecResult: ...
    def copy_out(self, path: str, dest: Path) -> bool: ...
    def expose(self, host_path: Path) -> str: ...
    def wrap_grader(self, argv: list[str], scratch: Path, access: GraderAccess = GraderAccess()) -> list[str]: ...
    def disk_usage(self) -> int: ...
    def limit_events(self) -> list[str]: ...
    def protected_state(self, patterns: Sequence[str]) -> dict[str, FileState]: ...
    def protected_changes(self, before: dict[str, FileState], patterns: Sequence[str]) -> list[ProtectedChange]: ...
    def close(self) -> None: ...


def provision_item_workspace(
    task: Task, run_dir: Path, *, shared: bool, cache_dir: Path | None = None
) -> tuple[ProvisionReport, Overlay | None, EnvironmentMounts]:
    """Make ``run_dir/workspace`` for an item: how it was made, its overlay, its environment's.

    With ``shared`` (a backend that mounts the task's read-only files read-only) the task's starter
    files (a dataset task's: its parts and its environment, from the cache) are the read-only
    lower layers of an overlay whose upper layer (``RunDir.workspace_upper``) is all the item
    writes: one mount, whatever their size. Where no overlay can be mounted, or without
    ``shared``, they are copied (provision.py, datasets.py), and the report's note says why. A
    resume has restored either the workspace itself (then nothing is taken from the task) or the
    upper layer (then it goes over the lower layers again, mounted or applied to a copy)."""
    run = RunDir(run_dir)
    host_root, upper = run.workspace, run.workspace_upper
    cache_dir = cache_dir or default_cache_dir()
    dataset = task.spec.dataset is not None
    restored_layer = upper.is_dir()
    if host_root.exists() and not restored_layer:  # a resume restored the whole workspace
        environment = provision_from_dataset(task, host_root, run.environment_layers, cache_dir) if dataset else None
        return replace(NOTHING_PROVISIONED, strategy="snapshot"), None, environment or EnvironmentMounts([])
    note = ""
    if shared:
        started = time.perf_counter()
        lower = dataset_layers(task, cache_dir) if dataset else [task.workspace_dir]
        mounted = overlay_unavailable() or _mount_overlay_workspace(task, run, lower)
        if isinstance(mounted, Overlay):
            write_json_atomic(run.workspace_lower_record, {"lower": [str(layer) for layer in lower]})
            read_only = sorted(
                relative
                for layer in lower
                for relative in matching_paths(layer, task.spec.read_only)
                if (layer / relative).is_file() and not (layer / relative).is_symlink()
            )
            seconds = time.perf_counter() - started
            note = "" if mounted.upper_filesystem else "the disk limit is only monitored: no filesystem of its size"
            report = replace(
                NOTHING_PROVISIONED, linked_paths=tuple(read_only), seconds=seconds, strategy="overlay", note=note
            )
            return report, mounted, EnvironmentMounts([])
        note = f"no overlay ({mounted})"
        if host_root.is_dir() and not any(host_root.iterdir()):
            host_root.rmdir()
        if not restored_layer:
            shutil.rmtree(run.layers, ignore_errors=True)
    if dataset:
        environment = provision_from_dataset(task, host_root, run.environment_layers, cache_dir)
        report = replace(NOTHING_PROVISIONED, strategy="dataset")
    else:
        environment = EnvironmentMounts([])
        report = provision(task.workspace_dir, host_root, read_only=task.spec.read_only, allow_links=shared)
    if restored_layer:  # the snapshot of an overlay's upper layer, where no overlay is mounted now
        apply_upper_layer(upper, host_root)
        shutil.rmtree(run.layers)
    return replace(report, note=note), None, environment


def _mount_overlay_workspace(task: Task, run: RunDir, lower: list[Path]) -> Overlay | str:
    """The item's overlay workspace, its writable layer on a filesystem of the task's `disk` size
    where one can be made (a layer a resume restored is moved onto it); or why it failed, with
    the restored layer left where it was."""
    restored = run.path / "layers.restored"
    if run.layers.is_dir():
        run.layers.rename(restored)
    disk = mount_sized_filesystem(run.layers_image, run.layers, task.spec.resources.disk)
    if isinstance(disk, Mount) and restored.is_dir():
        subprocess.run(["cp", "-a", f"{restored}/.", str(run.layers)], check=True, capture_output=True)
    elif restored.is_dir():
        restored.rename(run.layers)
    mounted = mount_overlay(lower, run.workspace_upper, run.workspace_overlay_work, run.workspace)
    if isinstance(mounted, str):
        if isinstance(disk, Mount):
            disk.unmount()
            run.layers_image.unlink()
            if restored.is_dir():
                run.layers.rmdir()
                restored.rename(run.layers)
        return mounted
    shutil.rmtree(restored, ignore_errors=True)
    if isinstance(disk, Mount):
        mounted.upper_filesystem = disk
    return mounted


def copy_final_workspace(item_dir: Path, dest: Path) -> None:
    """A plain copy of an item's workspace as it was last: for an overlay workspace (unmounted at
    the item's end, so ``workspace/`` is empty) its lower layers and its upper layer combined."""
    run = RunDir(item_dir)
    if not run.workspace_lower_record.is_file():
        if not run.workspace.is_dir():
            raise WorkspaceError(f"{item_dir} has no workspace/: give one item's directory, RESULTS/runs/RUN_ID/ITEM")
        provision(run.workspace, dest)
        return
    lower = [Path(layer) for layer in json.loads(run.workspace_lower_record.read_text())["lower"]]
    if missing := [str(layer) for layer in lower if not layer.is_dir()]:
        raise WorkspaceError(f"the item's lower layers {', '.join(missing)} are gone: restore the task or the cache")
    provision(lower[-1], dest)
    for layer in reversed(lower[:-1]):
        apply_upper_layer(layer, dest)
    with readable_upper(run.workspace_upper, run.layers_image) as upper:
        apply_upper_layer(upper, dest)


PROVISIONING = {
    "overlay": "an overlay over the task's starter files (shared, read-only), only changes written",
    "copy": "a copy of the task's starter files",
    "snapshot": "restored from a snapshot",
    "dataset": "a copy of the dataset's parts",
}


def provisioning_text(strategy: str, note: str) -> str:
    """The workspace's part of a session header: how it was made and, for a fallback, why."""
    return f"workspace: {PROVISIONING.get(strategy, strategy)}" + (f" ({note})" if note else "")


class LocalWorkspace:
    """A directory on this host; sessions are PTY shells started in it, sandboxed or not."""

    def __init__(self, host_root: Path, sessions: SessionManager, env: dict[str, str], sandbox: Sandbox | None = None):
        self.host_root = host_root
        self.root = str(sandbox.inside(host_root) if sandbox else host_root)
        self.sessions = sessions
        self.env = env
        self.sandbox = sandbox
        self.linked: frozenset[Path] = frozenset()  # the task's own files, shared read-only
        self.environment = EnvironmentMounts([])  # a dataset's environment mounted inside
        self.overlay: Overlay | None = None  # the workspace itself, where it is an overlay
        self.provisioning = "copy"  # how the workspace was made (ProvisionReport.strategy)
        self.provisioning_note = ""
        self.limits: Limits | None = None  # the sandbox's cgroups (or rlimits)

    @property
    def backend(self) -> str:
        return "sandbox" if self.sandbox else "local"

    @property
    def protects(self) -> str:
        if self.sandbox:
            network = "network allowed" if self.sandbox.network else "no network"
            return (
                "sandbox backend (bubblewrap): only the workspace is writable; the grader, the hint, the "
                f"solution and the results are not visible; own PID namespace; {network}; "
                + (f"{self.limits_text}; " if self.limits else "")
                + provisioning_text(self.provisioning, self.provisioning_note)
            )
        return (
            "local backend: file tools are confined to the workspace and sessions are reaped at close; "
            "shell commands are NOT sandboxed (they can read the grader and write outside the workspace); "
            "no resource limits; " + provisioning_text(self.provisioning, self.provisioning_note)
        )

    @classmethod
    def create(
        cls,
        task: Task,
        run_dir: Path,
        env: dict[str, str] | None = None,
        *,
        hidden: Sequence[Path] = (),
        devices: Sequence[Path] = (),
        cache_dir: Path | None = None,
    ) -> tuple[LocalWorkspace, ProvisionReport]:
        """Provision run_dir/workspace; with `hidden` (paths commands must not see) it is sandboxed.

        `devices` are the device nodes (the leased GPUs') the sandbox passes through; `cache_dir`
        holds the unpacked environments of datasets (datasets.py)."""
        host_root = RunDir(run_dir).workspace
        # The task's files are shared (a lower layer, hard links) only in a sandbox, which mounts
        # the read-only ones read-only; the local backend copies (or reflinks) them.
        report, overlay, environment = provision_item_workspace(task, run_dir, shared=bool(hidden), cache_dir=cache_dir)
        command_env = command_environment(env)
        log_dir = RunDir(run_dir).sessions
        log_dir.mkdir(parents=True, exist_ok=True)
        sandbox = limits = None
        if hidden:
            resources = task.spec.resources
            limits = Limits(task.id, LimitSpec(resources.memory, resources.cpus, resources.processes))
            sandbox = Sandbox(
                writable=[host_root],
                readonly=[log_dir],
                hidden=list(hidden),
                network=task.spec.network,
                readonly_inside=[host_root / p for p in report.linked_paths],
                devices=devices,
                places={host_root: Path(task.spec.workspace_path)} if task.spec.workspace_path else {},
            )
            sandbox.chdir = sandbox.inside(host_root)
        sessions = SessionManager(
            host_root, log_dir, env=command_env, wrap=limits.bound(sandbox.argv) if limits else None
        )
        workspace = cls(host_root, sessions, command_env, sandbox)
        workspace.limits = limits
        workspace.linked = frozenset((host_root / p).resolve() for p in report.linked_paths)
        workspace.environment = environment
        workspace.overlay = overlay
        workspace.provisioning = report.strategy
        workspace.provisioning_note = report.note
        return workspace, report

    def resolve(self, path: str) -> Path:
        """Host path for a workspace path; refuses anything that leaves the workspace."""
        candidate = Path(path)
        if candidate.is_absolute():
            try:
                candidate = candidate.relative_to(self.root)
            except ValueError:
                raise WorkspaceError(f"{path}: outside the workspace ({self.root}); use a path inside it") from None
        full = (self.host_root / candidate).resolve()
        root = self.host_root.resolve()
        if full != root and root not in full.parents:
            raise WorkspaceError(f"{path}: resolves outside the workspace; use a path inside {self.root}")
        return full

    def read_file(self, path: str) -> bytes:
        full = self.resolve(path)
        if full.is_dir():
            raise WorkspaceError(f"{path}: is a directory; use list_files")
        try:
            return full.read_bytes()
        except FileNotFoundError:
            raise WorkspaceError(f"{path}: no such file") from None

    def write_file(self, path: str, data: bytes) -> None:
        full = self.resolve(path)
        if full.is_dir():
            raise WorkspaceError(f"{path}: is a directory")
        if full in self.linked:
            raise WorkspaceError(f"{path}: read-only (the task marks it read_only); write a new file instead")
        full.parent.mkdir(parents=True, exist_ok=True)
        full.write_bytes(data)

    def list_dir(self, path: str, depth: int = 1) -> list[DirEntry]:
        top = self.resolve(path)
        if not top.is_dir():
            raise WorkspaceError(f"{path}: not a directory")
        entries: list[DirEntry] = []

        def walk(directory: Path, level: int) -> None:
            for child in sorted(directory.iterdir(), key=lambda p: p.name):
                st = child.lstat()
                kind = (
                    "symlink"
                    if stat.S_ISLNK(st.st_mode)
                    else "dir"
                    if stat.S_ISDIR(st.st_mode)
                    else "file"
                    if stat.S_ISREG(st.st_mode)
                    else "other"
                )
                entries.append(DirEntry(str(child.relative_to(self.host_root)), kind, st.st_size))
                if kind == "dir" and level < depth:
                    walk(child, level + 1)

        walk(top, 1)
        return entries

    def exec(self, command: str, timeout: float) -> ExecResult:
        try:
            argv = ["bash", "-c", command]
            if self.sandbox:
                argv = self.sandbox.argv(argv)
            proc = subprocess.run(
                self.limits.wrap(argv) if self.limits else argv,
                cwd=self.host_root,
                env=self.env,
                capture_output=True,
                timeout=timeout,
                start_new_session=True,
            )
        except subprocess.TimeoutExpired as exc:
            return ExecResult(None, (exc.stdout or b"").decode("utf-8", "replace"))
        return ExecResult(proc.returncode, (proc.stdout + proc.stderr).decode("utf-8", "replace"))

    def copy_out(self, path: str, dest: Path) -> bool:
        """Copy a workspace file or directory to dest (a host path); False when it does not exist.

        Only regular files are submitted: symlinks inside an output directory are left out, so a
        link cannot smuggle a file from outside the workspace into the grader's input.
        """
        try:
            source = self.resolve(path)
        except WorkspaceError:
            return False
        if source.is_dir():

            def links(directory: str, names: list[str]) -> set[str]:
                return {n for n in names if os.path.islink(os.path.join(directory, n))}

            shutil.copytree(source, dest, ignore=links, dirs_exist_ok=True)
        elif source.is_file():
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, dest)
        else:
            return False
        return True

    def expose(self, host_path: Path) -> str:
        """Make a host directory readable to commands started from now on; its path inside."""
        if self.sandbox:
            self.sandbox.extra_readonly.append(host_path)
        return str(host_path)

    def wrap_grader(self, argv: list[str], scratch: Path, access: GraderAccess = GraderAccess()) -> list[str]:
        """Run the grader in the same kind of sandbox as the agent, its scratch directory writable,
        with the leased GPUs."""
        if not self.sandbox:
            return argv
        grader_box = Sandbox(
            writable=[scratch],
            readonly=[*access.readable, *([self.host_root] if access.workspace else [])],
            hidden=self.sandbox.hidden,
            network=access.network,
            chdir=scratch / "grader",
            devices=self.sandbox.devices,
            places=self.sandbox.places,
        )
        return self.limits.wrap_grader(grader_box.argv(argv)) if self.limits else grader_box.argv(argv)

    def limit_events(self) -> list[str]:
        """What the item's resource limits did since the last call, in plain words."""
        said = self.limits.new_events() if self.limits else []
        return said + (self.overlay.newly_full() if self.overlay else [])

    @property
    def limits_text(self) -> str:
        if not self.limits:
            return "none"
        return f"{self.limits.describe()}, {self.overlay.disk_text() if self.overlay else 'disk only monitored'}"

    def disk_usage(self) -> int:
        """Bytes the agent's files take, not counting the task's shared read-only files nor what
        is mounted inside (a dataset's environment: the cache's, shared). For an overlay: its
        upper layer, what the item wrote."""
        if self.overlay is not None:
            return sum(
                info.st_blocks * 512
                for _, info in scan_workspace(self.overlay.upper, unreadable=[])
                if stat.S_ISREG(info.st_mode)
            )
        total = 0
        for relative, info in scan_workspace(self.host_root, unreadable=[]):
            if stat.S_ISREG(info.st_mode) and self.host_root / relative not in self.linked:
                total += info.st_blocks * 512
        return total

    def protected_state(self, patterns: Sequence[str]) -> dict[str, FileState]:
        return checksum_protected(self.host_root, patterns)

    def protected_changes(self, before: dict[str, FileState], patterns: Sequence[str]) -> list[ProtectedChange]:
        return check_protected(self.host_root, before, patterns)

    def close(self) -> None:
        try:
            self.sessions.close_all()
        finally:
            if self.limits is not None:
                self.limits.close()  # whatever the sessions' reapers did not end
            self.environment.unmount()
            if self.overlay is not None:
                self.overlay.unmount()
