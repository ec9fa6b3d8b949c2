"""Token estimates where an endpoint reports no usage: about four characters a token, plus a few
tokens of overhead per message (close enough for budgets; exact counts come from the endpoint)."""

from __future__ import annotations

import json
from typing import Any

CHARS_PER_TOKEN = 4
MESSAGE_OVERHEAD_TOKENS = 4


def estimate_tokens(text: str) -> int:
    return (len(text) + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN


def estimate_message_tokens(message: dict[str, Any]) -> int:
    size = len(message.get("content") or "")
    if message.get("tool_calls"):
        size += len(json.dumps(message["tool_calls"]))
    return MESSAGE_OVERHEAD_TOKENS + (size + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN
