"""Benchmark of the command sessions: round trip latency and output throughput.

Run: ``python bench/bench_sessions.py [--runs 1000] [--megabytes 200]``. Prints a table and
writes the numbers as JSON to ``bench/results/``.

* Round trip: ``session.run("true", wait=10)`` to completion, ``--runs`` times.
* Throughput: one command writes ``--megabytes`` MB of text lines through the session's
  terminal; the log on disk is checked against the expected bytes by SHA-256, and the
  harness's peak RSS is read before and after (it must not grow with the output). Two
  baselines move the same bytes in the same run: a bare PTY reader (the same terminal settings,
  a loop of ``os.read`` and ``os.write`` to a file, none of the harness's code: the terminal's own
  speed, which the session should reach) and a plain ``subprocess`` pipe into a file.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import termios
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pytest_innovator.sessions import SessionManager

LINE = b"the quick brown fox jumps over the lazy dog 0123456789 ABCDEFGHIJ\n"
RESULTS_DIR = Path(__file__).with_name("results")


def producer_command(total_bytes: int) -> str:
    return f"yes '{LINE[:-1].decode()}' | head -c {total_bytes}"


def expected_sha256(total_bytes: int) -> str:
    digest = hashlib.sha256()
    block = LINE * (1 << 14)  # about 1 MB, whole lines
    remaining = total_bytes
    while remaining:
        piece = block[:remaining]
        digest.update(piece)
        remaining -= len(piece)
    return digest.hexdigest()


def file_sha256(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def bench_round_trip(manager: SessionManager, runs: int) -> dict[str, float]:
    session = manager.create("round-trip")
    for _ in range(20):  # warm up
        session.run("true", wait=10)
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        result = session.run("true", wait=10)
        timings.append(time.perf_counter() - started)
        assert result.done and result.exit_code == 0, result
    manager.close("round-trip")
    return {
        "runs": runs,
        "median_ms": statistics.median(timings) * 1000,
        "p95_ms": percentile(timings, 0.95) * 1000,
        "max_ms": max(timings) * 1000,
    }


def bench_session_throughput(manager: SessionManager, total_bytes: int) -> dict[str, object]:
    expected = expected_sha256(total_bytes)
    session = manager.create("throughput")
    rss_before = peak_rss_mib()
    cpu_before = cpu_seconds()
    started = time.perf_counter()
    result = session.run(producer_command(total_bytes), wait=3600, max_output=4096)
    elapsed = time.perf_counter() - started
    cpu_used = cpu_seconds() - cpu_before
    rss_after = peak_rss_mib()
    assert result.done and result.exit_code == 0, result
    log_path = session.log_path
    manager.close("throughput")
    log_hash, log_size = file_sha256(log_path)
    return {
        "bytes": total_bytes,
        "seconds": elapsed,
        "mb_per_s": total_bytes / elapsed / 1e6,
        "harness_cpu_seconds": cpu_used,
        "log_bytes": log_size,
        "log_identical": log_hash == expected and log_size == total_bytes,
        "peak_rss_mib_before": rss_before,
        "peak_rss_mib_after": rss_after,
    }


def copy_baseline(
    work_dir: Path, total_bytes: int, name: str, start: Callable[[], tuple[Any, int]]
) -> dict[str, object]:
    """A baseline: `start()` runs the producer and gives its process and the descriptor to read;
    a bare loop copies what it reads into a file, which is then checked like the session's log."""
    expected = expected_sha256(total_bytes)
    out_path = work_dir / f"{name}.out"
    started = time.perf_counter()
    process, read_fd = start()
    out_fd = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        while chunk := os.read(read_fd, 64 * 1024):
            os.write(out_fd, chunk)
    except OSError:  # EIO: a terminal whose producer exited
        pass
    os.close(out_fd)
    os.close(read_fd)
    process.wait()
    elapsed = time.perf_counter() - started
    out_hash, out_size = file_sha256(out_path)
    out_path.unlink()
    return {
        "bytes": total_bytes,
        "seconds": elapsed,
        "mb_per_s": total_bytes / elapsed / 1e6,
        "output_identical": out_hash == expected and out_size == total_bytes,
    }


def bench_pipe_baseline(work_dir: Path, total_bytes: int) -> dict[str, object]:
    def start() -> tuple[Any, int]:
        process = subprocess.Popen(["bash", "-c", producer_command(total_bytes)], stdout=subprocess.PIPE)
        assert process.stdout is not None
        return process, os.dup(process.stdout.fileno())

    return copy_baseline(work_dir, total_bytes, "pipe-baseline", start)


def bench_pty_baseline(work_dir: Path, total_bytes: int) -> dict[str, object]:
    """The producer on a pseudo-terminal set up as a session's (no output processing, no echo)."""

    def start() -> tuple[Any, int]:
        master_fd, slave_fd = os.openpty()
        attributes = termios.tcgetattr(slave_fd)
        attributes[1] &= ~termios.OPOST
        attributes[3] &= ~(termios.ECHO | termios.ECHOE | termios.ECHOK | termios.ECHONL | termios.ECHOCTL)
        termios.tcsetattr(slave_fd, termios.TCSANOW, attributes)
        process = subprocess.Popen(
            ["bash", "-c", producer_command(total_bytes)], stdin=slave_fd, stdout=slave_fd, start_new_session=True
        )
        os.close(slave_fd)
        return process, master_fd

    return copy_baseline(work_dir, total_bytes, "pty-baseline", start)


def report_and_save(title: str, rows: list[tuple[str, str]], name: str, numbers: dict[str, object]) -> Path:
    """Print the table, then write it with the command, the host and the load average as JSON."""
    rows = [*rows, ("load average (1 min) at the end", f"{os.getloadavg()[0]:.2f}")]
    print(title)
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        print(f"  {label:<{width}}  {value}")
    RESULTS_DIR.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    report = {
        "benchmark": name,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "time": stamp,
        "host": {"cpus": os.cpu_count(), "python": platform.python_version(), "kernel": platform.release()},
        "load_average": os.getloadavg(),
        **numbers,
    }
    result_path = RESULTS_DIR / f"bench_{name}-{stamp}.json"
    result_path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"  results written to {result_path}")
    return result_path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000, help="round trips to time")
    parser.add_argument("--megabytes", type=int, default=200, help="output volume in MB (1e6)")
    args = parser.parse_args()
    total_bytes = args.megabytes * 1_000_000

    with tempfile.TemporaryDirectory(prefix="bench-sessions-") as scratch:
        scratch_dir = Path(scratch)
        workdir = scratch_dir / "workspace"
        workdir.mkdir()
        with SessionManager(workdir, scratch_dir / "logs") as manager:
            round_trip = bench_round_trip(manager, args.runs)
            throughput = bench_session_throughput(manager, total_bytes)
        pty_baseline = bench_pty_baseline(scratch_dir, total_bytes)
        baseline = bench_pipe_baseline(scratch_dir, total_bytes)

    ratio = float(throughput["mb_per_s"]) / float(baseline["mb_per_s"])  # type: ignore[arg-type]
    pty_ratio = float(throughput["mb_per_s"]) / float(pty_baseline["mb_per_s"])  # type: ignore[arg-type]
    rows = [
        ("round trip median", f"{round_trip['median_ms']:.3f} ms"),
        ("round trip p95", f"{round_trip['p95_ms']:.3f} ms"),
        ("round trip max", f"{round_trip['max_ms']:.3f} ms"),
        ("session throughput", f"{throughput['mb_per_s']:.1f} MB/s"),
        ("harness CPU for it", f"{throughput['harness_cpu_seconds']:.2f} s"),
        ("log identical (sha256)", str(throughput["log_identical"])),
        ("peak RSS before", f"{throughput['peak_rss_mib_before']:.1f} MiB"),
        ("peak RSS after", f"{throughput['peak_rss_mib_after']:.1f} MiB"),
        ("bare PTY reader", f"{pty_baseline['mb_per_s']:.1f} MB/s"),
        ("session / bare PTY", f"{pty_ratio:.2f}"),
        ("pipe baseline", f"{baseline['mb_per_s']:.1f} MB/s"),
        ("session / pipe", f"{ratio:.2f}"),
    ]
    title = f"sessions benchmark: {args.runs} round trips, {args.megabytes} MB of output"
    numbers = {
        "round_trip": round_trip,
        "session_throughput": throughput,
        "pty_baseline": pty_baseline,
        "session_to_pty_ratio": pty_ratio,
        "pipe_baseline": baseline,
        "session_to_pipe_ratio": ratio,
    }
    report_and_save(title, rows, "sessions", numbers)
    ok = throughput["log_identical"] and baseline["output_identical"] and pty_baseline["output_identical"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
