"""Start time and decoding speed of the embedded model server, as an agent uses it.

    python bench/bench_embedded_llm.py [--threads 1 2] [--requests 3] [--out bench/results/embedded_llm.json]

Each thread count gets a fresh server (the converted model is cached after the first start);
each request is an agent-sized prompt (tool descriptions and an instruction, ~700 tokens) with
128 new tokens at most. Reported: seconds to start, and per request the prompt and completion
tokens, the latency, and completion tokens per second of latency (prompt processing included).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import openai

from pytest_innovator.llm.embedded import start_embedded_server

TOOLS = "\n".join(
    f"- {name}({arguments}): {text}"
    for name, arguments, text in [
        ("list_files", "path: string", "list a directory of the workspace"),
        ("read_file", "path: string, start?: integer, lines?: integer", "read a window of a text file"),
        ("write_file", "path: string, content: string", "create or replace a file"),
        ("edit_file", "path: string, old: string, new: string", "replace one exact occurrence of old by new"),
        ("run", "session: string, command: string, wait?: number", "run a shell command in a session"),
        ("read_output", "session: string, since?: integer", "output of a session since an offset"),
        ("evaluate", "", "grade the current outputs (costs one of the evaluations)"),
        ("finish", "", "end the episode; the final evaluation runs"),
    ]
)
SYSTEM = (
    f"""You are a research agent working in a Linux workspace. Act only through the tools.

## Tools
{TOOLS}

## How to act
End your reply with exactly one fenced JSON block naming one tool and its arguments, like this:

```json
{{"tool": "read_file", "arguments": {{"path": "README.md"}}}}
```
"""
    + "Long jobs run in sessions: start them, poll their output, and never kill a healthy run. " * 12
)
USER = (
    "Task: the workspace holds data/train.jsonl and a training script train.py. Improve the validation "
    "accuracy reported by evaluate. You have 2 hours and 3 evaluations. Start by looking around."
)


def bench(threads: int, requests: int) -> dict[str, object]:
    started = time.monotonic()
    base_url, model, stop = start_embedded_server(threads=threads, max_tokens=128)
    start_s = time.monotonic() - started
    try:
        client = openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=600)
        calls = []
        for _ in range(requests):
            sent = time.monotonic()
            reply = client.chat.completions.create(
                model=model,
                max_tokens=128,
                messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": USER}],
            )
            latency = time.monotonic() - sent
            usage = reply.usage
            assert usage is not None
            calls.append(
                {
                    "prompt_tokens": usage.prompt_tokens,
                    "completion_tokens": usage.completion_tokens,
                    "latency_s": round(latency, 2),
                    "tokens_per_s": round(usage.completion_tokens / latency, 2),
                }
            )
    finally:
        stop()
    return {
        "threads": threads,
        "start_s": round(start_s, 1),
        "calls": calls,
        "median_tokens_per_s": statistics.median(call["tokens_per_s"] for call in calls),
        "load_average_1min": round(os.getloadavg()[0], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--requests", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    results = [bench(threads, args.requests) for threads in args.threads]
    text = json.dumps({"cpus": os.cpu_count(), "runs": results}, indent=1)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
