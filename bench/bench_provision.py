"""Benchmark: provisioning a 2 GB, 10,000-file task workspace against shutil.copytree.

The workspace (built once and cached under --dir) holds a few large read-only files (checkpoints
and datasets, matched by the read-only patterns) and many small ones (sources, configs, small
data). Each method runs --repeats times, round-robin, into a fresh destination that is dropped
afterwards. Two times are reported per run:

* returns: until the call returns (the data may still sit in the page cache, unwritten);
* durable: until os.sync() after it returns (the data is on disk). os.sync() flushes the whole
  machine, so other writers add noise to this column.

The CPU seconds of this process during the call are recorded too: on a shared machine they vary
less than wall time (they do not count time spent waiting for a CPU).

The source tree is in the page cache for every run (it was just built or read).

    python bench/bench_provision.py                      # build or reuse, measure, keep the tree
    python bench/bench_provision.py --clean              # ... and delete the tree afterwards
    python bench/bench_provision.py --dir /mnt/xfs/ws    # on a filesystem with reflink
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pytest_innovator.provision import ProvisionReport, provision, reflink_supported

READ_ONLY_PATTERNS = ("checkpoints/", "datasets/")
RESULTS_DIR = Path(__file__).parent / "results"
SPEC_FILE = ".bench-spec.json"
BLOCK_BYTES = 4 << 20
LINK_SAFETY_NOTE = (
    "'(ro mount)': the read-only files are shared with the task by hard link; this is safe only "
    "when the backend mounts them read-only (file modes do not stop root)"
)


def build_workspace(workspace: Path, large_files: int, large_bytes: int, small_files: int) -> None:
    """Build the tree unless a complete one with the same spec is already there."""
    spec = {"large_files": large_files, "large_bytes": large_bytes, "small_files": small_files}
    spec_path = workspace.parent / SPEC_FILE
    if workspace.is_dir() and spec_path.exists() and json.loads(spec_path.read_text()) == spec:
        print(f"reusing the workspace in {workspace}")
        return
    shutil.rmtree(workspace, ignore_errors=True)
    spec_path.unlink(missing_ok=True)
    print(f"building {workspace}: {large_files} x {large_bytes / 1e6:.0f} MB + {small_files} small files")
    started = time.perf_counter()
    random_source = random.Random(20240601)
    for index in range(large_files):
        kind = "checkpoints" if index % 2 == 0 else "datasets"
        name = f"step-{index:04d}.pt" if kind == "checkpoints" else f"shard-{index:04d}.bin"
        write_large_file(workspace / kind / name, large_bytes, random_source)
    for index in range(small_files):
        relative, size = small_file_layout(index, random_source)
        path = workspace / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(random_source.randbytes(size))
        if relative.endswith(".sh"):
            os.chmod(path, 0o755)
    os.symlink("configs/base.yaml", workspace / "config.yaml")
    spec_path.write_text(json.dumps(spec))
    print(f"built in {time.perf_counter() - started:.1f} s")


def write_large_file(path: Path, size: int, random_source: random.Random) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    block = random_source.randbytes(BLOCK_BYTES)
    with open(path, "wb") as stream:
        written = 0
        while written < size:
            chunk = block[: size - written]
            stream.write(chunk)
            written += len(chunk)
    os.chmod(path, 0o444)


def small_file_layout(index: int, random_source: random.Random) -> tuple[str, int]:
    """Where small file ``index`` goes and how big it is (200 B to 16 KB, mostly a few KB)."""
    size = int(min(16_000, max(200, random_source.lognormvariate(8.0, 0.8))))
    group = index % 10
    if group < 6:
        return f"src/pkg{index % 60:02d}/module{index:05d}.py", size
    if group < 8:
        return f"data/small/part{index % 20:02d}/rows{index:05d}.jsonl", size
    if group < 9:
        return f"configs/exp{index % 30:02d}/config{index:05d}.yaml", size
    return f"scripts/tools{index % 10}/run{index:05d}.sh", size


def tree_size(root: Path) -> tuple[int, int]:
    files = size = 0
    for directory, _, names in os.walk(root):
        for name in names:
            info = os.lstat(os.path.join(directory, name))
            files += 1
            size += info.st_size
    return files, size


def settle() -> None:
    """Flush what earlier runs left dirty, so it is not charged to the next run."""
    os.sync()
    time.sleep(1.0)


def measure_methods(workspace: Path, runs_dir: Path, repeats: int) -> tuple[dict[str, dict[str, Any]], list[str]]:
    methods: dict[str, Callable[[Path], ProvisionReport | None]] = {
        "shutil.copytree": lambda dest: (shutil.copytree(workspace, dest, symlinks=True), None)[1],
        "provision copy": lambda dest: provision(workspace, dest, read_only=READ_ONLY_PATTERNS, strategy="copy"),
        "provision link (ro mount)": lambda dest: provision(
            workspace, dest, read_only=READ_ONLY_PATTERNS, allow_links=True, strategy="link"
        ),
    }
    notes = [LINK_SAFETY_NOTE]
    runs_dir.mkdir(parents=True, exist_ok=True)
    if reflink_supported(workspace, runs_dir):
        methods["provision reflink"] = lambda dest: provision(
            workspace, dest, read_only=READ_ONLY_PATTERNS, strategy="reflink"
        )
        # The safe default where files can be cloned: no links, large files cloned, small copied.
        methods["provision auto"] = lambda dest: provision(workspace, dest, read_only=READ_ONLY_PATTERNS)
    else:
        notes.append(f"no reflink between {workspace} and {runs_dir}: strategy 'reflink' skipped")
    results: dict[str, dict[str, Any]] = {
        name: {"returns_s": [], "durable_s": [], "cpu_s": [], "report": None} for name in methods
    }
    for repeat in range(repeats):
        for name, run in methods.items():
            dest = runs_dir / f"{name.replace(' ', '-')}-{repeat}"
            settle()
            started, cpu_started = time.perf_counter(), time.process_time()
            report = run(dest)
            returned, cpu_used = time.perf_counter(), time.process_time() - cpu_started
            os.sync()
            synced = time.perf_counter()
            results[name]["returns_s"].append(returned - started)
            results[name]["durable_s"].append(synced - started)
            results[name]["cpu_s"].append(cpu_used)
            if report is not None:
                results[name]["report"] = {key: value for key, value in vars(report).items() if key != "seconds"}
            print(
                f"  {name:27s} run {repeat + 1}: {returned - started:7.3f} s, "
                f"durable {synced - started:7.3f} s, cpu {cpu_used:7.3f} s"
            )
            shutil.rmtree(dest)
    return results, notes


def summarise(results: dict[str, dict[str, Any]]) -> None:
    baseline = results["shutil.copytree"]
    base_returns = statistics.median(baseline["returns_s"])
    base_durable = statistics.median(baseline["durable_s"])
    for entry in results.values():
        entry["median_returns_s"] = statistics.median(entry["returns_s"])
        entry["median_durable_s"] = statistics.median(entry["durable_s"])
        entry["median_cpu_s"] = statistics.median(entry["cpu_s"])
        entry["speedup_returns"] = base_returns / entry["median_returns_s"]
        entry["speedup_durable"] = base_durable / entry["median_durable_s"]


def print_table(results: dict[str, dict[str, Any]]) -> None:
    header = (
        f"{'method':27s} {'returns (s)':>12s} {'x copytree':>11s} {'durable (s)':>12s} "
        f"{'x copytree':>11s} {'cpu (s)':>8s}  files placed"
    )
    print(header)
    print("-" * len(header))
    for name, entry in results.items():
        report = entry["report"]
        placed = (
            f"linked {report['linked']}, reflinked {report['reflinked']}, copied {report['copied']}"
            if report
            else "all copied"
        )
        print(
            f"{name:27s} {entry['median_returns_s']:12.3f} {entry['speedup_returns']:10.1f}x "
            f"{entry['median_durable_s']:12.3f} {entry['speedup_durable']:10.1f}x "
            f"{entry['median_cpu_s']:8.3f}  {placed}"
        )


def machine_load() -> dict[str, str]:
    """Load average and CPU pressure: other work on the machine skews wall times."""
    load = {"loadavg": Path("/proc/loadavg").read_text().strip()}
    pressure = Path("/proc/pressure/cpu")
    if pressure.exists():
        load["cpu_pressure"] = pressure.read_text().splitlines()[0]
    return load


def filesystem_type(path: Path) -> str:
    completed = subprocess.run(["stat", "-f", "-c", "%T", str(path)], capture_output=True, text=True, check=False)
    return completed.stdout.strip() or "unknown"


def write_report(
    out: Path, benchmark: str, directory: Path, load: tuple[dict[str, str], dict[str, str]], **fields: Any
) -> None:
    """The run's JSON record under bench/results/: the command, the machine and its load, the numbers."""
    record = {
        "benchmark": benchmark,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {
            "kernel": platform.release(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "filesystem": filesystem_type(directory),
            "load_before": load[0],
            "load_after": load[1],
        },
        **fields,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {out}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--dir",
        type=Path,
        default=Path("/tmp/innovator-bench-ws"),
        help="where the workspace is cached and the copies are made",
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--large-files", type=int, default=8)
    parser.add_argument("--large-bytes", type=int, default=250_000_000)
    parser.add_argument("--small-files", type=int, default=9_991)
    parser.add_argument("--clean", action="store_true", help="delete the cached workspace at the end")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "provision.json")
    args = parser.parse_args()

    workspace, runs_dir = args.dir / "workspace", args.dir / "runs"
    load_before = machine_load()
    try:
        build_workspace(workspace, args.large_files, args.large_bytes, args.small_files)
        files, size = tree_size(workspace)
        filesystem = filesystem_type(args.dir)
        print(f"workspace: {files} files and symlinks, {size / 1e9:.2f} GB, on {filesystem}")
        shutil.rmtree(runs_dir, ignore_errors=True)
        results, notes = measure_methods(workspace, runs_dir, args.repeats)
    finally:
        shutil.rmtree(runs_dir, ignore_errors=True)
        if args.clean:
            shutil.rmtree(args.dir, ignore_errors=True)
    load_after = machine_load()
    summarise(results)
    print()
    print_table(results)
    for note in notes:
        print(f"note: {note}")
    print(f"load before: {load_before}\nload after:  {load_after}")
    write_report(
        args.out,
        "provision",
        args.dir,
        (load_before, load_after),
        workspace={"files_and_symlinks": files, "bytes": size, "read_only": READ_ONLY_PATTERNS},
        repeats=args.repeats,
        results=results,
        notes=notes,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
