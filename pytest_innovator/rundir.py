"""Where a run's files live, named in one place, and the one way JSON state is written.

<results>/results.jsonl                  one line per finished item (the controller's log)
<results>/runs/<run id>/<task id>/       an item's run directory (`RunDir`)
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RESULT_FILE = "result.json"  # also what reporting/ looks for when it is given a folder of runs


def results_log_path(results: Path) -> Path:
    return results / "results.jsonl"


def runs_dir(results: Path) -> Path:
    return results / "runs"


@dataclass(frozen=True)
class RunDir:
    """One item's run directory. Every module that reads or writes one of its files asks here."""

    path: Path

    @classmethod
    def of(cls, results: Path, run_id: str, task_id: str) -> RunDir:
        return cls(runs_dir(results) / run_id / task_id)

    @property
    def workspace(self) -> Path:
        return self.path / "workspace"

    @property
    def environment_layers(self) -> Path:
        """The item's upper layers over the dataset's cached environment (datasets.py)."""
        return self.path / "environment"

    @property
    def layers(self) -> Path:
        """Where an overlay workspace's writable layer lives (workspace.py): a mount point of the
        item's size-limited filesystem (`layers_image`) while it runs, where there is one."""
        return self.path / "layers"

    @property
    def layers_image(self) -> Path:
        return self.path / "layers.img"

    @property
    def workspace_upper(self) -> Path:
        """The item's own layer of an overlay workspace: everything it changed."""
        return self.layers / "upper"

    @property
    def workspace_overlay_work(self) -> Path:
        """The overlay's work directory (the kernel's scratch space, beside the upper layer)."""
        return self.layers / "work"

    @property
    def workspace_lower_record(self) -> Path:
        """The overlay's lower layers (JSON: {"lower": [paths, topmost first]})."""
        return self.path / "layers.json"

    @property
    def sessions(self) -> Path:
        """Session logs (one ``<name>.log`` each)."""
        return self.path / "sessions"

    @property
    def grader_logs(self) -> Path:
        return self.path / "grader"

    def grader_log(self, index: int) -> Path:
        return self.grader_logs / f"eval-{index}.log"

    @property
    def snapshots(self) -> Path:
        return self.path / "snapshots"

    @property
    def ledger(self) -> Path:
        return self.path / "ledger.json"

    @property
    def result(self) -> Path:
        return self.path / RESULT_FILE

    @property
    def trajectory(self) -> Path:
        return self.path / "trajectory.jsonl"

    @property
    def gpu_lease(self) -> Path:
        return self.path / "gpu_lease.json"

    @property
    def gpu_memory(self) -> Path:
        """The item's GPU memory over time (gpu_monitor.py)."""
        return self.path / "gpu_memory.jsonl"

    @property
    def resume_record(self) -> Path:
        """Where a resumed item came from (written when it starts again)."""
        return self.path / "resume.json"

    @property
    def memory(self) -> Path:
        """The item's memory entries (research_tools/memory.py), one JSON line each, append-only."""
        return self.path / "memory.jsonl"

    @property
    def llm_messages(self) -> Path:
        return self.path / "llm_messages.jsonl"

    @property
    def guidance(self) -> Path:
        """The item's mailbox: one JSON file per message a person sent it (guidance.py)."""
        return self.path / "guidance"

    @property
    def pause_request(self) -> Path:
        """Present while a person holds the item between steps (guidance.py)."""
        return self.path / "paused"

    @property
    def labels(self) -> Path:
        """Keep/drop labels for the trajectory's steps (training/labels.py); the trajectory stays untouched."""
        return self.path / "labels.json"


def write_text_atomic(path: Path, text: str) -> None:
    """Write, sync and rename: a reader (or a crash) sees the old file or the new one, never a torn
    one. The temporary name is unique, so concurrent writers do not trip over each other."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_json_atomic(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=1))
