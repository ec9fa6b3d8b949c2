"""`pytest-innovator watch RESULTS_DIR`: a live page of a results directory's items in a browser.

A local web server, bound to 127.0.0.1 only, that serves one page and a JSON endpoint the page
polls each second: every item's status, evaluations and the tail of its trajectory, read from disk
as `status` reads them (never through the env). From the page a person sends guidance, pauses and
resumes a running item (guidance.py: the item's run directory is the mailbox) and marks a step of
a finished item keep or drop (training/labels.py). Every request must carry the token printed in
the page's URL (``?token=`` or the ``X-Watch-Token`` header); any other gets 401.

The standard library's ThreadingHTTPServer serves it: one page and four small JSON routes need no
framework, and the command then works on a plain install (the `server` extra's FastAPI and
uvicorn are for the session server, and would make this command depend on an extra).
"""

from __future__ import annotations

import hmac
import json
import secrets
import sys
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .. import guidance
from ..errors import InnovatorError
from ..rundir import RunDir
from ..training import labels
from .status import StatusError, item_progress, last_records, read_item, run_dirs
from .watch_page import PAGE

TAIL_RECORDS = 15
TEXT_CHARS = 400
MAX_BODY_BYTES = 64 * 1024


class WatchError(InnovatorError):
    """What the watch server cannot do; the message says what to give instead."""


def clip(text: str, limit: int = TEXT_CHARS) -> str:
    return text if len(text) <= limit else text[:limit] + f" [... {len(text) - limit} more characters]"


def describe(record: dict[str, Any]) -> dict[str, Any]:
    """One trajectory line as the page shows it (plain text: the page puts it in as text)."""
    if record.get("type") == "step":
        arguments = record.get("arguments")
        arguments_text = arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)
        return {
            "step": record.get("step"),
            "kind": record.get("tool", "step"),
            "ok": record.get("ok", True),
            "text": clip(f"{arguments_text}\n→ {record.get('observation', '')}"),
        }
    details = {k: v for k, v in record.items() if k not in ("type", "event", "step", "t", "wall")}
    return {
        "step": record.get("step"),
        "kind": record.get("event", record.get("type", "?")),
        "ok": True,
        "text": clip(json.dumps(details, ensure_ascii=False, default=str)),
    }


def item_view(run_id: str, item_dir: Path, now: float) -> dict[str, Any]:
    files = read_item(item_dir)
    view = item_progress(files, now)
    view["id"] = f"{run_id}/{item_dir.name}"
    view["paused"] = guidance.is_paused(item_dir)
    view["evaluation_list"] = [
        {"index": e.index, "kind": e.kind, "status": e.status, "score": e.score, "step": e.step, "message": e.message}
        for e in (files.ledger.evaluations if files.ledger else [])
    ]
    tail = last_records(RunDir(item_dir).trajectory, TAIL_RECORDS)
    view["tail"] = [describe(r) for r in tail if r.get("type") != "header"]
    return view


def collect_items(results_dir: Path) -> list[dict[str, Any]]:
    """Every item of the latest run, and those of earlier runs that have not ended (no result.json):
    a results directory reused for many runs would otherwise be read whole each second. Running
    items first, the latest run's first among equals."""
    try:
        runs = run_dirs(results_dir)
    except StatusError:  # no run has started yet
        return []
    now = time.time()
    items = [
        item_view(run.name, item, now)
        for run in reversed(runs)
        for item in sorted(run.iterdir())
        if RunDir(item).trajectory.exists() and (run == runs[-1] or not RunDir(item).result.exists())
    ]
    order = {"running": 0, "stopped": 1, "finished": 2}
    return sorted(items, key=lambda i: order[i["state"]])


def find_item(results_dir: Path, item_id: str) -> Path:
    """`<run id>/<task id>` to its directory, by names listed on disk (never a path built from input)."""
    run_id, _, task_id = str(item_id).partition("/")
    try:
        runs = {run.name: run for run in run_dirs(results_dir)}
    except StatusError as exc:
        raise WatchError(str(exc)) from exc
    items = {d.name: d for d in runs[run_id].iterdir() if d.is_dir()} if run_id in runs else {}
    if task_id not in items:
        raise WatchError(f"no item {item_id!r} in {results_dir}; give <run id>/<task id> as the page lists them")
    return items[task_id]


def act(results_dir: Path, action: str, request: dict[str, Any]) -> dict[str, Any]:
    """A POST from the page: guide, pause, resume or label one item."""
    item = find_item(results_dir, request.get("item", ""))
    author = str(request.get("author") or "watch")
    if action == "guide":
        message = guidance.send(item, str(request.get("text", "")), author)
        return {"done": f"guidance {message['id']} sent: the agent reads it after its current step"}
    if action == "pause":
        guidance.pause(item)
        return {"done": "pauses after its current step (its working time keeps running)"}
    if action == "resume":
        return {"done": "goes on" if guidance.release(item) else "was not paused"}
    mark_label = request.get("label")
    if mark_label not in ("keep", "drop") or not str(request.get("reason", "")).strip():
        raise WatchError("a mark needs a label (keep or drop) and a reason")
    try:
        step = int(request.get("step"))  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise WatchError("a mark needs the step's number") from exc
    mark = {"step": step, "label": mark_label, "reason": str(request["reason"]), "author": author}
    labels.label(item, mark)
    return {"done": f"step {step} marked {mark_label}"}


ACTIONS = ("guide", "pause", "resume", "label")


class WatchHandler(BaseHTTPRequestHandler):
    server: WatchServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
        pass  # a request per second per open page: the terminal keeps only the URL

    def authorized(self) -> bool:
        query = parse_qs(urlsplit(self.path).query)
        given = self.headers.get("X-Watch-Token") or (query.get("token") or [""])[0]
        if hmac.compare_digest(given.encode(), self.server.token.encode()):
            return True
        self.send(HTTPStatus.UNAUTHORIZED, {"error": "give the token printed with the page's URL (?token=...)"})
        return False

    def send(self, status: HTTPStatus, body: dict[str, Any] | str) -> None:
        is_page = isinstance(body, str)
        data = (body if is_page else json.dumps(body)).encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8" if is_page else "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header(
            "Content-Security-Policy",
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'",
        )
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        if not self.authorized():
            return
        route = urlsplit(self.path).path
        if route == "/":
            self.send(HTTPStatus.OK, PAGE)
        elif route == "/api/items":
            self.send(HTTPStatus.OK, {"results_dir": str(self.server.results_dir), "items": self.items()})
        else:
            self.send(HTTPStatus.NOT_FOUND, {"error": f"no page {route}"})

    def items(self) -> list[dict[str, Any]]:
        return collect_items(self.server.results_dir)

    def do_POST(self) -> None:  # noqa: N802
        if not self.authorized():
            return
        action = urlsplit(self.path).path.removeprefix("/api/")
        if action not in ACTIONS:
            self.send(HTTPStatus.NOT_FOUND, {"error": f"no action {action!r}; actions: {', '.join(ACTIONS)}"})
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self.send(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"error": f"at most {MAX_BODY_BYTES} bytes"})
            return
        try:
            request = json.loads(self.rfile.read(length) or b"{}")
            if not isinstance(request, dict):
                raise ValueError("not an object")
        except ValueError:
            self.send(HTTPStatus.BAD_REQUEST, {"error": "the body must be a JSON object"})
            return
        try:
            self.send(HTTPStatus.OK, act(self.server.results_dir, action, request))
        except InnovatorError as exc:  # an ended item, an unknown one, an empty text, a step it lacks
            self.send(HTTPStatus.CONFLICT, {"error": str(exc)})


class WatchServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, results_dir: Path, port: int = 0, token: str | None = None):
        if not results_dir.is_dir():
            raise WatchError(
                f"{results_dir} is not a directory; "
                "give the directory passed to --innovator-results (default .innovator)"
            )
        self.results_dir = results_dir
        self.token = token or secrets.token_urlsafe(24)
        try:
            super().__init__(("127.0.0.1", port), WatchHandler)
        except OSError as exc:
            raise WatchError(
                f"cannot listen on 127.0.0.1:{port} ({exc.strerror}); give another --port, or 0 for any free one"
            ) from exc

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/?token={self.token}"


def watch(results_dir: Path, port: int = 0) -> int:
    server = WatchServer(results_dir, port)
    print(f"watching {results_dir}: {server.url}", flush=True)
    print("(Ctrl-C stops it; the runs go on)", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
