"""The `react` agent: a ReAct loop over any OpenAI-compatible chat-completions endpoint.

Each turn the model sees the conversation and answers with an action, in the protocol its endpoint
enforces (found by probing it, see `llm.probe`): native tool calls with ``tool_choice: "required"``,
one JSON call per reply under a ``response_format`` JSON schema, or, where nothing is enforced, one
fenced JSON action per reply (the text protocol). The calls run in order through `env.step` and
their observations go back to it. The agent keeps the conversation within a token budget (see
`context`), retries passing faults of the endpoint (see `llm`) within the item's remaining working
time, stops at the token and cost limits, and records every call: a line per call in the
trajectory, and the full messages in ``llm_messages.jsonl`` of the run directory.

Options (a dict; the plugin fills it from ``--innovator-*``): model, base_url, api_key_env,
max_tokens, max_cost, tool_protocol (auto|native|json_schema|text), context_tokens, reply_tokens,
price_table, llm_timeout, llm_retries, llm_backoff, context_keep_turns.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

from ..env import ResearchEnv
from ..llm.client import (
    DEFAULT_PRICES,
    Completion,
    ContextOverflow,
    LLMClient,
    LLMError,
    OutOfTime,
    RetryPolicy,
    ToolsUnsupported,
    Usage,
    load_price_table,
)
from ..llm.probe import PROBE_MESSAGES, PROTOCOLS, call_response_format, probe_tool_protocol
from ..llm.tokens import estimate_tokens
from ..llm.tool_calls import CALL_FORMAT_RULES, describe_tools, parse_call
from ..rundir import RunDir
from . import text_protocol
from .context import Context, EpisodeFacts

STATE_VERSION = 1
MAX_IDLE_REPLIES = 5  # replies in a row without an action before the agent stops
OVERFLOW_BUDGET_SHARE = 0.75  # of the refused prompt's size, as the new budget
NO_KEY_PLACEHOLDER = "no-key"  # local servers (vLLM, llama.cpp) accept any key
# A reply's cap when none is given: room for reasoning and a long file, and no runaway generation
# (an uncapped vLLM reply ran to 6,604 tokens). Reasoning models may need more: --innovator-reply-tokens.
DEFAULT_REPLY_TOKENS = 4096

RESUMED_NOTE = (
    "[result not kept: the run was saved after this action and resumed; check its effect in the "
    "workspace before you go on]"
)
NATIVE_NUDGE = (
    "You replied without calling a tool. Every reply must call at least one tool: use think to "
    "reason, the file and session tools to work, evaluate to check, finish when done."
)
JSON_CALL_NUDGE = 'Your reply was not one whole JSON call. Reply with {"name": "<tool name>", "arguments": {...}}.'


SYSTEM_PROMPT = """You are a research agent. You work on one task in a workspace (a directory
with the task's files) and act only through the tools. Work like a careful researcher: read the
task and the files, plan, run experiments, check results, and leave the deliverables the task asks
for.

## How sessions work
- Shell commands run in sessions (create_session, then run_command). run_command returns when the
  command finishes or after `wait` seconds, whichever comes first; a command that is still
  running keeps running in its session while you do other things.
- Start long jobs (training, data processing) in their own session with a short `wait`, then poll:
  read_output(session, since=next_offset) shows exactly what was printed since your last read,
  session_status shows whether it is still running, and wait(seconds, session) sleeps until the
  command finishes or the time is up, whichever comes first.
- Do not kill or interrupt a healthy long run because it is slow. Impatience, killing runs that
  would have finished, is the failure most often seen in research agents. Stop a run only when its
  output shows it is broken, stuck or wrong, or when the remaining time cannot fit it.

## Evaluation and the end
- evaluate grades your current deliverables with the hidden grader. You have a limited number of
  evaluations; the final evaluation runs by itself when the episode ends, whatever ends it.
- The working time runs while you think and while commands run (grading does not count). Keep an
  eye on the remaining time and evaluations shown after each result.
- Call finish when your deliverables are final (or give_up)."""


@dataclass(frozen=True)
class ReactConfig:
    model: str = ""
    base_url: str = ""
    api_key_env: str = "OPENAI_API_KEY"
    max_tokens: int | None = None
    max_cost: float | None = None
    tool_protocol: str = "auto"
    context_tokens: int = 64000
    reply_tokens: int = 0  # each request's max_tokens; 0: DEFAULT_REPLY_TOKENS
    price_table: str = ""
    llm_timeout: float = 600.0
    llm_retries: int = 6
    llm_backoff: float = 1.0
    context_keep_turns: int = 4

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> ReactConfig:
        """Options as typed values or strings; None or "" means the default. Errors name the option."""
        defaults = cls()
        values: dict[str, Any] = {}
        for name, default in asdict(defaults).items():
            raw = options.get(name)
            if raw is None or raw == "":
                values[name] = default
                continue
            kind = type(default) if default is not None else (int if name == "max_tokens" else float)
            try:
                values[name] = kind(raw)
            except (TypeError, ValueError):
                what = "a whole number" if kind is int else "a number" if kind is float else "text"
                raise ValueError(f"react: {option_label(name)} must be {what}, got {raw!r}") from None
        config = cls(**values)
        if config.tool_protocol not in ("auto", *PROTOCOLS):
            raise ValueError(
                f"react: {option_label('tool_protocol')} must be auto, native, json_schema or text, "
                f"got {config.tool_protocol!r}"
            )
        for name in ("context_tokens", "llm_timeout", "llm_backoff", "context_keep_turns"):
            if not getattr(config, name) > 0:
                raise ValueError(f"react: {option_label(name)} must be positive")
        if config.reply_tokens < 0:
            raise ValueError(f"react: {option_label('reply_tokens')} must be 0 or more")
        if config.llm_retries < 0:
            raise ValueError(f"react: {option_label('llm_retries')} must be 0 or more")
        # A limit of 0 means no limit, like the other --innovator-max-* options.
        return cls(**{**asdict(config), "max_tokens": config.max_tokens or None, "max_cost": config.max_cost or None})


def option_label(name: str) -> str:
    """How the user set an option: its command-line flag, or the key of the options dict."""
    return f"option {name}" if name == "context_keep_turns" else f"--innovator-{name.replace('_', '-')}"


class MessageLog:
    """``llm_messages.jsonl``: per call, the messages added since the previous call (all of them
    after the context was summarised: ``context_reset``), and the reply. Never the API key."""

    def __init__(self, path: Path):
        self.path = path
        self._file: IO[str] = open(path, "a", encoding="utf-8")  # noqa: SIM115 (open for the episode)

    def write(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps(record, default=str) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def read_requests(path: Path) -> list[list[dict[str, Any]]]:
    """The full message list of every "act" request in a message log, rebuilt from the deltas."""
    requests: list[list[dict[str, Any]]] = []
    conversation: list[dict[str, Any]] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        if record["purpose"] != "act":
            continue
        conversation = record["messages"] if record["context_reset"] else conversation + record["messages"]
        requests.append(list(conversation))
        conversation = conversation + [assistant_message(record["reply"])]
    return requests


class ReactAgent:
    name = "react"
    version = "1"

    def __init__(self, options: Mapping[str, Any]):
        self.config = ReactConfig.from_options(options)
        prices = dict(DEFAULT_PRICES)
        if self.config.price_table:
            prices.update(load_price_table(self.config.price_table))
        api_key = os.environ.get(self.config.api_key_env, "")
        if not api_key:
            if not self.config.base_url:
                raise ValueError(
                    f"react: no API key: set the environment variable {self.config.api_key_env} "
                    "(or name another with --innovator-api-key-env), or point --innovator-base-url "
                    "at a server that needs none"
                )
            api_key = NO_KEY_PLACEHOLDER
        if not self.config.model and not self.config.base_url:
            raise ValueError(
                "react: name the model with --innovator-model (with --innovator-base-url, the "
                "first model the server lists is used when none is named)"
            )
        self.client = LLMClient(
            model=self.config.model,
            base_url=self.config.base_url or None,
            api_key=api_key,
            timeout_s=self.config.llm_timeout,
            prices=prices,
            retry=RetryPolicy(retries=self.config.llm_retries, base_delay_s=self.config.llm_backoff),
        )
        if self.config.model:
            self._check_priced()
        # None until the endpoint is probed (auto); a forced protocol is used as it is.
        self.protocol: str | None = None if self.config.tool_protocol == "auto" else self.config.tool_protocol
        self.context: Context | None = None
        self.facts: EpisodeFacts | None = None
        self.idle_replies = 0
        self.replies = 0  # the model's "act" replies ...
        self.action_replies = 0  # ... and those whose action ran
        self._logged_upto = 0  # messages of the context already in the message log
        self._log: MessageLog | None = None
        self._tools: list[dict[str, Any]] = []
        self._tools_tokens = 0
        self._last_steps: list[tuple[str, str]] = []  # the last two actions (tool, arguments), to spot a loop
        self._guidance: list[str] = []  # a person's guidance delivered with the current reply's steps

    @property
    def model(self) -> str:
        return self.client.model

    @property
    def reply_tokens(self) -> int:
        return self.config.reply_tokens or DEFAULT_REPLY_TOKENS

    def _check_priced(self) -> None:
        if self.config.max_cost and self.client.price is None:
            raise ValueError(
                f"react: --innovator-max-cost is set but model {self.model!r} has no price; "
                "add it to a table given with --innovator-price-table (see docs/agents.md)"
            )

    # --- the loop --------------------------------------------------------------------------

    def run(self, env: ResearchEnv) -> None:
        self._log = MessageLog(RunDir(env.run_dir).llm_messages)
        env.guidance_in_observation = False  # the model reads it as a user message (_add_guidance)
        try:
            if not self.model:
                models = self.client.list_models()
                if not models:
                    raise LLMError(
                        f"the server at {self.client.base_url} lists no models; name one with --innovator-model"
                    )
                self.client.model = models[0]
                self._check_priced()
            # The tools do not change within an episode, and building their schemas takes milliseconds.
            self._tools = env.tool_schemas()
            self._tools_tokens = estimate_tokens(json.dumps(self._tools))
            if self.protocol is None:
                self._probe(env)
            if self.context is None:
                self._start(env)
            self._loop(env)
        except OutOfTime as exc:
            # The call was given the item's remaining working time and used it all.
            env.trajectory.event("llm_error", step=env.steps, working_time_s=env.working_time_s, error=str(exc))
            env.end("time_limit")
        except LLMError as exc:
            env.trajectory.event("llm_error", step=env.steps, working_time_s=env.working_time_s, error=str(exc))
            env.end("agent_error")
        finally:
            self._log.close()
            self._log = None

    def _start(self, env: ResearchEnv) -> None:
        instruction = env.instruction()
        self.context = Context(
            [
                {"role": "system", "content": self._system_prompt(env)},
                {"role": "user", "content": f"# Task\n\n{instruction}\n\n{status_line(env)}"},
            ],
            budget_tokens=self.config.context_tokens,
            keep_turns=self.config.context_keep_turns,
        )
        self.facts = EpisodeFacts(goal=goal_of(instruction))

    def _probe(self, env: ResearchEnv) -> None:
        found = probe_tool_protocol(self.client, self.reply_tokens, env.remaining_time_s)
        for completion in found.replies:
            self._record(env, "probe", completion, PROBE_MESSAGES, reset=True, tools=None)
        self.protocol = found.protocol
        env.trajectory.event(
            "tool_protocol",
            step=env.steps,
            working_time_s=env.working_time_s,
            protocol=found.protocol,
            reason=found.reason,
        )

    def _system_prompt(self, env: ResearchEnv) -> str:
        if self.protocol == "text":
            return f"{SYSTEM_PROMPT}\n\n{text_protocol.system_section(self._tools)}"
        if self.protocol == "json_schema":
            return f"{SYSTEM_PROMPT}\n\n{describe_tools(self._tools)}\n\n{CALL_FORMAT_RULES}"
        return SYSTEM_PROMPT

    def _request_parameters(self, env: ResearchEnv) -> dict[str, Any]:
        """Each act request's parameters: the protocol's, the reply cap, and the time left."""
        parameters: dict[str, Any] = {"timeout_s": env.remaining_time_s, **self.client.reply_cap(self.reply_tokens)}
        if self.protocol == "native":
            parameters["tool_choice"] = "required"
        elif self.protocol == "json_schema":
            parameters["response_format"] = call_response_format(self._offered())
        return parameters

    def _loop(self, env: ResearchEnv) -> None:
        assert self.context is not None
        while not env.done:
            if env.remaining_time_s <= 0:
                env.end("time_limit")
                return
            if self._limit_reached(env):
                return
            if self.context.over_budget():
                self._compact(env)
            completion = self._ask(env)
            if self._limit_reached(env):  # the reply is paid for, but the limit comes first
                return
            if not self._act(env, completion):
                return

    def _limit_reached(self, env: ResearchEnv) -> bool:
        usage = self.client.usage
        tokens = usage.tokens_in + usage.tokens_out
        over_tokens = self.config.max_tokens is not None and tokens >= self.config.max_tokens
        over_cost = self.config.max_cost is not None and usage.cost_usd >= self.config.max_cost
        if over_tokens or over_cost:
            env.trajectory.event(
                "cost_limit",
                step=env.steps,
                working_time_s=env.working_time_s,
                tokens=tokens,
                cost_usd=round(usage.cost_usd, 6),
                max_tokens=self.config.max_tokens,
                max_cost=self.config.max_cost,
            )
            env.end("cost_limit")
        return over_tokens or over_cost

    def _ask(self, env: ResearchEnv) -> Completion:
        assert self.context is not None
        while True:
            messages = self.context.messages
            tools = self._offered() if self.protocol == "native" else None
            # The tools travel as schemas (native) or in the response format (json_schema).
            self.context.tools_tokens = self._tools_tokens if self.protocol != "text" else 0
            try:
                completion = self.client.complete(messages, tools, **self._request_parameters(env))
            except ToolsUnsupported as exc:
                if self.config.tool_protocol != "auto" or len(messages) > self.context.head_size:
                    raise
                self.protocol = "text"
                self.context.replace(0, {"role": "system", "content": self._system_prompt(env)})
                self._logged_upto = 0
                env.trajectory.event(
                    "tool_protocol", step=env.steps, working_time_s=env.working_time_s, protocol="text", reason=str(exc)
                )
                continue
            except ContextOverflow as exc:
                # The model's real context is smaller than the budget: lower the budget below what
                # was just refused, and summarise down to it.
                budget = int(min(self.context.budget_tokens, self.context.tokens()) * OVERFLOW_BUDGET_SHARE)
                env.trajectory.event(
                    "context_overflow",
                    step=env.steps,
                    working_time_s=env.working_time_s,
                    error=str(exc),
                    budget_tokens=budget,
                )
                self.context.budget_tokens = budget
                if self._compact(env) is None:
                    raise LLMError(
                        f"{exc}; nothing is left to summarise: lower --innovator-context-tokens "
                        "or use a model with a longer context"
                    ) from None
                continue
            sent = len(messages)
            self._record(
                env, "act", completion, messages[self._logged_upto :], reset=self._logged_upto == 0, tools=tools
            )
            self.context.append(assistant_message(completion.message))
            self.context.note_usage(sent, completion)
            self._logged_upto = len(self.context.messages)
            return completion

    def _compact(self, env: ResearchEnv) -> Completion | None:
        assert self.context is not None and self.facts is not None
        tokens_before = self.context.tokens()
        summarised = self.context.compact(
            self.client,
            self.facts,
            running_sessions(env),
            timeout_s=env.remaining_time_s,
            **self.client.reply_cap(self.reply_tokens),
        )
        if summarised is None:
            return None
        request, completion = summarised
        self._record(env, "summarise", completion, request, reset=True, tools=None)
        self._logged_upto = 0
        env.trajectory.event(
            "context_summarised",
            step=env.steps,
            working_time_s=env.working_time_s,
            tokens_before=tokens_before,
            tokens_after=self.context.tokens(),
            turns_summarised=self.context.turns_summarised,
        )
        return completion

    def _act(self, env: ResearchEnv, completion: Completion) -> bool:
        """Run the reply's actions; False when the agent should stop."""
        assert self.context is not None
        self.replies += 1
        if self.protocol in ("text", "json_schema"):
            if self.protocol == "text":
                action = text_protocol.parse_action(completion.content)
            else:
                call = parse_call(completion.content)
                action = text_protocol.TextAction(*call) if call else JSON_CALL_NUDGE
            if isinstance(action, str):
                return self._idle(env, {"role": "user", "content": action})
            self.idle_replies = 0
            self.action_replies += 1
            observation = self._step(env, action.tool, action.arguments)
            self.context.append(text_protocol.observation_message(action.tool, f"{observation}\n{status_line(env)}"))
            self._add_guidance()
            return True
        calls = completion.tool_calls
        if not calls:
            return self._idle(env, {"role": "user", "content": NATIVE_NUDGE})
        self.idle_replies = 0
        self.action_replies += 1
        for number, call in enumerate(calls, 1):
            if env.done:
                content = "not run: the episode ended with an earlier call of this reply"
            else:
                function = call.get("function") or {}
                content = str(self._step(env, str(function.get("name", "")), function.get("arguments") or ""))
                if number == len(calls) or env.done:
                    content += f"\n{status_line(env)}"
            self.context.append({"role": "tool", "tool_call_id": call.get("id", ""), "content": content})
        self._add_guidance()
        return True

    def _add_guidance(self) -> None:
        """A person's guidance delivered with this reply's observations, as the user messages it is
        (after the tool results: a tool message must follow its call)."""
        assert self.context is not None
        for text in self._guidance:
            self.context.append({"role": "user", "content": text})
        self._guidance = []

    def _idle(self, env: ResearchEnv, nudge: dict[str, Any]) -> bool:
        assert self.context is not None
        self.idle_replies += 1
        if self.idle_replies >= MAX_IDLE_REPLIES:
            env.trajectory.event(
                "no_action", step=env.steps, working_time_s=env.working_time_s, replies=self.idle_replies
            )
            return False
        self.context.append(nudge)
        return True

    def _offered(self) -> list[dict[str, Any]]:
        """The tools of the next request: all of them, except `think` after the same thought twice
        in a row. Under constrained decoding the model must then do something else (a small model
        otherwise repeats one thought until its time is up); a repeated command or poll is left
        alone, since waiting on a long job is what an agent should do."""
        if (
            len(self._last_steps) == 2
            and self._last_steps[0] == self._last_steps[1]
            and self._last_steps[0][0] == "think"
        ):
            return [tool for tool in self._tools if tool["function"]["name"] != "think"]
        return self._tools

    def _step(self, env: ResearchEnv, tool: str, arguments: dict[str, Any] | str) -> Any:
        assert self.facts is not None
        self._last_steps = [*self._last_steps[-1:], (tool, json.dumps(parse_arguments(arguments), sort_keys=True))]
        observation = env.step(tool, arguments)
        self._guidance += observation.data.get("guidance", [])
        self.facts.note_step(env.steps, tool, parse_arguments(arguments), observation.ok, observation.output)
        return observation

    def _record(
        self,
        env: ResearchEnv,
        purpose: str,
        completion: Completion,
        new_messages: list[dict[str, Any]],
        *,
        reset: bool,
        tools: list[dict[str, Any]] | None,
    ) -> None:
        usage = self.client.usage
        env.trajectory.event(
            "llm_call",
            step=env.steps,
            working_time_s=env.working_time_s,
            model=self.model,
            purpose=purpose,
            tokens_in=completion.tokens_in,
            tokens_out=completion.tokens_out,
            latency_s=round(completion.latency_s, 4),
            attempts=completion.attempts,
            faults=completion.faults,
            cost_usd=round(completion.cost_usd, 6),
            usage_estimated=completion.usage_estimated,
            finish_reason=completion.finish_reason,
        )
        if self._log is not None:
            record: dict[str, Any] = {
                "call": usage.calls,
                "purpose": purpose,
                "wall": time.time(),
                "step": env.steps,
                "model": self.model,
                "context_reset": reset,
                "messages": new_messages,
                "reply": completion.message,
                "tokens_in": completion.tokens_in,
                "tokens_out": completion.tokens_out,
                "latency_s": round(completion.latency_s, 4),
                "attempts": completion.attempts,
            }
            if reset and tools:
                record["tools"] = tools
            self._log.write(record)

    # --- results and persistence -----------------------------------------------------------

    def properties(self) -> dict[str, Any]:
        usage = self.client.usage
        return {
            "model": self.model,
            "tool_protocol": self.protocol or "",
            "llm_calls": usage.calls,
            "replies": self.replies,
            "action_replies": self.action_replies,
            "tokens_in": usage.tokens_in,
            "tokens_out": usage.tokens_out,
            "cost_usd": round(usage.cost_usd, 6),
        }

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs to continue the conversation (never the API key)."""
        return {
            "version": STATE_VERSION,
            "model": self.model,
            "protocol": self.protocol,
            "context": self.context.state_dict() if self.context else None,
            "facts": asdict(self.facts) if self.facts else None,
            "usage": asdict(self.client.usage),
            "idle_replies": self.idle_replies,
            "replies": self.replies,
            "action_replies": self.action_replies,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"react: agent state version {state.get('version')!r} is not {STATE_VERSION}")
        self.client.model = state["model"] or self.client.model
        self.protocol = state["protocol"]
        if state["context"] is not None:
            self.context = Context([], self.config.context_tokens, self.config.context_keep_turns)
            self.context.load_state_dict(state["context"])
            self.context.close_open_turn(RESUMED_NOTE)
        self.facts = EpisodeFacts(**state["facts"]) if state["facts"] else None
        self.client.usage = Usage(**state["usage"])
        self.idle_replies = int(state["idle_replies"])
        self.replies = int(state.get("replies", 0))
        self.action_replies = int(state.get("action_replies", 0))
        self._logged_upto = 0


def assistant_message(message: dict[str, Any]) -> dict[str, Any]:
    """The reply as it goes back to the endpoint: only the fields every server accepts."""
    cleaned: dict[str, Any] = {"role": "assistant", "content": message.get("content") or ""}
    calls = [
        {
            "id": call.get("id", ""),
            "type": "function",
            "function": {
                "name": (call.get("function") or {}).get("name", ""),
                "arguments": (call.get("function") or {}).get("arguments") or "",
            },
        }
        for call in message.get("tool_calls") or []
        if call.get("type", "function") == "function"
    ]
    if calls:
        cleaned["tool_calls"] = calls
    return cleaned


def parse_arguments(arguments: dict[str, Any] | str) -> Any:
    if isinstance(arguments, dict):
        return arguments
    try:
        return json.loads(arguments)
    except json.JSONDecodeError:
        return None


def goal_of(instruction: str) -> str:
    """The instruction's title or first line, as the snapshot's reminder of the goal."""
    for line in instruction.splitlines():
        if line.strip():
            return line.strip().lstrip("#").strip()[:300]
    return "(untitled task)"


def format_duration(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {secs:02d}s"


def status_line(env: ResearchEnv) -> str:
    return (
        f"[status: {format_duration(env.remaining_time_s)} of working time left, "
        f"{env.evals_remaining} evaluations left, step {env.steps} of {env.limits.step_limit}]"
    )


def running_sessions(env: ResearchEnv) -> list[str]:
    return [
        f"{s.name}: running `{s.command}`" if s.busy else f"{s.name}: idle (last exit code {s.last_exit_code})"
        for s in env.workspace.sessions.list()
    ]
