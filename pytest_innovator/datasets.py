"""What a task takes from its dataset: the workspace parts it copies and the environment it unpacks.

A task's `[dataset]` names paths of the user's copy of a dataset (see task.py). Its workspace
parts are copied into the item's workspace like a task's own starter files (cloned where the
filesystem can). Its environment archive (InnovatorBench's `conda/<env>/conda.tar`, tens of GB
in the released dataset) is unpacked once into a cache and never again for an item or a run:

* the cache holds one directory per archive, keyed by the archive's path, size and modification
  time, unpacked into a temporary sibling and renamed into place under a lock, so that two
  workers asking at once unpack it once;
* each top-level entry of the unpacked archive appears in the workspace (`/workspace/conda`):
  where the harness may mount (root), as an overlay whose lower layer is the cache and whose
  upper layer is the item's own (what the agent installs or changes stays with the item, the
  cache is never written); elsewhere as a copy of the cache (cloned where the filesystem can).

An overlay is a mount point inside the workspace: snapshots and the disk check skip what is on
another file system, and a resume mounts it again over a fresh upper layer (what the agent changed
in the environment before the snapshot is not restored).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .archive import ArchiveError, extract_tar
from .errors import InnovatorError
from .provision import provision
from .task import Task

UNPACKED_MARK = ".unpacked"  # written last: a cache directory without it is incomplete


class DatasetError(InnovatorError):
    """A dataset file the harness cannot use (an archive that is not a tar file, say)."""


def default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "pytest-innovator"


def _cache_key(archive: Path) -> str:
    info = archive.stat()
    identity = f"{archive.resolve()}\0{info.st_size}\0{info.st_mtime_ns}"
    return hashlib.sha256(identity.encode()).hexdigest()[:16]


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def unpacked_environment(archive: Path, cache_dir: Path) -> Path:
    """The directory holding `archive` unpacked, unpacking it into the cache the first time."""
    directory = cache_dir / "environments" / f"{archive.parent.name}-{_cache_key(archive)}"
    if (directory / UNPACKED_MARK).exists():
        return directory
    with _locked(directory.with_name(directory.name + ".lock")):
        if (directory / UNPACKED_MARK).exists():  # another worker unpacked it while this one waited
            return directory
        shutil.rmtree(directory, ignore_errors=True)  # an attempt that was killed part way
        staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}-", dir=directory.parent))
        try:
            with open(archive, "rb") as stream:
                extract_tar(stream, staging)
        except ArchiveError as exc:
            shutil.rmtree(staging, ignore_errors=True)
            raise DatasetError(f"{archive}: {exc}") from None
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        (staging / UNPACKED_MARK).write_text(str(archive), encoding="utf-8")
        staging.rename(directory)
    return directory


@dataclass
class EnvironmentMounts:
    """The overlays of one item's environment; `unmount` is safe to call more than once."""

    points: list[Path]

    def unmount(self) -> None:
        for point in reversed(self.points):
            subprocess.run(["umount", "--lazy", str(point)], capture_output=True)
        self.points = []


def _can_mount() -> bool:
    return os.geteuid() == 0 and shutil.which("mount") is not None


def place_environment(unpacked: Path, host_root: Path, layers: Path) -> EnvironmentMounts:
    """Show the unpacked environment's top-level entries inside host_root (see the module's doc).

    `layers` is the item's directory for the overlays' upper and work directories."""
    points = []
    mounts = EnvironmentMounts(points)
    try:
        for entry in sorted(unpacked.iterdir()):
            if entry.name == UNPACKED_MARK:
                continue
            target = host_root / entry.name
            if entry.is_dir() and not entry.is_symlink() and _can_mount():
                upper, work = layers / "upper" / entry.name, layers / "work" / entry.name
                for directory in (upper, work, target):
                    directory.mkdir(parents=True, exist_ok=True)
                options = f"lowerdir={entry},upperdir={upper},workdir={work}"
                mounted = subprocess.run(
                    ["mount", "-t", "overlay", "overlay", "-o", options, str(target)], capture_output=True, text=True
                )
                if mounted.returncode == 0:
                    points.append(target)
                    continue
                target.rmdir()  # overlays unavailable here (a container without them): copy instead
            if target.exists() or target.is_symlink():
                continue  # restored from a snapshot with the item's own copy
            if entry.is_dir() and not entry.is_symlink():
                provision(entry, target)
            else:
                shutil.copy2(entry, target, follow_symlinks=False)
    except BaseException:
        mounts.unmount()
        raise
    return mounts


def copy_workspace_parts(task: Task, host_root: Path) -> None:
    """Copy the dataset's workspace parts (dataset.workspace) into host_root."""
    assert task.spec.dataset is not None
    for target, source in task.spec.dataset.workspace.items():
        source_path, target_path = task.in_dataset(source), host_root / target
        if source_path.is_dir():
            provision(source_path, target_path)
        else:
            target_path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source_path, target_path)


def provision_from_dataset(task: Task, host_root: Path, layers: Path, cache_dir: Path) -> EnvironmentMounts:
    """The workspace of a task that takes its files from a dataset: its parts copied (unless a
    snapshot restored them), its environment placed from the cache."""
    dataset = task.spec.dataset
    assert dataset is not None
    if not host_root.exists():
        host_root.mkdir(parents=True)
        copy_workspace_parts(task, host_root)
    if dataset.environment is None:
        return EnvironmentMounts([])
    unpacked = unpacked_environment(task.in_dataset(dataset.environment), cache_dir)
    return place_environment(unpacked, host_root, layers)
