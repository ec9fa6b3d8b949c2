"""The harness's mounts: overlays, and the size-limited filesystem of an item's writable layer.

Overlays: read-only lower layers shared by every item, each item writing only its own upper layer.
An item's workspace (workspace.py) and a dataset's environment (datasets.py) are overlays where the
harness may mount them: provisioning then costs one `mount`, whatever the size of the starter
files, and the item's changes are exactly its upper layer, which is what its snapshots store
(snapshots/store.py). In the upper layer the kernel records a deleted lower file as a *whiteout*
(a character device 0/0) and a directory that replaced a lower one as *opaque* (the extended
attribute ``trusted.overlay.opaque = y``); `apply_upper_layer` gives the same view by copying,
where no overlay can be mounted.

Size-limited filesystems: the item's upper layer lives on an ext4 filesystem in a sparse image
file of the task's `disk` size, loop-mounted (`mount_sized_filesystem`), so that writing past the
limit fails inside the item with ENOSPC while the host's disk, the run directory and the ledger
are untouched. The image takes on the host only what is written in it (deleted files' blocks are
given back). ext4's own metadata takes a little of the size: about 7 % at 200 MiB, 2 % at 10 GiB.

Every mount is held by a guard process that unmounts when the harness does, and when the harness
is killed (kill -9 leaves no mount behind).
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

OPAQUE_XATTR = "trusted.overlay.opaque"
MIN_FREE_BYTES = 64 << 10  # less than this left: the item's disk is full (ext4 keeps a few blocks)


# Unmounts its argument when its standard input closes: when the harness unmounts, or dies.
GUARD = "import subprocess, sys; sys.stdin.buffer.read(); subprocess.run(['umount', '--lazy', sys.argv[1]])"


@dataclass
class Mount:
    """A mount point held by its guard; `unmount` may be called more than once."""

    point: Path
    guard: subprocess.Popen[bytes]

    def unmount(self) -> None:
        if self.guard.stdin and not self.guard.stdin.closed:
            self.guard.stdin.close()
            self.guard.wait()
            if os.path.ismount(self.point):  # the guard was killed before it could
                unmount(self.point)


def guarded(point: Path) -> Mount:
    """Start the guard of the mount at ``point`` (unmounting it at once if that fails)."""
    try:
        guard = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", GUARD, str(point)], stdin=subprocess.PIPE, start_new_session=True
        )
    except BaseException:
        unmount(point)
        raise
    return Mount(point, guard)


@dataclass
class Overlay:
    """One mounted overlay: ``merged`` shows ``upper`` over ``lower``. Where the upper layer has a
    filesystem of its own (the item's disk limit), it is unmounted after the overlay."""

    lower: tuple[Path, ...]
    upper: Path
    work: Path
    merged: Path
    mount: Mount
    upper_filesystem: Mount | None = None

    def unmount(self) -> None:
        self.mount.unmount()
        if self.upper_filesystem is not None:
            self.upper_filesystem.unmount()

    _was_full: bool = False

    def disk_full(self) -> bool:
        """True when the upper layer's own filesystem has no block left for the item."""
        if self.upper_filesystem is None:
            return False
        space = os.statvfs(self.upper)
        return space.f_bavail * space.f_frsize < MIN_FREE_BYTES

    def newly_full(self) -> list[str]:
        """In plain words, that the item's disk became full since the last call (or nothing)."""
        full, was_full = self.disk_full(), self._was_full
        self._was_full = full
        if not full or was_full:
            return []
        return [
            f"disk full: this item's writable space ({self.disk_text()}, the task's disk) is used up; "
            "writes fail with 'No space left on device' until files are deleted"
        ]

    def disk_text(self) -> str:
        if self.upper_filesystem is None:
            return "disk only monitored"
        space = os.statvfs(self.upper)
        return f"disk {space.f_blocks * space.f_frsize / 2**30:.3g} GiB"


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
    return Overlay(tuple(lower), upper, work, merged, guarded(merged))


@contextmanager
def readable_upper(upper: Path, image: Path) -> Iterator[Path]:
    """``upper`` readable for the while: where its filesystem (``image``) is no longer mounted (the
    item ended), the image is mounted read-only in a temporary place."""
    if upper.is_dir() or not image.is_file():
        yield upper
        return
    with tempfile.TemporaryDirectory(prefix="pti-layers-") as point:
        mounted = subprocess.run(["mount", "-o", "loop,ro", str(image), point], capture_output=True, text=True)
        if mounted.returncode != 0:
            raise OSError(f"cannot mount {image} to read the item's layer: {mounted.stderr.strip()}")
        try:
            yield Path(point) / upper.name
        finally:
            unmount(Path(point))


def mount_sized_filesystem(image: Path, point: Path, size: int) -> Mount | str:
    """An empty ext4 filesystem of ``size`` bytes in the sparse file ``image``, loop-mounted at
    ``point`` (created if absent); the mount, or why it could not be made."""
    if shutil.which("mkfs.ext4") is None:
        return "no mkfs.ext4 (install e2fsprogs)"
    image.parent.mkdir(parents=True, exist_ok=True)
    with open(image, "wb") as stream:
        stream.truncate(size)
    # No reserved blocks (the item gets all of `size`), no journal (a scratch layer), no discard.
    made = subprocess.run(
        ["mkfs.ext4", "-q", "-F", "-m", "0", "-O", "^has_journal", "-E", "nodiscard,lazy_itable_init=1", str(image)],
        capture_output=True,
        text=True,
    )
    if made.returncode != 0:
        image.unlink()
        return f"mkfs.ext4 failed: {made.stderr.strip()}"
    point.mkdir(parents=True, exist_ok=True)
    # discard: a deleted file's blocks are given back to the host (holes punched in the image).
    mounted = subprocess.run(["mount", "-o", "loop,discard", str(image), str(point)], capture_output=True, text=True)
    if mounted.returncode != 0:
        image.unlink()
        return mounted.stderr.strip() or f"mount exited with {mounted.returncode}"
    return guarded(point)


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
