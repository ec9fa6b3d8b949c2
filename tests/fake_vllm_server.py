"""A stand-in for the vLLM server command in tests: a stdlib HTTP server that answers /v1/models.

Takes vLLM's --model/--host/--port (and ignores the rest of vLLM's arguments), plus:
  --record PATH          append one JSON line per start (pid, port, CUDA_VISIBLE_DEVICES, args)
  --startup-delay S      wait S seconds before listening, as a loading model would
  --never-ready          log a loading line and never listen
  --exit-code N          log a failure and exit with N before listening
  --spawn-child PATH     start a long-lived child (as vLLM starts its engine) and write its pid to PATH
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


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

        def log_message(self, format: str, *log_args: object) -> None:
            print(format % log_args, flush=True)

    server = ThreadingHTTPServer((args.host, args.port), Handler)
    print(f"INFO fake vLLM: serving {served_name} on http://{args.host}:{args.port}", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
