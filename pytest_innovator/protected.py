"""Protected paths: record their state when a run starts, report every change at the end.

Patterns are relative to the workspace root. A pattern is a path whose segments may hold glob
wildcards (``*``, ``?``, ``[...]`` within one name; ``**`` for any number of directories). A
pattern that names a directory (``data`` or ``data/``) covers everything below it. Symlinks are
never followed: a symlink is recorded by its target, so swapping a file for a symlink is a change.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import stat
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, Literal

FileKind = Literal["file", "dir", "symlink", "other", "missing"]
FILE_KINDS: tuple[str, ...] = ("file", "dir", "symlink", "other", "missing")
HASH_CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class FileState:
    """What one path was: ``other`` is a fifo, socket or device; ``missing`` is nothing at all."""

    kind: FileKind
    sha256: str | None = None
    target: str | None = None
    mode: int | None = None


MISSING = FileState("missing")


@dataclass(frozen=True)
class ProtectedChange:
    path: str
    before: FileState
    after: FileState
    what: str


def checksum_protected(root: Path, patterns: Sequence[str]) -> dict[str, FileState]:
    """The state of every path the patterns cover, keyed by path relative to ``root``.

    A pattern without wildcards that names nothing yet is recorded as ``missing``.
    """
    states: dict[str, FileState] = {}
    for pattern in patterns:
        parts = pattern_parts(pattern)
        if not any(_has_wildcard(part) for part in parts):
            states["/".join(parts)] = MISSING
    for relative in matching_paths(root, patterns):
        states[relative] = file_state(root / relative)
    return dict(sorted(states.items()))


def check_protected(root: Path, before: Mapping[str, FileState], patterns: Sequence[str]) -> list[ProtectedChange]:
    """Every difference between ``before`` and the protected paths now, sorted by path."""
    after = checksum_protected(root, patterns)
    changes = []
    for path in sorted(before.keys() | after.keys()):
        old, new = before.get(path, MISSING), after.get(path, MISSING)
        what = describe_change(old, new)
        if what:
            changes.append(ProtectedChange(path, old, new, what))
    return changes


def describe_change(old: FileState, new: FileState) -> str:
    """A short phrase for the difference between two states; empty when they are equal."""
    if old == new:
        return ""
    if old.kind == "missing":
        return "added"
    if new.kind == "missing":
        return "deleted"
    if old.kind != new.kind:
        return f"type changed ({old.kind} -> {new.kind})"
    aspects = []
    if old.sha256 != new.sha256:
        aspects.append("modified")
    if old.target != new.target:
        aspects.append("symlink target changed")
    if old.mode != new.mode:
        aspects.append("mode changed")
    return ", ".join(aspects)


def file_state(path: Path) -> FileState:
    """The state of ``path`` itself (a symlink is not followed)."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return MISSING
    mode = stat.S_IMODE(info.st_mode)
    if stat.S_ISLNK(info.st_mode):
        return FileState("symlink", target=os.readlink(path))
    if stat.S_ISDIR(info.st_mode):
        return FileState("dir", mode=mode)
    if stat.S_ISREG(info.st_mode):
        return FileState("file", sha256=sha256_of(path), mode=mode)
    return FileState("other", mode=mode)


def sha256_of(path: Path) -> str:
    """Streaming sha256 of a regular file, read in 1 MiB chunks; refuses to follow a symlink."""
    digest = hashlib.sha256()
    buffer = bytearray(HASH_CHUNK_BYTES)
    view = memoryview(buffer)
    # O_NONBLOCK: a file swapped for a fifo after the lstat must not hang the check.
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    with open(fd, "rb", buffering=0) as stream:
        while count := stream.readinto(buffer):
            digest.update(view[:count])
    return digest.hexdigest()


def to_json(states: Mapping[str, FileState]) -> dict[str, dict[str, Any]]:
    """Builtin types only, ready for ``json.dumps`` (the ledger persists the start state)."""
    return {path: dataclasses.asdict(state) for path, state in states.items()}


def from_json(data: Mapping[str, Mapping[str, Any]] | str) -> dict[str, FileState]:
    """The inverse of :func:`to_json`; also accepts the JSON text itself."""
    if isinstance(data, str):
        data = json.loads(data)
    if not isinstance(data, Mapping):
        raise TypeError(f"protected-file states must be a JSON object, got {type(data).__name__}")
    states = {}
    for path, fields in data.items():
        try:
            state = FileState(**fields)
        except TypeError as error:
            raise ValueError(f"protected-file state of {path!r} is malformed: {error}") from None
        if state.kind not in FILE_KINDS:
            raise ValueError(
                f"protected-file state of {path!r} has kind {state.kind!r}; expected one of {', '.join(FILE_KINDS)}"
            )
        states[path] = state
    return states


def matching_paths(root: Path, patterns: Sequence[str]) -> set[str]:
    """Relative paths of the entries the patterns name and of everything below a named directory.

    Symlinks are never followed, neither while matching nor below a matched directory.
    """
    matched: set[str] = set()
    for pattern in patterns:
        for relative in _glob(root, "", pattern_parts(pattern)):
            if relative:
                matched.add(relative)
            matched.update(_entries_below(root, relative))
    return matched


def pattern_parts(pattern: str) -> list[str]:
    """The segments of a pattern, or a ValueError saying how to write it."""
    if pattern.startswith("/"):
        raise ValueError(
            f"path pattern {pattern!r} is absolute; write it relative to the workspace, "
            "e.g. 'data/' or 'checkpoints/*.pt'"
        )
    parts = [part for part in pattern.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise ValueError(f"path pattern {pattern!r} leaves the workspace ('..'); remove the '..'")
    if not parts:
        raise ValueError(
            f"path pattern {pattern!r} names no path inside the workspace; "
            "name files or directories (use '**' for everything)"
        )
    return parts


def _has_wildcard(part: str) -> bool:
    return any(character in part for character in "*?[")


def _glob(root: Path, relative: str, parts: list[str]) -> Iterator[str]:
    if not parts:
        yield relative
        return
    head, rest = parts[0], parts[1:]
    directory = root / relative
    if head == "**":
        yield from _glob(root, relative, rest)
        for name in _child_names(directory):
            child = _join(relative, name)
            if _is_real_dir(root / child):
                yield from _glob(root, child, parts)
        return
    names = _child_names(directory) if _has_wildcard(head) else [head]
    for name in names:
        if not fnmatchcase(name, head):
            continue
        child = _join(relative, name)
        if _is_real_dir(root / child) if rest else os.path.lexists(root / child):
            yield from _glob(root, child, rest)


def _entries_below(root: Path, relative: str) -> Iterator[str]:
    if relative and not _is_real_dir(root / relative):
        return
    for name in _child_names(root / relative):
        child = _join(relative, name)
        yield child
        yield from _entries_below(root, child)


def _child_names(directory: Path) -> list[str]:
    try:
        with os.scandir(directory) as entries:
            return sorted(entry.name for entry in entries)
    except (FileNotFoundError, NotADirectoryError):
        return []


def _is_real_dir(path: Path) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except FileNotFoundError:
        return False


def _join(relative: str, name: str) -> str:
    return f"{relative}/{name}" if relative else name
