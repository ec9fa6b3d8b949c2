"""Real benchmark runs for the tests of what reads results: tasks copied from the fixtures'
`number` task, replayed tool calls, pytest in a subprocess."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pytest_innovator.reporting.status import StatusError, collect_status

from .conftest import FIXTURES


def make_task(suite: Path, task_id: str, *, domain: str = "data_construction", version: str | None = None) -> Path:
    target = suite / task_id
    shutil.copytree(FIXTURES / "tasks" / "number", target)
    toml = target / "task.toml"
    text = toml.read_text().replace('id = "number"', f'id = "{task_id}"')
    text = text.replace('domain = "data_construction"', f'domain = "{domain}"')
    if version is not None:
        text = text.replace(f'id = "{task_id}"', f'id = "{task_id}"\nversion = "{version}"')
    toml.write_text(text)
    return target


def write_replays(directory: Path, calls_by_task: dict[str, list[dict[str, Any]]]) -> Path:
    """A replay directory: <task>.jsonl per task (the replay agent's --innovator-replay DIR)."""
    directory.mkdir(parents=True, exist_ok=True)
    for task, calls in calls_by_task.items():
        (directory / f"{task}.jsonl").write_text("".join(json.dumps(c) + "\n" for c in calls))
    return directory


def answer(value: float | str) -> dict[str, Any]:
    return {"tool": "write_file", "arguments": {"path": "answer.txt", "content": str(value)}}


EVALUATE = {"tool": "evaluate"}
FINISH = {"tool": "finish", "arguments": {"summary": "done"}}


def pytest_command(cwd: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "pytest", *args, "-p", "no:cacheprovider", "--rootdir", str(cwd)]


def run_pytest(cwd: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """pytest in a subprocess; exit 0 or 1 (items below the pass score) are both results."""
    done = subprocess.run(
        pytest_command(cwd, *args), check=False, cwd=cwd, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode in (0, 1), done.stdout + done.stderr
    return done


def start_pytest(cwd: Path, *args: str) -> subprocess.Popen[str]:
    """pytest in the background, in its own process group (so the test can kill exactly that run)."""
    return subprocess.Popen(
        pytest_command(cwd, *args),
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def wait_for_item(
    results: Path, process: subprocess.Popen[str], ready: Callable[[dict[str, Any]], bool], timeout: float = 60
) -> dict[str, Any] | None:
    """Poll `pytest-innovator status` data until an item of the latest run is `ready`."""
    deadline = time.monotonic() + timeout
    while process.poll() is None and time.monotonic() < deadline:
        try:
            runs = collect_status(results)
        except StatusError:  # the run has not made its directory yet
            runs = []
        for item in runs[0]["items"] if runs else []:
            if ready(item):
                return item
        time.sleep(0.05)
    return None


def junit_properties(path: Path) -> list[dict[str, str]]:
    """Every test case's properties, as the text JUnit XML holds."""
    return [
        {p.get("name", ""): p.get("value", "") for p in case.iter("property")}
        for case in ET.parse(path).iter("testcase")
    ]
