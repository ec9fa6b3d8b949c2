"""The trajectory: one JSON line per step or event, appended and flushed before the agent sees
the observation, so a crash never loses a step the agent acted on.

Line 1 is a header ``{"type": "header", "schema": "pytest-innovator/trajectory", "version": 1, ...}``;
then lines of ``type`` "step" (a tool call) or "event" (evaluation, hint, resume, end).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

TRAJECTORY_SCHEMA = "pytest-innovator/trajectory"
TRAJECTORY_VERSION = 1
OBSERVATION_SUMMARY_CHARS = 4000


def summarize(text: str, limit: int = OBSERVATION_SUMMARY_CHARS) -> str:
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]}\n[... {len(text) - limit} characters omitted ...]\n{text[-half:]}"


class TrajectoryWriter:
    def __init__(self, path: Path, header: dict[str, Any]):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        fresh = not path.exists() or path.stat().st_size == 0
        self._file = open(path, "a", encoding="utf-8")
        if fresh:
            self._write(
                {
                    "type": "header",
                    "schema": TRAJECTORY_SCHEMA,
                    "version": TRAJECTORY_VERSION,
                    "wall": time.time(),
                    **header,
                }
            )

    def _write(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps(record, default=str) + "\n")
        self._file.flush()

    @property
    def position(self) -> int:
        """Bytes written so far: a snapshot records it, a resume keeps the trajectory up to it."""
        return self._file.tell()

    def step(
        self,
        *,
        step: int,
        working_time_s: float,
        tool: str,
        arguments: Any,
        ok: bool,
        observation: str,
        duration_s: float,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self._write(
            {
                "type": "step",
                "step": step,
                "t": round(working_time_s, 3),
                "wall": time.time(),
                "tool": tool,
                "arguments": arguments,
                "ok": ok,
                "observation": summarize(observation),
                "duration_s": round(duration_s, 4),
                **(extra or {}),
            }
        )

    def event(self, event: str, *, step: int, working_time_s: float, **data: Any) -> None:
        self._write(
            {"type": "event", "event": event, "step": step, "t": round(working_time_s, 3), "wall": time.time(), **data}
        )

    def close(self) -> None:
        self._file.close()


def read_trajectory(path: Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
