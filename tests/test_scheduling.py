"""The GPU-aware xdist scheduler from the command line: three simulated hosts (xdist workers whose
environment names their host and GPUs), items of 0 to 8 GPUs that sleep, and the GPU leases'
records as the proof of where and when each item held which GPUs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from .test_item_endings import AGENTS
from .test_plugin import add_task, results_log

pytest_plugins = ["pytester"]

HOSTS = {"a": "0,1,2,3", "b": "0,1", "c": "0"}  # host -> its GPUs
WORKERS = {"a": 2, "b": 1, "c": 1}
ITEMS = {"one_a": 1, "one_b": 1, "one_c": 1, "two_a": 2, "two_b": 2, "four_a": 4, "four_b": 4, "none": 0}
TOO_BIG = {"eight": 8}


def tx_options() -> list[str]:
    options = []
    for host, gpus in HOSTS.items():
        options += ["--tx", f"{WORKERS[host]}*popen//env:INNOVATOR_HOST={host}//env:INNOVATOR_GPUS={gpus}"]
    return options


@pytest.fixture
def suite(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Path:
    for variable in [v for v in os.environ if v.startswith("INNOVATOR_")]:
        monkeypatch.delenv(variable)
    monkeypatch.setenv("TMPDIR", str(pytester.path))  # the hosts' GPU lock directories: this test's own
    root = pytester.path / "suite"
    for name, gpus in {**ITEMS, **TOO_BIG}.items():
        add_task(root, name, gpus=gpus)
    replay = pytester.path / "replay.jsonl"
    calls = [
        {"tool": "create_session", "arguments": {"name": "s"}},
        {"tool": "run_command", "arguments": {"session": "s", "command": "sleep 2; echo 0.9 > answer.txt", "wait": 30}},
        {"tool": "finish", "arguments": {"summary": "done"}},
    ]
    replay.write_text("".join(json.dumps(call) + "\n" for call in calls))
    return root


def leases(pytester: pytest.Pytester) -> dict[str, dict]:
    runs = list((pytester.path / ".innovator" / "runs").iterdir())
    assert len(runs) == 1
    return {
        item.name: json.loads((item / "gpu_lease.json").read_text())
        for item in runs[0].iterdir()
        if (item / "gpu_lease.json").exists()
    }


def run_suite(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """The suite on xdist workers (--tx ... --dist load: the GPU scheduler replaces load) with the replay agent."""
    replay = str(pytester.path / "replay.jsonl")
    return pytester.runpytest_subprocess(
        "suite", "-rs", "--dist", "load", "--innovator-agent", "replay", "--innovator-replay", replay, *args
    )


def test_every_item_runs_on_a_host_that_holds_it_and_no_gpu_is_leased_twice(
    pytester: pytest.Pytester, suite: Path
) -> None:
    result = run_suite(pytester, *tx_options(), "--innovator-backend", "sandbox")
    result.assert_outcomes(passed=len(ITEMS), skipped=len(TOO_BIG))
    result.stdout.fnmatch_lines(["SKIPPED*task eight needs 8 GPUs, this host has*"])
    records = leases(pytester)
    assert set(records) == set(ITEMS)
    for item, record in records.items():
        host_gpus = HOSTS[record["host"]].split(",")
        assert len(record["devices"]) == ITEMS[item] and set(record["devices"]) <= set(host_gpus), (item, record)
    # No GPU of a host held by two items at the same time.
    held = [
        (record["host"], device, record["acquired_at"], record["released_at"])
        for record in records.values()
        for device in record["devices"]
    ]
    for i, (host, device, start, end) in enumerate(held):
        for other_host, other_device, other_start, other_end in held[i + 1 :]:
            if (host, device) == (other_host, other_device):
                assert end <= other_start or other_end <= start, (host, device)
    # The hosts were used at once: items overlapped in time (the run is not serialised).
    spans = sorted((r["acquired_at"], r["released_at"]) for r in records.values())
    assert any(later_start < earlier_end for (_, earlier_end), (later_start, _) in zip(spans, spans[1:]))


def test_an_item_that_fits_no_host_is_skipped_and_one_that_fits_a_busy_host_waits(
    pytester: pytest.Pytester, suite: Path
) -> None:
    """Host c (1 GPU) cannot run a 2-GPU item: under xdist's load it would get some and skip them."""
    result = run_suite(
        pytester,
        "-k",
        "two or four or eight",
        "--tx",
        "popen//env:INNOVATOR_HOST=big//env:INNOVATOR_GPUS=0,1,2,3",
        "--tx",
        "3*popen//env:INNOVATOR_HOST=small//env:INNOVATOR_GPUS=0",
    )
    result.assert_outcomes(passed=4, skipped=1)
    assert {record["host"] for record in leases(pytester).values()} == {"big"}


def test_a_worker_that_dies_fails_its_item_and_the_waiting_items_still_run(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TMPDIR", str(pytester.path))
    for name in ("crash", "later_1", "later_2", "later_3"):
        add_task(pytester.path / "suite", name, gpus=2)
    pytester.makepyfile(agents=AGENTS)
    result = pytester.runpytest_subprocess(
        "suite",
        "--dist",
        "load",
        "--tx",
        "2*popen//env:INNOVATOR_HOST=a//env:INNOVATOR_GPUS=0,1,2,3",
        "-p",
        "no:randomly",
        "--innovator-agent",
        "agents:CrashesWorker",
        timeout=300,
    )
    result.assert_outcomes(passed=3, failed=1)
    records = {r["innovator_task"]: r for r in results_log(pytester)}
    assert records["crash"]["end_reason"] == "worker_crashed"
    assert {records[f"later_{n}"]["outcome"] for n in (1, 2, 3)} == {"passed"}
