"""A stand-in for nvidia-ml-py's `pynvml` on machines without a GPU: the NVML calls the harness
makes, answered from the JSON file that FAKE_NVML names:

    {"devices": [{"uuid": "GPU-...", "total": BYTES, "used_files": "GLOB"}]}

A device's memory in use is the sum of the numbers written in the files `used_files` matches (0
while there are none), so a test's agent "allocates" GPU memory by writing such a file.
Put this directory first on PYTHONPATH.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any


class NVMLError(Exception):
    pass


def _devices() -> list[dict[str, Any]]:
    path = os.environ.get("FAKE_NVML")
    if not path or not Path(path).is_file():
        raise NVMLError("Driver Not Loaded")
    return json.loads(Path(path).read_text())["devices"]


def nvmlInit() -> None:
    _devices()


def nvmlShutdown() -> None:
    pass


def nvmlDeviceGetCount() -> int:
    return len(_devices())


def nvmlDeviceGetHandleByIndex(index: int) -> int:
    if not 0 <= index < len(_devices()):
        raise NVMLError("Invalid Argument")
    return index


def nvmlDeviceGetHandleByUUID(uuid: str) -> int:
    for index, device in enumerate(_devices()):
        if device["uuid"] == uuid:
            return index
    raise NVMLError("Not Found")


def nvmlDeviceGetMemoryInfo(handle: int) -> SimpleNamespace:
    device = _devices()[handle]
    used = 0
    for path in glob.glob(device["used_files"]):
        with contextlib.suppress(OSError, ValueError):
            used += int(Path(path).read_text().strip() or 0)
    return SimpleNamespace(total=device["total"], used=used, free=device["total"] - used)
