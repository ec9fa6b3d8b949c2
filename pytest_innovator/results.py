"""An item's result: what the plugin reports as user_properties, JUnit XML and the results log.

Only builtin types go in here (a numpy float in a user property crashes xdist's serialisation).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

RESULTS_SCHEMA = 1

END_REASONS = (
    "finished",  # the agent called finish
    "gave_up",  # the agent called give_up
    "agent_returned",  # the agent's run() returned without finishing
    "time_limit",
    "step_limit",
    "cost_limit",
    "agent_error",  # the agent raised or its model endpoint failed for good
    "interrupted",  # the harness was stopped (Ctrl-C)
    "timeout",  # pytest-timeout cut the item off (a hung agent or model call)
    "harness_error",  # the harness itself failed inside the item's body
    "host_lost",  # the host the item ran on (a pool's session server) stopped answering
    "worker_crashed",  # the xdist worker running the item died (recorded by the controller)
    "worker_hung",  # the GPU scheduler's watchdog ended a worker that held the item past its limit
)


@dataclass
class EpisodeResult:
    innovator_task: str
    innovator_domain: str
    innovator_agent: str
    score_final: float | None
    score_best: float | None
    metric_final: float | None
    metric_best: float | None
    evals_used: int
    evals_budget: int
    hint_used: bool
    steps: int
    working_time_s: float
    end_reason: str
    run_dir: str
    final_status: str  # "scored", "invalid", "grader_failed"
    final_message: str
    protected_changes: int
    monitor_flags: int
    backend: str
    task_version: str
    workspace_provisioning: str  # "overlay", "copy", "snapshot", "dataset" or "host" (workspace.py)
    limits: str  # what bounded the item's processes (limits.py), "none" on the local backend
    agent_properties: dict[str, Any] = field(default_factory=dict)  # e.g. model, tokens_in, cost_usd

    def flat(self) -> dict[str, Any]:
        data = asdict(self)
        return {**{k: v for k, v in data.items() if k != "agent_properties"}, **data["agent_properties"]}

    def properties(self) -> list[tuple[str, Any]]:
        """(name, value) pairs for item.user_properties; floats rounded for readable XML."""
        return [(k, round(v, 4) if isinstance(v, float) else v) for k, v in self.flat().items()]

    def to_json(self) -> dict[str, Any]:
        return {"schema": RESULTS_SCHEMA, **self.flat()}
