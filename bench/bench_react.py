"""Benchmark of the react agent's harness overhead per LLM step, against the scripted server.

Run: ``python bench/bench_react.py [--steps 200] [--repeats 1]``. Prints a table and writes JSON
to ``bench/results/``.

The scripted server (tests/scripted_llm.py, a real socket on 127.0.0.1) answers each request at
once with one tool call (`think`, then `finish`), with usage numbers that grow as a real prompt
would. The server stamps when it has read each request and when it has written its answer, so:

* server response time (the baseline, same run): answer written − request read, per request;
  this stands for the model's own latency, which the harness does not control.
* harness overhead per step: next request read − previous answer written. Everything between the
  model's answer and the next question: the openai client parsing the answer, accounting, the
  trajectory and message log lines, env.step (validation, the tool, the trajectory), the context
  bookkeeping, and the client building and sending the next request over loopback.
* bare client floor: the same gap for the openai client sending the agent's very requests again
  (rebuilt from its message log) in a loop with nothing in between: what any client of this SDK
  pays for these bodies, so overhead minus floor is the agent's own bookkeeping and env.step.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import openai

from pytest_innovator.agents import run_episode
from pytest_innovator.agents.react import ReactAgent, read_requests
from pytest_innovator.env import Limits, ResearchEnv
from pytest_innovator.task import load_task
from pytest_innovator.workspace import LocalWorkspace
from tests.scripted_llm import ScriptedLLMServer

RESULTS_DIR = Path(__file__).with_name("results")
HEAD_TOKENS = 2400
TOKENS_PER_STEP = 60


def transcript(steps: int) -> dict[str, Any]:
    exchanges = []
    for step in range(steps):
        call = (
            {"name": "finish", "arguments": {"summary": "done"}}
            if step == steps - 1
            else {
                "name": "think",
                "arguments": {
                    "thought": f"step {step}: the loss went down to {1 / (step + 1):.4f}; "
                    "keep the learning rate and check again"
                },
            }
        )
        exchanges.append(
            {
                "respond": {
                    "tool_calls": [call],
                    "usage": {"prompt_tokens": HEAD_TOKENS + TOKENS_PER_STEP * step, "completion_tokens": 40},
                }
            }
        )
    return {"model": "bench-model", "exchanges": exchanges}


def gaps_ms(server: ScriptedLLMServer) -> tuple[list[float], list[float]]:
    """(harness gaps between an answer and the next request, server response times), in ms."""
    requests = server.requests
    gaps = [
        (after.received_at - before.answered_at) * 1000
        for before, after in itertools.pairwise(requests)
        if before.answered_at is not None
    ]
    served = [(r.answered_at - r.received_at) * 1000 for r in requests if r.answered_at is not None]
    return gaps, served


def run_agent(
    steps: int, tmp: Path
) -> tuple[list[float], list[float], list[list[dict[str, Any]]], list[dict[str, Any]]]:
    task = load_task(REPO / "fixtures" / "tasks" / "number")
    with ScriptedLLMServer(transcript(steps)) as server:
        workspace, _ = LocalWorkspace.create(task, tmp / "run")
        env = ResearchEnv(task, workspace, tmp / "run", Limits(36000, steps + 10, 3), agent_name="bench")
        agent = ReactAgent({"base_url": server.base_url, "model": "bench-model"})
        try:
            result = run_episode(agent, env)
        finally:
            workspace.close()
        assert result.end_reason == "finished" and result.steps == steps, result
        assert server.failures == [], server.failures
        gaps, served = gaps_ms(server)
        requests = read_requests(tmp / "run" / "llm_messages.jsonl")
        tools = server.requests[-1].body["tools"]
    return gaps, served, requests, tools


def run_bare_client(
    requests: list[list[dict[str, Any]]], tools: list[dict[str, Any]]
) -> tuple[list[float], list[float]]:
    with ScriptedLLMServer(transcript(len(requests))) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="bench", max_retries=0)
        for messages in requests:
            client.chat.completions.create(
                model="bench-model", messages=[], extra_body={"messages": messages, "tools": tools}
            )
        return gaps_ms(server)


def sdk_transform_ms(messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> float | None:
    """What the SDK's typed-parameter walk would add per call for this conversation (the agent
    avoids it by sending messages and tools in extra_body). Uses an internal of the SDK."""
    try:
        from openai._utils._transform import maybe_transform
        from openai.types.chat import completion_create_params
    except ImportError:
        return None
    params = {"model": "bench-model", "messages": messages, "tools": tools}
    started = time.perf_counter()
    for _ in range(5):
        maybe_transform(params, completion_create_params.CompletionCreateParamsNonStreaming)
    return (time.perf_counter() - started) / 5 * 1000


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[round(fraction * (len(ordered) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    gaps, served, bare_gaps = [], [], []
    requests: list[list[dict[str, Any]]] = []
    tools: list[dict[str, Any]] = []
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            run_gaps, run_served, requests, tools = run_agent(args.steps, Path(tmp))
        gaps += run_gaps
        served += run_served
        bare_gaps += run_bare_client(requests, tools)[0]
    messages = requests[-1]
    transform = sdk_transform_ms(messages, tools)
    result = {
        "benchmark": "react_step_overhead",
        "steps": args.steps,
        "repeats": args.repeats,
        "overhead_ms_median": statistics.median(gaps),
        "overhead_ms_p95": percentile(gaps, 0.95),
        "server_ms_median": statistics.median(served),
        "server_ms_p95": percentile(served, 0.95),
        "bare_client_ms_median": statistics.median(bare_gaps),
        "bare_client_ms_p95": percentile(bare_gaps, 0.95),
        "final_messages": len(messages),
        "sdk_transform_ms_at_final_size": transform,
        "openai": openai.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "load_average_1m_at_end": os.getloadavg()[0],
    }
    print(
        f"{args.steps} react steps against the scripted server ({args.repeats} run(s); "
        f"the last request held {len(messages)} messages and {len(tools)} tools)"
    )
    print(
        f"  harness overhead per step : {result['overhead_ms_median']:7.2f} ms median, "
        f"{result['overhead_ms_p95']:7.2f} ms p95"
    )
    print(
        f"  server response (baseline): {result['server_ms_median']:7.2f} ms median, "
        f"{result['server_ms_p95']:7.2f} ms p95"
    )
    print(
        f"  bare openai client floor  : {result['bare_client_ms_median']:7.2f} ms median, "
        f"{result['bare_client_ms_p95']:7.2f} ms p95"
    )
    if transform is not None:
        print(f"  SDK typed-parameter walk avoided: {transform:.1f} ms per call at {len(messages)} messages")
    RESULTS_DIR.mkdir(exist_ok=True)
    out = RESULTS_DIR / f"bench_react-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(result, indent=1))
    print(f"  (load average {result['load_average_1m_at_end']:.1f} on {os.cpu_count()} CPUs)")
    print(f"written {out}")


if __name__ == "__main__":
    main()
