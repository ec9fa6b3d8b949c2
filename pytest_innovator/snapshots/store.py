"""Snapshots of an item's workspace and state, taken while its sessions keep running.

A store (one per item, ``<run dir>/snapshots``) holds::

    objects/ab/cdef...     file contents by sha256: written once, read-only (0o444), never modified
    <name>/info.json       what ``list()`` returns about the snapshot
    <name>/manifest.jsonl  every path of the workspace: kind, mode, mtime, size, object or target
    <name>/state.json      the caller's state (ledger, trajectory position, memory, agent, sessions)
    .tmp-<name>/           a snapshot being built, or one a crash interrupted
    .incoming/             file copies not yet named by their hash
    .lock                  serialises ``take`` and ``prune`` across processes

Incremental. A file whose size, mtime, ctime and inode equal the previous snapshot's record is
not read again: the new manifest names the same object. Any other file is copied and hashed; its
object is stored only if no snapshot has that content yet. A snapshot therefore costs the bytes
that changed plus its manifest (about 160 bytes a path). Snapshots share objects by naming them
in their manifests rather than by hard-linking a tree per snapshot: a common file (an empty
``__init__.py``) would otherwise reach the filesystem's limit of links per inode.

Atomic. Objects are written first (an object nobody names is harmless and ``prune`` collects it),
then ``manifest.jsonl``, ``state.json`` and ``info.json`` go into ``.tmp-<name>``, which is renamed
to ``<name>`` in one ``os.replace``. A snapshot is complete or absent: ``list`` sees only renamed
directories and removes ``.tmp-*`` leftovers. With ``durable=True`` (the default) the store's
filesystem is flushed (``syncfs``) before the rename and the store's directory after it, so a
power cut cannot leave a snapshot that names objects which never reached the disk.

Consistent without stopping sessions. Each file is captured on its own (the snapshot is not one
instant of the whole tree): it is opened and ``fstat``-ed; an ``lseek(SEEK_DATA)`` then waits for
a ``write()`` already in progress (on ext4, btrfs and tmpfs it takes the inode lock that ``write()``
holds; on XFS each read takes it); the file is copied into ``.incoming`` while being hashed, and
``fstat``-ed again through the same descriptor. The copy is kept only if

* (size, mtime_ns, ctime_ns) are the same before and after the copy: no write began after the
  first ``fstat``; and, only where timestamps are coarse,
* its ctime is older than the start of the attempt by at least RACY_WINDOW_NS (2 s for a file on a
  filesystem with whole-second timestamps).

The first condition is exact where the kernel gives a file a new ctime for every change made
after its times were read (multigrain timestamps: Linux 6.13 and later on ext4, XFS, btrfs,
tmpfs). Each snapshot checks this on the store's filesystem (20 write-and-``fstat`` pairs inside
one clock tick must all show a new ctime; the workspace must be on the same filesystem). Elsewhere
the kernel stamps files from a clock that ticks every few milliseconds, so a write in the same tick
as the first ``fstat`` may leave the times unchanged: the second condition refuses a copy of a
file changed that recently.

On a filesystem that can clone (btrfs, XFS with reflink) the file is cloned (``FICLONE``) instead
of copied. A clone is made under the inode locks that ``write()`` also takes, so it is one state
of the file; the second condition is not needed there.

A file that fails the check is tried again, after waiting out the racy window, up to
CAPTURE_ROUNDS times. If it is still being written, the snapshot keeps the previous snapshot's
version of that file (none if there is no previous one, and the file is then absent from a
restore) and records the path as ``changing`` in the manifest and in ``SnapshotInfo.changing``.
A file the snapshot may not read (a run without root made it unreadable) is handled the same way,
and a directory it may not list is recorded without its contents and listed in ``changing``.
A file replaced by rename (write a temporary file, then rename it over: what careful writers do)
is read through the inode that was opened, which its writer no longer touches; only the next
rename over it (which changes its ctime) during the copy makes the attempt start again.

What this does not cover: a writer that changes a file's bytes without changing its times (a
shared memory map flushed later), and, on a filesystem where neither ``lseek`` nor ``read`` waits
for a ``write()`` in progress (NFS, FUSE), a single ``write()`` call overwriting existing bytes
that lasts longer than RACY_WINDOW_NS. And a program that rewrites a file in place passes through
states that are none of its versions (empty after the truncation, half written): a snapshot may
record such a state, exactly as a crash at that moment would leave it.

Restore. Files are recreated by reflink from the store where the filesystem can clone, otherwise
copied: never hard-linked, so the restored workspace can be written without touching the store.
Modes, mtimes and symlinks are kept; ownership is not recorded; paths that were hard links to
one another come back as separate files; fifos and sockets are listed in the manifest as
``other`` and not recreated.

Overlay workspaces. Where an item's workspace is an overlay (mounts.py), its snapshots take the
upper layer only (``take(..., layer=True)``): they read what the item changed, never the task's
starter files below it. A file the item deleted is a whiteout there (kind ``whiteout``), a
directory it replaced is ``opaque``; a restore recreates both, so the overlay mounted over the
restored layer shows the deleted file deleted and the replaced directory without the lower one's
contents.
"""

from __future__ import annotations

import builtins
import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import stat
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..mounts import is_opaque, is_whiteout, make_opaque, make_whiteout, readable_upper
from ..protected import HASH_CHUNK_BYTES, sha256_of
from ..provision import (
    FICLONE,
    NO_REFLINK_ERRNOS,
    clone_data,
    copy_data,
    reflink_supported,
    remove_partial,
    scan_workspace,
)
from ..rundir import RunDir

SNAPSHOT_SCHEMA = 1
CAPTURE_ROUNDS = 4
CLOCK_REALTIME_COARSE = 5  # linux/time.h: the clock file timestamps are taken from
WHOLE_SECOND_RACY_WINDOW_NS = 2_000_000_000
TMP_PREFIX = ".tmp-"
INCOMING_DIR = ".incoming"
OBJECTS_DIR = "objects"
_Rows = dict[str, dict[str, Any]]  # manifest entries by path
_Lines = dict[str, str]  # their lines in manifest.jsonl, by path
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
# manifest.jsonl: a header line, then one line per path: a JSON array of these fields (null where
# one does not apply). An unchanged path's line is carried over from the previous manifest as
# text, so a snapshot encodes only what changed.
MANIFEST_FIELDS = (
    "path",
    "kind",
    "mode",
    "mtime_ns",
    "size",
    "object",
    "target",
    "ctime_ns",
    "ino",
    "changing",
    "opaque",
)


def _racy_window_ns() -> int:
    """Three ticks of the coarse clock (HZ 100 to 1000), and never under 10 ms."""
    try:
        tick_s = time.clock_getres(CLOCK_REALTIME_COARSE)
    except OSError:
        tick_s = 0.01
    return max(10_000_000, int(3 * tick_s * 1e9))


RACY_WINDOW_NS = _racy_window_ns()


@dataclass(frozen=True)
class SnapshotInfo:
    name: str
    created_at: float  # wall clock, seconds since the epoch
    step: int
    files: int  # regular files with a recorded version
    bytes_total: int  # their sizes
    bytes_added: int  # new objects plus this snapshot's own files: what it added to the store
    seconds: float
    # Not captured as they are now: files still being written or unreadable (kept at their
    # previous version, or absent), and directories that could not be listed (restored empty).
    changing: tuple[str, ...] = field(default=())
    layer: bool = False  # the upper layer of an overlay workspace, not the whole workspace


class SnapshotStore:
    """Content-addressed snapshots of one workspace (see the module docstring)."""

    def __init__(self, root: Path, *, durable: bool = True):
        self.root = Path(root)
        self.durable = durable
        self.objects_dir = self.root / OBJECTS_DIR
        # The last snapshot this object took, as ((name, sequence), entries by path, lines by
        # path): the next take compares against it without reading its manifest back.
        self._last_taken: tuple[tuple[str, int], _Rows, _Lines] | None = None

    # --- taking -------------------------------------------------------------------------------

    def take(
        self, workspace: Path, state: dict[str, Any], *, step: int, name: str | None = None, layer: bool = False
    ) -> SnapshotInfo:
        """Snapshot ``workspace`` with ``state`` (builtin types only), stored as ``state.json``.

        With ``layer``, ``workspace`` is an overlay's upper layer (mounts.py): its whiteouts and
        opaque directories are recorded, and a restore recreates them."""
        started = time.perf_counter()
        created_at = time.time()
        workspace = Path(workspace)
        state_text = _state_json(state)
        self._check_workspace(workspace)
        self.root.mkdir(parents=True, exist_ok=True)
        with self._locked():
            self._remove_leftovers()
            records = self._complete_records()
            sequence = records[-1]["sequence"] + 1 if records else 1
            name = name if name is not None else f"{sequence:04d}-step{step}"
            self._check_new_name(name)
            previous, previous_lines = self._rows(records[-1]) if records else ({}, {})
            (self.root / INCOMING_DIR).mkdir(exist_ok=True)
            self.objects_dir.mkdir(exist_ok=True)
            capture = _Capture(self, workspace, previous)
            entries = capture.run()
            header = {
                "schema": SNAPSHOT_SCHEMA,
                "name": name,
                "workspace": str(workspace),
                "layer": layer,
                "fields": MANIFEST_FIELDS,
            }
            lines = []
            files = bytes_total = 0
            for path, entry in entries.items():
                reused = previous.get(path) is entry
                lines.append(previous_lines[path] if reused else _manifest_line(entry))
                if entry["kind"] == "file" and entry.get("object"):
                    files += 1
                    bytes_total += entry["size"]
            manifest_text = "\n".join([json.dumps(header), *lines, ""])
            building = self.root / f"{TMP_PREFIX}{name}"
            building.mkdir()
            (building / "manifest.jsonl").write_text(manifest_text, encoding="utf-8")
            (building / "state.json").write_text(state_text, encoding="utf-8")
            info = SnapshotInfo(
                name=name,
                created_at=created_at,
                step=step,
                files=files,
                bytes_total=bytes_total,
                bytes_added=capture.bytes_added + len(manifest_text.encode()) + len(state_text),
                seconds=time.perf_counter() - started,
                changing=tuple(capture.changing),
                layer=layer,
            )
            info_text = json.dumps({**asdict(info), "sequence": sequence}, indent=1)
            (building / "info.json").write_text(info_text, encoding="utf-8")
            if self.durable:  # objects and files on disk before the rename names them
                _sync_filesystem(self.root)
            os.replace(building, self.root / name)
            if self.durable:
                _fsync_directory(self.root)
            self._last_taken = ((name, sequence), entries, dict(zip(entries, lines)))
        return info

    def _check_workspace(self, workspace: Path) -> None:
        if not workspace.is_dir() or workspace.is_symlink():
            raise ValueError(f"workspace {workspace} is not a directory; snapshot an existing one")
        if self.root.resolve().is_relative_to(workspace.resolve()):
            raise ValueError(
                f"snapshot store {self.root} is inside the workspace {workspace}; it would "
                "snapshot itself. Put the store beside the workspace (e.g. <run dir>/snapshots)"
            )

    def _check_new_name(self, name: str) -> None:
        if not NAME_PATTERN.fullmatch(name) or name == OBJECTS_DIR:
            raise ValueError(
                f"snapshot name {name!r} is not allowed: use letters, digits, '.', '_' and '-' "
                f"(at most 100, starting with a letter or digit), and not {OBJECTS_DIR!r}"
            )
        if (self.root / name).exists():
            raise ValueError(f"a snapshot named {name!r} already exists in {self.root}; pick another")

    # --- reading ------------------------------------------------------------------------------

    def list(self) -> builtins.list[SnapshotInfo]:
        """Complete snapshots, oldest first. Leftovers of interrupted snapshots are ignored, and
        removed when no other process holds the store."""
        if not self.root.is_dir():
            return []
        with self._locked(wait=False) as acquired:
            if acquired:
                self._remove_leftovers()
        return [_info_from_record(record) for record in self._complete_records()]

    def latest(self) -> SnapshotInfo | None:
        snapshots = self.list()
        return snapshots[-1] if snapshots else None

    def load_state(self, name: str) -> dict[str, Any]:
        state: dict[str, Any] = json.loads(self._snapshot_file(name, "state.json").read_text())
        return state

    def manifest(self, name: str) -> builtins.list[dict[str, Any]]:
        """The snapshot's entries, a directory before its contents; each a dict of the
        MANIFEST_FIELDS that apply to it."""
        return builtins.list(self._read_manifest(name)[0].values())

    def object_path(self, digest: str) -> Path:
        return self.objects_dir / digest[:2] / digest[2:]

    def _snapshot_file(self, name: str, file_name: str) -> Path:
        path = self.root / name / file_name
        if not NAME_PATTERN.fullmatch(name) or not path.is_file():
            known = ", ".join(info.name for info in self.list()) or "none"
            raise ValueError(f"no snapshot named {name!r} in {self.root} (snapshots: {known})")
        return path

    def _rows(self, record: dict[str, Any]) -> tuple[_Rows, _Lines]:
        """The manifest of the snapshot ``record`` (from info.json) describes."""
        if self._last_taken is not None and self._last_taken[0] == (
            record["name"],
            record["sequence"],
        ):
            return self._last_taken[1], self._last_taken[2]
        return self._read_manifest(record["name"])

    def _read_manifest(self, name: str) -> tuple[_Rows, _Lines]:
        entries: _Rows = {}
        lines: _Lines = {}
        with open(self._snapshot_file(name, "manifest.jsonl"), encoding="utf-8") as stream:
            fields = json.loads(next(stream))["fields"]
            for line in stream:
                line = line.rstrip("\n")
                row = json.loads(line)
                entry = {key: value for key, value in zip(fields, row) if value is not None}
                entries[entry["path"]] = entry
                lines[entry["path"]] = line
        return entries, lines

    def _complete_records(self) -> builtins.list[dict[str, Any]]:
        records = []
        for child in self.root.iterdir():
            if child.name.startswith(".") or child.name == OBJECTS_DIR:
                continue
            try:
                records.append(json.loads((child / "info.json").read_text()))
            except (FileNotFoundError, NotADirectoryError):
                continue
        return sorted(records, key=lambda record: record["sequence"])

    # --- restoring ----------------------------------------------------------------------------

    def restore(self, name: str, dest: Path) -> None:
        """Recreate the snapshot's workspace at ``dest`` (absent or an empty directory).

        Files are cloned out of the store where the filesystem can, copied otherwise. On failure
        ``dest`` is left as it was found."""
        self._snapshot_file(name, "manifest.jsonl")  # an unknown name: say which ones exist
        with self._locked(shared=True):
            self._restore(name, Path(dest))

    def _restore(self, name: str, dest: Path) -> None:
        entries = self.manifest(name)
        if dest.is_symlink() or (dest.exists() and (not dest.is_dir() or any(dest.iterdir()))):
            raise ValueError(
                f"cannot restore into {dest}: it exists and is not an empty directory; remove it or choose a new path"
            )
        created_dest = not dest.exists()
        dest.mkdir(parents=True, exist_ok=True)
        try:
            can_clone = reflink_supported(self.objects_dir, dest)
            directories = []
            for entry in entries:
                path = os.path.join(dest, entry["path"])
                kind = entry["kind"]
                if kind == "dir":
                    if entry["path"] != ".":
                        os.mkdir(path, 0o700)
                    if entry.get("opaque"):
                        make_opaque(path)
                    directories.append((path, entry))
                elif kind == "whiteout":
                    _restore_whiteout(name, entry["path"], path)
                elif kind == "symlink":
                    os.symlink(entry["target"], path)
                    mtime = entry["mtime_ns"]
                    os.utime(path, ns=(mtime, mtime), follow_symlinks=False)
                elif kind == "file" and entry.get("object"):
                    self._restore_file(entry, path, can_clone)
            # Deepest first, after their contents: a read-only directory cannot be filled.
            for path, entry in reversed(directories):
                os.chmod(path, entry["mode"])
                os.utime(path, ns=(entry["mtime_ns"], entry["mtime_ns"]))
        except BaseException:
            remove_partial(dest, created_dest)
            raise

    def _restore_file(self, entry: dict[str, Any], path: str, can_clone: bool) -> None:
        source_fd = os.open(self.object_path(entry["object"]), os.O_RDONLY | os.O_CLOEXEC)
        try:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            dest_fd = os.open(path, flags, 0o600)
            try:
                cloned = False
                if can_clone:
                    try:
                        clone_data(source_fd, dest_fd, entry["size"])
                        cloned = True
                    except OSError as error:
                        if error.errno not in NO_REFLINK_ERRNOS:
                            raise
                if not cloned:
                    copy_data(source_fd, dest_fd, entry["size"])
                os.fchmod(dest_fd, entry["mode"])
                os.utime(dest_fd, ns=(entry["mtime_ns"], entry["mtime_ns"]))
            finally:
                os.close(dest_fd)
        finally:
            os.close(source_fd)

    # --- pruning ------------------------------------------------------------------------------

    def prune(self, keep_last: int = 3, keep_every: int | None = None) -> builtins.list[str]:
        """Remove snapshots outside the keep policy; returns their names, oldest first.

        Kept: the ``keep_last`` newest (the latest is always kept) and, with ``keep_every`` = k,
        every snapshot whose sequence number (1, 2, ... in the order taken) is a multiple of k.
        When it removes a snapshot, it deletes every object no remaining snapshot names (those a
        crashed take left too); with nothing to remove it reads no manifest, so calling it after
        every take is cheap."""
        if keep_last < 1:
            raise ValueError(f"keep_last={keep_last}: at least the latest snapshot is always kept; use 1 or more")
        if keep_every is not None and keep_every < 1:
            raise ValueError(f"keep_every={keep_every}: use a positive number, or None")
        if not self.root.is_dir():
            return []
        with self._locked():
            self._remove_leftovers()
            records = self._complete_records()
            kept = {record["name"] for record in records[-keep_last:]}
            if keep_every is not None:
                kept |= {r["name"] for r in records if r["sequence"] % keep_every == 0}
            removed = [record["name"] for record in records if record["name"] not in kept]
            for name in removed:
                # Out of list()'s sight in one rename, then deleted at leisure.
                doomed = self.root / f"{TMP_PREFIX}removed-{name}"
                os.replace(self.root / name, doomed)
                shutil.rmtree(doomed)
            if removed:
                self._collect_garbage({r["name"] for r in records} - set(removed))
        return removed

    def _collect_garbage(self, names: set[str]) -> None:
        referenced = {entry["object"] for name in names for entry in self.manifest(name) if entry.get("object")}
        if not self.objects_dir.is_dir():
            return
        for fan_out in os.scandir(self.objects_dir):
            for item in os.scandir(fan_out.path):
                if fan_out.name + item.name not in referenced:
                    os.unlink(item.path)
            if not any(os.scandir(fan_out.path)):
                os.rmdir(fan_out.path)

    # --- housekeeping -------------------------------------------------------------------------

    @contextmanager
    def _locked(self, wait: bool = True, shared: bool = False) -> Iterator[bool]:
        """Hold the store's lock (``flock``, released by the kernel if the process dies): shared
        while restoring, so no prune deletes what is being read; exclusive otherwise."""
        fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            try:
                mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
                fcntl.flock(fd, mode | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(fd)

    def _remove_leftovers(self) -> None:
        """What an interrupted take or prune left: half-built snapshots and unnamed copies."""
        for child in self.root.iterdir():
            if child.name.startswith(TMP_PREFIX):
                shutil.rmtree(child)
        shutil.rmtree(self.root / INCOMING_DIR, ignore_errors=True)


class _Capture:
    """One snapshot's pass over a workspace: the manifest entries and the objects they need."""

    def __init__(self, store: SnapshotStore, workspace: Path, previous: dict[str, dict[str, Any]]):
        self.store = store
        self.workspace = workspace
        self.previous = previous
        self.incoming = store.root / INCOMING_DIR
        # Probed on the store's own files: a workspace file may vanish under the probe. Cloning
        # needs one filesystem; a pair that still cannot clone falls back to a copy per file.
        same_filesystem = os.stat(workspace).st_dev == os.stat(self.incoming).st_dev
        self.clone = same_filesystem and reflink_supported(self.incoming, self.incoming)
        self.fine_grained_times = same_filesystem and fine_grained_timestamps(self.incoming)
        self.bytes_added = 0
        self.changing: list[str] = []

    def run(self) -> _Rows:
        """The snapshot's entries by path, a directory before its contents."""
        entries: dict[str, dict[str, Any] | None] = {}
        pending: list[str] = []
        for relative, info in scan_workspace(self.workspace, self.changing):
            if stat.S_ISREG(info.st_mode):
                reused = self._unchanged(relative, info)
                entries[relative] = reused
                if reused is None:
                    pending.append(relative)
            else:
                entries[relative] = _entry_without_contents(self.workspace, relative, info)
        for round_index in range(CAPTURE_ROUNDS):
            retry_after_ns = 0
            still_pending = []
            for relative in pending:
                try:
                    outcome = self._capture(relative)
                except PermissionError:  # chmod 000 by a run without root: as if never settled
                    entries[relative] = self._kept_previous(relative)
                    continue
                if isinstance(outcome, int):
                    still_pending.append(relative)
                    retry_after_ns = max(retry_after_ns, outcome)
                else:
                    entries[relative] = outcome
            pending = still_pending
            if not pending:
                break
            if round_index < CAPTURE_ROUNDS - 1:
                wait_s = (retry_after_ns - time.time_ns()) / 1e9
                time.sleep(min(max(wait_s, 0.0), WHOLE_SECOND_RACY_WINDOW_NS / 1e9 + 0.5))
        for relative in pending:
            entries[relative] = self._kept_previous(relative)
        return {path: entry for path, entry in entries.items() if entry is not None}

    def _unchanged(self, relative: str, info: os.stat_result) -> dict[str, Any] | None:
        """The previous snapshot's entry if the file has not changed since, else None."""
        before = self.previous.get(relative)
        if (
            before is not None
            and before.get("object")
            and not before.get("changing")
            and before["size"] == info.st_size
            and before["mtime_ns"] == info.st_mtime_ns
            and before["ctime_ns"] == info.st_ctime_ns  # a chmod or utime changes it too
            and before["ino"] == info.st_ino
        ):
            return before
        return None

    def _capture(self, relative: str) -> dict[str, Any] | int | None:
        """One attempt: the file's entry (None if it is gone), or the time (ns) after which to
        try again because it changed or may have changed during the copy."""
        path = os.path.join(self.workspace, relative)
        attempt_started_ns = time.time_ns()
        try:
            source_fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as error:
            # Deleted or replaced by something else since the scan: the next snapshot sees what.
            if error.errno in (errno.ENOENT, errno.ELOOP, errno.ENOTDIR, errno.ENXIO):
                return None
            raise
        incoming = os.path.join(self.incoming, uuid.uuid4().hex)
        try:
            before = os.fstat(source_fd)
            if not stat.S_ISREG(before.st_mode):
                return None
            _wait_for_write_in_progress(source_fd)
            cloned, digest = _copy_into(source_fd, incoming, self.clone)
            after = os.fstat(source_fd)
        except BaseException:
            _unlink_quietly(incoming)
            raise
        finally:
            os.close(source_fd)
        version = (before.st_size, before.st_mtime_ns, before.st_ctime_ns)
        window_ns = _racy_window_for(before.st_ctime_ns)
        if version != (after.st_size, after.st_mtime_ns, after.st_ctime_ns):
            _unlink_quietly(incoming)
            return after.st_ctime_ns + window_ns
        racy = before.st_ctime_ns > attempt_started_ns - window_ns
        if racy and not cloned and not self.fine_grained_times:
            _unlink_quietly(incoming)
            return before.st_ctime_ns + window_ns
        self._store_object(incoming, digest, before.st_size)
        return {
            "path": relative,
            "kind": "file",
            "mode": stat.S_IMODE(before.st_mode),
            "mtime_ns": before.st_mtime_ns,
            "size": before.st_size,
            "object": digest,
            "ctime_ns": before.st_ctime_ns,
            "ino": before.st_ino,
        }

    def _store_object(self, incoming: str, digest: str, size: int) -> None:
        final = self.store.object_path(digest)
        if final.exists():
            os.unlink(incoming)
            return
        final.parent.mkdir(exist_ok=True)
        os.chmod(incoming, 0o444)
        os.rename(incoming, final)
        self.bytes_added += size

    def _kept_previous(self, relative: str) -> dict[str, Any] | None:
        """The entry of a file not captured as it is now (still being written, or unreadable):
        its previous version, flagged ``changing``."""
        try:
            info = os.lstat(os.path.join(self.workspace, relative))
        except FileNotFoundError:
            return None
        self.changing.append(relative)
        before = self.previous.get(relative)
        if before is not None and before["kind"] == "file" and before.get("object"):
            return {**before, "changing": True}
        return {
            "path": relative,
            "kind": "file",
            "mode": stat.S_IMODE(info.st_mode),
            "mtime_ns": info.st_mtime_ns,
            "size": info.st_size,
            "object": None,
            "changing": True,
        }


def _copy_into(source_fd: int, incoming: str, clone: bool) -> tuple[bool, str]:
    """Clone (if ``clone`` and the pair allows) or copy the file into ``incoming``; returns
    (cloned, sha256 of what ``incoming`` holds)."""
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    dest_fd = os.open(incoming, flags, 0o600)
    try:
        if clone:
            try:
                fcntl.ioctl(dest_fd, FICLONE, source_fd)
                return True, sha256_of(Path(incoming))
            except OSError as error:
                if error.errno not in NO_REFLINK_ERRNOS:
                    raise
        return False, _copy_and_hash(source_fd, dest_fd)
    finally:
        os.close(dest_fd)


def _copy_and_hash(source_fd: int, dest_fd: int) -> str:
    """Copy ``source_fd`` from its start to its end (wherever that is now), hashing the bytes."""
    digest = hashlib.sha256()
    buffer = bytearray(HASH_CHUNK_BYTES)
    view = memoryview(buffer)
    offset = 0
    while count := os.preadv(source_fd, [buffer], offset):
        chunk = view[:count]
        digest.update(chunk)
        written = 0
        while written < count:
            written += os.pwrite(dest_fd, chunk[written:], offset + written)
        offset += count
    return digest.hexdigest()


def fine_grained_timestamps(directory: Path) -> bool:
    """True when the filesystem of ``directory`` gives a file a new ctime for every change made
    after its times were read, however close together (multigrain timestamps)."""
    probe = os.path.join(directory, f".timestamps-{uuid.uuid4().hex}")
    fd = os.open(probe, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        last_ctime_ns = os.fstat(fd).st_ctime_ns
        # 20 pairs take tens of microseconds: with a clock ticking every few milliseconds,
        # some would share a ctime.
        for _ in range(20):
            os.pwrite(fd, b"x", 0)
            ctime_ns = os.fstat(fd).st_ctime_ns
            if ctime_ns == last_ctime_ns:
                return False
            last_ctime_ns = ctime_ns
        return True
    finally:
        os.close(fd)
        os.unlink(probe)


def _wait_for_write_in_progress(fd: int) -> None:
    """Return once a write() to the file that is in progress has finished, where the filesystem
    allows: on ext4, btrfs and tmpfs, lseek(SEEK_DATA) takes the inode lock shared, and write()
    holds it exclusively (having stamped the times when it began)."""
    try:
        os.lseek(fd, 0, os.SEEK_DATA)
    except OSError:
        pass  # ENXIO: no data (an empty file); the lock was still taken and released


def _racy_window_for(ctime_ns: int) -> int:
    if ctime_ns % 1_000_000_000 == 0:  # likely a filesystem with whole-second timestamps
        return WHOLE_SECOND_RACY_WINDOW_NS
    return RACY_WINDOW_NS


def _entry_without_contents(root: Path, relative: str, info: os.stat_result) -> dict[str, Any] | None:
    entry: dict[str, Any] = {
        "path": relative,
        "mode": stat.S_IMODE(info.st_mode),
        "mtime_ns": info.st_mtime_ns,
        "size": info.st_size,
    }
    if stat.S_ISDIR(info.st_mode):
        return {**entry, "kind": "dir", **({"opaque": True} if is_opaque(os.path.join(root, relative)) else {})}
    if is_whiteout(info):
        return {**entry, "kind": "whiteout"}
    if stat.S_ISLNK(info.st_mode):
        try:
            return {**entry, "kind": "symlink", "target": os.readlink(os.path.join(root, relative))}
        except (FileNotFoundError, OSError):
            return None  # gone, or no longer a symlink, since the scan
    return {**entry, "kind": "other"}


def _restore_whiteout(name: str, relative: str, path: str) -> None:
    try:
        make_whiteout(path)
    except PermissionError:
        raise ValueError(
            f"snapshot {name!r} is an overlay's upper layer in which {relative} was deleted; recreating "
            "that deletion (a whiteout device) needs root: restore it as root"
        ) from None


def _manifest_line(entry: dict[str, Any]) -> str:
    return json.dumps([entry.get(key) for key in MANIFEST_FIELDS], separators=(",", ":"))


def _state_json(state: dict[str, Any]) -> str:
    try:
        return json.dumps(state, indent=1, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"snapshot state must hold only JSON types (dict, list, str, int, float, bool, None; "
            f"no NaN or infinity): {error}. Convert the offending value before taking a snapshot"
        ) from None


def _info_from_record(record: dict[str, Any]) -> SnapshotInfo:
    return SnapshotInfo(
        name=record["name"],
        created_at=record["created_at"],
        step=record["step"],
        files=record["files"],
        bytes_total=record["bytes_total"],
        bytes_added=record["bytes_added"],
        seconds=record["seconds"],
        changing=tuple(record.get("changing", ())),
        layer=record.get("layer", False),
    )


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _fsync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sync_filesystem(path: Path) -> None:
    """Flush the filesystem holding ``path``: one syncfs(2) rather than an fsync per object."""
    import ctypes

    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        syncfs = getattr(ctypes.CDLL(None, use_errno=True), "syncfs", None)
        if syncfs is None or syncfs(fd) != 0:
            os.sync()
    finally:
        os.close(fd)


# --- on demand ------------------------------------------------------------------------------


def run_dir_state(run_dir: Path) -> dict[str, Any]:
    """What an item's run directory says about its episode, for a snapshot taken from outside:
    the ledger, the trajectory position (complete lines and bytes), the result if there is one,
    the session logs present, and the item's memory (its complete lines)."""
    run_dir = Path(run_dir)
    ledger_path, result_path = RunDir(run_dir).ledger, RunDir(run_dir).result
    trajectory = _trajectory_position(RunDir(run_dir).trajectory)
    state: dict[str, Any] = {
        "source": "on-demand",
        "ledger": json.loads(ledger_path.read_text()) if ledger_path.is_file() else None,
        "trajectory": trajectory,
        # What a resume from here reads, as from the item's own snapshots: the trajectory up to
        # these bytes, and the guidance it shows delivered (delivered once, never again).
        "trajectory_bytes": trajectory["bytes"],
        "guidance_delivered": trajectory.pop("guidance_delivered"),
        "result": json.loads(result_path.read_text()) if result_path.is_file() else None,
        "session_logs": sorted(p.name for p in (RunDir(run_dir).sessions).glob("*.log")),
        "memory": _complete_lines(memory) if (memory := RunDir(run_dir).memory).is_file() else None,
    }
    return state


def _complete_lines(path: Path) -> str:
    """A JSONL file without a trailing partial line (one being written)."""
    text = path.read_text(encoding="utf-8")
    return text[: text.rfind("\n") + 1]


def _trajectory_position(path: Path) -> dict[str, Any]:
    """Complete lines, their bytes, the step of the last one and the ids of the guidance they show
    delivered (a trailing partial line is not counted: it is being written)."""
    lines = size = 0
    last_line = b""
    delivered = []
    if path.is_file():
        with open(path, "rb") as stream:
            for line in stream:
                if not line.endswith(b"\n"):
                    break
                lines += 1
                size += len(line)
                last_line = line
                if b'"event": "guidance"' in line:
                    delivered.append(json.loads(line)["id"])
    last_step = 0
    if last_line:
        try:
            last_step = int(json.loads(last_line).get("step", 0))
        except (ValueError, AttributeError, TypeError):
            last_step = 0
    return {"lines": lines, "bytes": size, "last_step": last_step, "guidance_delivered": delivered}


def take_on_demand(run_dir: Path) -> SnapshotInfo:
    """Snapshot ``run_dir``'s workspace into ``run_dir/snapshots`` with :func:`run_dir_state`.

    Safe while the item runs: the store's lock orders it with the item's own snapshots."""
    run_dir = Path(run_dir)
    workspace, upper = RunDir(run_dir).workspace, RunDir(run_dir).workspace_upper
    if not workspace.is_dir():
        raise ValueError(
            f"{run_dir} has no workspace/ directory; give one item's run directory, e.g. RESULTS/runs/RUN_ID/ITEM"
        )
    state = run_dir_state(run_dir)
    step = state["trajectory"]["last_step"] or (state["ledger"] or {}).get("steps", 0)
    if RunDir(run_dir).workspace_lower_record.is_file():  # an overlay: its layer is all the item changed
        with readable_upper(upper, RunDir(run_dir).layers_image) as readable:
            return SnapshotStore(RunDir(run_dir).snapshots).take(readable, state, step=step, layer=True)
    return SnapshotStore(RunDir(run_dir).snapshots).take(workspace, state, step=step)
