"""Benchmark of the workspace backends: session round trip, 200 MB of output, provision and teardown.

Run: ``python bench/bench_backends.py [--runs 300] [--megabytes 200] [--items 5] [--backends ...]``
(the docker backend needs a running daemon and the test image: scripts/docker-test-image.sh).
Prints a table and writes the numbers as JSON to ``bench/results/``.

Every backend is measured in the same run against the in-process `local` backend:

* Round trip: ``session.run("true", wait=10)`` to completion, ``--runs`` times (after a warm-up).
* Output: one command writes ``--megabytes`` MB of text lines; the clock runs until the command has
  finished and the client has read every byte back through the backend's ``read`` (1 MiB per call
  in process, 16 MiB per request over HTTP), and the bytes read are checked by SHA-256.
* Provision / teardown: ``--items`` times, create the item's workspace for the `number` task (for
  docker: start its container and wait for the session server; for remote: create it on the
  server and upload the starter files), open a session and run ``true``; then ``close()``.

The remote backend talks to a ``pytest-innovator serve --sandbox off`` process on 127.0.0.1, so
its row is the in-process work plus HTTP; the docker backend's server listens on a unix socket.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench_sessions import RESULTS_DIR, expected_sha256, percentile, producer_command

from pytest_innovator.sandbox import bwrap_path
from pytest_innovator.task import Task, load_task
from pytest_innovator.workspace import LocalWorkspace

REPOSITORY = Path(__file__).resolve().parent.parent
TASK_DIR = REPOSITORY / "fixtures" / "tasks" / "number"
IN_PROCESS_READ = 1 << 20
HTTP_READ = 16 << 20

Factory = Callable[[Task, Path], Any]


@contextmanager
def session_server(directory: Path) -> Iterator[tuple[str, str]]:
    token_file = directory / "token"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pytest_innovator.cli",
            "serve",
            "--root",
            str(directory / "root"),
            "--port",
            "0",
            "--token-file",
            str(token_file),
            "--sandbox",
            "off",
        ],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    url = process.stdout.readline().split()[1]
    try:
        yield url, token_file.read_text().strip()
    finally:
        process.terminate()
        process.wait(15)


def factories(backends: list[str], scratch: Path, stack: list[Any]) -> dict[str, tuple[Factory, int]]:
    """backend name -> (function making an item's workspace, bytes per read call)."""
    made: dict[str, tuple[Factory, int]] = {}
    for backend in backends:
        if backend == "local":
            made[backend] = (lambda task, run: LocalWorkspace.create(task, run)[0], IN_PROCESS_READ)
        elif backend == "sandbox":
            if bwrap_path() is None:
                print("sandbox: skipped (bwrap is not usable here)")
                continue
            made[backend] = (lambda task, run: LocalWorkspace.create(task, run, hidden=[task.root])[0], IN_PROCESS_READ)
        elif backend == "remote":
            from pytest_innovator.remote.client import connect_remote_workspace

            server = session_server(scratch / "server")
            (scratch / "server").mkdir()
            url, token = server.__enter__()
            stack.append(server)
            made[backend] = (
                lambda task, run, url=url, token=token: connect_remote_workspace(task, run, base_url=url, token=token)[
                    0
                ],
                HTTP_READ,
            )
        elif backend == "docker":
            from pytest_innovator.remote.docker import (
                DockerBackendError,
                create_docker_workspace,
                docker_client,
            )

            try:
                client = docker_client()
            except DockerBackendError as exc:
                print(f"docker: skipped ({exc})")
                continue
            made[backend] = (
                lambda task, run, client=client: create_docker_workspace(task, run, client=client)[0],
                HTTP_READ,
            )
    return made


def bench_round_trip(workspace: Any, runs: int) -> dict[str, float]:
    session = workspace.sessions.create("round-trip")
    for _ in range(20):
        session.run("true", wait=10)
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        result = session.run("true", wait=10)
        timings.append(time.perf_counter() - started)
        assert result.done and result.exit_code == 0
    return {"median_ms": statistics.median(timings) * 1e3, "p95_ms": percentile(timings, 0.95) * 1e3}


def bench_output(workspace: Any, megabytes: int, chunk: int) -> dict[str, Any]:
    total = megabytes * 1_000_000
    session = workspace.sessions.create("output")
    digest = hashlib.sha256()
    received = 0
    started = time.perf_counter()
    result = session.run(producer_command(total), wait=0)
    offset = result.start_offset
    while True:
        text, offset_after = session.read(offset, chunk)
        data = text.encode()
        digest.update(data)
        received += len(data)
        offset = offset_after
        if received >= total:
            break
        if not data:
            if not session.status().busy and received >= total:
                break
            time.sleep(0.005)
    seconds = time.perf_counter() - started
    session.wait(60)
    return {
        "seconds": seconds,
        "mb_per_s": megabytes / seconds,
        "identical": digest.hexdigest() == expected_sha256(total),
    }


def bench_items(factory: Factory, task: Task, scratch: Path, items: int) -> dict[str, float]:
    provision, teardown = [], []
    for index in range(items):
        run_dir = scratch / f"item-{index}"
        run_dir.mkdir()
        started = time.perf_counter()
        workspace = factory(task, run_dir)
        workspace.sessions.create("s").run("true", wait=10)
        provision.append(time.perf_counter() - started)
        started = time.perf_counter()
        workspace.close()
        teardown.append(time.perf_counter() - started)
    return {"provision_s": statistics.median(provision), "teardown_s": statistics.median(teardown)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--megabytes", type=int, default=200)
    parser.add_argument("--items", type=int, default=5)
    parser.add_argument("--backends", nargs="+", default=["local", "sandbox", "remote", "docker"])
    args = parser.parse_args()
    task = load_task(TASK_DIR)
    scratch = Path(tempfile.mkdtemp(prefix="bench-backends-"))
    stack: list[Any] = []
    rows: dict[str, dict[str, Any]] = {}
    try:
        for backend, (factory, chunk) in factories(args.backends, scratch, stack).items():
            run_dir = scratch / backend
            run_dir.mkdir()
            workspace = factory(task, run_dir)
            try:
                row: dict[str, Any] = {"round_trip": bench_round_trip(workspace, args.runs)}
                row["output"] = bench_output(workspace, args.megabytes, chunk)
            finally:
                workspace.close()
            item_dir = scratch / f"{backend}-items"
            item_dir.mkdir()
            row["item"] = bench_items(factory, task, item_dir, args.items)
            rows[backend] = row
            print(
                f"{backend:8} round trip median {row['round_trip']['median_ms']:.2f} ms, p95 "
                f"{row['round_trip']['p95_ms']:.2f} ms; "
                f"{args.megabytes} MB in {row['output']['seconds']:.2f} s ({row['output']['mb_per_s']:.1f} MB/s, "
                f"identical: {row['output']['identical']}); provision {row['item']['provision_s']:.3f} s, "
                f"teardown {row['item']['teardown_s']:.3f} s",
                flush=True,
            )
    finally:
        for server in stack:
            server.__exit__(None, None, None)
        shutil.rmtree(scratch, ignore_errors=True)
    RESULTS_DIR.mkdir(exist_ok=True)
    out = RESULTS_DIR / f"bench_backends-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(
        json.dumps(
            {
                "arguments": vars(args),
                "machine": platform.platform(),
                "cpus": os.cpu_count(),
                "load_average": os.getloadavg(),
                "backends": rows,
            },
            indent=2,
        )
    )
    print(f"written to {out}")


if __name__ == "__main__":
    main()
