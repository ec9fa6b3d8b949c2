"""Real pytest runs of sleeping GPU items on three simulated hosts: the GPU scheduler against xdist's own.

Run: ``python bench/bench_scheduling.py [--seed 1] [--items 24] [--keep]``.
Prints a Markdown table, the commands, and writes the numbers as JSON to ``bench/results/``.

Everything happens in one temporary directory (TMPDIR points into it, so the hosts' GPU lock
directories are this run's own). The hosts are xdist workers on this machine whose environment
names their host and GPUs (as in tests/test_scheduling.py): host ``a`` with 8 GPUs, ``b`` with 4
and ``c`` with 2, one worker per 2 GPUs (7 workers).

The suite is InnovatorBench in miniature: ``--items`` copies of ``fixtures/tasks/number`` needing
1, 2, 4 or 8 GPUs (shares in SHAPES), shuffled, each sleeping a time drawn log-uniform between
SHORTEST and LONGEST seconds. The replay agent plays ``<task id>.jsonl`` from one directory: a
session, ``sleep S; echo 0.9 > answer.txt``, finish. Each task's time limit is S minutes, so the
planner's expected durations are in proportion to the true ones. Backend: ``local``.

Policies, each one pytest run over the same suite in the same invocation of this script:

* gpu: ``--innovator-scheduler gpu`` (the planner; xdist's ``--dist load`` is replaced).
* xdist load: ``--innovator-scheduler xdist --dist load``: chunks of items go to workers blindly;
  an item waits on its worker for its host's GPUs (the file-lock lease), and one its host cannot
  hold is skipped.
* xdist worksteal: the same with ``--dist worksteal``.

Measured per run: the wall time of the pytest process; when the first item held its GPUs (after
pytest, its workers and the collection started); the makespan from the items'
``gpu_lease.json`` (first acquired to last released); items passed and skipped (JUnit XML); the
GPU-seconds of work done (GPUs x lease hold time, over the items that ran), and as a share of
all GPUs over the makespan from the leases (GPUs busy). The lower bound is
max(total GPU-seconds / total GPUs, the longest item), from each item's hold time measured in
this invocation (the median over the runs that ran it); it ignores the one-item-per-worker limit
and the start-up of pytest and its workers, so no run can reach it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from bench_scheduling_simulation import markdown
from bench_sessions import RESULTS_DIR

REPOSITORY = Path(__file__).resolve().parent.parent
TASK_DIR = REPOSITORY / "fixtures" / "tasks" / "number"

HOSTS = {"a": 8, "b": 4, "c": 2}  # host -> GPUs
GPUS_PER_WORKER = 2
SHAPES = [(1, 0.35), (2, 0.25), (4, 0.2), (8, 0.2)]  # GPUs, share of items
SHORTEST, LONGEST = 2.0, 8.0  # seconds of sleep
POLICIES = {
    "gpu": ["--innovator-scheduler", "gpu", "--dist", "load"],
    "xdist load": ["--innovator-scheduler", "xdist", "--dist", "load"],
    "xdist worksteal": ["--innovator-scheduler", "xdist", "--dist", "worksteal"],
}


@dataclass(frozen=True)
class Item:
    task_id: str
    gpus: int
    sleep: float


@dataclass
class Outcome:
    policy: str
    command: list[str]
    wall: float = 0.0
    started_at: float = 0.0  # epoch seconds, when pytest was started
    exit_code: int = 0
    passed: int = 0
    skipped: int = 0
    other: int = 0  # failed or errored
    holds: dict[str, tuple[str, float, float]] = field(default_factory=dict)  # task id -> host, acquired, released

    def hold(self, task_id: str) -> float:
        _, start, end = self.holds[task_id]
        return end - start

    @property
    def first_lease(self) -> float:
        """Seconds from the start of pytest to the first item holding its GPUs."""
        return min(start for _, start, _ in self.holds.values()) - self.started_at if self.holds else 0.0

    @property
    def lease_makespan(self) -> float:
        if not self.holds:
            return 0.0
        return max(end for _, _, end in self.holds.values()) - min(start for _, start, _ in self.holds.values())


def make_items(rng: random.Random, count: int) -> list[Item]:
    shapes, weights = zip(*SHAPES, strict=True)
    # Every shape at least its share (rounded), the rest drawn; then shuffled, as a suite's names are.
    gpus = [shape for shape, share in SHAPES for _ in range(round(share * count))][:count]
    gpus += rng.choices(shapes, weights, k=count - len(gpus))
    rng.shuffle(gpus)
    return [
        Item(f"t{number:02d}", need, round(math.exp(rng.uniform(math.log(SHORTEST), math.log(LONGEST))), 1))
        for number, need in enumerate(gpus, 1)
    ]


def write_suite(root: Path, items: list[Item]) -> tuple[Path, Path]:
    """The tasks under root/suite and their replay files under root/replay."""
    suite, replay = root / "suite", root / "replay"
    replay.mkdir(parents=True)
    for item in items:
        target = suite / item.task_id
        shutil.copytree(TASK_DIR, target)
        toml = target / "task.toml"
        text = toml.read_text().replace('id = "number"', f'id = "{item.task_id}"')
        text = text.replace('time_limit = "5m"', f'time_limit = "{item.sleep}m"')
        text = text.replace("[grader]", f"[resources]\ngpus = {item.gpus}\n\n[grader]")
        toml.write_text(text)
        command = f"sleep {item.sleep}; echo 0.9 > answer.txt"
        calls = [
            {"tool": "create_session", "arguments": {"name": "s"}},
            {"tool": "run_command", "arguments": {"session": "s", "command": command, "wait": 60}},
            {"tool": "finish", "arguments": {"summary": "done"}},
        ]
        (replay / f"{item.task_id}.jsonl").write_text("".join(json.dumps(call) + "\n" for call in calls))
    return suite, replay


def tx_options() -> list[str]:
    options = []
    for host, gpus in HOSTS.items():
        devices = ",".join(str(device) for device in range(gpus))
        workers = gpus // GPUS_PER_WORKER
        options += ["--tx", f"{workers}*popen//env:INNOVATOR_HOST={host}//env:INNOVATOR_GPUS={devices}"]
    return options


def run_policy(root: Path, policy: str, replay: Path) -> Outcome:
    results = root / f"results-{policy.replace(' ', '-')}"
    junit = root / f"junit-{policy.replace(' ', '-')}.xml"
    command = [
        sys.executable,
        "-m",
        "pytest",
        "suite",
        "-q",
        "-p",
        "no:cacheprovider",
        *tx_options(),
        *POLICIES[policy],
        "--innovator-agent",
        "replay",
        "--innovator-replay",
        str(replay),
        "--innovator-backend",
        "local",
        "--innovator-results",
        str(results),
        "--junitxml",
        str(junit),
    ]
    environment = {name: value for name, value in os.environ.items() if not name.startswith("INNOVATOR_")}
    environment["TMPDIR"] = str(root / "tmp")
    outcome = Outcome(policy, command)
    outcome.started_at = time.time()
    started = time.perf_counter()
    process = subprocess.run(command, cwd=root, env=environment, capture_output=True, text=True)
    outcome.wall = time.perf_counter() - started
    outcome.exit_code = process.returncode
    (root / f"output-{policy.replace(' ', '-')}.txt").write_text(process.stdout + process.stderr)
    for case in ET.parse(junit).iter("testcase"):
        if case.find("skipped") is not None:
            outcome.skipped += 1
        elif case.find("failure") is not None or case.find("error") is not None:
            outcome.other += 1
        else:
            outcome.passed += 1
    for lease in (results / "runs").glob("*/*/gpu_lease.json"):
        record = json.loads(lease.read_text())
        if "released_at" in record:
            outcome.holds[lease.parent.name] = (record["host"], record["acquired_at"], record["released_at"])
    return outcome


def lower_bound(items: list[Item], outcomes: list[Outcome]) -> tuple[float, dict[str, float]]:
    """The bound, and each item's hold time (median over the runs that ran it)."""
    durations = {}
    for item in items:
        measured = [o.hold(item.task_id) for o in outcomes if item.task_id in o.holds]
        if measured:
            durations[item.task_id] = statistics.median(measured)
    gpus = {item.task_id: item.gpus for item in items}
    work = sum(gpus[task] * duration for task, duration in durations.items())
    return max(work / sum(HOSTS.values()), max(durations.values())), durations


def load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--items", type=int, default=24)
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (its path is printed)")
    arguments = parser.parse_args()

    items = make_items(random.Random(arguments.seed), arguments.items)
    gpus = {item.task_id: item.gpus for item in items}
    shapes = ", ".join(f"{sum(i.gpus == g for i in items)} x {g} GPU" for g, _ in SHAPES)
    print(f"{len(items)} items ({shapes}), sleeping {sum(i.sleep for i in items):.0f} s in all", file=sys.stderr)
    root = Path(tempfile.mkdtemp(prefix="innovator-schedbench-"))
    (root / "tmp").mkdir()
    loads = [load_average()]
    try:
        _, replay = write_suite(root, items)
        outcomes = []
        for policy in POLICIES:
            outcomes.append(run_policy(root, policy, replay))
            print(f"{policy}: {outcomes[-1].wall:.1f} s, exit {outcomes[-1].exit_code}", file=sys.stderr)
        loads.append(load_average())
        bound, durations = lower_bound(items, outcomes)
    finally:
        if arguments.keep:
            print(f"Kept {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)

    suite_work = sum(gpus[task] * duration for task, duration in durations.items())
    rows = []
    for outcome in outcomes:
        done = sum(gpus[task] * outcome.hold(task) for task in outcome.holds)
        rows.append(
            {
                "policy": outcome.policy,
                "passed": str(outcome.passed),
                "skipped": str(outcome.skipped),
                "failed": str(outcome.other),
                "wall s": f"{outcome.wall:.1f}",
                "first lease after s": f"{outcome.first_lease:.1f}",
                "makespan from leases s": f"{outcome.lease_makespan:.1f}",
                "GPU-s done": f"{done:.0f}",
                "% of the suite's GPU-s": f"{100 * done / suite_work:.0f}",
                "GPUs busy %": f"{100 * done / (outcome.lease_makespan * sum(HOSTS.values())):.0f}",
                "leases ÷ lower bound": f"{outcome.lease_makespan / bound:.2f}",
                "wall ÷ lower bound": f"{outcome.wall / bound:.2f}",
            }
        )
    mean_hold = statistics.fmean(durations[i.task_id] - i.sleep for i in items if i.task_id in durations)
    print(markdown(rows))
    print()
    print(
        f"Lower bound {bound:.1f} s: {suite_work:.0f} GPU-s over {sum(HOSTS.values())} GPUs, longest item "
        f"{max(durations.values()):.1f} s; an item holds its GPUs {mean_hold:.2f} s longer than it sleeps (mean)."
    )
    print(f"Load average (1, 5, 15 min) before: {loads[0]}; after: {loads[-1]}")
    print(f"Command: python {' '.join(sys.argv)}")
    print("Each run, in the temporary directory (TMPDIR=<it>/tmp):")
    for outcome in outcomes:
        shown = ["python" if part == sys.executable else part for part in outcome.command]
        print(f"  {shlex.join(shown)}".replace(str(root), "<tmp>"))
    print(f"Python {platform.python_version()} on {platform.platform()}, {os.cpu_count()} CPUs")

    RESULTS_DIR.mkdir(exist_ok=True)
    raw = {
        "items": [vars(item) for item in items],
        "hold_seconds": durations,
        "lower_bound_s": bound,
        "load_average": loads,
        "runs": [
            {
                "policy": o.policy,
                "wall_s": o.wall,
                "exit_code": o.exit_code,
                "passed": o.passed,
                "skipped": o.skipped,
                "failed": o.other,
                "holds": o.holds,
            }
            for o in outcomes
        ],
    }
    (RESULTS_DIR / "scheduling.json").write_text(json.dumps(raw, indent=1))


if __name__ == "__main__":
    main()
