"""Benchmark: overlay workspaces at 2 GB and at 50 GB: provisioning, and a snapshot and a restore
after a 10 MB change, each against a full copy measured in the same run.

Two task workspaces are built once and cached under --dir, both with bench_provision.py's 9,991
small files (sources, configs, small data): "2 GB" adds its 8 large files of 250 MB (random
bytes), "50 GB" adds 8 sparse files of 6.25 GB (holes: the disk has no room for 50 GB of copies).

For each size, --repeats times:

1. provision: the item's workspace made as the sandbox and docker backends make it
   (`provision_item_workspace`, an overlay over the task's starter files);
2. change 10 MB through the mounted workspace: a new 9 MB file, 1 MB over four small files, one
   small file deleted (a whiteout in the upper layer);
3. snapshot of the upper layer (`SnapshotStore.take(layer=True)`, durable);
4. restore of that snapshot into a new upper layer, and the overlay mounted over it; the restored
   view is compared with the changed one (paths and sizes);
5. the baseline: `shutil.copytree` of the changed workspace, the full copy a harness without
   layers makes to provision, to snapshot and to restore. At 50 GB only with --copy-50gb: it
   writes 50 GB of zeros per repeat (sendfile does not keep holes), so the disk needs the room.

Times are until the call returns, after os.sync() of what came before (settle()). Medians.

    python bench/bench_overlay.py --dir DIR [--copy-50gb] [--sizes 2gb 50gb]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import time
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

from pytest_innovator.mounts import Overlay, mount_overlay, overlay_unavailable
from pytest_innovator.rundir import RunDir
from pytest_innovator.snapshots.store import SnapshotStore
from pytest_innovator.task import Task, load_task
from pytest_innovator.workspace import provision_item_workspace

TASK_TOML = """id = "bench-{size}"
name = "Overlay benchmark"
domain = "data_construction"
time_limit = "5m"
read_only = ["checkpoints/", "datasets/"]
outputs = ["answer.txt"]

[grader]
command = "true"

[scoring]
metric = "value"
direction = "maximize"
baseline = 0.0
reference = 1.0
"""
SMALL_FILES = 9_991
SPARSE_FILES, SPARSE_BYTES = 8, 6_250_000_000
CHANGED_FILES = (
    "src/pkg00/module00000.py",
    "src/pkg01/module00001.py",
    "data/small/part06/rows00006.jsonl",
    "configs/exp08/config00008.yaml",
)
DELETED_FILE = "scripts/tools9/run00009.sh"
STEPS = tuple(
    f"{step}{column}" for step in ("provision", "snapshot", "restore", "copytree") for column in ("", " durable")
)


def build_task(root: Path, size: str) -> Task:
    workspace = root / "workspace"
    if size == "2gb":
        build_workspace(workspace, 8, 250_000_000, SMALL_FILES)
    else:
        build_workspace(workspace, 0, 0, SMALL_FILES)
        for index in range(SPARSE_FILES):
            kind = "checkpoints" if index % 2 == 0 else "datasets"
            path = workspace / kind / f"sparse-{index:04d}.bin"
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "ab") as stream:
                stream.truncate(SPARSE_BYTES)
    (root / "task.toml").write_text(TASK_TOML.format(size=size))
    (root / "instruction.md").write_text("benchmark\n")
    (root / "grader").mkdir(exist_ok=True)
    return load_task(root)


def change(merged: Path) -> None:
    (merged / "checkpoints" / "new-9mb.pt").write_bytes(os.urandom(9_000_000))
    for relative in CHANGED_FILES:
        (merged / relative).write_bytes(os.urandom(250_000))
    (merged / DELETED_FILE).unlink()


def view(root: Path) -> dict[str, int]:
    return {
        os.path.relpath(os.path.join(directory, name), root): os.lstat(os.path.join(directory, name)).st_size
        for directory, _, names in os.walk(root)
        for name in names
    }


def timed(action: Any, *args: Any, **kwargs: Any) -> tuple[Any, float, float]:
    """(result, seconds until it returned, seconds until os.sync() after it returned)."""
    settle()
    started = time.perf_counter()
    result = action(*args, **kwargs)
    returned = time.perf_counter()
    os.sync()
    return result, returned - started, time.perf_counter() - started


def measure(task: Task, scratch: Path, repeats: int, full_copies: bool) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {step: [] for step in STEPS}
    for repeat in range(repeats):
        run_dir = scratch / f"run-{repeat}"
        (report, overlay, _), *seconds = timed(provision_item_workspace, task, run_dir, shared=True)
        if not isinstance(overlay, Overlay):
            raise SystemExit(f"no overlay was mounted: {report.note}")
        record(times, "provision", seconds)
        try:
            change(overlay.merged)
            changed_view = view(overlay.merged)
            store = SnapshotStore(scratch / f"store-{repeat}")
            info, *seconds = timed(store.take, overlay.upper, {}, step=1, layer=True)
            record(times, "snapshot", seconds)
            if full_copies:
                _, *seconds = timed(shutil.copytree, overlay.merged, scratch / "copy", symlinks=True)
                record(times, "copytree", seconds)
                shutil.rmtree(scratch / "copy")
        finally:
            overlay.unmount()
        restored = RunDir(scratch / f"restored-{repeat}")

        def restore_and_mount() -> Overlay | str:
            store.restore(info.name, restored.workspace_upper)
            upper, work = restored.workspace_upper, restored.workspace_overlay_work
            return mount_overlay([task.workspace_dir], upper, work, restored.workspace)

        remounted, *seconds = timed(restore_and_mount)
        if not isinstance(remounted, Overlay):
            raise SystemExit(f"the restored layer could not be mounted: {remounted}")
        record(times, "restore", seconds)
        try:
            if view(remounted.merged) != changed_view:
                raise AssertionError("the restored workspace differs from the changed one")
        finally:
            remounted.unmount()
        done = ", ".join(
            f"{step} {times[step][-1]:.3f} s (durable {times[step + ' durable'][-1]:.3f} s)"
            for step in STEPS[::2]
            if times[step]
        )
        print(f"  run {repeat + 1}: {done}; the snapshot added {info.bytes_added / 1e6:.1f} MB")
        shutil.rmtree(scratch, ignore_errors=True)
    return times


def record(times: dict[str, list[float]], step: str, seconds: list[float]) -> None:
    times[step].append(seconds[0])
    times[f"{step} durable"].append(seconds[1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/innovator-bench-overlay"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "overlay.json")
    parser.add_argument("--sizes", nargs="+", choices=("2gb", "50gb"), default=["2gb", "50gb"])
    parser.add_argument("--copy-50gb", action="store_true", help="time copytree at 50 GB too (50 GB written)")
    args = parser.parse_args()
    if reason := overlay_unavailable():
        raise SystemExit(f"cannot mount overlays here: {reason}")
    load_before = machine_load()
    summary: dict[str, dict[str, Any]] = {}
    for size in args.sizes:
        task = build_task(args.dir / size / "task", size)
        files, apparent = tree_size(task.workspace_dir)
        print(f"{size}: {files} files, {apparent / 1e9:.1f} GB apparent, on {filesystem_type(args.dir)}")
        times = measure(task, args.dir / size / "scratch", args.repeats, full_copies=size == "2gb" or args.copy_50gb)
        medians = {step: statistics.median(values) for step, values in times.items() if values}
        summary[size] = {"files": files, "bytes": apparent, "times": times, "medians": medians}
    load_after = machine_load()

    print("\nmedians in ms (until the call returns / until os.sync() after it); ratios: copytree / ours")
    for size, entry in summary.items():
        medians = entry["medians"]
        cells = []
        for step in ("provision", "snapshot", "restore", "copytree"):
            if step in medians:
                cells.append(f"{step} {medians[step] * 1e3:.1f} / {medians[step + ' durable'] * 1e3:.1f}")
        print(f"{size}: " + ", ".join(cells))
        if "copytree" in medians:
            for step in ("provision", "snapshot", "restore"):
                entry[f"{step} ratio"] = medians["copytree"] / medians[step]
                entry[f"{step} ratio durable"] = medians["copytree durable"] / medians[step + " durable"]
                print(f"  {step}: {entry[f'{step} ratio']:.0f}x / {entry[f'{step} ratio durable']:.0f}x")
    print(f"load before: {load_before}\nload after:  {load_after}")
    write_report(args.out, "overlay", args.dir, (load_before, load_after), repeats=args.repeats, sizes=summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
