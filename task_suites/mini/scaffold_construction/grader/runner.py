"""Runs a submitted scaffold.py against the grader's model, in its own process.

The grader copies this file and scaffold.py into an empty directory and starts it there with the
name of a Unix socket in that directory in SCAFFOLD_SOCKET. Messages are JSON lines:

    runner -> grader  {"type": "ready"} | {"type": "load_error", "error": "..."}   (first message)
    grader -> runner  {"type": "question", "question": "..."} ... {"type": "done"}
    runner -> grader  {"type": "ask", "prompt": "..."}
    grader -> runner  {"type": "reply", "text": "..."}, or {"type": "budget"} past the call budget
    runner -> grader  {"type": "answer", "answer": "..." | null, "error": null | "..."}

The grader enforces the budget and scores the answers; this side only relays.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import traceback
from typing import Any


class BudgetExceeded(RuntimeError):
    """Raised by ask() once a question has used its call budget."""


class Channel:
    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.stream = self.sock.makefile("rw", encoding="utf-8", newline="\n")
        self.lock = threading.Lock()  # a scaffold may call ask() from several threads

    def send(self, message: dict[str, Any]) -> None:
        self.stream.write(json.dumps(message) + "\n")
        self.stream.flush()

    def receive(self) -> dict[str, Any]:
        line = self.stream.readline()
        if not line:
            raise SystemExit(0)  # the grader closed the session
        message: dict[str, Any] = json.loads(line)
        return message

    def ask(self, prompt: str) -> str:
        if not isinstance(prompt, str):
            raise TypeError(f"ask() takes a str prompt, got {type(prompt).__name__}")
        with self.lock:
            self.send({"type": "ask", "prompt": prompt})
            reply = self.receive()
        if reply["type"] == "budget":
            raise BudgetExceeded("this question has used its model call budget")
        return str(reply["text"])


def main() -> None:
    channel = Channel(os.environ["SCAFFOLD_SOCKET"])
    sys.path.insert(0, os.getcwd())
    try:
        import scaffold  # type: ignore[import-not-found]

        solve = scaffold.solve
        if not callable(solve):
            raise TypeError("scaffold.solve is not a function")
    except BaseException:
        channel.send({"type": "load_error", "error": traceback.format_exc(limit=-4)[-1500:]})
        return
    channel.send({"type": "ready"})
    while True:
        message = channel.receive()
        if message["type"] != "question":
            return
        answer: object = None
        error = None
        try:
            answer = solve(message["question"], channel.ask)
        except Exception as exc:
            error = type(exc).__name__
        if error is None and not isinstance(answer, str):
            error = f"solve() returned {type(answer).__name__}, not str"
        channel.send({"type": "answer", "answer": answer if error is None else None, "error": error})


if __name__ == "__main__":
    main()
