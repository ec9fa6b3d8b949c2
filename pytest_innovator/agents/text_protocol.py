"""Tool use for models without native tool calling: one fenced JSON action per reply.

The model sees the tools described in its system prompt and answers with its reasoning and then
exactly one block::

    ```json
    {"tool": "write_file", "arguments": {"path": "answer.txt", "content": "0.9"}}
    ```

The observation comes back as a user message. A reply without a readable action gets a message
saying what was wrong, and the model tries again.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from ..llm.tool_calls import describe_tools

# A block still open at the end of the reply counts: a reply cut off at its token cap (or a model
# that stops before the closing fence) often holds a complete action.
FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_-]*)[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL)

FORMAT_RULES = """## How to act
You have no native function calling. To act, end your reply with exactly one fenced JSON block
naming one tool and its arguments, like this:

```json
{"tool": "read_file", "arguments": {"path": "README.md"}}
```

One action per reply; the result comes back in the next message. Write your reasoning before
the block, never after it."""

NUDGE = (
    "Your reply had no action. End every reply with exactly one fenced JSON block: "
    '```json\n{"tool": "<tool name>", "arguments": {...}}\n```'
)


@dataclass
class TextAction:
    tool: str
    arguments: dict[str, Any] | str  # a str when it was not an object: the env reports the error


def system_section(schemas: list[dict[str, Any]]) -> str:
    return f"{describe_tools(schemas)}\n\n{FORMAT_RULES}"


def parse_action(reply: str) -> TextAction | str:
    """The reply's action, or a message telling the model what to fix."""
    blocks = [body for language, body in FENCE.findall(reply) if language.lower() in ("", "json")]
    if not blocks:
        return NUDGE
    text = blocks[-1].strip()
    try:
        action = json.loads(text)
    except json.JSONDecodeError as exc:
        return (
            f"Your action block is not valid JSON ({exc}). Send exactly one block holding an object "
            'like {"tool": "read_file", "arguments": {"path": "README.md"}}.'
        )
    if not isinstance(action, dict) or not isinstance(action.get("tool"), str):
        return 'Your action block must be an object with a "tool" name and an "arguments" object.'
    extra = set(action) - {"tool", "arguments"}
    if extra:
        return f'Your action block has unknown keys ({", ".join(sorted(extra))}); use only "tool" and "arguments".'
    arguments = action.get("arguments", {})
    return TextAction(action["tool"], arguments if isinstance(arguments, dict) else json.dumps(arguments))


def observation_message(tool: str, observation: str) -> dict[str, Any]:
    return {"role": "user", "content": f"Result of {tool}:\n{observation}"}
