"""Provisioning: copy a task's starter workspace into a run's workspace, copy-on-write.

Each regular file is placed one of three ways:

* hard link, only for files the task marks read-only and only with ``allow_links=True``: the run
  shares the task's own file, so the backend must mount those paths read-only (file modes do not
  stop root);
* reflink (``ioctl FICLONE``) where the filesystem can clone (btrfs, XFS with reflink): shares
  data blocks until either side writes, and a write never reaches the task's file. Under
  ``auto`` only files of at least REFLINK_MIN_BYTES are cloned: a small file copies faster than
  it clones;
* a plain copy otherwise.

Directories and symlinks are recreated; modes and mtimes are kept. A symlink must resolve inside
the workspace, or provisioning refuses it by name. Whatever the run does to its copy, the task's
files stay as they were (except through hard links, which is why those need a read-only mount).
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pytest_innovator.protected import matching_paths

Strategy = Literal["auto", "reflink", "link", "copy"]
STRATEGIES: tuple[str, ...] = ("auto", "reflink", "link", "copy")

FICLONE = 0x40049409  # _IOW(0x94, 9, int) in linux/fs.h
# errnos meaning "this pair of files cannot be cloned/linked here", as opposed to a real failure.
NO_REFLINK_ERRNOS = {errno.EOPNOTSUPP, errno.ENOTTY, errno.EXDEV, errno.EINVAL, errno.ENOSYS}
NO_LINK_ERRNOS = {errno.EXDEV, errno.EPERM, errno.EMLINK}
REFLINK_MIN_BYTES = 64 << 10
SYMLINK_HOPS_LIMIT = 40


@dataclass(frozen=True)
class ProvisionReport:
    files: int
    bytes: int
    reflinked: int
    linked: int
    copied: int
    linked_paths: tuple[str, ...]  # shared with the task (hard link, lower layer): mounted read-only
    seconds: float
    strategy: str = "copy"  # "copy" (cloned or linked where it could), "overlay", "snapshot", "dataset"
    note: str = ""  # why an overlay was not used, where one was asked for


NOTHING_PROVISIONED = ProvisionReport(files=0, bytes=0, reflinked=0, linked=0, copied=0, linked_paths=(), seconds=0.0)


def reflink_supported(src_dir: Path, dst_dir: Path) -> bool:
    """True when a file under ``src_dir`` can be cloned into ``dst_dir`` (or its nearest parent).

    The probe clones one of the source's own files (opened read-only) into a scratch directory
    under ``dst_dir``, so it tests exactly the pair of filesystems and mounts involved.
    """
    probe_parent = _nearest_existing_dir(Path(dst_dir))
    sample = _first_regular_file(Path(src_dir))
    with tempfile.TemporaryDirectory(prefix=".reflink-probe-", dir=probe_parent) as scratch:
        if sample is None:
            if os.stat(src_dir).st_dev != os.stat(probe_parent).st_dev:
                return False
            sample = Path(scratch, "sample")
            sample.write_bytes(b"reflink probe")
        try:
            _place_contents(sample, Path(scratch, "clone"), os.lstat(sample), clone_data)
        except OSError as error:
            if error.errno in NO_REFLINK_ERRNOS:
                return False
            raise
    return True


def provision(
    source: Path,
    dest: Path,
    *,
    read_only: Sequence[str] = (),
    allow_links: bool = False,
    strategy: Strategy = "auto",
) -> ProvisionReport:
    """Copy the workspace directory ``source`` into ``dest`` (absent or empty), copy-on-write.

    ``read_only`` holds glob patterns, relative to ``source``, of files the run may only read
    (the pattern rules of :mod:`pytest_innovator.protected`). ``strategy``:

    * ``auto``: hard-link read-only files when ``allow_links``; clone files of REFLINK_MIN_BYTES
      or more when the filesystem can; copy the rest;
    * ``reflink``: clone every file; ``link``: hard-link the read-only files, copy the rest;
      ``copy``: copy everything.

    A strategy that cannot be used raises ValueError, as do a symlink leaving the workspace and a
    ``dest`` that is not empty. On any failure ``dest`` is left as it was found.
    """
    started = time.perf_counter()
    source, dest = Path(source), Path(dest)
    _check_arguments(source, dest, allow_links, strategy)
    entries = list(_scan(source))
    read_only_paths = matching_paths(source, read_only)
    created_dest = not dest.exists()
    dest.mkdir(parents=True, exist_ok=True)
    try:
        can_reflink = strategy in ("auto", "reflink") and reflink_supported(source, dest)
        if strategy == "reflink" and not can_reflink:
            raise ValueError(
                f"strategy 'reflink' needs a filesystem that can clone files (btrfs, or XFS made "
                f"with reflink=1); cloning from {source} into {dest} is not supported here. "
                "Use strategy='auto' (it copies when it cannot clone) or 'copy'."
            )
        placements: dict[str, list[str]] = {"reflinked": [], "linked": [], "copied": []}
        placed_bytes = 0
        directories = [("", os.stat(source))]
        for relative, info in entries:
            # Plain strings: pathlib costs more than the syscalls for small files.
            source_path, dest_path = f"{source}/{relative}", f"{dest}/{relative}"
            if stat.S_ISDIR(info.st_mode):
                os.mkdir(dest_path, 0o700)
                directories.append((relative, info))
            elif stat.S_ISLNK(info.st_mode):
                os.symlink(os.readlink(source_path), dest_path)
                os.utime(dest_path, ns=(info.st_atime_ns, info.st_mtime_ns), follow_symlinks=False)
            else:
                link = allow_links and strategy in ("auto", "link") and relative in read_only_paths
                how = _place_file(source_path, dest_path, info, strategy, link, can_reflink)
                placements[how].append(relative)
                placed_bytes += info.st_size
        # Deepest first, and after their contents: a read-only directory cannot be filled.
        for relative, info in reversed(directories):
            dest_path = os.path.join(dest, relative)
            os.chmod(dest_path, stat.S_IMODE(info.st_mode))
            os.utime(dest_path, ns=(info.st_atime_ns, info.st_mtime_ns))
    except BaseException:
        remove_partial(dest, created_dest)
        raise
    return ProvisionReport(
        files=sum(len(paths) for paths in placements.values()),
        bytes=placed_bytes,
        reflinked=len(placements["reflinked"]),
        linked=len(placements["linked"]),
        copied=len(placements["copied"]),
        linked_paths=tuple(sorted(placements["linked"])),
        seconds=time.perf_counter() - started,
    )


def _check_arguments(source: Path, dest: Path, allow_links: bool, strategy: str) -> None:
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown provisioning strategy {strategy!r}; use one of {STRATEGIES}")
    if strategy == "link" and not allow_links:
        raise ValueError(
            "strategy 'link' shares the task's own files by hard link; pass allow_links=True only "
            "when the backend mounts the read-only files read-only, or use strategy='auto'"
        )
    if not source.is_dir():
        raise ValueError(f"task workspace {source} is not a directory")
    if dest.resolve().is_relative_to(source.resolve()):
        raise ValueError(f"run workspace {dest} is inside the task workspace {source}; put it elsewhere")
    if dest.is_symlink() or (dest.exists() and (not dest.is_dir() or any(dest.iterdir()))):
        raise ValueError(
            f"run workspace {dest} already exists and is not an empty directory; "
            "remove it or choose a new run directory"
        )


def _scan(source: Path, relative: str = "") -> Iterator[tuple[str, os.stat_result]]:
    """Every entry below ``source`` as (relative path, lstat), a directory before its contents."""
    with os.scandir(source / relative) as listing:
        children = sorted(listing, key=lambda entry: entry.name)
    for entry in children:
        child = f"{relative}/{entry.name}" if relative else entry.name
        info = entry.stat(follow_symlinks=False)
        if stat.S_ISLNK(info.st_mode) and not _link_stays_inside(source, child):
            raise ValueError(
                f"symlink {child} -> {os.readlink(source / child)} in {source} points outside the "
                "workspace (or loops); make it point to a path inside the workspace, or replace "
                "it with the file it names"
            )
        if not (stat.S_ISDIR(info.st_mode) or stat.S_ISLNK(info.st_mode) or stat.S_ISREG(info.st_mode)):
            raise ValueError(
                f"{source / child} is neither a file, a directory nor a symlink (a fifo, socket or "
                "device); remove it from the task workspace"
            )
        yield child, info
        if entry.is_dir(follow_symlinks=False):
            yield from _scan(source, child)


def _link_stays_inside(root: Path, link: str) -> bool:
    """Resolve the symlink ``root/link`` step by step as the kernel would; False if a step leaves
    ``root`` or the resolution loops. Stepping out and back in is refused too: in the copy, the
    way back in would lead to a different directory."""
    hops = 0

    def resolve(resolved: list[str], target: str) -> list[str] | None:
        nonlocal hops
        if os.path.isabs(target):
            return None
        for part in target.split("/"):
            if part in ("", "."):
                continue
            if part == "..":
                if not resolved:
                    return None
                resolved.pop()
                continue
            resolved.append(part)
            candidate = root.joinpath(*resolved)
            if candidate.is_symlink():
                hops += 1
                if hops > SYMLINK_HOPS_LIMIT:
                    return None
                resolved.pop()
                followed = resolve(resolved, os.readlink(candidate))
                if followed is None:
                    return None
                resolved = followed
        return resolved

    return resolve(link.split("/")[:-1], os.readlink(root / link)) is not None


def _place_file(source: str, dest: str, info: os.stat_result, strategy: str, link: bool, can_reflink: bool) -> str:
    """Place one regular file; returns how: ``linked``, ``reflinked`` or ``copied``."""
    if link:
        try:
            os.link(source, dest, follow_symlinks=False)
            return "linked"
        except OSError as error:
            if error.errno not in NO_LINK_ERRNOS:
                raise
            if strategy == "link":
                raise ValueError(
                    f"cannot hard-link {source} into {os.path.dirname(dest)} ({error.strerror}); "
                    "hard links need both on one filesystem. Use strategy='auto' to fall back to "
                    "copies."
                ) from error
    if can_reflink and (strategy == "reflink" or info.st_size >= REFLINK_MIN_BYTES):
        try:
            _place_contents(source, dest, info, clone_data)
            return "reflinked"
        except OSError as error:
            if error.errno not in NO_REFLINK_ERRNOS:
                raise
            if strategy == "reflink":
                raise ValueError(
                    f"cannot clone {source} ({error.strerror}); use strategy='auto' to fall back to copies"
                ) from error
            os.unlink(dest)
    _place_contents(source, dest, info, copy_data)
    return "copied"


def _place_contents(
    source: str | Path,
    dest: str | Path,
    info: os.stat_result,
    fill: Callable[[int, int, int], None],
) -> None:
    """Create ``dest`` (it must not exist), fill it from ``source``, give it the mode and times."""
    source_fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        dest_fd = os.open(dest, flags, 0o600)
        try:
            fill(source_fd, dest_fd, info.st_size)
            os.fchmod(dest_fd, stat.S_IMODE(info.st_mode))
            os.utime(dest_fd, ns=(info.st_atime_ns, info.st_mtime_ns))
        finally:
            os.close(dest_fd)
    finally:
        os.close(source_fd)


def clone_data(source_fd: int, dest_fd: int, size: int) -> None:
    """Share the source's blocks with the destination (a reflink); raises OSError where unsupported."""
    fcntl.ioctl(dest_fd, FICLONE, source_fd)


def copy_data(source_fd: int, dest_fd: int, size: int) -> None:
    """Copy ``size`` bytes (the size the scan saw), fewer if the file has shrunk since."""
    offset = 0
    while offset < size and (sent := os.sendfile(dest_fd, source_fd, offset, size - offset)):
        offset += sent


def _first_regular_file(directory: Path) -> Path | None:
    """A non-empty regular file below ``directory`` (an empty one if that is all there is)."""
    empty_file = None
    pending = [directory]
    while pending:
        with os.scandir(pending.pop()) as listing:
            for entry in listing:
                if entry.is_file(follow_symlinks=False):
                    if entry.stat(follow_symlinks=False).st_size:
                        return Path(entry.path)
                    empty_file = empty_file or Path(entry.path)
                elif entry.is_dir(follow_symlinks=False):
                    pending.append(Path(entry.path))
    return empty_file


def _nearest_existing_dir(path: Path) -> Path:
    while not path.is_dir():
        path = path.parent
    return path


def remove_partial(dest: Path, created_dest: bool) -> None:
    """Undo a failed provisioning: remove what was created, leaving ``dest`` as it was found."""
    for directory, _, _ in os.walk(dest):
        if created_dest or directory != str(dest):
            os.chmod(directory, 0o700)
    if created_dest:
        shutil.rmtree(dest, ignore_errors=True)
        return
    for child in dest.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def scan_workspace(root: Path, unreadable: list[str]) -> Iterator[tuple[str, os.stat_result]]:
    """The root (as ".") and every entry below it, a directory before its contents, sorted by
    name. Entries that vanish while being scanned are skipped; directories that cannot be listed
    are yielded without contents and added to ``unreadable``. A file system mounted inside root
    (an environment overlay, see datasets.py) is not the workspace's own: it is left out.
    Used by snapshots and the disk check."""
    root_info = os.lstat(root)
    yield ".", root_info
    root_prefix = f"{root}/"  # plain strings: os.path.join costs as much as the lstat here
    pending = [""]  # directories still to list, the next one last
    while pending:
        relative = pending.pop()
        prefix = f"{relative}/" if relative else ""
        try:
            with os.scandir(root_prefix + relative) as listing:
                names = sorted(entry.name for entry in listing)
        except (FileNotFoundError, NotADirectoryError):
            continue
        except PermissionError:
            unreadable.append(relative or ".")
            continue
        subdirectories = []
        for name in names:
            child = prefix + name
            try:
                info = os.lstat(root_prefix + child)
            except FileNotFoundError:
                continue
            if info.st_dev != root_info.st_dev:
                continue
            yield child, info
            if stat.S_ISDIR(info.st_mode):
                subdirectories.append(child)
        pending.extend(reversed(subdirectories))
