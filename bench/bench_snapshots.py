"""Benchmark: an incremental snapshot of a 2 GB, 10,000-file workspace against a full copy.

The workspace is bench_provision.py's tree (8 large files of ~250 MB and 9,991 small ones, built
once and cached under --dir). Each repetition, in a fresh store:

1. first snapshot of the workspace (every file copied into the store; reported, not compared);
2. --change-bytes (10 MB) of new random contents written into --change-files existing files;
3. second snapshot: its time and the disk it added to the store (st_blocks of new inodes);
4. shutil.copytree of the same workspace (the seed's method): its time and its disk;
5. restore of the second snapshot into a new directory: its time.

Times are "returns" (until the call returns) and "durable" (until os.sync() after it). A snapshot
with durable=True (the default) flushes the store's filesystem before committing, so its two
columns differ only by what was left to flush. Before each measured step the machine is flushed
(os.sync) so earlier writes are not charged to it. Ratios are copytree / snapshot, medians of
--repeats runs.

    python bench/bench_snapshots.py --dir DIR            # build or reuse the tree, measure
    python bench/bench_snapshots.py --dir DIR --clean    # ... and delete everything afterwards
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench_provision import (
    RESULTS_DIR,
    build_workspace,
    filesystem_type,
    machine_load,
    settle,
    tree_size,
    write_report,
)

from pytest_innovator.snapshots.store import SnapshotStore

CHANGED_FILES = (
    "src/pkg00/module00000.py",
    "src/pkg01/module00001.py",
    "data/small/part06/rows00006.jsonl",
    "configs/exp08/config00008.yaml",
)


def disk_bytes(root: Path) -> int:
    """Allocated bytes (st_blocks) of every inode below ``root``, each counted once."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for directory, dir_names, file_names in os.walk(root):
        for name in [".", *dir_names, *file_names]:
            info = os.lstat(os.path.join(directory, name))
            if (info.st_dev, info.st_ino) not in seen:
                seen.add((info.st_dev, info.st_ino))
                total += info.st_blocks * 512
    return total


def change_workspace(workspace: Path, files: int, total_bytes: int, seed: int) -> list[str]:
    """Overwrite ``files`` existing small files with ``total_bytes`` of new random bytes."""
    random_source = random.Random(seed)
    changed = list(CHANGED_FILES[:files])
    for relative in changed:
        (workspace / relative).write_bytes(random_source.randbytes(total_bytes // len(changed)))
    return changed


def timed(action: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, float, float, float]:
    """(result, seconds until it returned, seconds until os.sync() after it returned, CPU
    seconds of this process until it returned)."""
    started, cpu_started = time.perf_counter(), time.process_time()
    result = action(*args, **kwargs)
    returned, cpu_s = time.perf_counter(), time.process_time() - cpu_started
    os.sync()
    return result, returned - started, time.perf_counter() - started, cpu_s


def measure(
    workspace: Path, scratch: Path, repeats: int, change_files: int, change_bytes: int
) -> dict[str, dict[str, list[float]]]:
    columns = ("returns_s", "durable_s", "cpu_s", "disk_bytes")
    steps = ("first snapshot", "second snapshot", "shutil.copytree", "restore")
    results: dict[str, dict[str, list[float]]] = {step: {column: [] for column in columns} for step in steps}
    for repeat in range(repeats):
        store_dir, copy_dir, restore_dir = (
            scratch / "store",
            scratch / "copytree",
            scratch / "restored",
        )
        for directory in (store_dir, copy_dir, restore_dir):
            shutil.rmtree(directory, ignore_errors=True)
        store = SnapshotStore(store_dir)

        settle()
        first, returns_s, durable_s, cpu_s = timed(store.take, workspace, {"repeat": repeat}, step=1)
        record(results["first snapshot"], returns_s, durable_s, cpu_s, disk_bytes(store_dir))

        change_workspace(workspace, change_files, change_bytes, seed=repeat)
        settle()
        disk_before = disk_bytes(store_dir)
        second, returns_s, durable_s, cpu_s = timed(store.take, workspace, {"repeat": repeat}, step=2)
        added = disk_bytes(store_dir) - disk_before
        record(results["second snapshot"], returns_s, durable_s, cpu_s, added)
        first_s = results["first snapshot"]["returns_s"][-1]
        print(
            f"  run {repeat + 1}: first snapshot {first_s:.2f} s; second {returns_s:.3f} s "
            f"(durable {durable_s:.3f} s), added {added / 1e6:.2f} MB on disk "
            f"(reported {second.bytes_added / 1e6:.2f} MB), changing {list(second.changing)}"
        )

        settle()
        _, returns_s, durable_s, cpu_s = timed(shutil.copytree, workspace, copy_dir, symlinks=True)
        record(results["shutil.copytree"], returns_s, durable_s, cpu_s, disk_bytes(copy_dir))
        print(f"         copytree {returns_s:.2f} s (durable {durable_s:.2f} s)")
        shutil.rmtree(copy_dir)

        settle()
        _, returns_s, durable_s, cpu_s = timed(store.restore, second.name, restore_dir)
        record(results["restore"], returns_s, durable_s, cpu_s, disk_bytes(restore_dir))
        print(f"         restore  {returns_s:.2f} s (durable {durable_s:.2f} s)")
        if tree_size(restore_dir) != tree_size(workspace):
            raise AssertionError("the restored workspace differs from the workspace in size")
        shutil.rmtree(restore_dir)
        shutil.rmtree(store_dir)
        del first
    return results


def record(step: dict[str, list[float]], returns_s: float, durable_s: float, cpu_s: float, disk: int) -> None:
    step["returns_s"].append(returns_s)
    step["durable_s"].append(durable_s)
    step["cpu_s"].append(cpu_s)
    step["disk_bytes"].append(disk)


def summarise(results: dict[str, dict[str, list[float]]]) -> dict[str, float]:
    medians = {
        f"{step} {column}": statistics.median(values)
        for step, columns in results.items()
        for column, values in columns.items()
    }
    snapshot, copy = "second snapshot", "shutil.copytree"
    return {
        **medians,
        "time ratio (returns)": medians[f"{copy} returns_s"] / medians[f"{snapshot} returns_s"],
        "time ratio (durable)": medians[f"{copy} durable_s"] / medians[f"{snapshot} durable_s"],
        "cpu ratio": medians[f"{copy} cpu_s"] / medians[f"{snapshot} cpu_s"],
        "disk ratio": medians[f"{copy} disk_bytes"] / medians[f"{snapshot} disk_bytes"],
    }


def print_table(summary: dict[str, float]) -> None:
    print(f"{'step':18s} {'returns (s)':>12s} {'durable (s)':>12s} {'cpu (s)':>9s} {'disk (MB)':>10s}")
    for step in ("first snapshot", "second snapshot", "shutil.copytree", "restore"):
        print(
            f"{step:18s} {summary[f'{step} returns_s']:12.3f} {summary[f'{step} durable_s']:12.3f} "
            f"{summary[f'{step} cpu_s']:9.3f} {summary[f'{step} disk_bytes'] / 1e6:10.2f}"
        )
    print(
        f"copytree / second snapshot: time {summary['time ratio (returns)']:.0f}x "
        f"(durable {summary['time ratio (durable)']:.0f}x, cpu {summary['cpu ratio']:.0f}x), "
        f"disk {summary['disk ratio']:.0f}x"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/innovator-bench-snapshots"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--large-files", type=int, default=8)
    parser.add_argument("--large-bytes", type=int, default=250_000_000)
    parser.add_argument("--small-files", type=int, default=9_991)
    parser.add_argument("--change-files", type=int, default=4, choices=range(1, 5))
    parser.add_argument("--change-bytes", type=int, default=10_000_000)
    parser.add_argument("--clean", action="store_true", help="delete --dir at the end")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "snapshots.json")
    args = parser.parse_args()

    workspace, scratch = args.dir / "workspace", args.dir / "scratch"
    load_before = machine_load()
    try:
        build_workspace(workspace, args.large_files, args.large_bytes, args.small_files)
        files, size = tree_size(workspace)
        filesystem = filesystem_type(args.dir)
        print(f"workspace: {files} files and symlinks, {size / 1e9:.2f} GB, on {filesystem}")
        results = measure(workspace, scratch, args.repeats, args.change_files, args.change_bytes)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        if args.clean:
            shutil.rmtree(args.dir, ignore_errors=True)
    load_after = machine_load()
    summary = summarise(results)
    print()
    print_table(summary)
    print(f"load before: {load_before}\nload after:  {load_after}")
    write_report(
        args.out,
        "snapshots",
        args.dir,
        (load_before, load_after),
        workspace={"files_and_symlinks": files, "bytes": size},
        change={"files": args.change_files, "bytes": args.change_bytes},
        repeats=args.repeats,
        results=results,
        summary=summary,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
