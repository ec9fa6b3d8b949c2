"""The conversation a ReAct agent sends to its model, kept within a token budget.

Tokens are counted from the endpoint's usage where it gave one (the prompt it last saw plus its
reply) and estimated for what was added since, with the estimate calibrated by the last usage.
Past the budget, the older turns are replaced by a structured state snapshot: goal, findings,
files, running sessions, evaluations so far, next steps. The harness fills in what it knows for
certain (files written, sessions, evaluations); the model writes the findings and next steps.
The head (system prompt and the task instruction) is never dropped, and the most recent turns
are kept as they were.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..llm.tokens import CHARS_PER_TOKEN, estimate_message_tokens
from ..trajectory import summarize

if TYPE_CHECKING:
    from ..llm.client import Completion, LLMClient

RECENT_SHARE = 0.5  # recent turns kept: at most this share of the budget left beside the head
OLD_TURN_RESULT_CHARS = 1500  # of each tool result, shown to the summariser

SNAPSHOT_MARKER = "[State snapshot]"
SUMMARY_SECTIONS = ("Findings", "Next steps")

SUMMARISER_PROMPT = """You keep the working memory of an agent that works on a research task.
Below are the agent's earlier turns (its actions and what they returned), and the previous state
snapshot if there was one. They are about to be removed from its context. Write what the agent
must remember, in exactly two markdown sections:

## Findings
Facts learned, results and numbers measured, what worked and what failed (with the reasons),
decisions made. Keep every number that matters. Carry over the findings of the previous snapshot.

## Next steps
What to do next, in order, and what to check on (running commands, pending results).

Be concise and concrete. Do not call tools."""


@dataclass
class EpisodeFacts:
    """What the harness knows for certain about the episode, for the state snapshot."""

    goal: str
    files: dict[str, str] = field(default_factory=dict)  # path -> what happened to it last
    evaluations: list[str] = field(default_factory=list)

    def note_step(self, step: int, tool: str, arguments: Any, ok: bool, output: str) -> None:
        if not ok:
            return
        if tool in ("write_file", "edit_file") and isinstance(arguments, dict) and "path" in arguments:
            self.files[str(arguments["path"])] = f"{'wrote' if tool == 'write_file' else 'edited'} at step {step}"
        elif tool == "evaluate":
            self.evaluations.append(f"step {step}: {output.splitlines()[0] if output else ''}")


class Context:
    """The messages of the conversation: `head` (never dropped), an optional snapshot, then turns.

    A turn starts with an assistant message; the tool results and nudges that follow belong to it.
    """

    def __init__(self, head: list[dict[str, Any]], budget_tokens: int, keep_turns: int = 4):
        self.messages: list[dict[str, Any]] = []
        self._sizes: list[int] = []  # estimate_message_tokens of each message, kept beside it
        self._reset(list(head))
        self.head_size = len(head)
        self.budget_tokens = budget_tokens
        self.keep_turns = max(1, keep_turns)
        self.tools_tokens = 0  # estimate of the tool schemas sent with each request
        self.summary: str | None = None
        self.turns_summarised = 0
        self._usage_covers = 0  # messages[:n] were counted by the endpoint ...
        self._usage_tokens = 0  # ... as this many tokens
        self._calibration = 1.0  # endpoint tokens per estimated token

    def _reset(self, messages: list[dict[str, Any]]) -> None:
        self.messages = messages
        self._sizes = [estimate_message_tokens(m) for m in messages]

    def append(self, message: dict[str, Any]) -> None:
        self.messages.append(message)
        self._sizes.append(estimate_message_tokens(message))

    def replace(self, index: int, message: dict[str, Any]) -> None:
        self.messages[index] = message
        self._sizes[index] = estimate_message_tokens(message)

    def close_open_turn(self, note: str) -> None:
        """Answer the last turn's actions that have no result (a state saved in the middle of a
        turn): every tool call needs its tool message before the next request."""
        starts = self._turn_starts()
        if not starts:
            return
        last = starts[-1]
        calls = self.messages[last].get("tool_calls") or []
        answered = {m.get("tool_call_id") for m in self.messages[last + 1 :] if m["role"] == "tool"}
        for call in calls:
            if call.get("id") not in answered:
                self.append({"role": "tool", "tool_call_id": call.get("id", ""), "content": note})
        if not calls and last == len(self.messages) - 1:
            self.append({"role": "user", "content": note})

    # --- counting --------------------------------------------------------------------------

    def note_usage(self, sent: int, completion: Completion) -> None:
        """The reply to messages[:sent] has just been appended: the endpoint counted all of it."""
        if completion.usage_estimated:
            return
        estimated = sum(self._sizes[:sent]) + self.tools_tokens
        if estimated:
            self._calibration = min(8.0, max(0.125, completion.tokens_in / estimated))
        self._usage_covers = sent + 1
        self._usage_tokens = completion.tokens_in + completion.tokens_out

    def _estimate(self, start: int, end: int | None = None) -> int:
        return round(self._calibration * sum(self._sizes[start:end]))

    def tokens(self) -> int:
        if self._usage_covers and self._usage_covers <= len(self.messages):
            return self._usage_tokens + self._estimate(self._usage_covers)
        return self._estimate(0) + round(self._calibration * self.tools_tokens)

    def over_budget(self) -> bool:
        return self.tokens() > self.budget_tokens

    # --- summarising -----------------------------------------------------------------------

    def _turn_starts(self) -> list[int]:
        return [i for i in range(self.head_size, len(self.messages)) if self.messages[i]["role"] == "assistant"]

    def split(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]] | None:
        """(older turns to summarise, recent turns to keep); None when nothing can be summarised."""
        starts = self._turn_starts()
        if len(starts) < 2:
            return None
        head_tokens = self._estimate(0, self.head_size) + round(self._calibration * self.tools_tokens)
        recent_budget = RECENT_SHARE * max(0, self.budget_tokens - head_tokens)
        keep_from = starts[-1]
        for kept, start in enumerate(reversed(starts[:-1]), 2):
            if kept > self.keep_turns or self._estimate(start) > recent_budget:
                break
            keep_from = start
        if keep_from == starts[0]:
            return None
        return self.messages[self.head_size : keep_from], self.messages[keep_from:]

    def compact(
        self, client: LLMClient, facts: EpisodeFacts, sessions: list[str], **parameters: Any
    ) -> tuple[list[dict[str, Any]], Completion] | None:
        """Replace the older turns by a state snapshot; returns the summariser's request and reply,
        or None when there was nothing to summarise. Raises LLMError when the summary cannot be had."""
        parts = self.split()
        if parts is None:
            return None
        old, recent = parts
        request = [
            {"role": "system", "content": SUMMARISER_PROMPT},
            {
                "role": "user",
                "content": f"The task: {facts.goal}\n\n" + render_turns(old, self.budget_tokens * CHARS_PER_TOKEN // 2),
            },
        ]
        completion = client.complete(request, **parameters)
        findings, next_steps = parse_summary(completion.content)
        turns = sum(1 for m in old if m["role"] == "assistant")
        self.turns_summarised += turns
        self.summary = render_snapshot(facts, sessions, findings, next_steps, self.turns_summarised)
        self._reset(self.messages[: self.head_size] + [{"role": "user", "content": self.summary}] + recent)
        self._usage_covers = 0
        return request, completion

    # --- persistence -----------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {
            "messages": list(self.messages),
            "head_size": self.head_size,
            "summary": self.summary,
            "turns_summarised": self.turns_summarised,
            "calibration": self._calibration,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._reset(list(state["messages"]))
        self.head_size = int(state["head_size"])
        self.summary = state.get("summary")
        self.turns_summarised = int(state.get("turns_summarised", 0))
        self._calibration = float(state.get("calibration", 1.0))
        self._usage_covers = 0


def tool_names_by_call_id(messages: list[dict[str, Any]]) -> dict[str, str]:
    return {call["id"]: call["function"]["name"] for m in messages for call in m.get("tool_calls") or []}


def render_turns(messages: list[dict[str, Any]], limit_chars: int) -> str:
    """Older turns as plain text for the summariser (a previous snapshot included)."""
    names = tool_names_by_call_id(messages)
    lines = []
    for message in messages:
        content = message.get("content") or ""
        if message["role"] == "assistant":
            if content:
                lines.append(f"AGENT: {content}")
            for call in message.get("tool_calls") or []:
                lines.append(f"AGENT CALLS {call['function']['name']}({call['function']['arguments']})")
        elif message["role"] == "tool":
            name = names.get(message.get("tool_call_id", ""), "tool")
            lines.append(f"RESULT of {name}: {summarize(content, OLD_TURN_RESULT_CHARS)}")
        elif content.startswith(SNAPSHOT_MARKER):
            lines.append(f"PREVIOUS STATE SNAPSHOT:\n{content}")
        else:
            lines.append(f"HARNESS: {summarize(content, OLD_TURN_RESULT_CHARS)}")
    return summarize("\n".join(lines), limit_chars)


def parse_summary(text: str) -> tuple[str, str]:
    """The model's Findings and Next steps; a reply without the headings counts as findings."""
    sections: dict[str, str] = {}
    pattern = re.compile(r"^#+\s*(" + "|".join(SUMMARY_SECTIONS) + r")\s*:?\s*$", re.IGNORECASE | re.MULTILINE)
    matches = list(pattern.finditer(text))
    for match, following in zip(matches, [*matches[1:], None]):
        end = following.start() if following else len(text)
        sections[match.group(1).lower()] = text[match.end() : end].strip()
    if not matches:
        return text.strip() or "(none recorded)", "(none recorded)"
    return sections.get("findings") or "(none recorded)", sections.get("next steps") or "(none recorded)"


def render_snapshot(facts: EpisodeFacts, sessions: list[str], findings: str, next_steps: str, turns: int) -> str:
    files = "\n".join(f"- {path}: {what}" for path, what in facts.files.items()) or "- (none written yet)"
    evaluations = "\n".join(f"- {line}" for line in facts.evaluations) or "- (none yet)"
    running = "\n".join(f"- {line}" for line in sessions) or "- (no session open)"
    return (
        f"{SNAPSHOT_MARKER} Your first {turns} turns were summarised to stay within the context budget. "
        "The task instruction above is complete and still applies.\n\n"
        f"## Goal\n{facts.goal} (the full instruction is the task message above)\n\n"
        f"## Findings\n{findings}\n\n## Files\n{files}\n\n"
        f"## Running sessions\n{running}\n\n## Evaluations so far\n{evaluations}\n\n## Next steps\n{next_steps}"
    )
