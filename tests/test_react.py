"""The react agent against a scripted OpenAI-compatible server on a real socket, with the real
openai client: each scenario's transcript is under fixtures/llm/."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pytest_innovator.agents import load_agent, run_episode
from pytest_innovator.agents.context import SNAPSHOT_MARKER, Context, EpisodeFacts, parse_summary
from pytest_innovator.agents.react import DEFAULT_REPLY_TOKENS, RESUMED_NOTE, ReactAgent, ReactConfig, read_requests
from pytest_innovator.agents.text_protocol import NUDGE, TextAction, parse_action
from pytest_innovator.env import ResearchEnv
from pytest_innovator.ledger import EvalLedger
from pytest_innovator.llm.client import LLMClient, Price, RetryPolicy, load_price_table, price_for
from pytest_innovator.llm.probe import PROBE_TOOL_NAME
from pytest_innovator.results import EpisodeResult
from pytest_innovator.trajectory import read_trajectory

from .conftest import FIXTURES
from .scripted_llm import ScriptedLLMServer
from .test_env import make_env
from .test_plugin import add_task, junit_properties

pytest_plugins = ["pytester"]

PRICES = FIXTURES / "llm" / "prices.toml"
FAST = {"llm_backoff": 0.01, "llm_retries": 3}
NATIVE = ("--innovator-tool-protocol", "native")


@pytest.fixture
def scripted() -> Iterator[Callable[[str | dict[str, Any]], ScriptedLLMServer]]:
    servers: list[ScriptedLLMServer] = []

    def start(transcript: str | dict[str, Any]) -> ScriptedLLMServer:
        servers.append(ScriptedLLMServer(transcript).start())
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


@dataclass
class Episode:
    result: EpisodeResult
    env: ResearchEnv
    server: ScriptedLLMServer
    agent: ReactAgent


@pytest.fixture
def episode(
    scripted: Callable[[str | dict[str, Any]], ScriptedLLMServer], number_task_dir: Path, tmp_path: Path
) -> Iterator[Callable[..., Episode]]:
    """Run the react agent on the number task against a transcript (native tool calls unless
    `tool_protocol` says otherwise: the transcripts script the loop, the probe is tested apart)."""
    envs: list[ResearchEnv] = []

    def run(transcript: str | dict[str, Any], **options: Any) -> Episode:
        server = scripted(transcript)
        name = transcript if isinstance(transcript, str) else "inline"
        env = make_env(number_task_dir, tmp_path / f"run-{len(envs)}-{name}")  # one dir per episode
        envs.append(env)
        agent = load_agent(
            "react",
            {
                "base_url": server.base_url,
                "model": "scripted-model",
                "price_table": str(PRICES),
                "tool_protocol": "native",
                **FAST,
                **options,
            },
        )
        assert isinstance(agent, ReactAgent)
        return Episode(run_episode(agent, env), env, server, agent)

    yield run
    for env in envs:
        env.workspace.close()


def events(env: ResearchEnv, name: str) -> list[dict[str, Any]]:
    return [r for r in read_trajectory(env.run_dir / "trajectory.jsonl") if r.get("event") == name]


def steps(env: ResearchEnv) -> list[dict[str, Any]]:
    return [r for r in read_trajectory(env.run_dir / "trajectory.jsonl") if r["type"] == "step"]


# --- scenarios, driven directly ----------------------------------------------------------------


def test_full_episode_scores_80_and_records_every_call(episode: Callable[..., Any]) -> None:
    e = episode("number_success")
    e.server.assert_transcript_done()
    assert (e.result.end_reason, e.result.score_final, e.result.evals_used) == ("finished", 80.0, 1)
    # Two calls in one reply ran in order: write, then evaluate (which saw the new answer).
    assert [s["tool"] for s in steps(e.env)] == ["read_file", "write_file", "evaluate", "finish"]
    assert e.result.agent_properties == {
        "model": "scripted-model",
        "tool_protocol": "native",
        "llm_calls": 3,
        "replies": 3,
        "action_replies": 3,
        "tokens_in": 3900,
        "tokens_out": 90,
        "cost_usd": pytest.approx((3900 * 2 + 90 * 10) / 1e6),
    }
    calls = events(e.env, "llm_call")
    assert [(c["model"], c["tokens_in"], c["tokens_out"], c["attempts"]) for c in calls] == [
        ("scripted-model", 1200, 30, 1),
        ("scripted-model", 1300, 40, 1),
        ("scripted-model", 1400, 20, 1),
    ]
    assert all(c["latency_s"] > 0 for c in calls)
    # The message log rebuilds exactly what the server received.
    assert read_requests(e.env.run_dir / "llm_messages.jsonl") == [r.messages for r in e.server.requests]


def test_malformed_arguments_become_observations_the_model_corrects(episode: Callable[..., Any]) -> None:
    e = episode("malformed_arguments")
    e.server.assert_transcript_done()
    assert (e.result.end_reason, e.result.score_final) == ("finished", 80.0)
    assert [s["ok"] for s in steps(e.env)] == [False, False, True, True]


def test_reply_without_tool_call_gets_a_nudge(episode: Callable[..., Any]) -> None:
    e = episode("no_tool_call")
    e.server.assert_transcript_done()
    assert (e.result.end_reason, e.result.score_final, e.result.agent_properties["llm_calls"]) == ("finished", 80.0, 2)


def test_after_the_same_thought_twice_think_is_not_offered(episode: Callable[..., Episode]) -> None:
    think = {"tool_calls": [{"name": "think", "arguments": {"thought": "the best way is to..."}}]}
    other = {"tool_calls": [{"name": "think", "arguments": {"thought": "something new"}}]}
    finish = {"tool_calls": [{"name": "finish", "arguments": {}}]}
    e = episode({"exchanges": [{"respond": r} for r in (think, think, other, other, finish)]})
    e.server.assert_transcript_done()
    offered = [{tool["function"]["name"] for tool in r.body["tools"]} for r in e.server.requests]
    assert ["think" in names for names in offered] == [True, True, False, True, False]
    assert all("finish" in names for names in offered)


def test_rate_limit_is_retried(episode: Callable[..., Any]) -> None:
    e = episode("rate_limited")
    e.server.assert_transcript_done()
    assert (e.result.end_reason, e.result.score_final) == ("finished", 80.0)
    [call] = events(e.env, "llm_call")
    assert (call["attempts"], call["faults"]) == (2, ["HTTP 429"])
    assert e.result.agent_properties["llm_calls"] == 1  # a refused attempt is not a call


def test_dropped_connections_are_retried(episode: Callable[..., Any]) -> None:
    e = episode("dropped_connection")
    e.server.assert_transcript_done()
    assert (e.result.end_reason, e.result.score_final) == ("finished", 80.0)
    [call] = events(e.env, "llm_call")
    assert call["attempts"] == 3 and all(f.startswith("connection failed") for f in call["faults"])


def test_timeout_is_retried(episode: Callable[..., Any]) -> None:
    e = episode("timeout", llm_timeout=0.5)
    e.server.assert_transcript_done()
    assert (e.result.end_reason, e.result.score_final) == ("finished", 80.0)
    [call] = events(e.env, "llm_call")
    assert (call["attempts"], call["faults"]) == (2, ["timeout"])
    assert steps(e.env)[0]["arguments"] == json.dumps({"path": "answer.txt", "content": "0.9"})


def test_persistent_server_error_ends_with_agent_error_and_final_evaluation(episode: Callable[..., Any]) -> None:
    e = episode("persistent_500")
    e.server.assert_transcript_done()  # 1 answer + 1 attempt + 3 retries
    assert e.result.end_reason == "agent_error"
    assert (e.result.final_status, e.result.score_final) == ("scored", 80.0)  # what the agent wrote was graded
    [error] = events(e.env, "llm_error")
    assert "failed 4 times in a row (HTTP 500, HTTP 500, HTTP 500)" in error["error"]
    assert [ev.kind for ev in EvalLedger.load(e.env.run_dir / "ledger.json").evaluations] == ["final"]


def test_context_overflow_is_summarised(episode: Callable[..., Any]) -> None:
    e = episode("context_overflow", context_tokens=3000)
    e.server.assert_transcript_done()  # the checks: the summariser saw the old turn; the next request
    assert (e.result.end_reason, e.result.score_final) == ("finished", 80.0)  # held the snapshot, not the turn
    summarise, act = e.server.requests[2], e.server.requests[3]
    assert "tools" not in summarise.body
    assert [m["role"] for m in act.messages] == ["system", "user", "user", "assistant", "tool"]
    assert act.messages[1]["content"].startswith("# Task\n\n# Write the right number")
    assert act.messages[2]["content"].startswith(SNAPSHOT_MARKER)
    [summary] = events(e.env, "context_summarised")
    assert summary["tokens_after"] < summary["tokens_before"] and summary["turns_summarised"] == 1
    assert [c["purpose"] for c in events(e.env, "llm_call")] == ["act", "act", "summarise", "act"]
    requests = read_requests(e.env.run_dir / "llm_messages.jsonl")
    assert requests[-1] == act.messages


def test_context_refused_by_the_server_lowers_the_budget_and_summarises(episode: Callable[..., Episode]) -> None:
    e = episode("server_context_overflow")
    e.server.assert_transcript_done()
    assert (e.result.end_reason, e.result.score_final) == ("finished", 80.0)
    [overflow] = events(e.env, "context_overflow")
    assert "maximum context length is 6144" in overflow["error"] and overflow["budget_tokens"] < 7000
    assert e.agent.context is not None and e.agent.context.budget_tokens == overflow["budget_tokens"]


def test_a_model_that_never_acts_is_stopped(episode: Callable[..., Episode]) -> None:
    e = episode("no_action")
    e.server.assert_transcript_done()
    assert (e.result.end_reason, e.result.steps, e.result.agent_properties["llm_calls"]) == ("agent_returned", 0, 5)
    assert events(e.env, "no_action")[0]["replies"] == 5


def test_cost_limit_ends_the_episode_before_the_reply_is_acted_on(episode: Callable[..., Any]) -> None:
    e = episode("cost_limit", max_cost=0.005)
    e.server.assert_transcript_done()
    assert e.result.end_reason == "cost_limit"
    assert e.result.score_final == 80.0  # the second reply would have written 0.2
    assert e.result.agent_properties["cost_usd"] == pytest.approx(0.0057)
    [limit] = events(e.env, "cost_limit")
    assert limit["max_cost"] == 0.005


def test_token_limit_ends_the_episode(episode: Callable[..., Any]) -> None:
    e = episode("cost_limit", max_tokens=1230)  # the first call uses 1200 + 30
    assert e.result.end_reason == "cost_limit" and e.result.agent_properties["llm_calls"] == 1
    assert len(e.server.requests) == 1


def test_text_protocol_by_option(episode: Callable[..., Any]) -> None:
    e = episode("text_protocol", tool_protocol="text")
    e.server.assert_transcript_done()
    assert (e.result.end_reason, e.result.score_final) == ("finished", 80.0)
    calls = events(e.env, "llm_call")
    assert all(c["usage_estimated"] for c in calls) and e.result.agent_properties["tokens_in"] > 0


def test_reply_tokens_caps_every_request(episode: Callable[..., Any]) -> None:
    capped = episode("number_success", reply_tokens=160)
    assert [r.body.get("max_tokens") for r in capped.server.requests] == [160, 160, 160]
    default = episode("number_success")
    assert [r.body.get("max_tokens") for r in default.server.requests] == [DEFAULT_REPLY_TOKENS] * 3
    assert all(r.body["tool_choice"] == "required" for r in default.server.requests)


def test_text_protocol_is_detected_when_the_server_rejects_tools(episode: Callable[..., Any]) -> None:
    e = episode("tools_rejected", tool_protocol="auto")
    e.server.assert_transcript_done()
    assert (e.result.end_reason, e.result.score_final) == ("finished", 80.0)
    probed, switch = events(e.env, "tool_protocol")  # the probe was answered, the real request refused
    assert probed["protocol"] == "native" and switch["protocol"] == "text"
    assert "enable-auto-tool-choice" in switch["reason"]


def test_native_protocol_does_not_switch(episode: Callable[..., Any]) -> None:
    e = episode("tools_rejected", tool_protocol="native")
    assert e.result.end_reason == "agent_error" and len(e.server.requests) == 1
    assert "rejected native tool calls" in events(e.env, "llm_error")[0]["error"]


WRITE = {"name": "write_file", "arguments": {"path": "answer.txt", "content": "0.9"}}
FINISH = {"name": "finish", "arguments": {}}
REPLIES_BY_PROTOCOL = {
    "native": [{"tool_calls": [WRITE]}, {"tool_calls": [FINISH]}],
    "json_schema": [{"content": json.dumps(WRITE)}, {"content": json.dumps(FINISH)}],
    "text": [
        {"content": f"```json\n{json.dumps({'tool': c['name'], 'arguments': c['arguments']})}\n```"}
        for c in (WRITE, FINISH)
    ],
}


@pytest.mark.parametrize(
    ("enforces", "protocol", "probes"),
    [
        (["tools", "response_format"], "native", 1),
        (["tools"], "native", 1),
        (["response_format"], "json_schema", 2),
        ([], "text", 2),
    ],
)
def test_the_protocol_is_what_the_endpoint_enforces(
    episode: Callable[..., Episode], enforces: list[str], protocol: str, probes: int
) -> None:
    transcript = {
        "model": "scripted-model",
        "enforces": enforces,
        "exchanges": [{"respond": reply} for reply in REPLIES_BY_PROTOCOL[protocol]],
    }
    e = episode(transcript, tool_protocol="auto")
    e.server.assert_transcript_done()
    assert (e.result.end_reason, e.result.score_final) == ("finished", 80.0)
    assert len(e.server.probes) == probes
    [chosen] = events(e.env, "tool_protocol")
    assert chosen["protocol"] == protocol
    properties = e.result.agent_properties
    assert (properties["tool_protocol"], properties["replies"], properties["action_replies"]) == (protocol, 2, 2)
    assert [c["purpose"] for c in events(e.env, "llm_call")] == ["probe"] * probes + ["act", "act"]
    first = e.server.requests[0].body
    assert ("tools" in first, first.get("tool_choice"), "response_format" in first) == {
        "native": (True, "required", False),
        "json_schema": (False, None, True),
        "text": (False, None, False),
    }[protocol]
    if protocol == "json_schema":  # the schema offers every tool of the episode
        offered = [c["properties"]["name"]["const"] for c in first["response_format"]["json_schema"]["schema"]["anyOf"]]
        assert {"write_file", "finish", "evaluate"} <= set(offered) and PROBE_TOOL_NAME not in offered
        assert '"name": "<tool name>"' in first["messages"][0]["content"]


def test_an_endpoint_is_probed_once_per_run(
    episode: Callable[..., Episode], number_task_dir: Path, tmp_path: Path
) -> None:
    transcript = {"enforces": ["response_format"], "exchanges": [{"respond": {"content": json.dumps(FINISH)}}]}
    e = episode(transcript, tool_protocol="auto")
    again = ReactAgent({"base_url": e.server.base_url, "model": "scripted-model", **FAST})
    env = make_env(number_task_dir, tmp_path / "again")
    try:
        again._probe(env)
    finally:
        env.workspace.close()
    assert again.protocol == "json_schema" and len(e.server.probes) == 2  # no new probe
    [remembered] = events(env, "tool_protocol")
    assert "probed earlier" in remembered["reason"]


def test_a_call_never_outlives_the_items_working_time(
    scripted: Callable[[Any], ScriptedLLMServer], number_task_dir: Path, tmp_path: Path
) -> None:
    server = scripted({"exchanges": [{"respond": {"delay_s": 60, "tool_calls": [FINISH]}}]})
    env = make_env(number_task_dir, tmp_path / "run", time_limit_s=2.0)
    try:
        agent = ReactAgent({"base_url": server.base_url, "tool_protocol": "native", "llm_timeout": 600, **FAST})
        result = run_episode(agent, env)
    finally:
        env.workspace.close()
    assert result.end_reason == "time_limit" and len(server.requests) == 1  # not retried past the limit
    [error] = events(env, "llm_error")
    given = float(error["error"].split("within ")[1].split(" s")[0])
    assert given <= 2.0


def test_the_reply_cap_parameter_suits_the_endpoint() -> None:
    openai_api = LLMClient(model="gpt-5", base_url=None, api_key="sk-x")
    local = LLMClient(model="m", base_url="http://127.0.0.1:9/v1", api_key="x")
    assert openai_api.reply_cap(100) == {"max_completion_tokens": 100}
    assert local.reply_cap(100) == {"max_tokens": 100}


def test_model_is_taken_from_the_server_when_not_named(
    scripted: Callable[[str], ScriptedLLMServer], number_task_dir: Path, tmp_path: Path
) -> None:
    server = scripted("no_tool_call")
    env = make_env(number_task_dir, tmp_path / "run")
    try:
        agent = load_agent("react", {"base_url": server.base_url, **FAST})
        result = run_episode(agent, env)
    finally:
        env.workspace.close()
    assert result.agent_properties["model"] == "scripted-model"
    assert all(r.body["model"] == "scripted-model" for r in server.requests)
    assert result.agent_properties["cost_usd"] == 0  # no price for it without the table


def test_state_dict_round_trips_without_the_key(
    episode: Callable[..., Episode], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-state-secret-7f3a")
    e = episode("context_overflow", context_tokens=3000)
    state = json.loads(json.dumps(e.agent.state_dict()))
    assert "sk-state-secret-7f3a" not in json.dumps(state)
    assert state["context"]["summary"].startswith(SNAPSHOT_MARKER)
    assert state["usage"]["calls"] == 4 and state["facts"]["files"] == {"answer.txt": "wrote at step 3"}
    fresh = ReactAgent({"base_url": e.server.base_url, "context_tokens": 3000})
    fresh.load_state_dict(state)
    assert fresh.state_dict() == state
    assert fresh.model == "scripted-model" and fresh.properties() == e.agent.properties()


def test_state_saved_in_the_middle_of_a_turn_is_repaired_on_load(episode: Callable[..., Episode]) -> None:
    e = episode("number_success")
    state = e.agent.state_dict()
    messages = state["context"]["messages"]
    # Saved while the second reply's first call (write_file) ran: neither of its results is kept.
    second_reply = [i for i, m in enumerate(messages) if m["role"] == "assistant"][1]
    state["context"]["messages"] = messages[: second_reply + 1]
    agent = ReactAgent({"base_url": e.server.base_url})
    agent.load_state_dict(state)
    assert agent.context is not None
    repaired = agent.context.messages[second_reply + 1 :]
    assert [m["tool_call_id"] for m in repaired] == [c["id"] for c in messages[second_reply]["tool_calls"]]
    assert all(m["content"] == RESUMED_NOTE for m in repaired)


# --- units -------------------------------------------------------------------------------------


def test_backoff_grows_with_jitter_and_is_bounded() -> None:
    policy = RetryPolicy(retries=8, base_delay_s=1.0, max_delay_s=10.0)
    for attempt, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (5, 10.0), (8, 10.0)]:
        delays = {policy.delay(attempt) for _ in range(50)}
        assert all(ceiling / 2 <= d <= ceiling for d in delays) and len(delays) > 1
    assert policy.delay(3, retry_after_s=2.5) == 2.5
    assert policy.delay(3, retry_after_s=600) == 10.0


def test_price_table_extends_and_matches_by_prefix(tmp_path: Path) -> None:
    table = load_price_table(PRICES)
    assert table == {"scripted-model": Price(2.0, 10.0)}
    json_table = tmp_path / "prices.json"
    json_table.write_text(json.dumps({"gpt-4o": {"input": 1, "output": 2}, "*": {"input": 0, "output": 0}}))
    prices = {"gpt-4o-mini": Price(0.15, 0.6), **load_price_table(json_table)}
    assert price_for("gpt-4o-2024-08-06", prices) == Price(1, 2)
    assert price_for("openai/gpt-4o-mini", prices) == Price(0.15, 0.6)
    assert price_for("my-local-model", prices) == Price(0, 0)
    assert price_for("my-local-model", {}) is None
    assert Price(2.0, 10.0).cost(1_000_000, 100_000) == pytest.approx(3.0)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ('{"gpt-4o": {"input": 1}}', "must have exactly 'input' and 'output'"),
        ('{"gpt-4o": {"input": "cheap", "output": 1}}', "must be numbers"),
        ('{"gpt-4o": {"input": -1, "output": 1}}', "must not be negative"),
    ],
)
def test_bad_price_table_says_what_to_fix(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "prices.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        load_price_table(path)


def test_text_protocol_parses_one_action() -> None:
    reply = 'First I look.\n```json\n{"tool": "read_file", "arguments": {"path": "a.txt"}}\n```'
    assert parse_action(reply) == TextAction("read_file", {"path": "a.txt"})
    assert parse_action("no block here") == NUDGE
    assert "not valid JSON" in str(parse_action('```json\n{"tool": \n```'))
    assert "unknown keys (args)" in str(parse_action('```\n{"tool": "x", "args": {}}\n```'))
    assert parse_action('```\n{"tool": "x", "arguments": [1]}\n```') == TextAction("x", "[1]")
    # A reply cut off at its token cap before the closing fence still holds its action.
    cut_off = 'I read it.\n```json\n{"tool": "read_file", "arguments": {"path": "a.txt"}}\n'
    assert parse_action(cut_off) == TextAction("read_file", {"path": "a.txt"})
    assert "not valid JSON" in str(parse_action('```json\n{"tool": "read_file", "argu'))


def test_summary_sections_are_parsed() -> None:
    assert parse_summary("## Findings\n- a\n## Next steps\n- b") == ("- a", "- b")
    assert parse_summary("just prose") == ("just prose", "(none recorded)")


def recent_and_old(budget_tokens: int, keep_turns: int) -> tuple[list[str], list[str]]:
    head = [{"role": "system", "content": "s"}, {"role": "user", "content": "instruction"}]
    context = Context(head, budget_tokens=budget_tokens, keep_turns=keep_turns)
    for turn in range(4):
        context.append(
            {
                "role": "assistant",
                "content": f"turn {turn}",
                "tool_calls": [
                    {"id": f"c{turn}", "type": "function", "function": {"name": "think", "arguments": "{}"}}
                ],
            }
        )
        context.append({"role": "tool", "tool_call_id": f"c{turn}", "content": "ok"})
    parts = context.split()
    assert parts is not None and context.messages[:2] == head
    old, recent = parts
    return (
        [m["content"] for m in old if m["role"] == "assistant"],
        [m["content"] for m in recent if m["role"] == "assistant"],
    )


def test_split_keeps_recent_turns_by_count_and_by_size() -> None:
    assert recent_and_old(budget_tokens=10_000, keep_turns=2) == (["turn 0", "turn 1"], ["turn 2", "turn 3"])
    # About 33 tokens a turn, a 100-token budget: half of what the head leaves holds one turn.
    assert recent_and_old(budget_tokens=100, keep_turns=4) == (["turn 0", "turn 1", "turn 2"], ["turn 3"])


def test_facts_record_files_and_evaluations() -> None:
    facts = EpisodeFacts(goal="g")
    facts.note_step(3, "write_file", {"path": "a.py", "content": ""}, True, "wrote")
    facts.note_step(4, "edit_file", {"path": "b.py"}, False, "not found")
    facts.note_step(5, "evaluate", {}, True, "score 40.00/100 (...)\nmessage")
    assert facts.files == {"a.py": "wrote at step 3"} and facts.evaluations == ["step 5: score 40.00/100 (...)"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"base_url": "http://127.0.0.1:9/v1", "tool_protocol": "smoke"}, "must be auto, native, json_schema or text"),
        (
            {"base_url": "http://127.0.0.1:9/v1", "context_tokens": "many"},
            "--innovator-context-tokens must be a whole number",
        ),
        (
            {"model": "gpt-4o", "api_key_env": "INNOVATOR_NO_SUCH_KEY"},
            "set the environment variable INNOVATOR_NO_SUCH_KEY",
        ),
        ({"api_key_env": "INNOVATOR_TEST_KEY"}, "name the model with --innovator-model"),
        ({"base_url": "http://127.0.0.1:9/v1", "model": "local", "max_cost": 1}, "has no price"),
    ],
)
def test_bad_options_say_what_to_change(options: dict[str, Any], message: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INNOVATOR_TEST_KEY", "sk-x")
    with pytest.raises(ValueError, match=message):
        ReactAgent(options)


def test_config_treats_zero_limits_as_none() -> None:
    config = ReactConfig.from_options({"max_tokens": 0, "max_cost": 0.0, "llm_retries": "2"})
    assert (config.max_tokens, config.max_cost, config.llm_retries) == (None, None, 2)


# --- through pytest, with JUnit XML --------------------------------------------------------------


def run_suite(pytester: pytest.Pytester, server: ScriptedLLMServer, *args: str) -> pytest.RunResult:
    add_task(pytester.path / "suite", "alpha")
    return pytester.runpytest_subprocess(
        "suite",
        "--innovator-agent",
        "react",
        "--innovator-base-url",
        server.base_url,
        "--innovator-price-table",
        str(PRICES),
        "--innovator-llm-backoff",
        "0.01",
        "--innovator-llm-retries",
        "3",
        "--junitxml",
        "out.xml",
        *args,
    )


def test_pytest_run_reports_llm_properties_and_never_writes_the_key(
    pytester: pytest.Pytester, scripted: Callable[[str], ScriptedLLMServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    key = "sk-innovator-test-key-4b1d9e"
    monkeypatch.setenv("INNOVATOR_TEST_KEY", key)
    server = scripted("number_success")
    result = run_suite(
        pytester, server, "--innovator-model", "scripted-model", "--innovator-api-key-env", "INNOVATOR_TEST_KEY"
    )
    result.assert_outcomes(passed=1)
    server.assert_transcript_done()
    assert all(
        {k.lower(): v for k, v in r.headers.items()}["authorization"] == f"Bearer {key}" for r in server.requests
    )
    props = junit_properties(pytester.path / "out.xml")["alpha"]
    assert {
        k: props[k]
        for k in (
            "model",
            "tool_protocol",
            "llm_calls",
            "replies",
            "action_replies",
            "tokens_in",
            "tokens_out",
            "cost_usd",
            "end_reason",
            "score_final",
            "innovator_agent",
        )
    } == {
        "model": "scripted-model",
        "tool_protocol": "native",
        "llm_calls": "4",  # the probe and three replies
        "replies": "3",
        "action_replies": "3",
        "tokens_in": "3950",
        "tokens_out": "100",
        "cost_usd": "0.0089",
        "end_reason": "finished",
        "score_final": "80.0",
        "innovator_agent": "react@1[scripted-model]",
    }
    run_dir = Path(props["run_dir"])
    assert (run_dir / "llm_messages.jsonl").is_file()
    written = [p for p in [*pytester.path.rglob("*"), *run_dir.rglob("*")] if p.is_file()]
    assert len(written) > 5
    leaks = [p for p in written if key.encode() in p.read_bytes()]
    assert leaks == []
    assert key not in result.stdout.str() + result.stderr.str()


@pytest.mark.slow
def test_pytest_run_with_persistent_server_error(
    pytester: pytest.Pytester, scripted: Callable[[str], ScriptedLLMServer]
) -> None:
    server = scripted("persistent_500")
    result = run_suite(pytester, server, "--innovator-model", "scripted-model", "--innovator-pass-score", "90", *NATIVE)
    result.assert_outcomes(failed=1)
    server.assert_transcript_done()
    result.stdout.fnmatch_lines(["*final score 80.00 is below the pass score 90*ended by agent_error*"])
    props = junit_properties(pytester.path / "out.xml")["alpha"]
    assert (props["end_reason"], props["score_final"], props["final_status"], props["llm_calls"]) == (
        "agent_error",
        "80.0",
        "scored",
        "1",
    )


@pytest.mark.slow
def test_pytest_run_with_token_limit(pytester: pytest.Pytester, scripted: Callable[[str], ScriptedLLMServer]) -> None:
    server = scripted("cost_limit")
    result = run_suite(pytester, server, "--innovator-max-tokens", "2000", *NATIVE)  # model name from /v1/models
    result.assert_outcomes(passed=1)
    props = junit_properties(pytester.path / "out.xml")["alpha"]
    assert (
        props["end_reason"],
        props["score_final"],
        props["llm_calls"],
        props["tokens_in"],
        props["tokens_out"],
        props["model"],
    ) == ("cost_limit", "80.0", "2", "2500", "70", "scripted-model")


def test_bad_llm_option_is_a_usage_error(pytester: pytest.Pytester) -> None:
    add_task(pytester.path / "suite", "alpha")
    result = pytester.runpytest_subprocess("suite", "--innovator-agent", "react", "--innovator-tool-protocol", "json")
    result.stderr.fnmatch_lines(
        ["*invalid --innovator-tool-protocol 'json' (from command line*must be one of auto, native, json_schema, text*"]
    )
