"""Output addressed by absolute byte offsets: the last bytes in memory, all of them on disk.

Offset N names the N-th byte ever appended. A reader that remembers the offset it stopped at
asks for what came after it and gets exactly that, whether the bytes are still in the
in-memory window or only in the log file.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path


class OutputBuffer:
    """A ring of the last ``capacity`` bytes plus an append-only log file of every byte.

    Thread safe: one thread appends while others read.
    """

    def __init__(self, log_path: Path, capacity: int = 1 << 20) -> None:
        if capacity <= 0:
            raise ValueError(f"capacity must be a positive number of bytes, not {capacity}")
        self.log_path = Path(log_path)
        self.capacity = capacity
        self._ring = bytearray(capacity)
        self._end = 0
        self._lock = threading.Lock()
        # One unbuffered descriptor: appends go straight to the file, reads use pread.
        self._log_fd: int | None = os.open(
            self.log_path,
            os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND | os.O_CLOEXEC,
            0o644,
        )

    def append(self, data: bytes) -> None:
        """Write ``data`` to the log file, then keep its tail in the in-memory window."""
        if not data:
            return
        with self._lock:
            log_fd = self._require_open()
            view = memoryview(data)
            while view:
                written = os.write(log_fd, view)
                view = view[written:]
            self._copy_into_ring(memoryview(data))
            self._end += len(data)

    def _copy_into_ring(self, data: memoryview) -> None:
        capacity = self.capacity
        size = len(data)
        if size >= capacity:
            data = data[size - capacity :]
            start = (self._end + size - capacity) % capacity
        else:
            start = self._end % capacity
        first_part = min(len(data), capacity - start)
        self._ring[start : start + first_part] = data[:first_part]
        if first_part < len(data):
            self._ring[: len(data) - first_part] = data[first_part:]

    @property
    def end(self) -> int:
        """Total number of bytes ever appended: the offset the next byte will have."""
        return self._end

    @property
    def window_start(self) -> int:
        """The oldest offset still held in memory."""
        return max(0, self._end - self.capacity)

    def read(self, since: int, max_bytes: int = 64 * 1024) -> tuple[bytes, int]:
        """Return ``(data, next_offset)``: up to ``max_bytes`` bytes starting at offset ``since``.

        ``data`` holds ``min(max_bytes, end - since)`` bytes; ``next_offset`` is ``since``
        plus its length. Offsets older than the in-memory window are read from the log file.
        """
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be positive, not {max_bytes}")
        with self._lock:
            log_fd = self._require_open()
            end = self._end
            if since < 0 or since > end:
                raise ValueError(
                    f"offset {since} is outside the output, which holds {end} bytes: pass an offset between 0 and {end}"
                )
            size = min(max_bytes, end - since)
            if since >= end - min(end, self.capacity):
                data = self._read_ring(since, size)
            else:
                data = self._read_log(log_fd, since, size)
        return data, since + len(data)

    def _read_ring(self, since: int, size: int) -> bytes:
        start = since % self.capacity
        first_part = min(size, self.capacity - start)
        data = bytes(self._ring[start : start + first_part])
        if first_part < size:
            data += self._ring[: size - first_part]
        return data

    def _read_log(self, log_fd: int, since: int, size: int) -> bytes:
        chunks: list[bytes] = []
        offset = since
        while offset < since + size:
            chunk = os.pread(log_fd, since + size - offset, offset)
            if not chunk:
                raise OSError(
                    f"log file {self.log_path} is shorter than the {since + size} bytes "
                    "appended to it: it was truncated or replaced while in use"
                )
            chunks.append(chunk)
            offset += len(chunk)
        return b"".join(chunks)

    def _require_open(self) -> int:
        if self._log_fd is None:
            raise ValueError(f"the output buffer of {self.log_path} is closed")
        return self._log_fd

    def close(self) -> None:
        """Close the log file; the file itself stays on disk."""
        with self._lock:
            if self._log_fd is not None:
                os.close(self._log_fd)
                self._log_fd = None

    @property
    def closed(self) -> bool:
        return self._log_fd is None
