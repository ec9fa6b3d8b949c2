"""GPU memory of an item's leased devices, read through NVML and recorded over time.

An item's GPUs are its own while it holds their lease (gpus.py), so the memory in use on them is
the item's: a thread reads it every `interval_s` seconds and appends one line per device to
``gpu_memory.jsonl`` in the run directory (``{"time", "device", "used", "total"}``, bytes). After
each step the environment asks `new_events()`, which reads once more and says, in plain words,
when a device went over the task's `gpu_memory` (a per-GPU figure: what the task declared it
needs), so the agent sees it in the observation of the step that caused it, as it sees the other
limits. Exceeding it is reported, not enforced: NVML has no per-process memory cap.

Without nvidia-ml-py or a driver there is nothing to read, and the monitor says so once in the
record instead of writing samples.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from contextlib import suppress
from pathlib import Path
from typing import Any

GIB = 2**30


class GpuMemoryMonitor:
    def __init__(self, devices: Sequence[str], limit: int | None, record: Path, interval_s: float = 10.0):
        self.devices = tuple(devices)
        self.limit = limit  # bytes per GPU; None: only recorded
        self.record = record
        self.interval_s = interval_s
        self.peak: dict[str, int] = {}
        self._over: set[str] = set()  # devices over the limit at the last reading
        self._said: set[str] = set()  # devices whose crossing was already told
        self._nvml: Any = None
        self._handles: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> GpuMemoryMonitor:
        problem = self._open()
        if problem:
            self._append([{"time": time.time(), "unavailable": problem}])
            return self
        self.read()
        self._thread = threading.Thread(target=self._sample, name="gpu-memory", daemon=True)
        self._thread.start()
        return self

    def _open(self) -> str:
        try:
            import pynvml  # type: ignore[import-untyped,import-not-found,unused-ignore]
        except ImportError:
            return "no nvidia-ml-py: GPU memory is not recorded"
        try:
            pynvml.nvmlInit()
            for device in self.devices:
                by_index = device.isdigit()
                get = pynvml.nvmlDeviceGetHandleByIndex if by_index else pynvml.nvmlDeviceGetHandleByUUID
                self._handles[device] = get(int(device) if by_index else device)
        except pynvml.NVMLError as exc:
            return f"NVML: {exc}"
        self._nvml = pynvml
        return ""

    def _sample(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.read()

    def read(self) -> list[dict[str, Any]]:
        """One reading of every device, recorded; empty where NVML is not open."""
        if self._nvml is None:
            return []
        now, samples = time.time(), []
        with self._lock:
            for device, handle in self._handles.items():
                with suppress(self._nvml.NVMLError):
                    info = self._nvml.nvmlDeviceGetMemoryInfo(handle)
                    used, total = int(info.used), int(info.total)
                    samples.append({"time": now, "device": device, "used": used, "total": total})
                    self.peak[device] = max(self.peak.get(device, 0), used)
                    if self.limit is not None and used > self.limit:
                        self._over.add(device)
                    else:
                        self._over.discard(device)
            self._append(samples)
        return samples

    def new_events(self) -> list[str]:
        """The devices that went over the task's gpu_memory since the last call, in plain words.
        A device is told about once per crossing: again only after it went back under."""
        self.read()
        with self._lock:
            crossed = sorted(self._over - self._said)
            self._said = set(self._over)
        return [
            f"GPU memory: device {device} holds {self.peak[device] / GIB:.3g} GiB, more than the task's "
            f"gpu_memory of {self.limit / GIB:.3g} GiB per GPU (recorded; free some before the device runs out)"
            for device in crossed
            if self.limit is not None
        ]

    def describe(self) -> str:
        """For the item's properties: the peak per device, or why nothing was read."""
        if self._nvml is None:
            return "not recorded"
        return ", ".join(f"{device}: peak {self.peak.get(device, 0) / GIB:.3g} GiB" for device in self.devices)

    def _append(self, samples: list[dict[str, Any]]) -> None:
        if samples:
            with open(self.record, "a", encoding="utf-8") as stream:
                stream.write("".join(json.dumps(sample) + "\n" for sample in samples))

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._nvml is not None:
            self.read()
            with suppress(self._nvml.NVMLError):
                self._nvml.nvmlShutdown()
            self._nvml = None
