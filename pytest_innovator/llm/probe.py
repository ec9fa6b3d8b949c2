"""What an endpoint enforces, found by asking it: tool calls, JSON schemas, or neither.

Each probe asks the model for prose while offering exactly one acceptable structured answer (one
tool whose only argument is an enum of one nonsense value). An endpoint that constrains decoding
returns exactly that answer; one that does not returns prose, a malformed call or a refusal. The
first that works wins, in this order:

- ``native``: ``tools`` with ``tool_choice: "required"`` come back as that one call;
- ``json_schema``: ``response_format`` with the JSON schema of a call (`tool_calls.call_schema`)
  comes back as that call's JSON (vLLM built with a tool parser it does not enforce does this);
- ``text``: neither; the tools are described in the prompt and the reply is parsed.

An endpoint's answer is kept for the process (one probe per endpoint and model, not per item).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from .client import Completion, LLMClient, RequestRefused, ToolsUnsupported
from .tool_calls import call_schema, parse_call

PROBE_TOOL_NAME = "record_probe_code"
PROBE_ARGUMENTS = {"code": "zq7x-41"}
PROBE_TOOL = {
    "type": "function",
    "function": {
        "name": PROBE_TOOL_NAME,
        "description": "Record a code.",
        "parameters": {
            "type": "object",
            "properties": {"code": {"type": "string", "enum": [PROBE_ARGUMENTS["code"]]}},
            "required": ["code"],
            "additionalProperties": False,
        },
    },
}
PROBE_SCHEMA_NAME = "tool_call"
PROBE_MESSAGES = [
    {"role": "system", "content": "Answer in plain prose. Never write JSON and never call tools."},
    {"role": "user", "content": "Say hello to me in one short sentence."},
]
PROTOCOLS = ("native", "json_schema", "text")


def call_response_format(tools: list[dict[str, Any]]) -> dict[str, Any]:
    """The `response_format` that asks for one call of one of `tools`."""
    return {"type": "json_schema", "json_schema": {"name": PROBE_SCHEMA_NAME, "schema": call_schema(tools)}}


@dataclass
class ProbeResult:
    protocol: str  # one of PROTOCOLS
    reason: str
    replies: list[Completion] = field(default_factory=list)  # the probe's own calls (none when remembered)


_found: dict[tuple[str, str], ProbeResult] = {}


def probe_tool_protocol(client: LLMClient, reply_tokens: int, timeout_s: float) -> ProbeResult:
    """The protocol that `client`'s endpoint enforces, found within `timeout_s` (raises LLMError when
    it cannot be asked at all, OutOfTime when the time runs out)."""
    key = (client.base_url, client.model)
    if key in _found:
        known = _found[key]
        return ProbeResult(known.protocol, f"{known.reason} (probed earlier in this run)")
    result = ProbeResult("text", "")
    deadline = time.monotonic() + timeout_s

    def parameters() -> dict[str, Any]:
        return {"timeout_s": deadline - time.monotonic(), **client.reply_cap(reply_tokens)}

    try:
        native = client.complete(PROBE_MESSAGES, [PROBE_TOOL], tool_choice="required", **parameters())
    except (ToolsUnsupported, RequestRefused) as exc:
        native_said = f"refused ({exc})"
    else:
        result.replies.append(native)
        calls = [(c.get("function") or {}) for c in native.tool_calls]
        if [(f.get("name"), _arguments(f.get("arguments"))) for f in calls] == [(PROBE_TOOL_NAME, PROBE_ARGUMENTS)]:
            result.protocol, result.reason = "native", "tool_choice required returned the one call its schema allows"
            _found[key] = result
            return result
        native_said = f"answered {_excerpt(native.message)}"
    try:
        structured = client.complete(PROBE_MESSAGES, response_format=call_response_format([PROBE_TOOL]), **parameters())
    except RequestRefused as exc:
        schema_said = f"refused ({exc})"
    else:
        result.replies.append(structured)
        if parse_call(structured.content) == (PROBE_TOOL_NAME, PROBE_ARGUMENTS):
            result.protocol = "json_schema"
            result.reason = f"response_format json_schema was enforced; tool_choice required was not: {native_said}"
            _found[key] = result
            return result
        schema_said = f"answered {_excerpt(structured.message)}"
    result.reason = f"neither is enforced: tool_choice required {native_said}; response_format {schema_said}"
    _found[key] = result
    return result


def _arguments(arguments: Any) -> Any:
    try:
        return json.loads(arguments) if isinstance(arguments, str) else arguments
    except json.JSONDecodeError:
        return arguments


def _excerpt(message: dict[str, Any]) -> str:
    text = json.dumps({k: v for k, v in message.items() if k in ("content", "tool_calls") and v})
    return text if len(text) <= 200 else text[:200] + "..."
