"""Resource limits on the sandbox backend, from the command line: one item hits its memory, process
and disk limits while its neighbour under -n 2 scores as it does alone; every limit is named in the
trajectory, and the item goes on. Bounded so that it never threatens the machine: 512 MiB asked
of a 256 MiB item, 200 processes of a 64-process item, 300 MiB written to a 100 MiB disk."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from pytest_innovator.limits import Cgroup, LimitSpec, cgroup_version
from pytest_innovator.mounts import overlay_unavailable
from pytest_innovator.rundir import RunDir
from pytest_innovator.sandbox import bwrap_path

from .benchmark_runs import FINISH, answer, write_replays
from .conftest import fake_gpus
from .test_plugin import add_task, results_log

pytestmark = [
    pytest.mark.skipif(bwrap_path() is None, reason="the sandbox backend needs bubblewrap"),
    pytest.mark.skipif(
        not isinstance(Cgroup.create("probe", LimitSpec(1 << 30, 1, 64)), Cgroup) or overlay_unavailable() is not None,
        reason="needs root with a writable cgroup hierarchy and overlay mounts",
    ),
]

ALLOCATE = 'python3 -c \'b = bytearray(512 << 20); b[::4096] = b"x" * len(b[::4096]); print("ALLOCATED")\''
FORK = (
    "python3 -c 'import subprocess\nps = []\ntry:\n"
    + '    for _ in range(200): ps.append(subprocess.Popen(["sleep", "30"]))\n'
    + 'except OSError as exc: print("STOPPED AT", len(ps), exc.strerror)\nfor p in ps: p.kill()\''
)
FILL = "head -c 300M /dev/zero > fill.bin; echo wrote=$?"  # the disk is still full when the step ends
FREE = "rm -f fill.bin"


def test_one_item_hits_its_limits_and_its_neighbour_scores_as_alone(pytester: pytest.Pytester) -> None:
    hog = add_task(pytester.path / "suite", "hog")
    toml = hog / "task.toml"
    toml.write_text(
        toml.read_text().replace("[grader]", '[resources]\nmemory = "256M"\nprocesses = 64\ndisk = "100M"\n\n[grader]')
    )
    add_task(pytester.path / "suite", "calm")
    commands = [
        {"tool": "run_command", "arguments": {"session": "s", "command": c, "wait": 60}}
        for c in (ALLOCATE, FORK, FILL, FREE)
    ]
    start, end = [{"tool": "create_session", "arguments": {"name": "s"}}], [answer(0.9), FINISH]
    replay = write_replays(pytester.path / "replays", {"hog": [*start, *commands, *end], "calm": [*start, *end]})

    result = pytester.runpytest_subprocess(
        "suite", "-n", "2", "--innovator-backend", "sandbox", "--innovator-agent", "replay",
        "--innovator-replay", str(replay),
    )  # fmt: skip
    result.assert_outcomes(passed=2)
    records = {record["innovator_task"]: record for record in results_log(pytester)}
    assert records["calm"]["score_final"] == pytest.approx(80) == records["hog"]["score_final"]  # both went on
    assert "limits by cgroup" in records["hog"]["limits"] and "64 processes" in records["hog"]["limits"]

    lines = Path(records["hog"]["run_dir"], "trajectory.jsonl").read_text().splitlines()
    observations = [json.loads(line)["observation"] for line in lines if json.loads(line).get("type") == "step"]
    allocate, fork, fill = observations[1:4]
    assert "ALLOCATED" not in allocate and "[out of memory: the kernel killed" in allocate
    assert "STOPPED AT" in fork and "[process limit:" in fork
    assert "No space left on device" in fill and "[disk full:" in fill
    events = [json.loads(line)["what"] for line in lines if json.loads(line).get("event") == "limit"]
    named = [event.split(":")[0] for event in events if not event.startswith("CPU limit")]  # throttling: maybe
    assert named == ["out of memory", "process limit", "disk full"]

    calm_lines = Path(records["calm"]["run_dir"], "trajectory.jsonl").read_text()
    assert '"event": "limit"' not in calm_lines


def test_closing_an_item_removes_its_cgroups(pytester: pytest.Pytester) -> None:
    task_id = f"closing-{uuid.uuid4().hex[:8]}"  # its own cgroup names: other workers' items come and go
    add_task(pytester.path / "suite", task_id)
    replay = pytester.path / "replay.jsonl"
    background = "setsid sleep 3071 & (sleep 3072 &) ; echo started"
    replay.write_text(
        '{"tool": "create_session", "arguments": {"name": "s"}}\n'
        + json.dumps({"tool": "run_command", "arguments": {"session": "s", "command": background, "wait": 10}})
        + '\n{"tool": "finish"}'
    )
    root = Path("/sys/fs/cgroup") if cgroup_version() == 2 else Path("/sys/fs/cgroup/memory")
    result = pytester.runpytest_subprocess(
        "suite", "--innovator-backend", "sandbox", "--innovator-agent", "replay", "--innovator-replay", str(replay)
    )
    result.stdout.fnmatch_lines(["*run_command*-> ok*"])  # the background processes did start
    assert list((root / "pytest-innovator").glob(f"{task_id}-*")) == []
    leftovers = [p for p in Path("/proc").iterdir() if p.name.isdigit() and b"sleep\x00307" in _cmdline(p)]
    assert not leftovers


def _cmdline(proc: Path) -> bytes:
    try:
        return (proc / "cmdline").read_bytes()
    except OSError:
        return b""


def test_without_cgroups_the_item_says_what_is_not_enforced(pytester: pytest.Pytester) -> None:
    add_task(pytester.path / "suite", "number")
    pytester.makeconftest(
        "import pytest_innovator.limits as limits\nfrom pathlib import Path\n"
        "limits.CGROUP_ROOT = Path('/nonexistent-cgroup-root')\n"
    )
    pytester.runpytest_inprocess(
        "suite", "--innovator-backend", "sandbox", "--innovator-agent", "oracle", "-p", "no:xdist"
    )
    [record] = results_log(pytester)
    assert record["limits"].startswith("limits by rlimit only (no cgroup hierarchy under /nonexistent-cgroup-root)")
    assert "processes, CPU and I/O not limited" in record["limits"]
    assert record["score_final"] == pytest.approx(80)


def test_gpu_memory_is_recorded_and_going_over_the_tasks_gpu_memory_is_told(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    task = add_task(pytester.path / "suite", "trainer", gpus=1)
    toml = task / "task.toml"
    toml.write_text(toml.read_text().replace("gpus = 1\n", 'gpus = 1\ngpu_memory = "16G"\n'))
    used = str(pytester.path / ".innovator" / "runs" / "*" / "trainer" / "workspace" / "vram.txt")
    fake_gpus(monkeypatch, pytester.path / "nvml.json", [24], used_files=used)
    steps = [
        {"tool": "write_file", "arguments": {"path": "vram.txt", "content": str(20 << 30)}},  # a model loaded
        {"tool": "think", "arguments": {"thought": "still loaded"}},
        {"tool": "write_file", "arguments": {"path": "vram.txt", "content": str(2 << 30)}},  # freed
        answer(0.9),
        FINISH,
    ]
    replay = write_replays(pytester.path / "replays", {"trainer": steps})

    result = pytester.runpytest_subprocess(
        "suite", "--innovator-backend", "sandbox", "--innovator-gpus", "0", "--innovator-agent", "replay",
        "--innovator-replay", str(replay),
    )  # fmt: skip
    result.assert_outcomes(passed=1)
    [record] = results_log(pytester)
    assert record["limits"].endswith("; GPU memory 0: peak 20 GiB")
    run_dir = Path(record["run_dir"])
    lines = [json.loads(line) for line in run_dir.joinpath("trajectory.jsonl").read_text().splitlines()]
    observations = [line["observation"] for line in lines if line.get("type") == "step"]
    assert "[GPU memory: device 0 holds 20 GiB, more than the task's gpu_memory of 16 GiB" in observations[0]
    assert "GPU memory" not in observations[1]  # told once per crossing
    events = [line["what"] for line in lines if line.get("event") == "limit"]
    assert len(events) == 1 and events[0].startswith("GPU memory: device 0")
    samples = [json.loads(line) for line in RunDir(run_dir).gpu_memory.read_text().splitlines()]
    assert {sample["device"] for sample in samples} == {"0"} and samples[0]["total"] == 24 << 30
    used = [sample["used"] for sample in samples]  # at the start, after each step (and every 10 s), at the end
    assert used[0] == 0 and used.count(20 << 30) >= 2 and used[-1] == 2 << 30
