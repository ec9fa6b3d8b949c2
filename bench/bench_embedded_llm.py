"""Start time and decoding speed of the embedded model server, and how often its replies are actions.

    python bench/bench_embedded_llm.py speed [--threads 1 2] [--requests 3] [--out FILE]
    python bench/bench_embedded_llm.py actions [--threads 1] [--reply-tokens 160] [--out FILE]

`speed`: each thread count gets a fresh server (the converted model is cached after the first
start); each request is an agent-sized prompt (tool descriptions and an instruction, ~700 tokens)
with 128 new tokens at most. Reported: seconds to start, and per request the prompt and completion
tokens, the latency, and completion tokens per second of latency (prompt processing included).

`actions`: the react agent's requests at six points of an episode on the mini suite's
scaffold_construction task (the start, after a listing, a file read, a failed command, a run's
output, an evaluation), asked twice: as the text protocol (tools described in the prompt, one
fenced JSON action parsed from the reply; what the agent used on this server before) and as
native tools with ``tool_choice: "required"`` (constrained decoding). A reply is an action when
it names a tool of the episode with arguments that the tool's own schema accepts, i.e. `env.step`
would run it. Reported per protocol: seconds per reply, completion tokens, and that share.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import openai
from pydantic import ValidationError

from pytest_innovator.agents import text_protocol
from pytest_innovator.agents.react import SYSTEM_PROMPT
from pytest_innovator.llm.embedded import start_embedded_server
from pytest_innovator.tools import TOOLS

ROOT = Path(__file__).resolve().parent.parent
TASK = ROOT / "task_suites" / "mini" / "scaffold_construction"

TOOL_LIST = "\n".join(
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
{TOOL_LIST}

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
STATUS = "[status: 19m 30s of working time left, 3 evaluations left, step {step} of 100]"

# (tool, arguments, observation) of the episode so far, at each point a request is measured.
EPISODE = [
    (
        "list_files",
        {"path": "."},
        "scaffold.py (812 bytes)\nnoisy_model.py (9120 bytes)\nevaluate_dev.py (640 bytes)\ndata/",
    ),
    (
        "read_file",
        {"path": "scaffold.py"},
        '1\tdef solve(question, ask):\n2\t    """Answer a multi-hop question."""\n3\t    return ask(question)\n',
    ),
    (
        "run_command",
        {"session": "main", "command": "python evaluate_dev.py"},
        "ERROR: no session 'main': call create_session first",
    ),
    ("create_session", {"name": "main"}, "created session 'main' in /workspace"),
    (
        "run_command",
        {"session": "main", "command": "python evaluate_dev.py"},
        "exit code 0\naccuracy 0.31 on 200 questions",
    ),
]


def bench_speed(threads: int, requests: int) -> dict[str, object]:
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


def conversation(protocol: str, steps: int, instruction: str) -> list[dict[str, Any]]:
    """The react agent's messages after `steps` steps of EPISODE, in `protocol` ("text" or "native")."""
    schemas = [tool.openai_schema() for tool in TOOLS.values()]
    system = f"{SYSTEM_PROMPT}\n\n{text_protocol.system_section(schemas)}" if protocol == "text" else SYSTEM_PROMPT
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": system},
        {"role": "user", "content": f"# Task\n\n{instruction}\n\n{STATUS.format(step=0)}"},
    ]
    for step, (tool, arguments, observation) in enumerate(EPISODE[:steps], 1):
        result = f"{observation}\n{STATUS.format(step=step)}"
        if protocol == "text":
            action = json.dumps({"tool": tool, "arguments": arguments})
            messages.append({"role": "assistant", "content": f"```json\n{action}\n```"})
            messages.append(text_protocol.observation_message(tool, result))
        else:
            call = {
                "id": f"call_{step}",
                "type": "function",
                "function": {"name": tool, "arguments": json.dumps(arguments)},
            }
            messages.append({"role": "assistant", "content": "", "tool_calls": [call]})
            messages.append({"role": "tool", "tool_call_id": f"call_{step}", "content": result})
    return messages


def reply_action(protocol: str, message: Any) -> tuple[str, Any] | None:
    """(tool, arguments) of a reply, as the agent would read it, or None."""
    if protocol == "text":
        action = text_protocol.parse_action(message.content or "")
        return None if isinstance(action, str) else (action.tool, action.arguments)
    calls = message.tool_calls or []
    return (calls[0].function.name, calls[0].function.arguments) if len(calls) == 1 else None


def is_valid_action(action: tuple[str, Any] | None) -> bool:
    if action is None or action[0] not in TOOLS:
        return False
    tool, arguments = action
    try:
        if isinstance(arguments, str):
            TOOLS[tool].args.model_validate_json(arguments)
        else:
            TOOLS[tool].args.model_validate(arguments)
    except ValidationError:
        return False
    return True


def bench_actions(threads: int, reply_tokens: int) -> dict[str, object]:
    instruction = (TASK / "instruction.md").read_text(encoding="utf-8")
    base_url, model, stop = start_embedded_server(threads=threads)
    schemas = [tool.openai_schema() for tool in TOOLS.values()]
    results: dict[str, object] = {"threads": threads, "reply_tokens": reply_tokens}
    try:
        client = openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=900)
        for protocol in ("text", "native"):
            replies = []
            for steps in range(len(EPISODE) + 1):
                extra: dict[str, Any] = {"tools": schemas, "tool_choice": "required"} if protocol == "native" else {}
                sent = time.monotonic()
                reply = client.chat.completions.create(
                    model=model, max_tokens=reply_tokens, messages=conversation(protocol, steps, instruction), **extra
                )
                latency = time.monotonic() - sent
                assert reply.usage is not None
                action = reply_action(protocol, reply.choices[0].message)
                replies.append(
                    {
                        "after_steps": steps,
                        "prompt_tokens": reply.usage.prompt_tokens,
                        "completion_tokens": reply.usage.completion_tokens,
                        "latency_s": round(latency, 2),
                        "action": action[0] if action else None,
                        "valid_action": is_valid_action(action),
                    }
                )
                print(protocol, replies[-1], flush=True)
            results[protocol] = {
                "replies": replies,
                "median_latency_s": statistics.median(r["latency_s"] for r in replies),
                "mean_completion_tokens": round(statistics.mean(r["completion_tokens"] for r in replies), 1),
                "action_share": round(sum(r["valid_action"] for r in replies) / len(replies), 2),
            }
    finally:
        stop()
    results["load_average_1_5_15min"] = [round(load, 2) for load in os.getloadavg()]
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=["speed", "actions"], nargs="?", default="speed")
    parser.add_argument("--threads", type=int, nargs="+", default=None)
    parser.add_argument("--requests", type=int, default=3)
    parser.add_argument("--reply-tokens", type=int, default=160, help="the cap the plugin gives the embedded model")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.what == "speed":
        runs = [bench_speed(threads, args.requests) for threads in args.threads or [1, 2]]
    else:
        runs = [bench_actions(threads, args.reply_tokens) for threads in args.threads or [1]]
    text = json.dumps({"cpus": os.cpu_count(), "runs": runs}, indent=1)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
