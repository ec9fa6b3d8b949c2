"""Training data out: finished items as JSONL in the OpenAI chat fine-tuning format.

Each example is the context the agent actually saw (the react agent's ``llm_messages.jsonl``,
rebuilt request by request) followed by its reply: one example per stretch of the conversation
between context resets (a summary or a resume starts a new one). The tools it was offered come
along. An assistant message whose action a label drops stays in the context with ``"weight": 0``;
a person's guidance is there as the user message the agent read.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..agents.react import assistant_message
from ..errors import InnovatorError
from ..rundir import RESULT_FILE, RunDir
from ..trajectory import read_trajectory
from .labels import read_labels

FORMATS = ("openai-chat",)
ROLES = ("system", "user", "assistant", "tool")
MESSAGE_KEYS = {"role", "content", "name", "tool_calls", "tool_call_id", "weight"}


class ExportError(InnovatorError):
    """Inputs that hold nothing to export, or a file that is not valid chat JSONL."""


@dataclass(frozen=True)
class ExportFilter:
    min_score: float | None = None
    domains: tuple[str, ...] = ()
    agents: tuple[str, ...] = ()  # agent names, without the @version and the model

    def admits(self, header: dict[str, Any], score: float | None) -> bool:
        if self.min_score is not None and (score is None or score < self.min_score):
            return False
        if self.domains and header.get("domain") not in self.domains:
            return False
        agent = str(header.get("agent", "")).split("@")[0]
        return not self.agents or agent in self.agents


def item_dirs(paths: Iterable[Path]) -> Iterator[Path]:
    """Every item run directory in the inputs: an item's directory, a run's, or a results directory."""
    for path in paths:
        if RunDir(path).trajectory.is_file():
            yield path
            continue
        found = sorted(p.parent for p in path.glob("*/trajectory.jsonl")) or sorted(
            p.parent for p in path.glob("runs/*/*/trajectory.jsonl")
        )
        if not found:
            raise ExportError(f"{path}: no item run directories (with trajectory.jsonl) in it")
        yield from found


def final_score(item: Path, records: list[dict[str, Any]]) -> float | None:
    result = item / RESULT_FILE
    if result.is_file():
        return json.loads(result.read_text(encoding="utf-8")).get("score_final")
    ends = [r for r in records if r.get("event") == "end"]
    return ends[-1].get("score_final") if ends else None


def message_key(message: dict[str, Any]) -> str:
    return json.dumps(assistant_message(message), sort_keys=True)


def reply_steps(item: Path) -> dict[str, list[list[int]]]:
    """An assistant message (as sent back) -> the steps its actions were, per occurrence, over this
    item's message log and those of the runs it was resumed from."""
    steps: dict[str, list[list[int]]] = {}
    seen: set[Path] = set()
    while item not in seen and RunDir(item).llm_messages.is_file():
        seen.add(item)
        for line in RunDir(item).llm_messages.read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            if record["purpose"] != "act":
                continue
            count = max(1, len(record["reply"].get("tool_calls") or []))
            steps.setdefault(message_key(record["reply"]), []).append(
                list(range(record["step"] + 1, record["step"] + 1 + count))
            )
        resumed_from = RunDir(item).resume_record
        if not resumed_from.is_file():
            break
        item = Path(json.loads(resumed_from.read_text(encoding="utf-8"))["source"])
    return steps


def item_examples(item: Path) -> list[dict[str, Any]]:
    """The item's examples: one per stretch of its conversation between context resets."""
    log = RunDir(item).llm_messages
    if not log.is_file():
        raise ExportError(f"{item}: no llm_messages.jsonl (only the react agent and imported runs record the context)")
    labels = read_labels(item)
    dropped = {step for step, entry in labels.items() if entry["label"] == "drop"}
    occurrences = reply_steps(item)
    stretches: list[tuple[list[dict[str, Any]], list[dict[str, Any]] | None]] = []
    conversation: list[dict[str, Any]] = []
    tools: list[dict[str, Any]] | None = None
    for line in log.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        if record["purpose"] != "act":
            continue
        if record["context_reset"]:
            if conversation:
                stretches.append((conversation, tools))
            conversation, tools = list(record["messages"]), record.get("tools", tools)
        else:
            conversation = conversation + record["messages"]
        conversation = conversation + [assistant_message(record["reply"])]
    if conversation:
        stretches.append((conversation, tools))
    examples = []
    for messages, offered in stretches:
        used: dict[str, int] = {}
        weighted = []
        for message in messages:
            message = {k: v for k, v in message.items() if k in MESSAGE_KEYS}
            if message["role"] == "assistant":
                key = message_key(message)
                steps_of = occurrences.get(key, [])
                position = min(used.get(key, 0), len(steps_of) - 1)
                used[key] = used.get(key, 0) + 1
                steps = steps_of[position] if steps_of else []
                message["weight"] = 0 if dropped.intersection(steps) or not well_formed_calls(message) else 1
            weighted.append(message)
        while weighted and weighted[-1]["role"] != "assistant":  # an example ends with the model's turn
            weighted.pop()
        if weighted:
            examples.append({"messages": weighted, **({"tools": offered} if offered else {})})
    return examples


def well_formed_calls(message: dict[str, Any]) -> bool:
    for call in message.get("tool_calls") or []:
        try:
            json.loads(call["function"]["arguments"] or "{}")
        except json.JSONDecodeError:
            return False
    return True


def export(paths: list[Path], out: Path, selection: ExportFilter) -> tuple[int, int, list[Path]]:
    """Write the examples of every admitted item; returns (items exported, examples written, the
    admitted items left out for want of a message log: agents other than react record none)."""
    items = exported = 0
    lines = []
    without_log = []
    for item in item_dirs(paths):
        records = read_trajectory(RunDir(item).trajectory)
        if not records or not selection.admits(records[0], final_score(item, records)):
            continue
        if not RunDir(item).llm_messages.is_file():
            without_log.append(item)
            continue
        examples = item_examples(item)
        items += 1
        exported += len(examples)
        lines += [json.dumps(example, ensure_ascii=False) for example in examples]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return items, exported, without_log


def check_example(example: Any) -> list[str]:
    """What keeps one line from being a valid OpenAI chat fine-tuning example (nothing: valid)."""
    if not isinstance(example, dict):
        return ["a line must be a JSON object"]
    problems = [f"unknown key {key!r}" for key in example if key not in ("messages", "tools", "parallel_tool_calls")]
    tool_names: set[str] | None = None
    if "tools" in example:
        tools = example["tools"]
        if not isinstance(tools, list) or not all(
            isinstance(t, dict)
            and t.get("type") == "function"
            and isinstance((t.get("function") or {}).get("name"), str)
            for t in tools
        ):
            problems.append('tools must be a list of {"type": "function", "function": {"name": ..., ...}}')
        else:
            tool_names = {t["function"]["name"] for t in tools}
    messages = example.get("messages")
    if not isinstance(messages, list) or not messages:
        return [*problems, "messages must be a non-empty list"]
    call_ids: set[str] = set()
    for number, message in enumerate(messages, 1):
        where = f"message {number}"
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            problems.append(f"{where}: role must be one of {', '.join(ROLES)}")
            continue
        role = message["role"]
        problems += [f"{where}: unknown key {key!r}" for key in message if key not in MESSAGE_KEYS]
        content = message.get("content")
        if "weight" in message and (role != "assistant" or message["weight"] not in (0, 1)):
            problems.append(f"{where}: weight is 0 or 1, on assistant messages only")
        if role == "assistant":
            calls = message.get("tool_calls")
            if content is None and not calls:
                problems.append(f"{where}: an assistant message needs content or tool_calls")
            if content is not None and not isinstance(content, str):
                problems.append(f"{where}: content must be text")
            for call in calls or []:
                function = call.get("function") if isinstance(call, dict) else None
                if not (
                    isinstance(call, dict)
                    and isinstance(call.get("id"), str)
                    and call.get("type") == "function"
                    and isinstance(function, dict)
                    and isinstance(function.get("name"), str)
                    and isinstance(function.get("arguments"), str)
                ):
                    problems.append(f"{where}: a tool call is {{id, type: function, function: {{name, arguments}}}}")
                    continue
                call_ids.add(call["id"])
                if tool_names is not None and function["name"] not in tool_names:
                    problems.append(f"{where}: calls {function['name']!r}, which the tools do not offer")
                if message.get("weight", 1) and not well_formed_calls({"tool_calls": [call]}):
                    problems.append(f"{where}: a trained call's arguments must be a JSON object's text")
        elif role == "tool":
            if message.get("tool_call_id") not in call_ids:
                problems.append(f"{where}: tool_call_id does not answer a call made before it")
            if not isinstance(content, str):
                problems.append(f"{where}: content must be text")
        elif not isinstance(content, str):
            problems.append(f"{where}: content must be text")
    if not any(isinstance(m, dict) and m.get("role") == "assistant" for m in messages):
        problems.append("no assistant message: nothing to train on")
    return problems


def check_file(path: Path) -> list[str]:
    """Every problem of a chat JSONL file, as 'line N: ...'."""
    problems = []
    lines = path.read_text(encoding="utf-8").splitlines()
    if not lines:
        return [f"{path} holds no examples"]
    for number, line in enumerate(lines, 1):
        try:
            example = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(f"line {number}: not JSON ({exc})")
            continue
        problems += [f"line {number}: {problem}" for problem in check_example(example)]
    return problems
