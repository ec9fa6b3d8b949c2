"""Tar streams that move workspace files between the harness and a session server.

Written piece by piece (a header, the file's bytes, padding), so a directory of any size is sent
in bounded memory; read with tarfile's ``data`` filter (or, on Pythons before 3.11.4, the same rules
checked here), so an archive cannot place anything outside its destination (absolute names,
``..``, links that leave it, device files) nor set ownership, setuid bits or group/other write bits.
"""

from __future__ import annotations

import os
import stat
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Protocol, cast

from .errors import InnovatorError

BLOCK = tarfile.BLOCKSIZE
CHUNK_BYTES = 1 << 20
HAS_DATA_FILTER = hasattr(tarfile, "data_filter")  # Python 3.11.4 and later
REFUSED = "the archive may not be extracted here"


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class ArchiveError(InnovatorError, ValueError):
    """An archive that cannot be extracted; the message says why."""


def tar_stream(root: Path, *, symlinks: bool) -> Iterator[bytes]:
    """A tar archive of the directory ``root`` (names relative to it), as a stream of chunks.

    Directories and regular files are included; symlinks only with ``symlinks=True``; fifos,
    sockets and devices never. Symlinks are not followed. A file that changes size while it is
    read is cut or zero-padded to the size its header announced.
    """
    for directory, dir_names, file_names in os.walk(root):
        dir_names.sort()
        relative_dir = os.path.relpath(directory, root)
        for name in [*sorted(dir_names), *sorted(file_names)]:
            path = os.path.join(directory, name)
            relative = name if relative_dir == "." else f"{relative_dir}/{name}"
            try:
                info = os.lstat(path)
            except FileNotFoundError:
                continue
            if stat.S_ISDIR(info.st_mode):
                yield _header(relative, info, tarfile.DIRTYPE)
            elif stat.S_ISLNK(info.st_mode):
                if symlinks:
                    yield _header(relative, info, tarfile.SYMTYPE, linkname=os.readlink(path))
            elif stat.S_ISREG(info.st_mode):
                yield from _file_entry(path, relative, info)
    yield b"\0" * (2 * BLOCK)


def file_chunks(path: Path) -> Iterator[bytes]:
    """The bytes of one file, CHUNK_BYTES at a time."""
    with open(path, "rb") as stream:
        while chunk := stream.read(CHUNK_BYTES):
            yield chunk


def _header(name: str, info: os.stat_result, kind: bytes, *, size: int = 0, linkname: str = "") -> bytes:
    entry = tarfile.TarInfo(name)
    entry.type = kind
    entry.mode = stat.S_IMODE(info.st_mode)
    entry.mtime = int(info.st_mtime)
    entry.size = size
    entry.linkname = linkname
    return entry.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def _file_entry(path: str, relative: str, info: os.stat_result) -> Iterator[bytes]:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return  # gone, or swapped for a symlink since the lstat
    with open(fd, "rb", buffering=0) as stream:
        size = os.fstat(stream.fileno()).st_size
        yield _header(relative, info, tarfile.REGTYPE, size=size)
        remaining = size
        while remaining > 0:
            chunk = stream.read(min(CHUNK_BYTES, remaining))
            if not chunk:
                break
            remaining -= len(chunk)
            yield chunk
        if remaining > 0:
            yield b"\0" * remaining
    if size % BLOCK:
        yield b"\0" * (BLOCK - size % BLOCK)


def extract_tar(stream: Readable, dest: Path, *, data_filter: bool = HAS_DATA_FILTER) -> tuple[int, int]:
    """Extract a tar stream into ``dest`` (created if needed); returns (files, bytes).

    Raises ArchiveError for anything that is not a tar archive or would leave ``dest``. Uses
    tarfile's ``data`` filter, or with ``data_filter=False`` the same rules checked here.
    """
    dest.mkdir(parents=True, exist_ok=True)
    real_dest = os.path.realpath(dest)
    files = size = 0
    try:
        with tarfile.open(fileobj=cast(BinaryIO, stream), mode="r|*") as archive:
            for member in archive:
                if data_filter:
                    archive.extract(member, dest, filter="data")
                else:
                    _extract_as_data(archive, member, real_dest)
                if member.isfile():
                    files += 1
                    size += member.size
    except (tarfile.TarError, EOFError, UnicodeError) as exc:
        if HAS_DATA_FILTER and isinstance(exc, tarfile.FilterError):
            raise ArchiveError(f"{REFUSED}: {exc}") from None
        raise ArchiveError(f"not a valid tar archive ({exc}); send a tar file (optionally compressed)") from None
    return files, size


def _extract_as_data(archive: tarfile.TarFile, member: tarfile.TarInfo, dest: str) -> None:
    """Extract ``member`` under the rules of tarfile's data filter, for Pythons that lack it."""
    member.name = member.name.lstrip("/")
    _check_inside(dest, member.name, f"{member.name!r} would be extracted to")
    if member.issym() or member.islnk():
        if os.path.isabs(member.linkname):
            raise ArchiveError(f"{REFUSED}: {member.name!r} is a link to an absolute path")
        # A symlink's target is relative to its directory, a hard link's to the archive's root.
        base = os.path.dirname(member.name) if member.issym() else ""
        _check_inside(dest, os.path.join(base, member.linkname), f"{member.name!r} would link to")
    elif member.isdir():
        # As with the filter, a new directory gets the default mode and an existing one keeps its own.
        os.makedirs(os.path.join(dest, member.name), exist_ok=True)
        return
    elif not member.isreg():
        raise ArchiveError(f"{REFUSED}: {member.name!r} is a special file")
    if not member.issym():
        mode = member.mode & 0o755
        member.mode = (mode if mode & 0o100 else mode & ~0o111) | 0o600
    member.uid, member.gid = os.geteuid(), os.getegid()
    archive.extract(member, dest, numeric_owner=True)


def _check_inside(dest: str, relative: str, what: str) -> None:
    target = os.path.realpath(os.path.join(dest, relative))
    if os.path.commonpath([target, dest]) != dest:
        raise ArchiveError(f"{REFUSED}: {what} {target!r}, which is outside the destination")
