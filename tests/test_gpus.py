"""GPU leasing across real processes: exclusion, crash safety, the lease log, device detection."""

from __future__ import annotations

import itertools
import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from pytest_innovator.gpus import (
    LEASE_LOG_NAME,
    GpuLease,
    GpuLeaser,
    detect_gpus,
    gpu_device_nodes,
)
from pytest_innovator.sandbox import Sandbox, bwrap_path


def read_lease_log(lock_dir: Path) -> list[dict[str, Any]]:
    log_path = lock_dir / LEASE_LOG_NAME
    if not log_path.exists():
        return []
    return [json.loads(line) for line in log_path.read_text().splitlines()]


def assert_acquires_and_releases_match(events: list[dict[str, Any]]) -> None:
    """Each acquire is followed by exactly one release of the same devices by the same owner."""
    open_leases: dict[tuple[str, int], list[str]] = {}
    for event in events:
        key = (event["owner"], event["pid"])
        if event["event"] == "acquire":
            assert key not in open_leases, f"second acquire before release: {event}"
            open_leases[key] = event["devices"]
        else:
            assert event["event"] == "release", event
            assert open_leases.pop(key) == event["devices"], event
    assert open_leases == {}, f"acquired but never released: {open_leases}"


def test_acquire_and_release_lock_the_devices(tmp_path: Path) -> None:
    leaser = GpuLeaser(tmp_path, ["0", "1", "2"])
    rival = GpuLeaser(tmp_path, ["0", "1", "2"])  # separate lock fds, as another worker has

    first = leaser.acquire(2, owner="task-a")
    assert first.devices == ("0", "1")
    assert first.owner == "task-a"
    assert first.cuda_visible_devices() == "0,1"
    holder = json.loads(leaser.device_lock_path("0").read_text())
    assert holder["owner"] == "task-a"
    assert holder["pid"] == os.getpid()

    second = rival.acquire(1, owner="task-b", timeout=0)
    assert second.devices == ("2",)
    with pytest.raises(TimeoutError, match="task-a"):
        rival.acquire(1, owner="task-c", timeout=0)

    leaser.release(first)
    assert leaser.device_lock_path("0").read_text() == ""
    third = rival.acquire(2, owner="task-c", timeout=0)
    assert third.devices == ("0", "1")
    rival.release(second)
    rival.release(third)


def test_release_of_a_lease_not_held_is_an_error(tmp_path: Path) -> None:
    leaser = GpuLeaser(tmp_path, ["0"])
    lease = leaser.acquire(1, owner="task")
    leaser.release(lease)
    with pytest.raises(ValueError, match="not held"):
        leaser.release(lease)
    with pytest.raises(ValueError, match="not held"):
        GpuLeaser(tmp_path, ["0"]).release(GpuLease(("0",), "stranger", 0.0))


def test_lease_context_releases_on_error(tmp_path: Path) -> None:
    leaser = GpuLeaser(tmp_path, ["0"])
    with pytest.raises(RuntimeError, match="agent crashed"), leaser.lease(1, owner="task") as lease:
        assert lease.devices == ("0",)
        raise RuntimeError("agent crashed")
    assert GpuLeaser(tmp_path, ["0"]).acquire(1, owner="next", timeout=0).devices == ("0",)


def test_zero_gpus_gives_an_empty_lease_without_locks(tmp_path: Path) -> None:
    lock_dir = tmp_path / "locks"
    leaser = GpuLeaser(lock_dir, ["0", "1"])
    with leaser.lease(0, owner="cpu-task") as lease:
        assert lease.devices == ()
        assert lease.cuda_visible_devices() == ""
    assert not lock_dir.exists()


def test_zero_gpus_on_a_host_without_gpus(tmp_path: Path) -> None:
    assert GpuLeaser(tmp_path, []).acquire(0, owner="cpu-task").devices == ()


@pytest.mark.parametrize(
    ("devices", "count", "message"),
    [
        (["0", "1"], 3, r"task needs 3 GPUs, this host has 2 \(0,1\)"),
        ([], 1, r"task needs 1 GPUs, this host has 0 \(none detected\)"),
    ],
)
def test_more_gpus_than_the_host_has(tmp_path: Path, devices: list[str], count: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        GpuLeaser(tmp_path, devices).acquire(count, owner="big-task")


def test_negative_count_and_bad_inventory_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="0 or more"):
        GpuLeaser(tmp_path, ["0"]).acquire(-1, owner="task")
    with pytest.raises(ValueError, match="duplicate device 1"):
        GpuLeaser(tmp_path, ["0", "1", "1"])
    with pytest.raises(ValueError, match="not a device index or UUID"):
        GpuLeaser(tmp_path, ["../etc"])


def test_lease_log_holds_matching_acquire_and_release_events(tmp_path: Path) -> None:
    leaser = GpuLeaser(tmp_path, ["0", "1"])
    with leaser.lease(1, owner="task-a"), leaser.lease(1, owner="task-b"):
        pass
    both = leaser.acquire(2, owner="task-c")
    leaser.release(both)

    events = read_lease_log(tmp_path)
    assert [(e["event"], e["owner"], e["devices"]) for e in events] == [
        ("acquire", "task-a", ["0"]),
        ("acquire", "task-b", ["1"]),
        ("release", "task-b", ["1"]),
        ("release", "task-a", ["0"]),
        ("acquire", "task-c", ["0", "1"]),
        ("release", "task-c", ["0", "1"]),
    ]
    assert all(e["pid"] == os.getpid() and isinstance(e["time"], float) for e in events)
    assert_acquires_and_releases_match(events)


# Runs jobs in threads of one process; each job leases one GPU, records (device, start, end)
# while holding it, and prints one JSON line. Waits for "go" on stdin so processes start together.
COMPETING_WORKER = textwrap.dedent(
    """
    import json, sys, threading, time
    from pathlib import Path
    from pytest_innovator.gpus import GpuLeaser

    lock_dir, process_name, job_count = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    leaser = GpuLeaser(lock_dir, ["0", "1"])
    print("ready", flush=True)
    sys.stdin.readline()
    records, records_lock = [], threading.Lock()

    def job(job_index):
        owner = f"{process_name}-job{job_index}"
        with leaser.lease(1, owner=owner, timeout=60) as lease:
            start = time.monotonic_ns()
            time.sleep(0.3)
            end = time.monotonic_ns()
        with records_lock:
            records.append({"owner": owner, "device": lease.cuda_visible_devices(),
                            "start": start, "end": end})

    threads = [threading.Thread(target=job, args=(i,)) for i in range(job_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for record in records:
        print(json.dumps(record), flush=True)
    """
)


def test_two_processes_never_share_a_device(tmp_path: Path) -> None:
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", COMPETING_WORKER, str(tmp_path), name, "2"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for name in ("proc0", "proc1")
    ]
    for worker in workers:
        assert worker.stdout is not None and worker.stdout.readline() == "ready\n"
    for worker in workers:
        assert worker.stdin is not None
        worker.stdin.write("go\n")
        worker.stdin.close()

    records = []
    for worker in workers:
        assert worker.stdout is not None
        records += [json.loads(line) for line in worker.stdout.read().splitlines()]
        worker.stdout.close()
        assert worker.wait(timeout=60) == 0

    assert len(records) == 4
    assert {record["device"] for record in records} == {"0", "1"}
    for device in ("0", "1"):
        intervals = sorted((record["start"], record["end"]) for record in records if record["device"] == device)
        for (_, earlier_end), (later_start, _) in itertools.pairwise(intervals):
            assert earlier_end <= later_start, f"GPU {device} was held twice at once: {intervals}"

    events = read_lease_log(tmp_path)
    assert sorted(e["owner"] for e in events if e["event"] == "acquire") == sorted(
        record["owner"] for record in records
    )
    assert {e["pid"] for e in events} == {worker.pid for worker in workers}
    assert_acquires_and_releases_match(events)


HOLDING_WORKER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from pytest_innovator.gpus import GpuLeaser

    lease = GpuLeaser(Path(sys.argv[1]), ["0", "1"]).acquire(2, owner="doomed-task")
    print(lease.cuda_visible_devices(), flush=True)
    time.sleep(600)
    """
)


def test_killed_holder_frees_its_devices(tmp_path: Path) -> None:
    holder = subprocess.Popen([sys.executable, "-c", HOLDING_WORKER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    leaser = GpuLeaser(tmp_path, ["0", "1"])
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "0,1\n"
        with pytest.raises(TimeoutError) as busy:
            leaser.acquire(1, owner="survivor", timeout=0)
        assert "doomed-task" in str(busy.value)
        assert f"pid {holder.pid}" in str(busy.value)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
        assert holder.stdout is not None
        holder.stdout.close()

    lease = leaser.acquire(2, owner="survivor", timeout=30)
    assert lease.devices == ("0", "1")
    holder_info = json.loads(leaser.device_lock_path("1").read_text())
    assert holder_info["owner"] == "survivor"
    leaser.release(lease)


@pytest.mark.parametrize(
    ("option", "devices"),
    [
        ("0,1,2,3", ["0", "1", "2", "3"]),
        (" 2 , 0 ", ["2", "0"]),
        ("7", ["7"]),
        ("", []),
        ("GPU-5c2b7e3a-1f4d-4e2a-9d1c-0a1b2c3d4e5f", ["GPU-5c2b7e3a-1f4d-4e2a-9d1c-0a1b2c3d4e5f"]),
    ],
)
def test_detect_gpus_takes_the_option(option: str, devices: list[str]) -> None:
    assert detect_gpus(option) == devices


@pytest.mark.parametrize(
    ("option", "problem"),
    [
        ("0,,1", "empty device id"),
        ("0,1,", "empty device id"),
        (",", "empty device id"),
        ("0,1,0", "duplicate device 0"),
        ("1,01", "duplicate device 1"),
        ("0;1", "'0;1' is not a device index or UUID"),
        ("-1", "'-1' is not a device index or UUID"),
        ("cuda:0", "'cuda:0' is not a device index or UUID"),
    ],
)
def test_detect_gpus_rejects_a_bad_option(option: str, problem: str) -> None:
    with pytest.raises(ValueError) as error:
        detect_gpus(option)
    message = str(error.value)
    assert "--innovator-gpus" in message
    assert problem in message
    assert "comma-separated device indices" in message


def test_detect_gpus_without_nvml_finds_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` raise ImportError
    assert detect_gpus(None) == []
    assert detect_gpus("0,1") == ["0", "1"]


# The host has no GPU, so this module stands in for nvidia-ml-py: it reports devices or fails
# as NVML does, and leaves a marker when it is imported.
FAKE_PYNVML = textwrap.dedent(
    """
    import os
    from pathlib import Path

    Path(os.environ["PYNVML_IMPORT_MARKER"]).write_text("imported")

    class NVMLError(Exception):
        pass

    def nvmlInit():
        if os.environ.get("FAKE_NVML_DEVICES") is None:
            raise NVMLError("NVML Shared Library Not Found")

    def nvmlDeviceGetCount():
        return int(os.environ["FAKE_NVML_DEVICES"])

    def nvmlShutdown():
        pass
    """
)


@pytest.mark.parametrize(("nvml_devices", "devices"), [("2", ["0", "1"]), (None, [])])
def test_detect_gpus_asks_nvml_only_when_called(tmp_path: Path, nvml_devices: str | None, devices: list[str]) -> None:
    (tmp_path / "pynvml.py").write_text(FAKE_PYNVML)
    marker = tmp_path / "pynvml-imported"
    python_path = os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": python_path, "PYNVML_IMPORT_MARKER": str(marker)}
    env.pop("FAKE_NVML_DEVICES", None)
    if nvml_devices is not None:
        env["FAKE_NVML_DEVICES"] = nvml_devices
    script = textwrap.dedent(
        """
        import json, os, sys
        import pytest_innovator.gpus
        print(json.dumps(os.path.exists(os.environ["PYNVML_IMPORT_MARKER"])))
        print(json.dumps(pytest_innovator.gpus.detect_gpus(None)))
        """
    )
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    imported_at_module_import, detected = map(json.loads, result.stdout.splitlines())
    assert imported_at_module_import is False
    assert detected == devices
    assert marker.exists()


def make_fake_dev(tmp_path: Path, names: list[str]) -> Path:
    dev = tmp_path / "dev"
    dev.mkdir()
    for name in names:
        (dev / name).touch()
    return dev


def test_gpu_device_nodes_by_index_are_the_leased_ones_and_the_control_nodes(
    tmp_path: Path,
) -> None:
    dev = make_fake_dev(tmp_path, ["nvidiactl", "nvidia-uvm", "nvidia0", "nvidia1", "nvidia2", "null"])
    nodes = gpu_device_nodes(["2", "0"], dev)
    assert [n.name for n in nodes] == ["nvidiactl", "nvidia-uvm", "nvidia2", "nvidia0"]


def test_gpu_device_nodes_by_uuid_are_every_gpu(tmp_path: Path) -> None:
    dev = make_fake_dev(tmp_path, ["nvidiactl", "nvidia0", "nvidia1", "nvidia-modeset"])
    nodes = gpu_device_nodes(["GPU-8f1b2c3d"], dev)
    assert [n.name for n in nodes] == ["nvidiactl", "nvidia-modeset", "nvidia0", "nvidia1"]


def test_no_lease_no_device_nodes(tmp_path: Path) -> None:
    assert gpu_device_nodes([], make_fake_dev(tmp_path, ["nvidiactl", "nvidia0"])) == []


@pytest.mark.skipif(bwrap_path() is None, reason="bubblewrap is not usable here")
@pytest.mark.skipif(os.geteuid() != 0, reason="making a device node needs root")
def test_sandbox_passes_the_leased_gpu_nodes_through(tmp_path: Path) -> None:
    # A character device with /dev/null's numbers stands in for a GPU. bwrap mounts ordinary binds
    # "nodev", so the node is usable inside only when the sandbox passes it through as a device.
    fake_gpu = tmp_path / "nvidia7"
    os.mknod(fake_gpu, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    use_it = ["sh", "-c", f"echo work > {fake_gpu}"]
    plain = Sandbox(writable=[tmp_path]).argv(use_it)
    passed_through = Sandbox(writable=[tmp_path], devices=[fake_gpu]).argv(use_it)
    assert subprocess.run(plain, check=False, capture_output=True).returncode != 0
    result = subprocess.run(passed_through, check=False, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
