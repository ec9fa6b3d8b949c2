"""Simulated runs of InnovatorBench-shaped items on many GPU hosts: the planner against baselines.

Run: ``python bench/bench_scheduling_simulation.py [--seed 1] [--items-per-host 20] [--skip-large]``.
Prints a Markdown table and the command line. Nothing is written to disk.

A discrete-event simulation in simulated hours; every item is queued at time 0. Items: 55 % need
1 GPU, 35 % 8 GPUs, 10 % 16 GPUs as 2 hosts x 8; durations log-uniform between 2 and 48 h.
Inventories: 100 and 1,000 hosts of 8 GPUs, and 300 mixed hosts (100 each of 2, 4 and 8 GPUs).
Every host has one xdist worker per GPU.

Policies, all measured in the same run on the same items:

* planner, durations known: `hosts.planner.Planner` given each item's true duration.
* planner, durations unknown: the same, with no durations (reservations on the most free GPUs).
* FCFS, no reservation: the planner with its reservation switched off: every item that fits
  starts, in arrival order (greedy list scheduling), so big items can wait behind small ones.
* blind: what xdist's `load` scheduler does today: a free worker takes the next item whatever
  it needs (without load's prefetch, which only makes it worse); the item then waits on its
  worker for its host's GPUs (the file-lock lease), and an item its host cannot hold at all (or
  one that needs 2 hosts) is skipped.

The lower bound of the makespan is max(total GPU-time / total GPUs, the longest item); the
planner's wall time per decision (one `place()` call) is measured with time.perf_counter.
"""

from __future__ import annotations

import argparse
import heapq
import math
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pytest_innovator.hosts.planner import Host, ItemNeed, Planner

HOUR = 3600.0
SHAPES = [((1, 1), 0.55), ((8, 1), 0.35), ((8, 2), 0.10)]  # (GPUs per host, hosts), share of items
SHORTEST, LONGEST = 2 * HOUR, 48 * HOUR


class NoReservationPlanner(Planner):
    """The FCFS baseline: the reservation is made but never holds anything back."""

    def _may_backfill(self, *args: object) -> bool:
        return True


@dataclass(frozen=True)
class Item:
    key: str
    gpus: int
    hosts: int
    duration: float  # seconds, the true one


@dataclass
class Outcome:
    policy: str
    makespan: float = 0.0
    skipped: int = 0
    gpu_seconds_done: float = 0.0
    waits: list[float] = field(default_factory=list)
    two_host_waits: list[float] = field(default_factory=list)  # of the 16-GPU items: the ones a stream can starve
    decision_seconds: list[float] = field(default_factory=list)

    def record_start(self, item: Item, now: float) -> None:
        self.waits.append(now)  # every item is queued at 0
        if item.hosts > 1:
            self.two_host_waits.append(now)
        self.gpu_seconds_done += item.gpus * item.hosts * item.duration


def make_items(rng: random.Random, count: int) -> list[Item]:
    shapes, weights = zip(*SHAPES, strict=True)
    items = []
    for number in range(count):
        gpus, hosts = rng.choices(shapes, weights)[0]
        duration = math.exp(rng.uniform(math.log(SHORTEST), math.log(LONGEST)))
        items.append(Item(f"item{number}", gpus, hosts, duration))
    return items


def lower_bound(items: list[Item], hosts: list[Host]) -> float:
    total_gpus = sum(host.gpus for host in hosts)
    work = sum(item.gpus * item.hosts * item.duration for item in items)
    return max(work / total_gpus, max(item.duration for item in items))


def workers_of(host: Host) -> list[str]:
    return [f"{host.name}/w{number}" for number in range(host.gpus)]


PlannerFactory = Callable[[Callable[[], float]], Planner]  # the clock -> a planner


def simulate_planner(
    policy: str, make_planner: PlannerFactory, hosts: list[Host], items: list[Item], *, known: bool
) -> Outcome:
    outcome = Outcome(policy)
    now = 0.0
    planner = make_planner(lambda: now)
    for host in hosts:
        planner.add_host(host)
        for worker in workers_of(host):
            planner.add_worker(worker, host.name)
    by_key = {item.key: item for item in items}
    planner.add_items(ItemNeed(i.key, i.gpus, i.hosts, None, i.duration if known else None) for i in items)
    ends: list[tuple[float, str]] = []

    def decide() -> None:
        started = time.perf_counter()
        plan = planner.place()
        outcome.decision_seconds.append(time.perf_counter() - started)
        outcome.skipped += len(plan.impossible)
        for placement in plan.placements:
            item = by_key[placement.item.key]
            heapq.heappush(ends, (now + item.duration, item.key))
            outcome.record_start(item, now)

    decide()
    while ends:
        now, key = heapq.heappop(ends)
        planner.finished(key)
        while ends and ends[0][0] == now:
            planner.finished(heapq.heappop(ends)[1])
        decide()
    outcome.makespan = now
    return outcome


def simulate_blind(hosts: list[Host], items: list[Item]) -> Outcome:
    outcome = Outcome("blind (xdist load)")
    host_of = {worker: host for host in hosts for worker in workers_of(host)}
    free = {host.name: host.gpus for host in hosts}
    queue = iter(items)
    blocked: dict[str, list[tuple[str, Item]]] = {host.name: [] for host in hosts}  # waiting for GPUs, in order
    ends: list[tuple[float, str, str]] = []  # end, worker, item key
    running: dict[str, Item] = {}
    now = 0.0

    def start(worker: str, item: Item) -> None:
        free[host_of[worker].name] -= item.gpus
        running[worker] = item
        heapq.heappush(ends, (now + item.duration, worker, item.key))
        outcome.record_start(item, now)

    def take_next(worker: str) -> None:
        host = host_of[worker]
        for item in queue:
            if item.hosts > 1 or item.gpus > host.gpus:
                outcome.skipped += 1  # the fixture skips it on this worker, which takes the next
                continue
            if item.gpus <= free[host.name] and not blocked[host.name]:
                start(worker, item)
            else:
                blocked[host.name].append((worker, item))
            return

    def retry_blocked(host: str) -> None:
        # The lease polls; whichever waiting worker finds enough GPUs free takes them.
        for worker, item in list(blocked[host]):
            if item.gpus <= free[host]:
                blocked[host].remove((worker, item))
                start(worker, item)

    for worker in [w for _, group in _round_robin(hosts) for w in group]:
        take_next(worker)
    while ends:
        now, worker, _ = heapq.heappop(ends)
        item = running.pop(worker)
        host = host_of[worker].name
        free[host] += item.gpus
        retry_blocked(host)
        take_next(worker)
    outcome.makespan = now
    return outcome


def _round_robin(hosts: list[Host]) -> list[tuple[int, list[str]]]:
    """Workers in xdist's order for a round-robin start: the first worker of every host, then the
    second, and so on."""
    rounds: dict[int, list[str]] = {}
    for host in hosts:
        for number, worker in enumerate(workers_of(host)):
            rounds.setdefault(number, []).append(worker)
    return sorted(rounds.items())


def eight_gpu_hosts(count: int) -> list[Host]:
    return [Host(f"h{number}", 8) for number in range(count)]


def mixed_hosts(count_each: int) -> list[Host]:
    return [Host(f"h{gpus}-{number}", gpus) for gpus in (2, 4, 8) for number in range(count_each)]


def run_scenario(name: str, hosts: list[Host], items: list[Item]) -> list[dict[str, str]]:
    outcomes = [
        simulate_planner("planner, durations known", Planner, hosts, items, known=True),
        simulate_planner("planner, durations unknown", Planner, hosts, items, known=False),
        simulate_planner("FCFS, no reservation", NoReservationPlanner, hosts, items, known=True),
        simulate_blind(hosts, items),
    ]
    bound = lower_bound(items, hosts)
    total_gpus = sum(host.gpus for host in hosts)
    work = sum(item.gpus * item.hosts * item.duration for item in items)
    fcfs, blind = outcomes[2], outcomes[3]
    rows = []
    for outcome in outcomes:
        decisions = sorted(outcome.decision_seconds)
        rows.append(
            {
                "scenario": name,
                "policy": outcome.policy,
                "skipped": str(outcome.skipped),
                "makespan h": f"{outcome.makespan / HOUR:.1f}",
                "% of lower bound": f"{100 * outcome.makespan / bound:.0f}",
                "÷ FCFS": f"{outcome.makespan / fcfs.makespan:.2f}",
                "÷ blind": f"{outcome.makespan / blind.makespan:.2f}",
                "GPU-h run %": f"{100 * outcome.gpu_seconds_done / work:.0f}",
                "GPUs busy %": f"{100 * outcome.gpu_seconds_done / (outcome.makespan * total_gpus):.0f}",
                "mean wait h": f"{statistics.fmean(outcome.waits) / HOUR:.1f}",
                "16-GPU max wait h": f"{max(outcome.two_host_waits) / HOUR:.1f}" if outcome.two_host_waits else "-",
                "decisions": str(len(decisions)) if decisions else "-",
                "µs/decision mean": f"{1e6 * statistics.fmean(decisions):.0f}" if decisions else "-",
                "p99": f"{1e6 * decisions[int(0.99 * (len(decisions) - 1))]:.0f}" if decisions else "-",
                "max": f"{1e6 * decisions[-1]:.0f}" if decisions else "-",
            }
        )
    return rows


def markdown(rows: list[dict[str, str]]) -> str:
    header = list(rows[0])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row[column] for column in header) + " |" for row in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--items-per-host", type=float, default=20.0, help="items per 8 GPUs of the inventory")
    parser.add_argument("--skip-large", action="store_true", help="leave out the 1,000-host case")
    arguments = parser.parse_args()

    scenarios = [("100 x 8 GPUs", eight_gpu_hosts(100)), ("300 mixed (2/4/8 GPUs)", mixed_hosts(100))]
    if not arguments.skip_large:
        scenarios.insert(1, ("1,000 x 8 GPUs", eight_gpu_hosts(1000)))
    rows = []
    for name, hosts in scenarios:
        rng = random.Random(arguments.seed)
        count = round(arguments.items_per_host * sum(host.gpus for host in hosts) / 8)
        items = make_items(rng, count)
        print(f"{name}: {count} items, lower bound {lower_bound(items, hosts) / HOUR:.1f} h", file=sys.stderr)
        rows += run_scenario(f"{name}, {count} items", hosts, items)

    print(markdown(rows))
    print()
    print(f"Command: python {' '.join(sys.argv)}")
    print(f"Python {platform.python_version()} on {platform.platform()}, {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
