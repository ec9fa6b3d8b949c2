"""The replay agent plays a recorded list of tool calls: the tool for writing tests.

The file is JSON Lines (one ``{"tool": ..., "arguments": {...}}`` per line) or YAML (a list of
the same). Option ``replay``: the file, or a directory holding ``<task id>.jsonl``/``.yaml``;
``{task}`` in the path is replaced by the task id.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from ..env import ResearchEnv


def load_calls(path: Path) -> list[dict[str, Any]]:
    text = path.read_text(encoding="utf-8")
    if path.suffix in (".yaml", ".yml"):
        calls = yaml.safe_load(text) or []
    else:
        calls = [json.loads(line) for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if not isinstance(calls, list):
        raise ValueError(f"{path}: expected a list of tool calls")
    for number, call in enumerate(calls, 1):
        if not isinstance(call, dict) or "tool" not in call:
            raise ValueError(f"{path}: call {number} must be an object with 'tool' and optional 'arguments'")
    return calls


def resolve_replay_path(option: str, task_id: str) -> Path:
    path = Path(option.replace("{task}", task_id))
    if path.is_dir():
        for suffix in (".jsonl", ".yaml", ".yml"):
            if (path / f"{task_id}{suffix}").is_file():
                return path / f"{task_id}{suffix}"
        raise ValueError(f"{path}: no {task_id}.jsonl or {task_id}.yaml in this directory")
    if not path.is_file():
        raise ValueError(f"replay file {path} not found (set --innovator-replay)")
    return path


class ReplayAgent:
    name = "replay"
    version = "1"

    def __init__(self, options: Mapping[str, Any]):
        if not options.get("replay"):
            raise ValueError("the replay agent needs a file of tool calls: --innovator-replay PATH")
        self.replay = str(options["replay"])
        self.position = 0  # index of the next call to play

    def state_dict(self) -> dict[str, Any]:
        return {"position": self.position, "replay": self.replay}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("replay") == self.replay:  # another file starts from its first call
            self.position = int(state["position"])

    def run(self, env: ResearchEnv) -> None:
        calls = load_calls(resolve_replay_path(self.replay, env.task.id))
        rerun_lost_sessions(env)
        while self.position < len(calls) and not env.done:
            call = calls[self.position]
            self.position += 1
            env.step(call["tool"], call.get("arguments", {}))


def rerun_lost_sessions(env: ResearchEnv) -> None:
    """After a resume: open each lost session again and restart the command it was running."""
    for session in env.lost_sessions:
        env.step("create_session", {"name": session["name"]})
        if session.get("busy") and session.get("command"):
            env.step("run_command", {"session": session["name"], "command": session["command"], "wait": 0})
