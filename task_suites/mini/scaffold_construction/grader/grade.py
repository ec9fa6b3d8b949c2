"""Grades a scaffold.py: runs it on the hidden test questions against the hidden test model.

The scaffold runs in its own process (runner.py, started through grader_kit.run_untrusted) in an
empty directory holding only runner.py and a copy of scaffold.py, with a clean environment, in
a sandbox that shows it nothing of the grader's (where bubblewrap works). It reaches the model
only through a Unix socket served here: this process sends the questions one at a time, answers the prompts
with the test model, enforces the per-question call budget and records the answers. The test
world, the answers, the model key and the nonce never leave this process.

Outcomes:
- invalid: no scaffold.py; it fails to import or has no callable solve(); or the process ended
  or timed out before it returned a single answer. The message says which (with the import
  traceback, which cannot hold test data: the model is not reachable before the scaffold loads).
- valid: accuracy over all test questions. A question whose solve() raised, returned a non-str,
  or was never reached (crash or time-out part way) counts as wrong. Messages carry only counts,
  never text from the scaffold's process, so it cannot pass test facts back through them.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from noisy_model import NoisyModel, World, load_questions, normalise

from pytest_innovator.grader_kit import (
    GradeRequest,
    invalid,
    isolation_available,
    read_request,
    report,
    run_untrusted,
)

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
CALL_BUDGET = 8
SCAFFOLD_TIMEOUT = 30.0  # seconds for the whole test set
MAX_MESSAGE_CHARS = 16_000


@dataclass
class Session:
    """What came back from the scaffold's process."""

    load_error: str | None = None
    ready: bool = False
    answers: list[str | None] = field(default_factory=list)
    errors: int = 0  # questions whose solve() raised or returned a non-str
    calls: int = 0
    protocol_error: str | None = None


class ModelServer:
    """Serves one scaffold process over a Unix socket: questions out, prompts in, answers back."""

    def __init__(self, listener: socket.socket, questions: list[str], model: NoisyModel) -> None:
        self.listener = listener
        self.questions = questions
        self.model = model
        self.session = Session()
        self.conn: socket.socket | None = None
        self.closed = threading.Event()

    def serve(self) -> None:
        try:
            self.listener.settimeout(0.2)
            while not self.closed.is_set():
                try:
                    self.conn, _ = self.listener.accept()
                    break
                except TimeoutError:
                    continue
            self.listener.close()  # one connection only: the runner's
            if self.conn is not None:
                self.conn.settimeout(None)
                self._converse(self.conn.makefile("rwb"))
        except (OSError, ValueError) as exc:
            if not self.closed.is_set():
                self.session.protocol_error = f"{type(exc).__name__}"

    def close(self) -> None:
        self.closed.set()
        if self.conn is not None:
            try:
                self.conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _receive(self, stream: Any) -> dict[str, Any] | None:
        line = stream.readline(MAX_MESSAGE_CHARS + 1)
        if not line:
            return None
        if len(line) > MAX_MESSAGE_CHARS:
            raise ValueError("message too long")
        message = json.loads(line)
        if not isinstance(message, dict):
            raise ValueError("message is not an object")
        return message

    @staticmethod
    def _send(stream: Any, message: dict[str, Any]) -> None:
        stream.write(json.dumps(message).encode() + b"\n")
        stream.flush()

    def _converse(self, stream: Any) -> None:
        session = self.session
        first = self._receive(stream)
        if first is None:
            return
        if first.get("type") == "load_error":
            session.load_error = str(first.get("error", ""))[-1500:]
            return
        if first.get("type") != "ready":
            raise ValueError("expected ready")
        session.ready = True
        for question in self.questions:
            self._send(stream, {"type": "question", "question": question})
            calls = 0
            while True:
                message = self._receive(stream)
                if message is None:
                    return
                kind = message.get("type")
                if kind == "ask":
                    prompt = message.get("prompt")
                    if calls >= CALL_BUDGET or not isinstance(prompt, str):
                        self._send(stream, {"type": "budget"})
                        continue
                    calls += 1
                    self._send(stream, {"type": "reply", "text": self.model.ask(prompt)})
                elif kind == "answer":
                    answer, error = message.get("answer"), message.get("error")
                    if error is not None or not isinstance(answer, str):
                        session.errors += 1
                        answer = None
                    session.answers.append(answer)
                    session.calls += calls
                    break
                else:
                    raise ValueError("unexpected message")
        self._send(stream, {"type": "done"})


def run_scaffold(scaffold_path: Path, questions: list[str], model: NoisyModel) -> tuple[Session, bool, bool]:
    """(session, timed out, ran sandboxed)."""
    workdir = Path(tempfile.mkdtemp(prefix="scaffold-run-"))
    try:
        shutil.copyfile(HERE / "runner.py", workdir / "runner.py")
        shutil.copyfile(scaffold_path, workdir / "scaffold.py")
        socket_path = workdir / "model.sock"
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(socket_path))
        listener.listen(1)
        server = ModelServer(listener, questions, model)
        thread = threading.Thread(target=server.serve, daemon=True)
        thread.start()
        try:
            run_untrusted(
                [sys.executable, "-I", "runner.py"],
                cwd=workdir,
                timeout=SCAFFOLD_TIMEOUT,
                env={"SCAFFOLD_SOCKET": socket_path.name},
            )
            timed_out = False
        except subprocess.TimeoutExpired:
            timed_out = True
        server.close()
        thread.join(5)
        return server.session, timed_out, isolation_available()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def grade(request: GradeRequest) -> None:
    scaffold_path = request.submission_dir / "scaffold.py"
    if not scaffold_path.is_file():
        invalid(
            request,
            "the submission has no scaffold.py: write your scaffold to scaffold.py in the workspace"
            " (only that file is graded)",
        )
        return
    world = World.load(DATA / "test_world.json")
    questions = load_questions(DATA / "test_questions.jsonl")
    model = NoisyModel(world, (DATA / "model_key.txt").read_text(encoding="utf-8").strip(), seed=request.seed)
    session, timed_out, isolated = run_scaffold(scaffold_path, [str(q["question"]) for q in questions], model)

    if session.load_error is not None:
        invalid(
            request,
            f"scaffold.py could not be loaded (it must import and define solve(question, ask)):\n{session.load_error}",
        )
        return
    if not session.answers:
        if timed_out:
            reason = f"no answer to the first question within the {SCAFFOLD_TIMEOUT:g}s limit"
        elif not session.ready:
            reason = "its process ended before it was ready (does importing it exit the process?)"
        else:
            reason = "its process ended before it answered the first question"
        invalid(request, f"scaffold.py returned no answers: {reason}")
        return

    correct_by_hops: dict[int, list[bool]] = {}
    for q, answer in zip(questions, session.answers + [None] * (len(questions) - len(session.answers))):
        ok = answer is not None and normalise(answer) == normalise(str(q["answer"]))
        correct_by_hops.setdefault(int(q["hops"]), []).append(ok)  # type: ignore[call-overload]
    correct = sum(sum(oks) for oks in correct_by_hops.values())
    accuracy = correct / len(questions)
    answered = len(session.answers)
    metrics = {f"accuracy_{hops}_hops": sum(oks) / len(oks) for hops, oks in sorted(correct_by_hops.items())}
    metrics |= {
        "answered": answered,
        "solve_errors": session.errors,
        "calls_per_question": session.calls / answered,
        "isolated": 1.0 if isolated else 0.0,
    }
    notes = [
        f"accuracy {accuracy:.3f} ({correct}/{len(questions)} questions)",
        f"{metrics['calls_per_question']:.2f} model calls per question",
    ]
    if session.errors:
        notes.append(f"solve() raised or returned a non-str on {session.errors} questions (counted wrong)")
    if answered < len(questions):
        cause = f"the {SCAFFOLD_TIMEOUT:g}s time limit ran out" if timed_out else "the scaffold's process ended"
        notes.append(f"{len(questions) - answered} questions were never answered: {cause} (counted wrong)")
    if session.protocol_error:
        notes.append("the scaffold's process broke the question/answer protocol")
    report(request, valid=True, metric=accuracy, metrics=metrics, message="; ".join(notes))


def main() -> int:
    grade(read_request())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
