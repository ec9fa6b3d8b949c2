"""Tools as a model without native function calling reads them, and the JSON shape of one call.

A call is ``{"name": "<tool>", "arguments": {...}}``. `call_schema` is the JSON schema whose
instances are exactly the calls of the offered tools with arguments that match each tool's own
schema: the grammar of constrained decoding, or the ``response_format`` sent to an endpoint that
enforces JSON schemas. Light on purpose: the agent imports it, the model server too.
"""

from __future__ import annotations

import json
from typing import Any

CALL_FORMAT_RULES = """## How to act
Every reply is exactly one JSON object that calls one tool:
{"name": "<tool name>", "arguments": {...}}
The result comes back in the next message. Use think to reason, finish when done."""


def describe_tools(schemas: list[dict[str, Any]]) -> str:
    """The tools as the model reads them: name, description and JSON-schema parameters."""
    lines = ["## Tools"]
    for schema in schemas:
        function = schema["function"]
        parameters = function.get("parameters", {}).get("properties", {})
        required = set(function.get("parameters", {}).get("required", []))
        arguments = ", ".join(
            f"{name}{'' if name in required else '?'}: {_type_name(spec)}" for name, spec in parameters.items()
        )
        lines.append(f"- {function['name']}({arguments}): {function.get('description', '')}")
        for name, spec in parameters.items():
            if spec.get("description"):
                lines.append(f"    {name}: {spec['description']}")
    return "\n".join(lines)


def _type_name(spec: dict[str, Any]) -> str:
    if "type" in spec:
        return str(spec["type"])
    options = [option.get("type", "any") for option in spec.get("anyOf", [])]
    return " | ".join(options) or "any"


def call_schema(tools: list[dict[str, Any]]) -> dict[str, Any]:
    """The JSON schema of one call of one of `tools` (OpenAI tool definitions)."""
    choices = []
    for tool in tools:
        function = tool["function"]
        parameters = function.get("parameters") or {"type": "object", "properties": {}}
        choices.append(
            {
                "type": "object",
                "properties": {"name": {"const": function["name"]}, "arguments": parameters},
                "required": ["name", "arguments"],
                "additionalProperties": False,
            }
        )
    return choices[0] if len(choices) == 1 else {"anyOf": choices}


def call_text(name: str, arguments: dict[str, Any] | str) -> str:
    """A call written as the model writes it (arguments that are not an object stay as their text)."""
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError:
            pass
    return json.dumps({"name": name, "arguments": arguments})


def parse_call(text: str) -> tuple[str, dict[str, Any]] | None:
    """(name, arguments) of a reply that is one call, else None."""
    try:
        call = json.loads(text)
    except json.JSONDecodeError:
        return None
    if isinstance(call, dict) and isinstance(call.get("name"), str) and isinstance(call.get("arguments"), dict):
        return call["name"], call["arguments"]
    return None
