"""A stand-in for the vLLM server command in tests: a stdlib HTTP server that answers /v1/models
and, as vLLM started with a tool-call parser does, /v1/chat/completions with native tool calls.

Takes vLLM's --model/--host/--port (and ignores the rest of vLLM's arguments), plus:
  --record PATH          append one JSON line per start (pid, port, CUDA_VISIBLE_DEVICES, args)
  --startup-delay S      wait S seconds before listening, as a loading model would
  --never-ready          log a loading line and never listen
  --exit-code N          log a failure and exit with N before listening
  --spawn-child PATH     start a long-lived child (as vLLM starts its engine) and write its pid to PATH
  --script PATH          the tool calls to answer with, one JSON object ({"tool", "arguments"}) per
                         line: a request that offers tools gets the one at the position of its
                         conversation (its number of assistant messages); after the last, `finish`;
                         a tool the request does not offer becomes a call of the first one offered
  --requests PATH        append one JSON line per chat request (model, tools offered, tool_choice)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def filled(schema: dict) -> object:
    """The simplest value that matches a JSON schema (an enum's first value)."""
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "object":
        properties = schema.get("properties", {})
        return {name: filled(properties.get(name, {})) for name in schema.get("required", [])}
    return {"string": "", "integer": 0, "number": 0, "boolean": False, "array": []}.get(kind)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--served-model-name", default=None)
    parser.add_argument("--record", default=None)
    parser.add_argument("--startup-delay", type=float, default=0.0)
    parser.add_argument("--never-ready", action="store_true")
    parser.add_argument("--exit-code", type=int, default=None)
    parser.add_argument("--spawn-child", default=None)
    parser.add_argument("--script", default=None)
    parser.add_argument("--requests", default=None)
    args, vllm_args = parser.parse_known_args()
    served_name = args.served_model_name or args.model
    print(f"INFO fake vLLM: loading {args.model} (ignoring {vllm_args})", flush=True)
    if args.record:
        with open(args.record, "a") as record:
            record.write(
                json.dumps(
                    {
                        "pid": os.getpid(),
                        "port": args.port,
                        "argv": sys.argv[1:],
                        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
                    }
                )
                + "\n"
            )
    if args.spawn_child:
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        with open(args.spawn_child, "w") as pid_file:
            pid_file.write(str(child.pid))
    if args.exit_code is not None:
        print("ERROR fake vLLM: out of memory while loading the weights", flush=True)
        return args.exit_code
    if args.never_ready:
        print("INFO fake vLLM: compiling kernels, this takes forever", flush=True)
        while True:
            time.sleep(60)
    time.sleep(args.startup_delay)
    script = [json.loads(line) for line in open(args.script)] if args.script else []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path != "/v1/models":
                self.send_error(404)
                return
            body = json.dumps({"object": "list", "data": [{"id": served_name, "object": "model"}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            if self.path != "/v1/chat/completions":
                self.send_error(404)
                return
            request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if request.get("model") != served_name:  # vLLM's answer to a model it does not serve
                self._reply(404, {"object": "error", "message": f"The model `{request.get('model')}` does not exist."})
                return
            tools = [tool["function"]["name"] for tool in request.get("tools") or []]
            if args.requests:
                with open(args.requests, "a") as log:
                    seen = {"model": request["model"], "tools": tools, "tool_choice": request.get("tool_choice")}
                    log.write(json.dumps(seen) + "\n")
            message: dict = {"role": "assistant", "content": "Nothing to call."}
            if tools:
                turn = sum(1 for m in request["messages"] if m.get("role") == "assistant")
                call = script[turn] if turn < len(script) else {"tool": "finish", "arguments": {}}
                if call["tool"] not in tools:  # as constrained decoding does: a call of an offered tool
                    offered = request["tools"][0]["function"]
                    call = {"tool": offered["name"], "arguments": filled(offered.get("parameters", {}))}
                function = {"name": call["tool"], "arguments": json.dumps(call["arguments"])}
                message = {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [{"id": f"call-{time.monotonic_ns()}", "type": "function", "function": function}],
                }
            self._reply(200, {
                "id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()), "model": served_name,
                "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if tools else "stop"}],
                "usage": {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110},
            })  # fmt: skip

        def _reply(self, status: int, payload: dict) -> None:
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *log_args: object) -> None:
            print(format % log_args, flush=True)

    server = ThreadingHTTPServer((args.host, args.port), Handler)
    print(f"INFO fake vLLM: serving {served_name} on http://{args.host}:{args.port}", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
