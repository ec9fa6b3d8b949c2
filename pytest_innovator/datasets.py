"""What a task takes from its dataset: the workspace parts it copies and the environment it unpacks.

A task's `[dataset]` names paths of the user's copy of a dataset (see task.py): workspace parts
and an environment archive (InnovatorBench's `conda/<env>/conda.tar`, tens of GB in the released
dataset). Both are prepared once in a cache and never again for an item or a run: the archive
unpacked, the parts copied into the layout the workspace gives them. Each cache directory is
keyed by what it was made from (the archive's path, size and modification time; every part's
files' paths, sizes, modes and modification times), filled in a temporary sibling renamed into
place under a lock, so that two workers asking at once fill it once.

Where the item's workspace is an overlay (workspace.py), both cache directories are its read-only
lower layers: provisioning is one mount. Elsewhere the parts are copied into the workspace, and
each top-level entry of the unpacked environment appears there (`/workspace/conda`): where the
harness may mount (root), as an overlay of its own whose lower layer is the cache and whose upper
layer is the item's; otherwise as a copy of the cache (cloned where the filesystem can). Those
per-entry overlays are mount points inside the workspace: snapshots and the disk check skip what
is on another file system, and a resume mounts them again over a fresh upper layer (what the
agent changed in the environment before the snapshot is not restored; in an overlay workspace it
is, being part of the item's layer).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .archive import ArchiveError, extract_tar
from .errors import InnovatorError
from .mounts import Overlay, mount_overlay, overlay_unavailable
from .provision import provision, scan_workspace
from .task import Task

COMPLETE_SUFFIX = ".complete"  # a sibling of a cache directory, made last: without it, incomplete


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


def _cached(directory: Path, fill: Callable[[Path], None]) -> Path:
    """``directory``, filled by ``fill`` the first time: into a temporary sibling renamed into
    place under a lock, then marked complete (a sibling ``<name>.complete``), so that workers
    asking at once fill it once and a killed attempt is redone."""
    mark = directory.with_name(directory.name + COMPLETE_SUFFIX)
    if mark.exists():
        return directory
    with _locked(directory.with_name(directory.name + ".lock")):
        if mark.exists():  # another worker filled it while this one waited
            return directory
        shutil.rmtree(directory, ignore_errors=True)  # an attempt that was killed part way
        staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}-", dir=directory.parent))
        try:
            fill(staging)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        staging.rename(directory)
        mark.touch()
    return directory


def unpacked_environment(archive: Path, cache_dir: Path) -> Path:
    """The directory holding `archive` unpacked, unpacking it into the cache the first time."""

    def unpack(staging: Path) -> None:
        try:
            with open(archive, "rb") as stream:
                extract_tar(stream, staging)
        except ArchiveError as exc:
            raise DatasetError(f"{archive}: {exc}") from None

    return _cached(cache_dir / "environments" / f"{archive.parent.name}-{_cache_key(archive)}", unpack)


def composed_parts(task: Task, cache_dir: Path) -> Path:
    """The dataset's workspace parts laid out as the workspace holds them, copied into the cache
    once. The key covers every source file's path, size, mode and modification time (a walk, no
    reading), so a changed dataset gets a new copy."""
    assert task.spec.dataset is not None
    identity = hashlib.sha256()
    for target, source in sorted(task.spec.dataset.workspace.items()):
        path = task.in_dataset(source)
        identity.update(f"{target}\0{path.resolve()}\0".encode())
        listing = scan_workspace(path, []) if path.is_dir() else [(".", path.stat())]
        for relative, info in listing:
            identity.update(f"{relative}\0{info.st_size}\0{info.st_mode}\0{info.st_mtime_ns}\0".encode())
    directory = cache_dir / "workspaces" / f"{task.id}-{identity.hexdigest()[:16]}"
    return _cached(directory, lambda staging: copy_workspace_parts(task, staging))


def dataset_layers(task: Task, cache_dir: Path) -> list[Path]:
    """The read-only lower layers of a dataset task's overlay workspace, topmost first: its
    workspace parts, then its unpacked environment (each from the cache)."""
    dataset = task.spec.dataset
    assert dataset is not None
    layers = [composed_parts(task, cache_dir)] if dataset.workspace else []
    if dataset.environment is not None:
        layers.append(unpacked_environment(task.in_dataset(dataset.environment), cache_dir))
    if not layers:
        layers.append(_cached(cache_dir / "workspaces" / "empty", lambda staging: None))
    return layers


@dataclass
class EnvironmentMounts:
    """The overlays of one item's environment; `unmount` is safe to call more than once."""

    overlays: list[Overlay]

    @property
    def points(self) -> list[Path]:
        return [overlay.merged for overlay in self.overlays]

    def unmount(self) -> None:
        for overlay in reversed(self.overlays):
            overlay.unmount()
        self.overlays = []


def place_environment(unpacked: Path, host_root: Path, layers: Path) -> EnvironmentMounts:
    """Show the unpacked environment's top-level entries inside host_root (see the module's doc).

    `layers` is the item's directory for the overlays' upper and work directories."""
    overlays: list[Overlay] = []
    mounts = EnvironmentMounts(overlays)
    try:
        for entry in sorted(unpacked.iterdir()):
            target = host_root / entry.name
            if entry.is_dir() and not entry.is_symlink() and overlay_unavailable() is None:
                upper, work = layers / "upper" / entry.name, layers / "work" / entry.name
                mounted = mount_overlay([entry], upper, work, target)
                if isinstance(mounted, Overlay):
                    overlays.append(mounted)
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
