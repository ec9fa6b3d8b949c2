"""GPU inventory and leasing, so xdist workers on one host never share a GPU.

Each device has a lock file under a shared directory; a lease holds `fcntl.flock` locks on the
files of its devices. The kernel drops a flock when its holder dies, so a killed worker never
leaves a GPU locked. Every acquire and release is appended to `leases.jsonl` in the same directory.
"""

from __future__ import annotations

import fcntl
import json
import os
import random
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LEASE_LOG_NAME = "leases.jsonl"

# CUDA_VISIBLE_DEVICES accepts device indices or UUIDs; the id also names a lock file, so no "/".
_DEVICE_ID_PATTERN = re.compile(r"[0-9]+|(?:GPU|MIG)-[0-9A-Za-z-]+")
_GPU_OPTION_HELP = (
    "write comma-separated device indices or UUIDs without duplicates, "
    "e.g. --innovator-gpus=0,1,2,3 (an empty value means no GPUs)"
)
_FIRST_BACKOFF_SECONDS = 0.05
_MAX_BACKOFF_SECONDS = 1.0


def detect_gpus(option: str | None, environ: Mapping[str, str] = os.environ) -> list[str]:
    """Return the device ids this host may lease.

    `option` is the `--innovator-gpus` value; when given it wins over detection ("" means no
    GPUs). Inside a Slurm job (`SLURM_JOB_ID` in `environ`) the GPUs are those Slurm allocated:
    NVML lists every GPU of the node, other jobs' too. Otherwise NVML is asked through
    nvidia-ml-py; without it, or on any NVML failure, the host has no GPUs. Raises ValueError for
    a malformed option.
    """
    if option is not None:
        return _parse_gpu_option(option)
    if "SLURM_JOB_ID" in environ:
        return _slurm_allocation_gpus(environ)
    return _nvml_device_indices()


def _slurm_allocation_gpus(environ: Mapping[str, str]) -> list[str]:
    """The GPUs of a Slurm job or step: Slurm's gres plugin sets CUDA_VISIBLE_DEVICES to them and
    removes it when none were allocated. A cluster whose Slurm does not manage GPUs (no gres) sets
    nothing, so its jobs have none here: name them with INNOVATOR_GPUS."""
    visible = environ.get("CUDA_VISIBLE_DEVICES", "")
    device_ids, problem = _split_device_ids(visible)
    if problem:
        raise ValueError(
            f"in Slurm job {environ['SLURM_JOB_ID']}, CUDA_VISIBLE_DEVICES={visible!r} does not name "
            f"the allocated GPUs: {problem}; name them with INNOVATOR_GPUS"
        )
    return device_ids


def _parse_gpu_option(option: str) -> list[str]:
    device_ids, problem = _split_device_ids(option)
    if problem:
        raise ValueError(f"invalid --innovator-gpus value {option!r}: {problem}; {_GPU_OPTION_HELP}")
    return device_ids


def _split_device_ids(text: str) -> tuple[list[str], str | None]:
    """The device ids of a comma-separated list ("" names none) and what is wrong with it, or None."""
    if not text.strip():
        return [], None
    device_ids = [part.strip() for part in text.split(",")]
    problem = _device_ids_problem(device_ids)
    if problem:
        return [], problem
    return [_normalised_device_id(device_id) for device_id in device_ids], None


def _device_ids_problem(device_ids: Sequence[str]) -> str | None:
    """Say what is wrong with a list of device ids, or None when it is usable."""
    for device_id in device_ids:
        if not device_id:
            return "empty device id"
        if not _DEVICE_ID_PATTERN.fullmatch(device_id):
            return f"{device_id!r} is not a device index or UUID"
    normalised = [_normalised_device_id(device_id) for device_id in device_ids]
    duplicates = sorted({device_id for device_id in normalised if normalised.count(device_id) > 1})
    if duplicates:
        return f"duplicate device {', '.join(duplicates)}"
    return None


def _normalised_device_id(device_id: str) -> str:
    return str(int(device_id)) if device_id.isdigit() else device_id


@contextmanager
def _nvml() -> Iterator[Any]:
    """NVML (nvidia-ml-py), initialised and shut down after; None without it or without a driver.
    Imported here because every pytest run on the machine imports the plugin."""
    try:
        import pynvml  # type: ignore[import-untyped,import-not-found,unused-ignore]
    except ImportError:
        yield None
        return
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        yield None
        return
    try:
        yield pynvml
    finally:
        with suppress(pynvml.NVMLError):
            pynvml.nvmlShutdown()


def _nvml_device_indices() -> list[str]:
    with _nvml() as nvml:
        if nvml is None:
            return []
        try:
            return [str(index) for index in range(nvml.nvmlDeviceGetCount())]
        except nvml.NVMLError:
            return []


def gpu_memory(devices: Sequence[str]) -> dict[str, int]:
    """Total memory in bytes of each device (an index or a UUID), as NVML reports it: after what
    the driver reserves, so a little below the size on the box. Devices NVML cannot tell about are
    left out; without nvidia-ml-py or NVML, the result is empty."""
    memory: dict[str, int] = {}
    with _nvml() as nvml:
        for device in devices if nvml is not None else ():
            with suppress(nvml.NVMLError):
                by_index = device.isdigit()
                handle = (
                    nvml.nvmlDeviceGetHandleByIndex(int(device)) if by_index else nvml.nvmlDeviceGetHandleByUUID(device)
                )
                memory[device] = int(nvml.nvmlDeviceGetMemoryInfo(handle).total)
    return memory


# Driver-wide nodes every CUDA process opens, beside its devices' /dev/nvidiaN.
NVIDIA_CONTROL_NODES = ("nvidiactl", "nvidia-uvm", "nvidia-uvm-tools", "nvidia-modeset", "nvidia-caps")


def gpu_device_nodes(devices: Sequence[str], dev: Path = Path("/dev")) -> list[Path]:
    """The device nodes a sandbox needs so that its commands can use the leased GPUs.

    A device given by index N gets /dev/nvidiaN: NVIDIA numbers these nodes by the driver's minor
    number, which equals the index on ordinary hosts (not guaranteed; `nvidia-smi -q | grep Minor`
    shows it). A lease by UUID cannot be mapped without NVML, so it gets every /dev/nvidiaN and
    CUDA_VISIBLE_DEVICES alone keeps the command on its devices. No devices, no nodes.
    """
    if not devices:
        return []
    nodes = [dev / name for name in NVIDIA_CONTROL_NODES]
    if all(d.isdigit() for d in devices):
        nodes += [dev / f"nvidia{int(d)}" for d in devices]
    else:
        nodes += sorted(p for p in dev.glob("nvidia[0-9]*") if p.name[len("nvidia") :].isdigit())
    return [node for node in nodes if node.exists()]


@dataclass(frozen=True)
class GpuLease:
    devices: tuple[str, ...]
    owner: str
    acquired_at: float

    def cuda_visible_devices(self) -> str:
        """The value for CUDA_VISIBLE_DEVICES: "0,2", or "" for an empty lease."""
        return ",".join(self.devices)


class GpuLeaser:
    """Leases devices of one host inventory to the processes that share `lock_dir`."""

    def __init__(self, lock_dir: Path, devices: Sequence[str]) -> None:
        problem = _device_ids_problem(devices)
        if problem:
            raise ValueError(f"invalid GPU inventory {list(devices)!r}: {problem}")
        self.lock_dir = Path(lock_dir)
        self.devices: tuple[str, ...] = tuple(devices)
        self._held_lock_fds: dict[str, int] = {}

    @property
    def lease_log_path(self) -> Path:
        return self.lock_dir / LEASE_LOG_NAME

    def device_lock_path(self, device: str) -> Path:
        return self.lock_dir / f"gpu-{device}.lock"

    def acquire(self, count: int, owner: str, timeout: float | None = None) -> GpuLease:
        """Lease `count` devices for `owner`, waiting up to `timeout` seconds (None: forever).

        Raises ValueError when the host has fewer than `count` devices and TimeoutError, naming
        the holders, when they stay busy past the timeout.
        """
        if count < 0:
            raise ValueError(f"GPU count must be 0 or more, got {count}")
        if count > len(self.devices):
            inventory = ",".join(self.devices) if self.devices else "none detected"
            raise ValueError(
                f"task needs {count} GPUs, this host has {len(self.devices)} ({inventory}); "
                "name more devices with --innovator-gpus if the host has them"
            )
        if count == 0:
            return GpuLease(devices=(), owner=owner, acquired_at=time.time())

        self.lock_dir.mkdir(parents=True, exist_ok=True)
        deadline = None if timeout is None else time.monotonic() + timeout
        backoff = _FIRST_BACKOFF_SECONDS
        while True:
            locked, busy = self._lock_free_devices(count)
            if len(locked) == count:
                break
            self._unlock(locked)
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise TimeoutError(
                    f"could not lease {count} GPUs for {owner!r} within {timeout} s: {self._describe_holders(busy)}"
                )
            # Jitter keeps competing workers from retrying in lockstep.
            pause = backoff * random.uniform(0.5, 1.5)
            time.sleep(pause if remaining is None else min(pause, remaining))
            backoff = min(backoff * 2, _MAX_BACKOFF_SECONDS)

        lease = GpuLease(devices=tuple(locked), owner=owner, acquired_at=time.time())
        holder = json.dumps({"owner": owner, "pid": os.getpid(), "time": lease.acquired_at})
        for device, lock_fd in locked.items():
            os.ftruncate(lock_fd, 0)
            os.pwrite(lock_fd, holder.encode() + b"\n", 0)
            self._held_lock_fds[device] = lock_fd
        self._log_event("acquire", lease)
        return lease

    def release(self, lease: GpuLease) -> None:
        """Give the devices of `lease` back. Releasing an empty lease does nothing."""
        if not lease.devices:
            return
        not_held = [device for device in lease.devices if device not in self._held_lock_fds]
        if not_held:
            raise ValueError(f"devices {not_held} of {lease} are not held by this leaser")
        lock_fds = {device: self._held_lock_fds.pop(device) for device in lease.devices}
        for lock_fd in lock_fds.values():
            os.ftruncate(lock_fd, 0)
        self._unlock(lock_fds)
        self._log_event("release", lease)

    @contextmanager
    def lease(self, count: int, owner: str, timeout: float | None = None) -> Iterator[GpuLease]:
        gpu_lease = self.acquire(count, owner, timeout)
        try:
            yield gpu_lease
        finally:
            self.release(gpu_lease)

    def _lock_free_devices(self, count: int) -> tuple[dict[str, int], list[str]]:
        """Lock free devices in inventory order until `count` are held.

        Returns the lock fds of the devices locked and the devices found busy.
        """
        locked: dict[str, int] = {}
        busy: list[str] = []
        for device in self.devices:
            if len(locked) == count:
                break
            if device in self._held_lock_fds:
                busy.append(device)
                continue
            lock_fd = os.open(self.device_lock_path(device), os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(lock_fd)
                busy.append(device)
                continue
            except BaseException:
                os.close(lock_fd)
                self._unlock(locked)
                raise
            locked[device] = lock_fd
        return locked, busy

    @staticmethod
    def _unlock(lock_fds: dict[str, int]) -> None:
        for lock_fd in lock_fds.values():
            fcntl.flock(lock_fd, fcntl.LOCK_UN)
            os.close(lock_fd)

    def _describe_holders(self, busy_devices: Sequence[str]) -> str:
        holders = []
        for device in busy_devices:
            try:
                holder_text = self.device_lock_path(device).read_text().strip()
            except FileNotFoundError:
                continue
            if not holder_text:
                continue
            try:
                holder = json.loads(holder_text)
                holders.append(
                    f"GPU {device} held by {holder['owner']!r} (pid {holder['pid']}, "
                    f"since {time.strftime('%H:%M:%S', time.localtime(holder['time']))})"
                )
            except (ValueError, KeyError, TypeError):
                holders.append(f"GPU {device} held ({holder_text!r})")
        return "; ".join(holders) if holders else "holders unknown (they may be releasing)"

    def _log_event(self, event: str, lease: GpuLease) -> None:
        record = {
            "event": event,
            "devices": list(lease.devices),
            "owner": lease.owner,
            "pid": os.getpid(),
            "time": time.time(),
        }
        line = (json.dumps(record) + "\n").encode()
        log_fd = os.open(self.lease_log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            fcntl.flock(log_fd, fcntl.LOCK_EX)
            os.write(log_fd, line)
        finally:
            os.close(log_fd)  # closing drops the flock
