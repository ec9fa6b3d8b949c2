"""A chat-completions client for OpenAI-compatible endpoints: bounded retries, accounting, prices.

Faults that pass (HTTP 429, 408, 409, 5xx, timeouts, dropped connections, a reply without
choices) are retried with exponential backoff and jitter, at most `RetryPolicy.retries` times;
what persists, or cannot pass (a refused key, a bad request), raises `LLMError`. Kinds of bad
request are told apart because the caller can act on them: the endpoint rejects `tools`
(`ToolsUnsupported`: switch to the text protocol), the prompt is longer than the model's context
(`ContextOverflow`: summarise and ask again), or another parameter (`RequestRefused`). A call
given `timeout_s` never outlives it, retries and backoff included (`OutOfTime`).

Prices are USD per million tokens. The built-in table is a convenience that goes out of date;
a user's table (JSON or TOML, ``{"model": {"input": 2.5, "output": 10.0}}``) extends and
overrides it, and a ``"*"`` entry prices every model the table does not name.
"""

from __future__ import annotations

import json
import random
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import openai

from ..errors import InnovatorError
from .tokens import estimate_message_tokens, estimate_tokens


class LLMError(InnovatorError):
    """The endpoint failed for good: the episode ends with end_reason agent_error."""


class ToolsUnsupported(LLMError):
    """The endpoint refused a request because it carried `tools`."""


class ContextOverflow(LLMError):
    """The endpoint refused a request because the prompt exceeds the model's context."""


class RequestRefused(LLMError):
    """The endpoint refused a request as malformed or unsupported (HTTP 400, 413 or 422)."""


class OutOfTime(LLMError):
    """No reply came within the time the call was given."""


RETRYABLE_STATUS = {408, 409, 429}
TOOLS_REJECTED_MARKERS = ("tool", "function")
CONTEXT_MARKERS = (
    "context length",
    "context_length",
    "maximum context",
    "too many tokens",
    "prompt is too long",
    "context window",
)


@dataclass(frozen=True)
class Price:
    input: float  # USD per million prompt tokens
    output: float  # USD per million completion tokens

    def cost(self, tokens_in: int, tokens_out: int) -> float:
        return (tokens_in * self.input + tokens_out * self.output) / 1_000_000


# List prices of a few common models at the time of writing; pass a table to correct or extend them.
DEFAULT_PRICES: dict[str, Price] = {
    "gpt-4o": Price(2.50, 10.00),
    "gpt-4o-mini": Price(0.15, 0.60),
    "gpt-4.1": Price(2.00, 8.00),
    "gpt-4.1-mini": Price(0.40, 1.60),
    "gpt-4.1-nano": Price(0.10, 0.40),
    "gpt-5": Price(1.25, 10.00),
    "gpt-5-mini": Price(0.25, 2.00),
    "gpt-5-nano": Price(0.05, 0.40),
    "o3": Price(2.00, 8.00),
    "o4-mini": Price(1.10, 4.40),
}


def load_price_table(path: str | Path) -> dict[str, Price]:
    """Read a user's price table (JSON, or TOML by the .toml suffix); errors say what to fix."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(
            f"price table {path}: cannot read it ({exc.strerror}); check --innovator-price-table"
        ) from None
    try:
        raw = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(
            f"price table {path}: not valid {'TOML' if path.suffix == '.toml' else 'JSON'} ({exc})"
        ) from None
    if not isinstance(raw, dict):
        raise ValueError(  # noqa: TRY004 (a user's file: reported like every other mistake in it)
            f'price table {path}: expected a table of models, e.g. {{"my-model": {{"input": 0.5, "output": 1.5}}}}'
        )
    prices = {}
    for model, entry in raw.items():
        if not isinstance(entry, dict) or set(entry) != {"input", "output"}:
            raise ValueError(
                f"price table {path}: {model!r} must have exactly 'input' and 'output' (USD per million tokens)"
            )
        try:
            prices[model] = Price(float(entry["input"]), float(entry["output"]))
        except (TypeError, ValueError):
            raise ValueError(f"price table {path}: {model!r}: input and output must be numbers") from None
        if prices[model].input < 0 or prices[model].output < 0:
            raise ValueError(f"price table {path}: {model!r}: prices must not be negative")
    return prices


def price_for(model: str, table: dict[str, Price]) -> Price | None:
    """Exact name, else the longest name that the model extends with '-' (gpt-4o-2024-08-06 → gpt-4o), else '*'."""
    if model in table:
        return table[model]
    stem = model.rsplit("/", 1)[-1]  # provider prefixes such as "openai/gpt-4o"
    if stem in table:
        return table[stem]
    prefixes = [name for name in table if stem.startswith(name + "-")]
    if prefixes:
        return table[max(prefixes, key=len)]
    return table.get("*")


@dataclass(frozen=True)
class RetryPolicy:
    retries: int = 6
    base_delay_s: float = 1.0
    max_delay_s: float = 60.0

    def delay(self, attempt: int, retry_after_s: float | None = None) -> float:
        """Backoff before retry number `attempt` (1-based): exponential with jitter, or the server's Retry-After."""
        if retry_after_s is not None:
            return min(max(retry_after_s, 0.0), self.max_delay_s)
        ceiling = min(self.max_delay_s, self.base_delay_s * 2 ** (attempt - 1))
        return random.uniform(ceiling / 2, ceiling)


@dataclass
class Completion:
    """One answered request: the assistant message as the endpoint sent it, and its cost."""

    message: dict[str, Any]
    finish_reason: str | None
    tokens_in: int
    tokens_out: int
    usage_estimated: bool  # the endpoint sent no usage: tokens are estimates
    cost_usd: float
    latency_s: float  # the successful attempt only
    attempts: int
    faults: list[str] = field(default_factory=list)  # the faults that were retried

    @property
    def content(self) -> str:
        return self.message.get("content") or ""

    @property
    def tool_calls(self) -> list[dict[str, Any]]:
        return [call for call in self.message.get("tool_calls") or [] if call.get("type", "function") == "function"]


@dataclass
class Usage:
    calls: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0

    def add(self, completion: Completion) -> None:
        self.calls += 1
        self.tokens_in += completion.tokens_in
        self.tokens_out += completion.tokens_out
        self.cost_usd += completion.cost_usd


class LLMClient:
    """Chat completions against one model on one endpoint, with its own retries and a running total.

    `api_key` lives only in the SDK client object; nothing here writes it anywhere.
    """

    def __init__(
        self,
        *,
        model: str,
        base_url: str | None,
        api_key: str,
        timeout_s: float = 600.0,
        retry: RetryPolicy | None = None,
        prices: dict[str, Price] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.model = model
        self.timeout_s = timeout_s
        self.retry = retry or RetryPolicy()
        self.prices = prices if prices is not None else dict(DEFAULT_PRICES)
        self.usage = Usage()
        self._sleep = sleep
        # The SDK's own retries are off: ours are bounded, jittered and visible in the trajectory.
        self._client = openai.OpenAI(api_key=api_key, base_url=base_url or None, timeout=timeout_s, max_retries=0)

    @property
    def base_url(self) -> str:
        return str(self._client.base_url)

    @property
    def is_openai(self) -> bool:
        return self._client.base_url.host == "api.openai.com"

    def reply_cap(self, tokens: int) -> dict[str, int]:
        """The request parameter that caps a reply at `tokens`: OpenAI's own API refuses `max_tokens`
        for its reasoning models, while other servers may not know `max_completion_tokens`."""
        return {"max_completion_tokens" if self.is_openai else "max_tokens": tokens}

    @property
    def price(self) -> Price | None:
        return price_for(self.model, self.prices)

    def list_models(self) -> list[str]:
        """The model ids the endpoint serves (one request, retried like any other)."""
        return self._with_retries(lambda: [m.id for m in self._client.models.list()], faults=[])[0]

    def complete(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None = None,
        *,
        timeout_s: float | None = None,
        **parameters: Any,
    ) -> Completion:
        """One chat completion; raises LLMError (or a subclass) when it cannot be had.

        With `timeout_s`, every attempt and every backoff ends by then (OutOfTime after it).
        """
        # The SDK walks its typed parameters on every call, in time that grows with the conversation
        # (140 ms a call at 400 messages, bench/bench_react.py); our messages and tools are plain JSON
        # already, so they go in extra_body, which the SDK merges into the same body after that walk.
        body: dict[str, Any] = {"messages": messages, **parameters}
        if tools:
            body["tools"] = tools
        faults: list[str] = []
        deadline = None if timeout_s is None else time.monotonic() + timeout_s

        def attempt() -> tuple[dict[str, Any], float]:
            started = time.monotonic()
            response = self._client.chat.completions.create(
                model=self.model,
                messages=[],
                extra_body=body,
                timeout=self._attempt_timeout(timeout_s, deadline, faults),
            )
            latency = time.monotonic() - started
            data = response.model_dump(mode="json", exclude_unset=True)
            if not data.get("choices"):
                raise _EmptyReply()
            return data, latency

        (data, latency), attempts = self._with_retries(attempt, faults, has_tools=bool(tools), deadline=deadline)
        choice = data["choices"][0]
        message = choice.get("message") or {"role": "assistant", "content": ""}
        message.setdefault("role", "assistant")
        usage = data.get("usage") or {}
        estimated = "prompt_tokens" not in usage or "completion_tokens" not in usage
        if estimated:
            tokens_in = sum(estimate_message_tokens(m) for m in messages) + (
                estimate_tokens(json.dumps(tools)) if tools else 0
            )
            tokens_out = estimate_tokens(json.dumps(message))
        else:
            tokens_in, tokens_out = int(usage["prompt_tokens"]), int(usage["completion_tokens"])
        price = self.price
        completion = Completion(
            message=message,
            finish_reason=choice.get("finish_reason"),
            tokens_in=tokens_in,
            tokens_out=tokens_out,
            usage_estimated=estimated,
            cost_usd=price.cost(tokens_in, tokens_out) if price else 0.0,
            latency_s=latency,
            attempts=attempts,
            faults=faults,
        )
        self.usage.add(completion)
        return completion

    def _attempt_timeout(self, timeout_s: float | None, deadline: float | None, faults: list[str]) -> float:
        if timeout_s is None or deadline is None:
            return self.timeout_s
        left = deadline - time.monotonic()
        if left <= 0:
            said = f" ({', '.join(faults[-3:])})" if faults else ""
            raise OutOfTime(
                f"no reply from the model endpoint {self.base_url} within {timeout_s:.1f} s, the time the call "
                f"was given{said}"
            )
        return min(self.timeout_s, left)

    def _with_retries(
        self, attempt: Callable[[], Any], faults: list[str], has_tools: bool = False, deadline: float | None = None
    ) -> tuple[Any, int]:
        for number in range(1, self.retry.retries + 2):
            try:
                return attempt(), number
            except openai.APIStatusError as exc:
                status = exc.status_code
                if status not in RETRYABLE_STATUS and status < 500:
                    raise classify_refusal(exc, has_tools) from None
                fault, retry_after = f"HTTP {status}", _retry_after_s(exc)
            except openai.APITimeoutError:
                fault, retry_after = "timeout", None
            except openai.APIConnectionError as exc:
                fault, retry_after = f"connection failed ({_cause(exc)})", None
            except _EmptyReply:
                fault, retry_after = "a reply without choices", None
            faults.append(fault)
            if number > self.retry.retries:
                break
            delay = self.retry.delay(number, retry_after)
            if deadline is not None:
                delay = min(delay, max(0.0, deadline - time.monotonic()))
            self._sleep(delay)
        raise LLMError(
            f"the model endpoint {self.base_url} failed {len(faults)} times in a row "
            f"({', '.join(faults[-3:])}); gave up after {self.retry.retries} retries"
        )


class _EmptyReply(Exception):
    pass


def classify_refusal(exc: openai.APIStatusError, has_tools: bool) -> LLMError:
    text = str(exc.message).lower()
    status = exc.status_code
    code, param = str(getattr(exc, "code", None) or ""), str(getattr(exc, "param", None) or "")
    if status in (400, 413, 422) and (code == "context_length_exceeded" or any(m in text for m in CONTEXT_MARKERS)):
        return ContextOverflow(f"the prompt is longer than the model's context (HTTP {status}: {exc.message})")
    if (
        has_tools
        and status in (400, 422)
        and (param in ("tools", "tool_choice") or any(marker in text for marker in TOOLS_REJECTED_MARKERS))
    ):
        return ToolsUnsupported(f"the endpoint rejected native tool calls (HTTP {status}: {exc.message})")
    if status in (401, 403):
        return LLMError(
            f"the model endpoint refused the API key (HTTP {status}); set the variable named by "
            "--innovator-api-key-env to a valid key"
        )
    if status == 404:
        return LLMError(
            f"the model endpoint answered 404 ({exc.message}); check --innovator-model and "
            "--innovator-base-url (which usually ends in /v1)"
        )
    if status in (400, 413, 422):
        return RequestRefused(f"the model endpoint refused the request (HTTP {status}: {exc.message})")
    return LLMError(f"the model endpoint refused the request (HTTP {status}: {exc.message})")


def _retry_after_s(exc: openai.APIStatusError) -> float | None:
    value = exc.response.headers.get("retry-after") if exc.response is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:  # an HTTP date: fall back to our own backoff
        return None


def _cause(exc: BaseException) -> str:
    cause = exc.__cause__ or exc.__context__
    return type(cause).__name__ if cause else type(exc).__name__
