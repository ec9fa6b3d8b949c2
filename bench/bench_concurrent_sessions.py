"""Benchmark of one session's round trip while many others print.

Run: ``python bench/bench_concurrent_sessions.py [--printers 50] [--interval 0.01] [--runs 500]``.
Prints a table and writes JSON to ``bench/results/``.

``--printers`` sessions each run a loop that prints a log line every ``--interval`` seconds (0:
as fast as the terminal takes them, which on a small machine measures the CPU more than the
harness); then the round trip of one more session, ``session.run("true", wait=10)``, is timed
``--runs`` times. The baseline, in the same run, is the same round trip with nobody printing.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench_sessions import bench_round_trip, cpu_seconds, peak_rss_mib, report_and_save

from pytest_innovator.sessions import SessionManager

LOG_LINE = "step {} loss 0.123456 lr 0.0001 tokens/s 12345"


def printer_command(interval: float) -> str:
    """A training loop's log: one process that prints a line, then sleeps (no process per line,
    which would measure fork and exec instead), or `yes` flat out."""
    if interval <= 0:
        return f"yes '{LOG_LINE.format(0)}'"
    loop = (
        f"import itertools, time\nfor i in itertools.count():\n"
        f"    print({LOG_LINE!r}.format(i), flush=True)\n    time.sleep({interval})"
    )
    return f"{sys.executable} -c {shlex.quote(loop)}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--printers", type=int, default=50, help="sessions printing while the round trip is timed")
    parser.add_argument("--interval", type=float, default=0.01, help="seconds between a printer's lines (0: no pause)")
    parser.add_argument("--runs", type=int, default=500, help="round trips to time")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-concurrent-") as scratch:
        scratch_dir = Path(scratch)
        workdir = scratch_dir / "workspace"
        workdir.mkdir()
        with SessionManager(workdir, scratch_dir / "logs") as manager:
            quiet = bench_round_trip(manager, args.runs)
            printers = [manager.create(f"printer-{i}") for i in range(args.printers)]
            for session in printers:
                session.run(printer_command(args.interval), wait=0)
            time.sleep(2.0)  # every printer is printing
            ends_before = [s.status().output_end for s in printers]
            cpu_before, started = cpu_seconds(), time.perf_counter()
            busy = bench_round_trip(manager, args.runs)
            elapsed = time.perf_counter() - started
            printed = sum(s.status().output_end - b for s, b in zip(printers, ends_before))
            harness_cpu = cpu_seconds() - cpu_before
            rss = peak_rss_mib()
            threads = threading.active_count()
            alive = all(s.status().busy for s in printers)

    rows = [
        (
            "printers",
            f"{args.printers}, a line every {args.interval:g} s" if args.interval else f"{args.printers}, flat out",
        ),
        ("round trip alone: median / p95", f"{quiet['median_ms']:.3f} / {quiet['p95_ms']:.3f} ms"),
        ("round trip while they print: median / p95", f"{busy['median_ms']:.3f} / {busy['p95_ms']:.3f} ms"),
        ("round trip while they print: max", f"{busy['max_ms']:.3f} ms"),
        ("output printed meanwhile", f"{printed / 1e6:.1f} MB in {elapsed:.1f} s"),
        ("harness CPU meanwhile", f"{harness_cpu:.2f} s ({harness_cpu / elapsed:.0%} of one core)"),
        ("harness peak RSS", f"{rss:.1f} MiB"),
        ("harness threads meanwhile", str(threads)),
        ("printers still running at the end", str(alive)),
    ]
    numbers = {
        "printers": args.printers,
        "interval_s": args.interval,
        "round_trip_alone": quiet,
        "round_trip_while_printing": busy,
        "printed_bytes": printed,
        "seconds": elapsed,
        "harness_cpu_seconds": harness_cpu,
        "peak_rss_mib": rss,
        "threads": threads,
    }
    report_and_save(f"concurrent sessions benchmark: {args.runs} round trips", rows, "concurrent_sessions", numbers)
    return 0 if alive else 1


if __name__ == "__main__":
    sys.exit(main())
