"""The oracle agent applies the task's reference solution through an ordinary session, proving
the task solvable and its grader right."""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from typing import Any

from ..env import ResearchEnv

POLL_S = 30.0


class OracleAgent:
    name = "oracle"
    version = "1"

    def __init__(self, options: Mapping[str, Any]):
        self.options = options
        self.applied = False  # the solution command finished (a resume then only finishes)

    def state_dict(self) -> dict[str, Any]:
        return {"applied": self.applied}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.applied = bool(state["applied"])

    def run(self, env: ResearchEnv) -> None:
        solution = env.task.spec.solution
        if solution is None:
            raise RuntimeError(f"task {env.task.id} has no [solution]; the oracle cannot run on it")
        if not self.applied:  # on a resume, the lost solution command starts again from the top
            self._apply(env, solution.command)
        if not env.done:
            env.step("finish", {"summary": "applied the reference solution"})

    def _apply(self, env: ResearchEnv, solution_command: str) -> None:
        session = "oracle"
        solution_dir = env.solution_dir()  # before the session starts, so a sandbox can show it
        env.step("create_session", {"name": session})
        command = f"export INNOVATOR_SOLUTION_DIR={shlex.quote(solution_dir)}\n{solution_command}"
        observation = env.step("run_command", {"session": session, "command": command, "wait": POLL_S})
        while not env.done and not observation.data.get("done"):
            env.step("wait", {"seconds": POLL_S, "session": session})
            observation = env.step("session_status", {"session": session})
        if env.done:
            return
        if observation.data.get("exit_code") != 0:
            raise RuntimeError(f"the reference solution failed: {observation.output}")
        self.applied = True
