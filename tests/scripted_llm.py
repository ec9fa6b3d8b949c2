"""A scripted OpenAI-compatible server on 127.0.0.1 that replays a transcript.

A transcript (YAML under fixtures/llm/) is a list of exchanges; each answers the next request(s)
to ``POST /v1/chat/completions``, in order:

```yaml
model: scripted-model
enforces: [tools]                # what the server enforces when the agent probes it (default: tools)
exchanges:
  - expect:                      # checks on the request; a failed check is recorded, not raised
      tools: true                # the request carries tools (false: it carries none)
      contains: ["answer.txt"]   # substrings of the request's messages (all of them, as JSON)
      not_contains: ["OLD"]
      last_contains: ["score"]   # substrings of the last message's content
      system_contains: ["session"]
    times: 1                     # how many requests this exchange answers (default 1)
    respond:
      status: 200                # another status answers with an OpenAI-style error body
      error: "rate limited"      # the error message for a non-200 status
      headers: {Retry-After: "0"}
      delay_s: 0                 # sleep before answering (past the client's timeout: a timeout)
      drop: false                # close the connection without an answer
      content: "text"
      tool_calls:                # arguments: an object (sent as JSON) or arguments_raw: the exact text
        - {name: write_file, arguments: {path: answer.txt, content: "0.9"}}
      usage: {prompt_tokens: 100, completion_tokens: 20}   # omitted: no usage in the answer
```

The react agent's probes (requests that offer `llm.probe`'s probe tool) are answered outside the
transcript, as an endpoint that enforces what `enforces` names would answer: ``tools`` (a
``tool_choice: "required"`` request gets the one call the probe's schema allows; otherwise a
malformed ``<tool_call>`` text, as vLLM sends) and ``response_format`` (the call's JSON; otherwise
prose). They are recorded in `probes`, not in `requests`.

It is a stdlib ThreadingHTTPServer: a real socket with nothing to install, one thread per
connection (so a delayed answer never blocks the retry that follows it), HTTP/1.1 keep-alive as
the openai client expects. Every request is recorded with its headers and the server's own
handling time (the baseline of bench/bench_react.py).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self

import yaml

from pytest_innovator.llm.probe import PROBE_ARGUMENTS, PROBE_TOOL_NAME

TRANSCRIPTS = Path(__file__).resolve().parent.parent / "fixtures" / "llm"


def load_transcript(name_or_path: str | Path) -> dict[str, Any]:
    path = Path(name_or_path)
    if not path.is_file():
        path = TRANSCRIPTS / f"{name_or_path}.yaml"
    return yaml.safe_load(path.read_text(encoding="utf-8"))


@dataclass
class RecordedRequest:
    number: int  # 1-based, over all chat-completion requests
    exchange: int | None  # 1-based index of the exchange that answered it
    body: dict[str, Any]
    headers: dict[str, str]
    received_at: float  # time.perf_counter() when the request had been read
    answered_at: float | None = None  # when the answer had been written (None: dropped or client gone)

    @property
    def messages(self) -> list[dict[str, Any]]:
        return self.body.get("messages", [])

    @property
    def text(self) -> str:
        return json.dumps(self.messages)


@dataclass
class _Script:
    exchanges: list[dict[str, Any]]
    position: int = 0  # index of the current exchange
    used: int = 0  # requests the current exchange has answered
    requests: list[RecordedRequest] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def next_exchange(self) -> tuple[int | None, dict[str, Any] | None]:
        while self.position < len(self.exchanges):
            exchange = self.exchanges[self.position]
            if self.used < int(exchange.get("times", 1)):
                self.used += 1
                return self.position + 1, exchange
            self.position, self.used = self.position + 1, 0
        return None, None

    def unfinished(self) -> int:
        remaining = 0
        for index in range(self.position, len(self.exchanges)):
            times = int(self.exchanges[index].get("times", 1))
            remaining += times - (self.used if index == self.position else 0)
        return remaining


class ScriptedLLMServer:
    def __init__(self, transcript: dict[str, Any] | str | Path):
        if not isinstance(transcript, dict):
            transcript = load_transcript(transcript)
        self.model = str(transcript.get("model", "scripted-model"))
        self.enforces = set(transcript.get("enforces", ["tools"]))
        self.probes: list[RecordedRequest] = []
        self._script = _Script(list(transcript.get("exchanges", [])))
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="scripted-llm", daemon=True
        )

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._script.requests)

    @property
    def failures(self) -> list[str]:
        with self._lock:
            return list(self._script.failures)

    def assert_transcript_done(self) -> None:
        """Every check passed and every scripted answer was asked for."""
        with self._lock:
            problems = list(self._script.failures)
            left = self._script.unfinished()
        if left:
            problems.append(f"{left} scripted answers were never requested")
        assert not problems, "scripted server:\n" + "\n".join(problems)

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- called by the handler threads -----------------------------------------------------

    def _probe_answer(self, body: dict[str, Any], received_at: float) -> dict[str, Any]:
        with self._lock:
            self.probes.append(RecordedRequest(len(self.probes) + 1, None, body, {}, received_at))
        call = {"name": PROBE_TOOL_NAME, "arguments": PROBE_ARGUMENTS}
        if body.get("tools"):
            if "tools" in self.enforces and body.get("tool_choice") == "required":
                respond: dict[str, Any] = {"tool_calls": [call]}
            else:
                respond = {"content": f'<tool_call>\n{{"name": "{PROBE_TOOL_NAME}", "arguments": {{"code": '}
        elif "response_format" in self.enforces and body.get("response_format"):
            respond = {"content": json.dumps(call)}
        else:
            respond = {"content": "Hello! Nice to meet you."}
        return completion_body({**respond, "usage": {"prompt_tokens": 50, "completion_tokens": 10}}, self.model, 0)

    def _take(
        self, body: dict[str, Any], headers: dict[str, str], received_at: float
    ) -> tuple[RecordedRequest, dict[str, Any] | None]:
        with self._lock:
            index, exchange = self._script.next_exchange()
            request = RecordedRequest(len(self._script.requests) + 1, index, body, headers, received_at)
            self._script.requests.append(request)
            if exchange is None:
                self._script.failures.append(f"request {request.number}: the transcript has no answer left")
            else:
                for problem in check_request(exchange.get("expect") or {}, body):
                    self._script.failures.append(f"request {request.number} (exchange {index}): {problem}")
            return request, exchange


def check_request(expect: dict[str, Any], body: dict[str, Any]) -> list[str]:
    messages = body.get("messages", [])
    text = json.dumps(messages)
    problems = []
    if "tools" in expect and bool(body.get("tools")) != bool(expect["tools"]):
        problems.append(f"expected {'tools' if expect['tools'] else 'no tools'} in the request")
    for needle in expect.get("contains", []):
        if json.dumps(needle)[1:-1] not in text:
            problems.append(f"the messages do not contain {needle!r}")
    for needle in expect.get("not_contains", []):
        if json.dumps(needle)[1:-1] in text:
            problems.append(f"the messages contain {needle!r}")
    last = (messages[-1].get("content") or "") if messages else ""
    for needle in expect.get("last_contains", []):
        if needle not in last:
            problems.append(f"the last message does not contain {needle!r}: {last[:300]!r}")
    system = "".join(m.get("content") or "" for m in messages if m.get("role") == "system")
    for needle in expect.get("system_contains", []):
        if needle not in system:
            problems.append(f"the system prompt does not contain {needle!r}")
    if "last_role" in expect and (messages[-1].get("role") if messages else None) != expect["last_role"]:
        problems.append(f"the last message's role is not {expect['last_role']!r}")
    return problems


def is_probe(body: dict[str, Any]) -> bool:
    offered = [(tool.get("function") or {}).get("name") for tool in body.get("tools") or []]
    return PROBE_TOOL_NAME in offered or PROBE_TOOL_NAME in json.dumps(body.get("response_format") or {})


def completion_body(respond: dict[str, Any], model: str, number: int) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": respond.get("content")}
    calls = []
    for position, call in enumerate(respond.get("tool_calls") or [], 1):
        arguments = call["arguments_raw"] if "arguments_raw" in call else json.dumps(call.get("arguments", {}))
        calls.append(
            {
                "id": f"call_{number}_{position}",
                "type": "function",
                "function": {"name": call["name"], "arguments": arguments},
            }
        )
    if calls:
        message["tool_calls"] = calls
    body: dict[str, Any] = {
        "id": f"chatcmpl-{number}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": respond.get("finish_reason") or ("tool_calls" if calls else "stop"),
            }
        ],
    }
    if respond.get("usage"):
        usage = {k: int(v) for k, v in respond["usage"].items()}
        body["usage"] = {**usage, "total_tokens": usage.get("prompt_tokens", 0) + usage.get("completion_tokens", 0)}
    return body


def _make_handler(server: ScriptedLLMServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go out as separate writes

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def _send_json(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, str(value))
            self.end_headers()
            self.wfile.write(data)
            self.wfile.flush()

        def do_GET(self) -> None:
            if self.path.rstrip("/").endswith("/models"):
                self._send_json(
                    200,
                    {
                        "object": "list",
                        "data": [{"id": server.model, "object": "model", "created": 0, "owned_by": "scripted"}],
                    },
                )
            else:
                self._send_json(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            raw = self.rfile.read(length)
            received_at = time.perf_counter()
            if not self.path.rstrip("/").endswith("/chat/completions"):
                self._send_json(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
                return
            body = json.loads(raw or b"{}")
            if is_probe(body):
                self._send_json(200, server._probe_answer(body, received_at))
                return
            request, exchange = server._take(body, dict(self.headers.items()), received_at)
            if exchange is None:
                self._send_json(
                    500, {"error": {"message": "the transcript has no answer left", "type": "server_error"}}
                )
                request.answered_at = time.perf_counter()
                return
            respond = exchange.get("respond") or {}
            if respond.get("delay_s"):
                time.sleep(float(respond["delay_s"]))
            if respond.get("drop"):
                self.close_connection = True
                return
            status = int(respond.get("status", 200))
            try:
                if status == 200:
                    self._send_json(200, completion_body(respond, server.model, request.number), respond.get("headers"))
                else:
                    error = {
                        "message": respond.get("error", f"scripted HTTP {status}"),
                        "type": "scripted_error",
                        "code": status,
                    }
                    self._send_json(status, {"error": error}, respond.get("headers"))
                request.answered_at = time.perf_counter()
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout)
                self.close_connection = True

    return Handler
