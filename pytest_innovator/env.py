"""ResearchEnv: the agent's whole world. `step(tool, arguments) -> Observation`.

It owns the clock (working time, with grading excluded), the limits, the evaluation ledger and
the trajectory. Every step is written to the trajectory before its observation is returned, and
the ledger is persisted in the run directory, so a resume continues with the budget that was left.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from . import guidance
from .gpu_monitor import GpuMemoryMonitor
from .grading import grade_workspace
from .ledger import UNLIMITED_EVALS, EvalKind, EvalLedger, Evaluation
from .protected import from_json, to_json
from .results import EpisodeResult
from .rundir import RunDir, write_json_atomic
from .scores import normalize
from .sessions import SessionError
from .task import Task
from .tools import Observation, Tool, action_space
from .trajectory import TrajectoryWriter
from .workspace import Workspace, WorkspaceError

HintMode = Literal["off", "tool", "prompt"]


@dataclass(frozen=True)
class Limits:
    time_limit_s: float
    step_limit: int
    eval_budget: int
    hints: HintMode = "off"


@dataclass(frozen=True)
class SnapshotPolicy:
    """When to snapshot: every N steps, every T minutes of working time, and after every
    evaluation and hint (so a resume never loses or regains an evaluation)."""

    every_steps: int | None = None
    every_minutes: float | None = 30.0
    keep_last: int = 3


class WorkingClock:
    """Monotonic working time that continues from `used_s` and can be paused (while grading)."""

    def __init__(self, used_s: float = 0.0, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._base = used_s
        self._started = clock()
        self._paused_s = 0.0
        self._pause_started: float | None = None

    @property
    def elapsed_s(self) -> float:
        now = self._clock()
        pausing = now - self._pause_started if self._pause_started is not None else 0.0
        return self._base + (now - self._started) - self._paused_s - pausing

    @contextmanager
    def paused(self) -> Iterator[None]:
        if self._pause_started is not None:  # already paused by an outer block
            yield
            return
        self._pause_started = self._clock()
        try:
            yield
        finally:
            self._paused_s += self._clock() - self._pause_started
            self._pause_started = None


def resume_notice(resumed: dict[str, Any]) -> str:
    """What the agent is told at its first step after a resume."""
    lines = [
        f"[the episode was resumed from snapshot {resumed.get('snapshot')} at step {resumed.get('step')}: "
        "working time, evaluations and the hint stand as they were; every process was lost]"
    ]
    for session in resumed.get("sessions", []):
        doing = f"was running: {session['command']}" if session.get("busy") else "was idle"
        lines.append(f"[session {session['name']} is gone ({doing}); create a new session to continue]")
    return "\n".join(lines)


def format_validation_error(tool: str, exc: ValidationError) -> str:
    problems = []
    for error in exc.errors():
        field = ".".join(str(p) for p in error["loc"]) or "(arguments)"
        message = "unknown argument" if error["type"] == "extra_forbidden" else error["msg"]
        problems.append(f"{field}: {message}")
    return f"bad arguments for {tool}: " + "; ".join(problems)


class ResearchEnv:
    def __init__(
        self,
        task: Task,
        workspace: Workspace,
        run_dir: Path,
        limits: Limits,
        *,
        agent_name: str = "",
        clock: Callable[[], float] = time.monotonic,
        grade_seed: int = 0,
        snapshots: SnapshotPolicy | None = None,
        resumed: dict[str, Any] | None = None,
        gpu_memory: GpuMemoryMonitor | None = None,
        services: dict[str, Any] | None = None,
    ):
        self.task = task
        # What optional tools reach outside the workspace through (a search provider, ...), by group
        # name; built by the plugin from the user's options, never visible to the agent's sessions.
        self.services = services or {}
        self.workspace = workspace
        self.gpu_memory = gpu_memory  # the leased GPUs' memory over time, where this host has them
        self.run_dir = run_dir
        self.limits = limits
        self.agent_name = agent_name
        self.grade_seed = grade_seed
        self.ledger_path = RunDir(run_dir).ledger
        if self.ledger_path.exists():
            self.ledger = EvalLedger.load(self.ledger_path)
        else:
            self.ledger = EvalLedger(
                task_id=task.id,
                budget=limits.eval_budget,
                hint_penalty=task.spec.hint.penalty if task.spec.hint else 0.0,
                protected_start=to_json(self._protected_state()),
            )
            self.ledger.save(self.ledger_path)
        self.clock = WorkingClock(self.ledger.working_time_s, clock)
        self.trajectory = TrajectoryWriter(
            RunDir(run_dir).trajectory,
            {
                "task": task.id,
                "domain": task.spec.domain,
                "task_version": task.spec.version,
                "agent": agent_name,
                "backend": workspace.backend,
                "limits": limits.__dict__,
            },
        )
        self.session_commands: dict[str, str] = {}
        self.done = self.ledger.end_reason is not None
        self.end_reason: str | None = self.ledger.end_reason
        self._result: EpisodeResult | None = None
        self.snapshot_policy = snapshots
        self._snapshot_store: Any = None
        self.agent_state: Callable[[], dict[str, Any]] | None = None  # set by run_episode
        self._snapshot_due = False  # an evaluation or the hint changed the ledger: snapshot after this step
        self._last_snapshot = (self.ledger.steps, self.working_time_s)
        # A resumed episode: the agent's saved state, and the sessions whose processes were lost.
        self.resumed = resumed
        self.lost_sessions: list[dict[str, Any]] = list((resumed or {}).get("sessions", []))
        self._notice = ""
        # Guidance from a person (guidance.py): the messages already handed to the agent, which a
        # snapshot holds so that a resume never hands one over twice. An agent that takes guidance
        # as a message of its own (react) sets guidance_in_observation to False.
        self.guidance_delivered: list[str] = list((resumed or {}).get("guidance_delivered", []))
        self._guidance_in_flight: list[str] = []  # delivered with the step being returned
        self.guidance_in_observation = True
        # Looked at after every step: one stat each, with the paths made once (building them each
        # step doubled the harness's cost per step, bench/bench_env.py).
        self._pause_flag = str(RunDir(run_dir).pause_request)
        self._mailbox = str(RunDir(run_dir).guidance)
        if resumed is not None:
            self._notice = resume_notice(resumed)
            self.trajectory.event(
                "resume",
                step=self.ledger.steps,
                working_time_s=self.working_time_s,
                source=resumed.get("source"),
                snapshot=resumed.get("snapshot"),
                lost_sessions=self.lost_sessions,
            )

    def keep_spent(self, source: Path, earlier: EvalLedger) -> None:
        """This episode starts again from the beginning (its earlier attempt left no snapshot):
        what that attempt spent stays spent, so a crash never buys evaluations or a free hint."""
        kept = [e for e in earlier.evaluations if e.kind == "agent"]
        if not kept and not earlier.hint_viewed:
            return
        self.ledger.evaluations = kept + self.ledger.evaluations
        if earlier.hint_viewed:
            self.ledger.hint_viewed, self.ledger.hint_viewed_step = True, 0
        self.ledger.save(self.ledger_path)
        hint = " and the hint you viewed (its penalty stands)" if earlier.hint_viewed else ""
        self._notice = (
            f"[this episode started again from the beginning: its earlier attempt left no snapshot; the "
            f"{len(kept)} evaluation(s) it used stay used{hint}; {self.ledger.evals_remaining} remain]"
        )
        self.trajectory.event(
            "restart", step=0, working_time_s=0.0, source=str(source), evaluations_kept=len(kept), hint=bool(hint)
        )

    # --- what the agent may know ---------------------------------------------------------

    @property
    def working_time_s(self) -> float:
        return self.clock.elapsed_s

    @property
    def remaining_time_s(self) -> float:
        return max(0.0, self.limits.time_limit_s - self.working_time_s)

    @property
    def steps(self) -> int:
        return self.ledger.steps

    @property
    def evals_remaining(self) -> int:
        return self.ledger.evals_remaining

    @property
    def tools(self) -> dict[str, Tool]:
        """The action space: with sessions on each host for an item that holds several, and the
        optional tool groups the task offers (a task that requires web tools is offered them)."""
        groups = self.task.spec.tools + (("web",) if self.task.spec.requires.web_tools else ())
        return action_space(tuple(dict.fromkeys(groups)), spanning=len(getattr(self.workspace, "held_hosts", ())) > 1)

    def available_tools(self) -> list[Tool]:
        return [t for t in self.tools.values() if t.name != "view_hint" or self._hint_offered()]

    def tool_schemas(self) -> list[dict[str, Any]]:
        return [t.openai_schema() for t in self.available_tools()]

    def instruction(self) -> str:
        """The task's instruction; with hints in 'prompt' mode, the hint too (and its penalty)."""
        text = self.task.instruction()
        if self.limits.hints == "prompt" and self.task.hint_path:
            self._mark_hint_viewed()
            text += "\n\n## Hint\n\n" + self.task.hint_path.read_text(encoding="utf-8")
        return text

    def _hint_offered(self) -> bool:
        return self.limits.hints == "tool" and self.task.hint_path is not None

    # --- stepping --------------------------------------------------------------------------

    def step(self, name: str, arguments: dict[str, Any] | str | None = None) -> Observation:
        started = time.monotonic()
        if self.done:
            return Observation(name, False, f"the episode has ended ({self.end_reason}); no more steps", done=True)
        if self.remaining_time_s <= 0:
            self.end("time_limit")
            observation = Observation(
                name, False, "the working time is used up; the final evaluation runs now", done=True
            )
            self._record(name, arguments, observation, started)
            return observation
        if self._guidance_in_flight:  # the agent has taken it in: now a snapshot may hold it as delivered
            self._guidance_in_flight = []
            self._snapshot_due = True
        self.ledger.steps += 1
        observation = self._dispatch(name, arguments)
        for said in self._limit_events():  # an OOM kill, a refused fork, a full disk, GPU memory
            observation.output += f"\n[{said}]"
            self.trajectory.event("limit", step=self.ledger.steps, working_time_s=self.working_time_s, what=said)
        if not self.done and self.ledger.steps >= self.limits.step_limit:
            self.end("step_limit")
            observation.output += f"\n[step limit of {self.limits.step_limit} reached; the final evaluation runs now]"
        observation.done = self.done
        if self._notice:
            observation.output = f"{self._notice}\n{observation.output}"
            self._notice = ""
        self._record(name, arguments, observation, started)
        self._hold_while_paused(observation)
        self._deliver_guidance(observation)
        self._maybe_snapshot(force=self._snapshot_due)
        return observation

    def _hold_while_paused(self, observation: Observation) -> None:
        """Hold the agent between steps while a person pauses the item; the working clock runs on,
        so the time limit still ends a paused item."""
        if not os.path.exists(self._pause_flag):
            return
        self.trajectory.event("paused", step=self.ledger.steps, working_time_s=self.working_time_s)
        while guidance.is_paused(self.run_dir) and not self.done:
            if self.remaining_time_s <= 0:
                self.end("time_limit")
                observation.output += "\n[the working time ran out while the item was paused; it is evaluated now]"
                observation.done = True
            else:
                time.sleep(min(guidance.PAUSE_POLL_S, self.remaining_time_s))
        self.trajectory.event("released", step=self.ledger.steps, working_time_s=self.working_time_s)

    def _deliver_guidance(self, observation: Observation) -> None:
        """Hand the mailbox's new messages to the agent with this step's observation."""
        if self.done or not os.path.isdir(self._mailbox):
            return
        messages = guidance.pending(self.run_dir, set(self.guidance_delivered))
        for message in messages:
            self.guidance_delivered.append(message["id"])
            self._guidance_in_flight.append(message["id"])
            self.trajectory.event("guidance", step=self.ledger.steps, working_time_s=self.working_time_s, **message)
        if messages:
            observation.data["guidance"] = [guidance.render(m) for m in messages]
            if self.guidance_in_observation:
                observation.output += "".join(f"\n\n{text}" for text in observation.data["guidance"])

    def _limit_events(self) -> list[str]:
        gpu = self.gpu_memory.new_events() if self.gpu_memory else []
        return self.workspace.limit_events() + gpu

    def _dispatch(self, name: str, arguments: dict[str, Any] | str | None) -> Observation:
        tool = self.tools.get(name)
        if tool is None or (name == "view_hint" and not self._hint_offered()):
            names = ", ".join(t.name for t in self.available_tools())
            return Observation(name, False, f"unknown tool {name!r}; available tools: {names}")
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments) if arguments.strip() else {}
            except json.JSONDecodeError as exc:
                return Observation(name, False, f"arguments are not valid JSON ({exc}); send a JSON object")
        if arguments is None:
            arguments = {}
        if not isinstance(arguments, dict):
            return Observation(name, False, f"arguments must be a JSON object, got {type(arguments).__name__}")
        try:
            parsed = tool.args.model_validate(arguments)
        except ValidationError as exc:
            return Observation(name, False, format_validation_error(name, exc))
        try:
            return tool.handler(self, parsed)
        except (WorkspaceError, SessionError, ValueError, OSError) as exc:
            return Observation(name, False, str(exc))
        except Exception as exc:  # a harness bug: keep the episode alive, keep the evidence
            return Observation(
                name,
                False,
                f"internal error in {name}: {type(exc).__name__}: {exc}",
                data={"traceback": traceback.format_exc()},
            )

    def _record(self, name: str, arguments: Any, observation: Observation, started: float) -> None:
        # The trajectory line carries the step count and working time; the ledger file is
        # rewritten only when an evaluation, the hint or the end changes it (a rename per step
        # costs milliseconds on ext4).
        self.ledger.working_time_s = self.working_time_s
        extra = {"traceback": observation.data["traceback"]} if "traceback" in observation.data else None
        self.trajectory.step(
            step=self.ledger.steps,
            working_time_s=self.working_time_s,
            tool=name,
            arguments=arguments,
            ok=observation.ok,
            observation=observation.output,
            duration_s=time.monotonic() - started,
            extra=extra,
        )

    def note_command(self, session: str, command: str) -> None:
        self.session_commands[session] = command

    # --- snapshots -------------------------------------------------------------------------

    def snapshot_state(self) -> dict[str, Any]:
        """Everything a resume needs besides the workspace's files."""
        self.ledger.working_time_s = self.working_time_s
        sessions = [
            {
                "name": s.name,
                "busy": s.busy,
                "command": s.command if s.busy else None,
                "last_command": self.session_commands.get(s.name),
            }
            for s in self.workspace.sessions.list()
        ]
        return {
            "ledger": self.ledger.to_json(),
            "trajectory_bytes": self.trajectory.position,
            "memory": memory.read_text(encoding="utf-8") if (memory := RunDir(self.run_dir).memory).is_file() else None,
            "agent": self.agent_state() if self.agent_state else None,
            "agent_name": self.agent_name,
            "sessions": sessions,
            # A message delivered with the step being returned is not in the agent's state yet: a
            # resume from this snapshot delivers it again.
            "guidance_delivered": [m for m in self.guidance_delivered if m not in self._guidance_in_flight],
        }

    def snapshot(self) -> Any:
        from .snapshots.store import SnapshotStore

        if self._snapshot_store is None:  # one store per episode: it keeps the last manifest in memory
            self._snapshot_store = SnapshotStore(RunDir(self.run_dir).snapshots)
        store = self._snapshot_store
        if self.workspace.host_root is None:
            raise WorkspaceError(
                f"the {self.workspace.backend} backend's workspace is not on this host: snapshots need its files here"
            )
        overlay = self.workspace.overlay  # then its upper layer is all the item changed
        source = overlay.upper if overlay else self.workspace.host_root
        info = store.take(source, self.snapshot_state(), step=self.ledger.steps, layer=overlay is not None)
        if self.snapshot_policy:
            store.prune(keep_last=self.snapshot_policy.keep_last)
        self._last_snapshot = (self.ledger.steps, self.working_time_s)
        self.trajectory.event(
            "snapshot",
            step=self.ledger.steps,
            working_time_s=self.working_time_s,
            name=info.name,
            bytes_added=info.bytes_added,
            seconds=round(info.seconds, 3),
        )
        return info

    def _maybe_snapshot(self, force: bool = False) -> None:
        policy = self.snapshot_policy
        # Snapshots need the workspace's files on this host (not so for the remote backend).
        if policy is None or self.done or self.workspace.host_root is None:
            return
        steps, minutes = self.ledger.steps - self._last_snapshot[0], (self.working_time_s - self._last_snapshot[1]) / 60
        due = (
            force
            or (policy.every_steps is not None and steps >= policy.every_steps)
            or (policy.every_minutes is not None and minutes >= policy.every_minutes)
        )
        if due:
            self._snapshot_due = False
            with self.clock.paused():
                self.snapshot()

    def end(self, reason: str) -> None:
        if not self.done:
            self.done = True
            self.end_reason = reason
            self.ledger.end_reason = reason
            self.ledger.save(self.ledger_path)

    # --- system tools ----------------------------------------------------------------------

    def wait(self, seconds: float, session: str | None) -> Observation:
        """Sleep up to `seconds`; return early when the watched command (or any running one) ends."""
        timeout = min(seconds, self.remaining_time_s)
        started = time.monotonic()
        sessions = self.workspace.sessions
        if session is not None and sessions.get(session).status().busy:
            finished = sessions.get(session).wait(timeout)
        elif session is None and any(s.busy for s in sessions.list()):
            finished = sessions.watch_any(timeout)
        else:
            time.sleep(timeout)
            finished = False
        waited = time.monotonic() - started
        busy = [s.name for s in sessions.list() if s.busy]
        state = f"still running: {', '.join(busy)}" if busy else "no command is running"
        why = "a command finished" if finished else "time is up"
        return Observation("wait", True, f"waited {waited:.1f}s ({why}); {state}")

    def view_hint(self) -> Observation:
        assert self.task.hint_path is not None
        first = not self.ledger.hint_viewed
        self._mark_hint_viewed()
        penalty = self.ledger.hint_penalty
        note = (
            f"[hint viewed: final and best scores are multiplied by {1 - penalty:g}]"
            if first
            else "[hint shown again: no further penalty]"
        )
        return Observation("view_hint", True, f"{note}\n{self.task.hint_path.read_text(encoding='utf-8')}")

    def _mark_hint_viewed(self) -> None:
        if not self.ledger.hint_viewed:
            self.ledger.hint_viewed = True
            self.ledger.hint_viewed_step = self.ledger.steps
            self.ledger.save(self.ledger_path)
            self.trajectory.event(
                "hint", step=self.ledger.steps, working_time_s=self.working_time_s, penalty=self.ledger.hint_penalty
            )
            self._snapshot_due = True

    def evaluate_for_agent(self) -> Observation:
        used, budget = self.ledger.agent_evals_used, self.ledger.budget
        if used >= budget:
            return Observation(
                "evaluate",
                False,
                f"no evaluations left ({used} of {budget} used); this request "
                "used nothing, and the final evaluation still runs when the episode ends",
            )
        evaluation = self._evaluate("agent")
        self._snapshot_due = True
        return Observation(
            "evaluate",
            evaluation.status != "grader_failed",
            self._describe(evaluation),
            {"score": self.ledger.effective(evaluation.score), "status": evaluation.status},
        )

    def _describe(self, e: Evaluation) -> str:
        left = (
            "evaluations are unlimited"
            if self.ledger.budget >= UNLIMITED_EVALS
            else f"{self.ledger.evals_remaining} of {self.ledger.budget} evaluations left"
        )
        if e.status == "grader_failed":
            return f"the grader failed ({e.message}); this did not use an evaluation ({left})"
        if e.status == "invalid":
            return f"invalid submission: score 0 ({left}).\n{e.message}"
        hint = " after the hint penalty" if self.ledger.hint_viewed else ""
        return (
            f"score {self.ledger.effective(e.score):.2f}/100{hint} "
            f"({self.task.spec.scoring.metric} = {e.metric:g}; {left}).\n{e.message}"
        )

    def _protected_state(self) -> dict[str, Any]:
        return self.workspace.protected_state(self.task.spec.protected)

    def _check_protected(self) -> list[str]:
        if not self.task.spec.protected:
            return []
        before = from_json(self.ledger.protected_start)
        changes = self.workspace.protected_changes(before, self.task.spec.protected)
        seen = {(c["path"], c["what"]) for c in self.ledger.protected_changes}
        new = [c for c in changes if (c.path, c.what) not in seen]
        for change in new:
            self.ledger.protected_changes.append({"path": change.path, "what": change.what, "step": self.ledger.steps})
            self.trajectory.event(
                "protected_change",
                step=self.ledger.steps,
                working_time_s=self.working_time_s,
                path=change.path,
                what=change.what,
            )
        return [f"{c.path}: {c.what}" for c in new]

    def _check_disk(self) -> list[str]:
        """Flag (once) a workspace that grew past the task's disk limit."""
        if any(flag["check"] == "disk_limit" for flag in self.ledger.monitor):
            return []
        usage, limit = self.workspace.disk_usage(), self.task.spec.resources.disk
        if usage <= limit:
            return []
        flag = {"check": "disk_limit", "bytes": usage, "limit": limit}
        self.ledger.monitor.append({**flag, "step": self.ledger.steps})
        self.trajectory.event("monitor", step=self.ledger.steps, working_time_s=self.working_time_s, **flag)
        return [f"the workspace uses {usage / 2**20:.1f} MiB, past the task's disk limit of {limit / 2**20:.1f} MiB"]

    def _evaluate(self, kind: EvalKind) -> Evaluation:
        changes = self._check_protected()
        flags = self._check_disk()
        index = self.ledger.next_index()
        log_path = RunDir(self.run_dir).grader_log(index)

        with self.clock.paused():
            if self.task.spec.experiment is not None:  # judged phase by phase (experiments/grading.py)
                from .experiments.grading import grade_experiment

                trajectory = RunDir(self.run_dir).trajectory
                outcome = grade_experiment(self.task, self.workspace, trajectory, self.services.get("judge"), log_path)
            elif getattr(self.workspace, "grades_on_host", False):  # a pool host grades where the item ran
                outcome = self.workspace.grade(self.grade_seed, index, log_path)
            else:
                outcome = grade_workspace(self.task, self.workspace, log_path, self.grade_seed)
        score = (
            normalize(outcome.metric, self.task.spec.scoring)
            if outcome.metric is not None
            else (0.0 if outcome.status == "invalid" else None)
        )
        message = outcome.message
        if changes:
            message += "\nprotected files changed (recorded for review): " + "; ".join(changes)
        if flags:
            message += "\nmonitor (recorded for review): " + "; ".join(flags)
        evaluation = Evaluation(
            index=index,
            kind=kind,
            status=outcome.status,
            metric=outcome.metric,
            score=score,
            message=message,
            step=self.ledger.steps,
            working_time_s=self.working_time_s,
            at=time.time(),
            grader_seconds=outcome.seconds,
            metrics=outcome.metrics,
            log=str(log_path.relative_to(self.run_dir)),
        )
        self.ledger.record(evaluation)
        self.ledger.save(self.ledger_path)
        self.trajectory.event(
            "evaluation",
            step=self.ledger.steps,
            working_time_s=self.working_time_s,
            kind=kind,
            index=index,
            status=outcome.status,
            metric=outcome.metric,
            score=self.ledger.effective(score),
            message=message,
        )
        return evaluation

    # --- the end ---------------------------------------------------------------------------

    def solution_dir(self) -> str:
        """A copy of the task's reference solution, outside the workspace (for the oracle agent only)."""
        target = self.run_dir / "oracle_solution"
        if not target.exists():
            shutil.copytree(self.task.solution_dir, target)
        return self.workspace.expose(target)

    def finalize(self, reason: str = "agent_returned", agent_properties: dict[str, Any] | None = None) -> EpisodeResult:
        """End the episode (if not ended) and run the final evaluation once; idempotent."""
        if self._result is not None:
            return self._result
        self.end(reason)
        self.ledger.working_time_s = self.working_time_s
        final = self.ledger.final_evaluation or self._evaluate("final")
        self.trajectory.event(
            "end",
            step=self.ledger.steps,
            working_time_s=self.working_time_s,
            end_reason=self.end_reason,
            score_final=self.ledger.final_score,
            score_best=self.ledger.best_score,
        )
        self.trajectory.close()
        best = self.ledger.best_evaluation
        self._result = EpisodeResult(
            innovator_task=self.task.id,
            innovator_domain=self.task.spec.domain,
            innovator_agent=self.agent_name,
            score_final=self.ledger.final_score,
            score_best=self.ledger.best_score,
            metric_final=final.metric,
            metric_best=best.metric if best else None,
            evals_used=self.ledger.agent_evals_used,
            evals_budget=self.ledger.budget,
            hint_used=self.ledger.hint_viewed,
            steps=self.ledger.steps,
            working_time_s=round(self.ledger.working_time_s, 3),
            end_reason=self.end_reason or reason,
            run_dir=str(self.run_dir),
            final_status=final.status,
            final_message=final.message,
            protected_changes=len(self.ledger.protected_changes),
            monitor_flags=len(self.ledger.monitor),
            backend=self.workspace.backend,
            task_version=self.task.spec.version,
            workspace_provisioning=self.workspace.provisioning,
            limits=self.workspace.limits_text
            + (f"; GPU memory {self.gpu_memory.describe()}" if self.gpu_memory else ""),
            agent_properties=dict(agent_properties or {}),
        )
        write_json_atomic(RunDir(self.run_dir).result, self._result.to_json())
        return self._result
