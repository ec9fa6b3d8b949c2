"""Benchmark of the environment's own overhead per step, with no grader involved.

Run: ``python bench/bench_env.py [--steps 100] [--repeats 5]``. Prints a table and writes JSON to
``bench/results/``.

* env steps: ``env.step("think", ...)`` end to end: argument validation, the handler, the
  ledger written to the run directory and the trajectory line appended and flushed.
* baseline (same run): the bare handler call, ``tools.think(env, args)``, with no validation,
  ledger or trajectory, so the ratio is the cost the harness adds to a step.
* late steps (``--late 5000``): one episode of that many steps; the median step time over its
  first 100 steps against its last 100, so a cost that grows with the episode shows.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pytest_innovator import tools  # noqa: E402
from pytest_innovator.env import Limits, ResearchEnv  # noqa: E402
from pytest_innovator.task import load_task  # noqa: E402
from pytest_innovator.workspace import LocalWorkspace  # noqa: E402

RESULTS_DIR = Path(__file__).with_name("results")


def time_steps(env: ResearchEnv, steps: int) -> list[float]:
    durations = []
    for i in range(steps):
        start = time.perf_counter()
        env.step("think", {"thought": f"step {i}"})
        durations.append(time.perf_counter() - start)
    return durations


def time_bare_handler(env: ResearchEnv, steps: int) -> list[float]:
    durations = []
    for i in range(steps):
        start = time.perf_counter()
        tools.think(env, tools.Think(thought=f"step {i}"))
        durations.append(time.perf_counter() - start)
    return durations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--late", type=int, default=5000, help="steps of the long episode (0: skip it)")
    args = parser.parse_args()
    task = load_task(REPO / "fixtures" / "tasks" / "number")
    env_totals, bare_totals, per_step = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            run_dir = Path(tmp) / f"run{repeat}"
            workspace, _ = LocalWorkspace.create(task, run_dir)
            env = ResearchEnv(task, workspace, run_dir, Limits(3600, args.steps + 10, 3), agent_name="bench")
            durations = time_steps(env, args.steps)
            bare = time_bare_handler(env, args.steps)
            env_totals.append(sum(durations))
            bare_totals.append(sum(bare))
            per_step.extend(durations)
            env.trajectory.close()
            workspace.close()
        late = None
        if args.late:
            run_dir = Path(tmp) / "long"
            workspace, _ = LocalWorkspace.create(task, run_dir)
            env = ResearchEnv(task, workspace, run_dir, Limits(36000, args.late + 10, 3), agent_name="bench")
            durations = time_steps(env, args.late)
            env.trajectory.close()
            workspace.close()
            first, last = statistics.median(durations[:100]), statistics.median(durations[-100:])
            late = {"steps": args.late, "first_100_ms_median": first * 1000, "last_100_ms_median": last * 1000}
    per_step_ms = sorted(d * 1000 for d in per_step)
    result = {
        "benchmark": "env_step_overhead",
        "steps": args.steps,
        "repeats": args.repeats,
        "env_total_s_median": statistics.median(env_totals),
        "bare_total_s_median": statistics.median(bare_totals),
        "step_ms_median": statistics.median(per_step_ms),
        "step_ms_p95": per_step_ms[int(0.95 * (len(per_step_ms) - 1))],
        "ratio_env_to_bare": statistics.median(env_totals) / statistics.median(bare_totals),
        "long_episode": late,
        "python": platform.python_version(),
        "machine": platform.machine(),
    }
    print(f"{args.steps} think steps, median of {args.repeats} runs")
    print(
        f"  env.step end to end : {result['env_total_s_median'] * 1000:8.2f} ms total, "
        f"{result['step_ms_median']:.3f} ms/step median, {result['step_ms_p95']:.3f} ms p95"
    )
    print(f"  bare handler        : {result['bare_total_s_median'] * 1000:8.2f} ms total")
    print(f"  ratio               : {result['ratio_env_to_bare']:.0f}x")
    if late:
        print(
            f"  one episode of {late['steps']} steps: median {late['first_100_ms_median']:.4f} ms over its first "
            f"100 steps, {late['last_100_ms_median']:.4f} ms over its last 100 "
            f"({late['last_100_ms_median'] / late['first_100_ms_median']:.2f}x)"
        )
    RESULTS_DIR.mkdir(exist_ok=True)
    out = RESULTS_DIR / f"bench_env-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(result, indent=1))
    print(f"written {out}")


if __name__ == "__main__":
    main()
