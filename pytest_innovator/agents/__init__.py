"""Agents: the protocol, the registry and the episode runner.

An agent is any class constructed with one argument, a mapping of options (from the command line
or the caller), with a `name`, a `version` and `run(env)`. Agents see only the ResearchEnv API.
Built-in agents are registered through the entry-point group ``pytest_innovator.agents`` like any
third-party agent; ``module:Class`` names a class directly.
"""

from __future__ import annotations

import importlib
import traceback
from collections.abc import Mapping
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import InnovatorError

if TYPE_CHECKING:
    from ..env import ResearchEnv
    from ..results import EpisodeResult

ENTRY_POINT_GROUP = "pytest_innovator.agents"


class Agent(Protocol):
    """An agent may also define `properties() -> dict` of builtin values (model, tokens, cost),
    added to the item's properties after the episode, and `state_dict() -> dict` /
    `load_state_dict(state)` (JSON-able), saved in snapshots and restored on resume."""

    name: str
    version: str

    def run(self, env: ResearchEnv) -> None: ...


class AgentError(InnovatorError):
    """An agent that cannot be found or built; the message says what to change."""


def available_agents() -> list[str]:
    return sorted(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))


def load_agent_class(spec: str) -> type:
    if ":" in spec:
        module_name, _, class_name = spec.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise AgentError(f"agent {spec!r}: cannot import module {module_name!r} ({exc})") from None
        try:
            return getattr(module, class_name)
        except AttributeError:
            raise AgentError(f"agent {spec!r}: module {module_name!r} has no {class_name!r}") from None
    matches = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == spec]
    if not matches:
        raise AgentError(f"unknown agent {spec!r}; available: {', '.join(available_agents())}, or give module:Class")
    return matches[0].load()


def load_agent(spec: str, options: Mapping[str, Any] | None = None) -> Agent:
    cls = load_agent_class(spec)
    agent = cls(dict(options or {}))
    for attribute in ("name", "version", "run"):
        if not hasattr(agent, attribute):
            raise AgentError(f"agent {spec!r} has no {attribute!r}; see docs/agents.md for the Agent protocol")
    return agent


def agent_label(agent: Agent) -> str:
    model = getattr(agent, "model", None)
    return f"{agent.name}@{agent.version}" + (f"[{model}]" if model else "")


def run_episode(agent: Agent, env: ResearchEnv) -> EpisodeResult:
    """Run the agent, then the final evaluation, whatever ended the episode."""
    reason = "agent_returned"
    state_dict = getattr(agent, "state_dict", None)
    if callable(state_dict):
        env.agent_state = state_dict
    resumed = env.resumed or {}
    # A branch may continue with another agent or model: then the saved state is not its own.
    if (
        resumed.get("agent") is not None
        and resumed.get("agent_name") == agent_label(agent)
        and hasattr(agent, "load_state_dict")
    ):
        agent.load_state_dict(resumed["agent"])
    try:
        agent.run(env)
    except KeyboardInterrupt:
        env.finalize("interrupted")
        raise
    except Exception as exc:
        reason = "agent_error"
        env.trajectory.event(
            "agent_error",
            step=env.steps,
            working_time_s=env.working_time_s,
            error=f"{type(exc).__name__}: {exc}",
            traceback=traceback.format_exc(),
        )
    properties = getattr(agent, "properties", None)
    return env.finalize(reason, agent_properties=properties() if callable(properties) else None)
