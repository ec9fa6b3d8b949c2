from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_innovator.agents import load_agent, run_episode
from pytest_innovator.env import Limits, ResearchEnv
from pytest_innovator.ledger import EvalLedger
from pytest_innovator.remote.client import connect_remote_workspace
from pytest_innovator.task import TaskError, load_task
from pytest_innovator.trajectory import read_trajectory
from pytest_innovator.workspace import LocalWorkspace, Workspace

from .conftest import FIXTURES
from .session_server import ServerProcess, session_server  # noqa: F401


@pytest.fixture(params=["local", "remote"])
def server(request: pytest.FixtureRequest) -> ServerProcess | None:
    """Every scenario runs on the in-process backend and through a session server on 127.0.0.1."""
    return request.getfixturevalue("session_server") if request.param == "remote" else None


def make_env(task_dir: Path, run_dir: Path, server: ServerProcess | None = None, **limits: object) -> ResearchEnv:
    task = load_task(task_dir)
    workspace: Workspace
    if server is None:
        workspace, _ = LocalWorkspace.create(task, run_dir)
    else:
        workspace, _ = connect_remote_workspace(task, run_dir, base_url=server.url, token=server.token)
    settings = {"time_limit_s": 300.0, "step_limit": 50, "eval_budget": 3, "hints": "tool", **limits}
    return ResearchEnv(task, workspace, run_dir, Limits(**settings), agent_name="test")  # type: ignore[arg-type]


@pytest.fixture
def env(number_task_dir: Path, tmp_path: Path, server: ServerProcess | None) -> Iterator[ResearchEnv]:
    environment = make_env(number_task_dir, tmp_path / "run", server)
    yield environment
    environment.workspace.close()


def test_null_scores_zero_and_oracle_scores_eighty(
    number_task_dir: Path, tmp_path: Path, server: ServerProcess | None
) -> None:
    results = {}
    for name in ("null", "oracle"):
        environment = make_env(number_task_dir, tmp_path / name, server)
        try:
            results[name] = run_episode(load_agent(name), environment)
        finally:
            environment.workspace.close()
    assert results["null"].score_final == 0 and results["null"].end_reason == "finished"
    assert results["oracle"].score_final == pytest.approx(80)
    assert results["oracle"].metric_final == 0.9
    assert results["oracle"].evals_used == 0  # the final evaluation is not the agent's


def test_replayed_episode_is_recorded_exactly(env: ResearchEnv) -> None:
    """A session runs a long command while the agent keeps working, reads by offset, evaluates,
    views the hint and finishes; the ledger and trajectory show exactly that."""
    replay = FIXTURES / "replays" / "number_long_command.jsonl"
    result = run_episode(load_agent("replay", {"replay": str(replay)}), env)
    records = read_trajectory(env.run_dir / "trajectory.jsonl")
    steps = [r for r in records if r["type"] == "step"]
    assert all(s["ok"] for s in steps), steps
    assert [s["tool"] for s in steps] == [
        "create_session",
        "run_command",
        "write_file",
        "wait",
        "read_output",
        "evaluate",
        "view_hint",
        "finish",
    ]
    assert "still running" in steps[1]["observation"]
    assert "start\nend\n" in steps[4]["observation"]
    assert "score 45.71/100" in steps[5]["observation"]
    assert "multiplied by 0.75" in steps[6]["observation"]
    assert result.score_final == pytest.approx(45.714286 * 0.75, rel=1e-5)
    assert result.score_best == result.score_final
    assert (result.evals_used, result.hint_used, result.steps, result.end_reason) == (1, True, 8, "finished")

    ledger = EvalLedger.load(env.run_dir / "ledger.json")
    assert [(e.kind, e.status, e.metric) for e in ledger.evaluations] == [
        ("agent", "scored", 0.6),
        ("final", "scored", 0.6),
    ]
    assert ledger.hint_viewed_step == 7
    assert records[0]["type"] == "header" and records[0]["version"] == 1
    assert [s["step"] for s in steps] == list(range(1, 9))
    events = [r["event"] for r in records if r["type"] == "event"]
    assert events == ["evaluation", "hint", "evaluation", "end"]


def test_fourth_evaluation_is_refused_and_final_still_runs(env: ResearchEnv) -> None:
    env.workspace.write_file("answer.txt", b"0.55")
    for _ in range(3):
        assert env.step("evaluate").ok
    refused = env.step("evaluate")
    assert not refused.ok and "no evaluations left (3 of 3 used)" in refused.output and "used nothing" in refused.output
    assert env.ledger.agent_evals_used == 3 and len(env.ledger.evaluations) == 3
    result = env.finalize()
    assert [e.kind for e in env.ledger.evaluations] == ["agent"] * 3 + ["final"]
    assert result.evals_used == 3 and result.score_final == pytest.approx(40)


def test_grader_failure_does_not_use_the_budget(env: ResearchEnv) -> None:
    env.workspace.write_file("answer.txt", b"crash")
    failed = env.step("evaluate")
    assert not failed.ok and "grader failed" in failed.output and "did not use an evaluation" in failed.output
    assert env.ledger.evals_remaining == 3
    env.workspace.write_file("answer.txt", b"nonsense")
    invalid = env.step("evaluate")
    assert invalid.ok and "invalid submission: score 0" in invalid.output
    assert env.ledger.evals_remaining == 2


@pytest.mark.parametrize(
    ("tool", "arguments", "expected"),
    [
        ("fly", {}, "unknown tool 'fly'; available tools: list_files"),
        ("read_file", "{not json", "arguments are not valid JSON"),
        ("read_file", {"path": "answer.txt", "colour": 1}, "colour: unknown argument"),
        ("read_file", {}, "path: Field required"),
        ("run_command", {"session": "nope", "command": "ls"}, "nope"),
        ("read_file", {"path": "../../etc/passwd"}, "outside the workspace"),
        ("search_files", {"pattern": "x", "path": "../"}, "'..' is not allowed"),
        ("edit_file", {"path": "answer.txt", "old": "zzz", "new": "y"}, "not found"),
    ],
)
def test_bad_calls_become_error_observations(env: ResearchEnv, tool: str, arguments: object, expected: str) -> None:
    observation = env.step(tool, arguments)  # type: ignore[arg-type]
    assert not observation.ok
    assert expected in observation.output


def test_step_limit_ends_the_episode(number_task_dir: Path, tmp_path: Path, server: ServerProcess | None) -> None:
    environment = make_env(number_task_dir, tmp_path / "run", server, step_limit=2)
    try:
        environment.step("think", {"thought": "one"})
        last = environment.step("think", {"thought": "two"})
        assert last.done and "step limit of 2 reached" in last.output
        assert not environment.step("think", {"thought": "three"}).ok
        result = environment.finalize()
        assert result.end_reason == "step_limit" and result.final_status == "scored" and result.steps == 2
    finally:
        environment.workspace.close()


def test_time_limit_ends_the_episode(number_task_dir: Path, tmp_path: Path, server: ServerProcess | None) -> None:
    environment = make_env(number_task_dir, tmp_path / "run", server, time_limit_s=0.5)
    try:
        waited = environment.step("wait", {"seconds": 60})
        assert waited.ok and "time is up" in waited.output
        after = environment.step("think", {"thought": "late"})
        assert after.done and "working time is used up" in after.output
        assert environment.finalize().end_reason == "time_limit"
    finally:
        environment.workspace.close()


def test_protected_change_is_recorded(env: ResearchEnv) -> None:
    env.step("write_file", {"path": "data/facts.txt", "content": "tampered"})
    observation = env.step("evaluate")
    assert "protected files changed" in observation.output and "data/facts.txt" in observation.output
    result = env.finalize()
    assert result.protected_changes == 1
    assert env.ledger.protected_changes[0]["path"] == "data/facts.txt"


def test_hidden_parts_are_not_in_the_workspace(env: ResearchEnv) -> None:
    listing = env.step("list_files", {"path": ".", "depth": 3}).output
    assert "answer.txt" in listing
    for hidden in ("grade.py", "hint.md", "solution", "task.toml"):
        assert hidden not in listing


def test_ledger_survives_a_new_env(number_task_dir: Path, tmp_path: Path, server: ServerProcess | None) -> None:
    """A second ResearchEnv on the same run directory continues the budget; it never resets it."""
    first = make_env(number_task_dir, tmp_path / "run", server)
    first.workspace.write_file("answer.txt", b"0.4")
    first.step("evaluate")
    first.step("evaluate")
    first.workspace.close()
    first.trajectory.close()
    second = make_env(number_task_dir, tmp_path / "run2", server)
    assert second.ledger.evals_remaining == 3
    (tmp_path / "run2" / "ledger.json").write_text((tmp_path / "run" / "ledger.json").read_text())
    third = ResearchEnv(second.task, second.workspace, tmp_path / "run2", second.limits)
    assert third.ledger.evals_remaining == 1 and third.steps == 2
    second.workspace.close()
    data = json.loads((tmp_path / "run" / "ledger.json").read_text())
    assert data["schema"] == 1


def test_replay_from_yaml(env: ResearchEnv) -> None:
    result = run_episode(load_agent("replay", {"replay": str(FIXTURES / "replays" / "number_answer.yaml")}), env)
    assert (result.score_final, result.evals_used, result.end_reason) == (pytest.approx(40), 1, "finished")


def test_agent_exception_still_runs_the_final_evaluation(env: ResearchEnv) -> None:
    class Crashing:
        name, version = "crashing", "1"

        def run(self, env: ResearchEnv) -> None:
            env.step("write_file", {"path": "answer.txt", "content": "0.9"})
            raise RuntimeError("model endpoint vanished")

    result = run_episode(Crashing(), env)
    assert result.end_reason == "agent_error" and result.score_final == pytest.approx(80)
    events = [r for r in read_trajectory(env.run_dir / "trajectory.jsonl") if r.get("event") == "agent_error"]
    assert "model endpoint vanished" in events[0]["error"]


def test_disk_limit_is_flagged_once(number_task_dir: Path, tmp_path: Path, server: ServerProcess | None) -> None:
    toml = number_task_dir / "task.toml"
    toml.write_text(toml.read_text().replace("[grader]", '[resources]\ndisk = "64K"\n\n[grader]'))
    environment = make_env(number_task_dir, tmp_path / "run", server)
    try:
        environment.step("write_file", {"path": "big.bin", "content": "x" * 200_000})
        first = environment.step("evaluate")
        assert "past the task's disk limit of 0.1 MiB" in first.output
        assert "disk limit" not in environment.step("evaluate").output
        result = environment.finalize()
        assert result.monitor_flags == 1 and environment.ledger.monitor[0]["check"] == "disk_limit"
    finally:
        environment.workspace.close()


def test_a_task_offers_mlgym_names_for_evaluate_and_finish(tmp_path: Path, number_task_dir: Path) -> None:
    toml = number_task_dir / "task.toml"
    toml.write_text(toml.read_text().replace('domain = "', 'tools = ["mlgym"]\ndomain = "', 1))
    env = make_env(number_task_dir, tmp_path / "run")
    try:
        names = {tool.name for tool in env.available_tools()}
        assert {"validate", "submit"} <= names and not names & {"evaluate", "finish"}
        assert env.step("validate").ok and len(env.ledger.evaluations) == 1
        assert env.step("submit").done and env.end_reason == "finished"
    finally:
        env.workspace.close()


def test_an_unknown_tool_group_names_the_known_ones(number_task_dir: Path) -> None:
    toml = number_task_dir / "task.toml"
    toml.write_text(toml.read_text().replace('domain = "', 'tools = ["telepathy"]\ndomain = "', 1))
    with pytest.raises(TaskError, match="tools.*'telepathy'.*memory, web"):
        load_task(number_task_dir)
