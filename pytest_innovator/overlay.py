"""Overlay mounts: read-only lower layers shared by every item, each item writing only its own upper layer.

An item's workspace (workspace.py) and a dataset's environment (datasets.py) are overlays where the
harness may mount them: provisioning then costs one `mount`, whatever the size of the starter
files, and the item's changes are exactly its upper layer, which is what its snapshots store
(snapshots/store.py). In the upper layer the kernel records a deleted lower file as a *whiteout*
(a character device 0/0) and a directory that replaced a lower one as *opaque* (the extended
attribute ``trusted.overlay.opaque = y``); `apply_upper_layer` gives the same view by copying,
where no overlay can be mounted.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

OPAQUE_XATTR = "trusted.overlay.opaque"


# Unmounts its argument when its standard input closes: when the harness unmounts, or dies.
GUARD = "import subprocess, sys; sys.stdin.buffer.read(); subprocess.run(['umount', '--lazy', sys.argv[1]])"


@dataclass
class Overlay:
    """One mounted overlay: ``merged`` shows ``upper`` over ``lower``; `unmount` may be called twice.

    A guard process holds the mount's life: it unmounts when the harness does, and when the
    harness is killed (kill -9 leaves no mount behind)."""

    lower: tuple[Path, ...]
    upper: Path
    work: Path
    merged: Path
    guard: subprocess.Popen[bytes]

    def unmount(self) -> None:
        if self.guard.stdin and not self.guard.stdin.closed:
            self.guard.stdin.close()
            self.guard.wait()


def overlay_unavailable() -> str | None:
    """Why this process cannot mount an overlay here, or None when it can."""
    if os.geteuid() != 0:
        return "mounting needs root"
    if shutil.which("mount") is None:
        return "no mount command"
    try:
        with open("/proc/filesystems", encoding="ascii") as listing:
            if not any(line.split()[-1:] == ["overlay"] for line in listing):
                return "the kernel has no overlay filesystem"
    except OSError:
        return "/proc/filesystems cannot be read"
    return None


def mount_overlay(lower: Sequence[Path], upper: Path, work: Path, merged: Path) -> Overlay | str:
    """Mount ``lower`` (topmost first) under ``upper`` at ``merged``; the mount, or why it failed.

    ``upper`` and ``work`` must be on one filesystem; they and ``merged`` are created if absent."""
    paths = [*lower, upper, work]
    if any(character in str(path) for path in paths for character in ",:"):
        return "a layer's path holds ',' or ':', which mount options cannot carry"
    for directory in (upper, work, merged):
        directory.mkdir(parents=True, exist_ok=True)
    options = f"lowerdir={':'.join(map(str, lower))},upperdir={upper},workdir={work}"
    mounted = subprocess.run(
        ["mount", "-t", "overlay", "overlay", "-o", options, str(merged)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        return mounted.stderr.strip() or f"mount exited with {mounted.returncode}"
    try:
        guard = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", GUARD, str(merged)], stdin=subprocess.PIPE, start_new_session=True
        )
    except BaseException:
        unmount(merged)
        raise
    return Overlay(tuple(lower), upper, work, merged, guard)


def unmount(point: Path) -> None:
    """Detach a mount (lazily: a process still inside keeps its view until it leaves)."""
    subprocess.run(["umount", "--lazy", str(point)], capture_output=True)


def is_whiteout(info: os.stat_result) -> bool:
    return stat.S_ISCHR(info.st_mode) and info.st_rdev == 0


def is_opaque(directory: str | Path) -> bool:
    try:
        return os.getxattr(directory, OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:  # no such attribute, or a filesystem without extended attributes
        return False


def make_whiteout(path: str | Path) -> None:
    os.mknod(path, stat.S_IFCHR | 0o000, os.makedev(0, 0))


def make_opaque(directory: str | Path) -> None:
    os.setxattr(directory, OPAQUE_XATTR, b"y", follow_symlinks=False)


def apply_upper_layer(upper: Path, dest: Path) -> None:
    """Change ``dest`` (a copy of the lower layers) into the merged view: what ``upper`` deletes is
    deleted, an opaque directory replaces what was there, every other entry of ``upper`` is copied
    over the one below."""
    directories = []
    for directory, subdirectories, files in os.walk(upper):
        relative = os.path.relpath(directory, upper)
        target = dest / relative
        if relative != "." and is_opaque(directory):
            _remove(target)
        if not target.is_dir() or target.is_symlink():
            _remove(target)
            target.mkdir()
        os.chmod(target, 0o700)
        directories.append((directory, target))
        for name in [*files, *(d for d in subdirectories if os.path.islink(os.path.join(directory, d)))]:
            source, placed = os.path.join(directory, name), target / name
            _remove(placed)
            if not is_whiteout(os.lstat(source)):
                shutil.copy2(source, placed, follow_symlinks=False)
    for directory, target in reversed(directories):  # after their contents: a read-only one cannot be filled
        shutil.copystat(directory, target)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
