"""ResearchGym (InnovatorBench) trajectories in: node files as this project's trajectory and
message log, so that `label` and `export` work on them.

A node file (``nodes/react_<uuid>_<time>.json``) is one step of ResearchGym's react agent: the
context the model was sent (``messages``: roles with ``content``, an assistant's ``tool_call``
``{call_id, name, arguments}``, a tool's ``tool_result`` ``{call_id, name, content}``), its reply
(``response`` with ``tool_calls``), the ``action`` run and its ``observation``; ``parent_id`` and
``depth`` chain the steps. The nodes carry no tool schemas: the tools written out name each tool
with the description its action carried and an open parameter schema.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from ..errors import InnovatorError
from ..rundir import RunDir
from ..trajectory import TrajectoryWriter

NODE_KEYS = ("id", "parent_id", "timestamp", "messages", "response")


class NodeImportError(InnovatorError):
    """A file that is not a ResearchGym node, or nodes that do not form one trajectory."""


def load_node(path: Path) -> dict[str, Any]:
    try:
        node = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise NodeImportError(f"{path}: not a JSON node file ({exc})") from None
    missing = [key for key in NODE_KEYS if key not in node] if isinstance(node, dict) else list(NODE_KEYS)
    if missing:
        raise NodeImportError(
            f"{path}: not a ResearchGym node (missing {', '.join(missing)}); give nodes/react_*.json files"
        )
    return node


def chat_call(call: dict[str, Any]) -> dict[str, Any]:
    arguments = call.get("arguments")
    return {
        "id": str(call.get("call_id", "")),
        "type": "function",
        "function": {
            "name": str(call.get("name", "")),
            "arguments": arguments if isinstance(arguments, str) else json.dumps(arguments or {}),
        },
    }


def chat_message(message: dict[str, Any]) -> dict[str, Any]:
    """A node's message in the OpenAI chat format."""
    role = message.get("role")
    if role == "tool":
        result = message.get("tool_result") or {}
        return {
            "role": "tool",
            "tool_call_id": str(result.get("call_id", "")),
            "content": str(result.get("content") or ""),
        }
    converted: dict[str, Any] = {"role": role, "content": message.get("content") or ""}
    if role == "assistant":
        calls = [message["tool_call"]] if message.get("tool_call") else list(message.get("tool_calls") or [])
        if calls:
            converted["tool_calls"] = [chat_call(call) for call in calls]
    return converted


def reply_of(node: dict[str, Any]) -> dict[str, Any]:
    return chat_message({**node["response"], "role": "assistant"})


def ordered(nodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The nodes as one chain, root first (by depth, then time), each the parent of the next."""
    chain = sorted(nodes, key=lambda n: (n.get("depth", 0), n["timestamp"]))
    for parent, child in zip(chain, chain[1:]):
        if child["parent_id"] != parent["id"]:
            raise NodeImportError(
                f"node {child['id']} follows {child['parent_id']}, not {parent['id']}: give the node files "
                "of one trajectory, every step of it"
            )
    return chain


def seconds(node: dict[str, Any]) -> float:
    return datetime.fromisoformat(node["timestamp"]).timestamp()


def import_nodes(paths: list[Path], item_dir: Path, task: str = "researchgym", domain: str = "") -> int:
    """Write item_dir's trajectory.jsonl and llm_messages.jsonl from the nodes; returns the steps."""
    if not paths:
        raise NodeImportError("no node files given")
    chain = ordered([load_node(path) for path in paths])
    run = RunDir(item_dir)
    if run.trajectory.exists():
        raise NodeImportError(f"{item_dir} already holds a trajectory; give a new directory")
    model = str(chain[-1]["response"].get("model", ""))
    trajectory = TrajectoryWriter(
        run.trajectory,
        {"task": task, "domain": domain, "agent": f"researchgym-react@1[{model}]", "imported_from": "researchgym"},
    )
    start = seconds(chain[0])
    tools = offered_tools(chain)
    conversation: list[dict[str, Any]] = []
    with open(run.llm_messages, "w", encoding="utf-8") as log:
        for number, node in enumerate(chain, 1):
            messages = [chat_message(m) for m in node["messages"]]
            if node.get("system_prompt") and not (messages and messages[0]["role"] == "system"):
                messages.insert(0, {"role": "system", "content": node["system_prompt"]})
            continues = bool(conversation) and messages[: len(conversation)] == conversation
            reply = reply_of(node)
            record = {
                "call": number,
                "purpose": "act",
                "wall": seconds(node),
                "step": number - 1,
                "model": str(node["response"].get("model", "")),
                "context_reset": not continues,
                "messages": messages[len(conversation) :] if continues else messages,
                "reply": reply,
                "node": node["id"],
            }
            if not continues and tools:
                record["tools"] = tools
            log.write(json.dumps(record) + "\n")
            conversation = messages + [reply]
            call = (reply.get("tool_calls") or [{"function": {"name": "", "arguments": "{}"}}])[0]["function"]
            observation = node.get("observation") or {}
            trajectory.step(
                step=number,
                working_time_s=seconds(node) - start,
                tool=call["name"],
                arguments=json.loads(call["arguments"] or "{}"),
                ok=bool(observation.get("success", True)),
                observation=json.dumps(observation),
                duration_s=0.0,
                extra={"node": node["id"]},
            )
    trajectory.event("end", step=len(chain), working_time_s=seconds(chain[-1]) - start, end_reason="imported")
    trajectory.close()
    return len(chain)


def offered_tools(nodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Tool schemas for the names the nodes called (descriptions from their actions)."""
    described: dict[str, str] = {}
    for node in nodes:
        action = node.get("action") or {}
        if action.get("action_type"):
            described[action["action_type"]] = str(action.get("description") or "")
    return [
        {"type": "function", "function": {"name": name, "description": text, "parameters": {"type": "object"}}}
        for name, text in sorted(described.items())
    ]
