"""A person speaking to a running item: guidance, and holding the agent between steps.

The item's run directory is the mailbox. `send` writes one JSON file per message under
``guidance/``; the harness that runs the item (any xdist worker, any backend: this is harness-side)
reads the mailbox after every step and hands the new messages to the agent with that step's
observation. Which messages were delivered is part of the episode's state (snapshots hold it), so a
resumed item sees each message exactly once. ``paused`` present in the run directory holds the
agent after its current step until it is removed; the working clock runs on meanwhile.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .errors import InnovatorError
from .rundir import RunDir, write_json_atomic

PAUSE_POLL_S = 0.2


class GuidanceError(InnovatorError):
    """A target that cannot take guidance; the message says what to give instead."""


def check_item(item_dir: Path) -> RunDir:
    """A running (or about to run) item's directory: <results>/runs/<run id>/<task id>."""
    run = RunDir(item_dir)
    if not run.trajectory.is_file():
        raise GuidanceError(
            f"{item_dir} is not an item's run directory (no trajectory.jsonl); give <results>/runs/<run id>/<task id>"
        )
    if run.result.is_file():
        raise GuidanceError(f"{item_dir} has ended (result.json is written): it takes no more guidance")
    return run


def send(item_dir: Path, text: str, author: str) -> dict[str, Any]:
    """Post a message for the item's agent; it is delivered after the agent's current step."""
    if not text.strip():
        raise GuidanceError("the guidance text is empty")
    run = check_item(item_dir)
    run.guidance.mkdir(exist_ok=True)
    sent_at = time.time()
    message = {"id": f"{time.time_ns()}-{uuid.uuid4().hex[:8]}", "text": text, "author": author, "sent_at": sent_at}
    write_json_atomic(run.guidance / f"{message['id']}.json", message)
    return message


def pending(item_dir: Path, delivered: set[str]) -> list[dict[str, Any]]:
    """Messages in the mailbox not delivered yet, oldest first (names start with the send time)."""
    mailbox = RunDir(item_dir).guidance
    if not mailbox.is_dir():
        return []
    messages = (json.loads(path.read_text(encoding="utf-8")) for path in sorted(mailbox.glob("*.json")))
    return [m for m in messages if m["id"] not in delivered]


def render(message: dict[str, Any]) -> str:
    """How the agent reads a message: marked as a person's guidance, with its author and time."""
    when = datetime.fromtimestamp(message["sent_at"], UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"[guidance from a human researcher ({message['author']}, {when})]\n{message['text']}"


def pause(item_dir: Path) -> None:
    RunDir(check_item(item_dir).path).pause_request.write_text(f"{time.time()}\n", encoding="utf-8")


def release(item_dir: Path) -> bool:
    """Let a held item go on; False when it was not paused."""
    flag = RunDir(item_dir).pause_request
    if not flag.exists():
        return False
    flag.unlink(missing_ok=True)
    return True


def is_paused(item_dir: Path) -> bool:
    return RunDir(item_dir).pause_request.exists()
