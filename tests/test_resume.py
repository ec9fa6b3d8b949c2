"""Crash and resume with real processes: kill -9 the pytest process, or an xdist worker, in the
middle of an episode with a long command running, then resume the run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from xml.etree import ElementTree

import pytest

from .test_plugin import add_task

pytestmark = pytest.mark.slow


def replay_file(directory: Path, marker: str) -> Path:
    """Evaluate the baseline, start a 'training' command, keep working, wait for it, evaluate, finish."""
    calls = [
        {"tool": "create_session", "arguments": {"name": "train"}},
        {"tool": "evaluate"},
        {
            "tool": "run_command",
            "arguments": {"session": "train", "command": f"sleep {marker}; echo 0.55 > answer.txt", "wait": 0},
        },
        {"tool": "think", "arguments": {"thought": "training runs"}},
        {"tool": "wait", "arguments": {"seconds": 60, "session": "train"}},
        {"tool": "evaluate"},
        {"tool": "finish"},
    ]
    path = directory / "replay.jsonl"
    path.write_text("\n".join(json.dumps(c) for c in calls))
    return path


def pytest_command(root: Path, results: str, replay: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "pytest",
        "suite",
        "-p",
        "no:cacheprovider",
        "-p",
        "no:randomly",
        "--innovator-agent",
        "replay",
        "--innovator-replay",
        str(replay),
        "--innovator-results",
        results,
        "--innovator-snapshot-steps",
        "1",
        *extra,
    ]


def wait_for(predicate, timeout: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the run to reach the kill point")
        time.sleep(0.1)


def snapshot_after_step(item_dir: Path, step: int) -> bool:
    path = item_dir / "trajectory.jsonl"
    if not path.exists():
        return False
    return any(
        r.get("event") == "snapshot" and r["step"] == step for r in map(json.loads, path.read_text().splitlines()) if r
    )


def processes_with(marker: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and marker.encode() in (proc / "cmdline").read_bytes():
                found.append(int(proc.name))
        except OSError:
            pass
    return found


def evaluations(item_dir: Path) -> list[tuple[str, float]]:
    ledger = json.loads((item_dir / "ledger.json").read_text())
    return [(e["kind"], e["metric"]) for e in ledger["evaluations"]]


def resume_run(root: Path, results: str, replay: Path, target: Path | str, env: dict[str, str], *extra: str) -> None:
    """Resume (or branch from) `target` into `results`; the run must pass."""
    resumed = subprocess.run(
        pytest_command(root, results, replay, *extra, "--innovator-resume", str(target)),
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stdout[-3000:]


def the_run(root: Path, results: str) -> Path:
    [run] = (root / results / "runs").iterdir()
    return run


def test_kill_the_pytest_process_then_resume(pytester: pytest.Pytester) -> None:
    root = pytester.path
    add_task(root / "suite", "number")
    marker = f"4.{uuid.uuid4().int % 10**6:06d}"
    replay = replay_file(root, marker)
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}

    subprocess.run(pytest_command(root, "whole", replay), cwd=root, env=env, capture_output=True, timeout=300)
    whole = the_run(root, "whole") / "number"

    first = subprocess.Popen(
        pytest_command(root, "crashed", replay), cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    wait_for(
        lambda: (root / "crashed" / "runs").is_dir() and snapshot_after_step(the_run(root, "crashed") / "number", 4)
    )
    assert processes_with(marker), "the long command should be running at the kill"
    first.send_signal(signal.SIGKILL)
    first.wait()
    crashed_run = the_run(root, "crashed")
    wait_for(lambda: not processes_with(marker), timeout=20)  # nothing of the first run is left

    resume_run(root, "resumed", replay, crashed_run, env)
    item = the_run(root, "resumed") / "number"
    result = json.loads((item / "result.json").read_text())
    assert result["score_final"] == json.loads((whole / "result.json").read_text())["score_final"] == pytest.approx(40)
    assert evaluations(item) == evaluations(whole) == [("agent", 0.2), ("agent", 0.55), ("final", 0.55)]

    records = [json.loads(line) for line in (item / "trajectory.jsonl").read_text().splitlines()]
    before = [
        r
        for r in records[: next(i for i, r in enumerate(records) if r.get("event") == "resume")]
        if r["type"] == "step"
    ]
    assert [r["step"] for r in before] == [1, 2, 3, 4]  # no gap before the snapshot
    resume = next(r for r in records if r.get("event") == "resume")
    assert resume["snapshot"] == "0004-step4"
    assert resume["lost_sessions"][0]["command"].startswith(f"sleep {marker}")
    after = [r for r in records if r["type"] == "step" and r["step"] > 4]
    assert "resumed from snapshot 0004-step4" in after[0]["observation"]
    assert [r["tool"] for r in after] == ["create_session", "run_command", "wait", "evaluate", "finish"]


def test_kill_an_xdist_worker_then_resume(pytester: pytest.Pytester) -> None:
    root = pytester.path
    add_task(root / "suite", "quick")
    add_task(root / "suite", "number")
    marker = f"6.{uuid.uuid4().int % 10**6:06d}"
    replay = replay_file(root, marker)
    quick_replay = root / "replays"
    quick_replay.mkdir()
    (quick_replay / "quick.jsonl").write_text(
        '{"tool": "write_file", "arguments": {"path": "answer.txt", "content": "0.9"}}\n{"tool": "finish"}'
    )
    (quick_replay / "number.jsonl").write_text(replay.read_text())
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    command = pytest_command(root, "crashed", quick_replay, "-n", "2", "--max-worker-restart", "0")
    first = subprocess.Popen(command, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_for(
        lambda: (root / "crashed" / "runs").is_dir() and snapshot_after_step(the_run(root, "crashed") / "number", 4)
    )
    owner = json.loads((the_run(root, "crashed") / "number" / "gpu_lease.json").read_text())["owner"]
    worker_pid = int(owner.rsplit("pid ", 1)[1].rstrip(")"))
    os.kill(worker_pid, signal.SIGKILL)
    output, _ = first.communicate(timeout=120)
    assert "crashed" in output or "worker" in output
    crashed_run = the_run(root, "crashed")
    wait_for(lambda: not processes_with(marker), timeout=20)
    first_log = [json.loads(line) for line in (root / "crashed" / "results.jsonl").read_text().splitlines()]
    assert [r["innovator_task"] for r in first_log if r["outcome"] == "passed"] == ["quick"]

    resume_run(root, "resumed", quick_replay, crashed_run, env, "-n", "2", "--junitxml", "resumed.xml")
    records = {
        r["innovator_task"]: r for r in map(json.loads, (root / "resumed" / "results.jsonl").read_text().splitlines())
    }
    assert records["quick"]["resumed_from"] == str(crashed_run / "quick")  # carried over, not re-run
    # ... and reported as the first run reported it (floats rounded alike).
    quick_first = next(r for r in first_log if r["innovator_task"] == "quick")
    same = ("working_time_s", "metric_final", "score_final", "end_reason")
    assert {k: records["quick"][k] for k in same} == {k: quick_first[k] for k in same}
    xml = ElementTree.parse(root / "resumed.xml").getroot()
    [quick_case] = [case for case in xml.iter("testcase") if case.get("name") == "quick"]
    xml_properties = {p.get("name"): p.get("value") for p in quick_case.iter("property")}
    assert xml_properties["working_time_s"] == str(quick_first["working_time_s"])
    assert not (the_run(root, "resumed") / "quick").exists()
    assert records["number"]["score_final"] == pytest.approx(40) and records["number"]["evals_used"] == 2
    assert 'name="resumed_from"' in (root / "resumed.xml").read_text()


def test_branch_from_an_earlier_snapshot(pytester: pytest.Pytester) -> None:
    root = pytester.path
    add_task(root / "suite", "number")
    replay = replay_file(root, f"0.{uuid.uuid4().int % 10**6:06d}")
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    subprocess.run(
        pytest_command(root, "first", replay, "--innovator-snapshot-keep", "100"),
        cwd=root,
        env=env,
        capture_output=True,
        timeout=300,
    )
    item = the_run(root, "first") / "number"
    [target] = [
        p.name for p in (item / "snapshots").iterdir() if p.name.endswith("-step2")
    ]  # after the first evaluation
    # The branch continues with another script: write the reference answer and finish.
    other = root / "other.jsonl"
    other.write_text(
        '{"tool": "write_file", "arguments": {"path": "answer.txt", "content": "0.9"}}\n{"tool": "finish"}'
    )
    resume_run(root, "branch", other, f"{item}@{target}", env)
    branch = the_run(root, "branch") / "number"
    assert json.loads((branch / "result.json").read_text())["score_final"] == pytest.approx(80)
    assert evaluations(branch) == [("agent", 0.2), ("final", 0.9)]  # the branch keeps the evaluation before it
    assert json.loads((branch / "resume.json").read_text())["branch"] is True
