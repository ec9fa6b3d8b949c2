"""The Workspace protocol and the `local` backend.

A workspace is where the agent works: its files, its command sessions, one-shot commands. The
environment and the tools talk to this protocol only, so a sandbox, a container or a remote host
can stand behind it.

What `local` protects: file tools cannot leave the workspace (paths are resolved, symlinks
included, and must stay inside), hidden task parts are never copied in, and every process a
session starts is reaped at close. What it does not: a shell command runs as the harness's user
and can read or write anything that user can, the grader's scratch directory included. Use the
sandbox backend for scores that must be trusted.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from .protected import FileState, ProtectedChange, check_protected, checksum_protected
from .provision import ProvisionReport, provision
from .sessions import SessionManager
from .task import Task


class WorkspaceError(Exception):
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
    sessions: SessionManager
    protects: str  # one line for the session header: what this backend protects

    def read_file(self, path: str) -> bytes: ...
    def write_file(self, path: str, data: bytes) -> None: ...
    def list_dir(self, path: str, depth: int = 1) -> list[DirEntry]: ...
    def exec(self, command: str, timeout: float) -> ExecResult: ...
    def copy_out(self, path: str, dest: Path) -> bool: ...
    def protected_state(self, patterns: Sequence[str]) -> dict[str, FileState]: ...
    def protected_changes(self, before: dict[str, FileState], patterns: Sequence[str]) -> list[ProtectedChange]: ...
    def close(self) -> None: ...


class LocalWorkspace:
    """A directory on this host; sessions are PTY shells started in it."""

    backend = "local"
    protects = (
        "local backend: file tools are confined to the workspace and sessions are reaped at close; "
        "shell commands are NOT sandboxed (they can read the grader and write outside the workspace)"
    )

    def __init__(self, host_root: Path, sessions: SessionManager, env: dict[str, str]):
        self.host_root = host_root
        self.root = str(host_root)
        self.sessions = sessions
        self.env = env

    @classmethod
    def create(cls, task: Task, run_dir: Path, env: dict[str, str] | None = None) -> tuple[LocalWorkspace, ProvisionReport]:
        host_root = run_dir / "workspace"
        # Hard links would share the task's own files with a writable workspace: never here.
        report = provision(task.workspace_dir, host_root, read_only=task.spec.read_only, allow_links=False)
        full_env = {**os.environ, **(env or {})}
        sessions = SessionManager(host_root, run_dir / "sessions", env=full_env)
        return cls(host_root, sessions, full_env), report

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

    def relative(self, host_path: Path) -> str:
        return str(host_path.relative_to(self.host_root.resolve())) or "."

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
                kind = "symlink" if stat.S_ISLNK(st.st_mode) else "dir" if stat.S_ISDIR(st.st_mode) else "file" if stat.S_ISREG(st.st_mode) else "other"
                entries.append(DirEntry(str(child.relative_to(self.host_root)), kind, st.st_size))
                if kind == "dir" and level < depth:
                    walk(child, level + 1)

        walk(top, 1)
        return entries

    def exec(self, command: str, timeout: float) -> ExecResult:
        try:
            proc = subprocess.run(
                ["bash", "-c", command], cwd=self.host_root, env=self.env, capture_output=True,
                timeout=timeout, start_new_session=True,
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

    def protected_state(self, patterns: Sequence[str]) -> dict[str, FileState]:
        return checksum_protected(self.host_root, patterns)

    def protected_changes(self, before: dict[str, FileState], patterns: Sequence[str]) -> list[ProtectedChange]:
        return check_protected(self.host_root, before, patterns)

    def close(self) -> None:
        self.sessions.close_all()
