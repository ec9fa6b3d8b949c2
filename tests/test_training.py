"""Action-level labels and chat fine-tuning export, from the command line, over a react run that
received guidance and wasted a few steps on purpose."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pytest_innovator.agents import load_agent, run_episode
from pytest_innovator.agents.react import ReactAgent
from pytest_innovator.cli import main as cli
from pytest_innovator.rundir import RunDir
from pytest_innovator.training.export import check_example, check_file

from .scripted_llm import ScriptedLLMServer
from .test_env import make_env

ADVICE = "The grader wants 0.9; stop guessing."


def call(name: str, **arguments: Any) -> dict[str, Any]:
    return {"respond": {"tool_calls": [{"name": name, "arguments": arguments}]}}


WASTEFUL = {
    "exchanges": [
        call("write_file", path="answer.txt", content="0.5"),  # 1 (guidance arrives with it)
        call("evaluate"),  # 2
        call("evaluate"),  # 3 nothing changed since 2: rule unchanged_evaluation
        call("write_file", path="answer.txt", content="0.3"),  # 4 written back at 5: rule reverted_edit
        call("write_file", path="answer.txt", content="0.5"),  # 5
        call("read_file", path="missing.txt"),  # 6 fails
        call("read_file", path="missing.txt"),  # 7 the same, again: rule repeated_failure
        call("write_file", path="answer.txt", content="0.9"),  # 8
        call("finish", summary="done"),  # 9
    ]
}


@pytest.fixture
def finished_run(number_task_dir: Path, tmp_path: Path) -> Path:
    """A finished react run of the number task: the item's directory under <results>/runs/<run id>/."""
    item = tmp_path / "results" / "runs" / "run1" / "number"
    env = make_env(number_task_dir, item)  # agent "test"
    try:
        with ScriptedLLMServer(WASTEFUL) as server:
            assert cli(["guide", str(item), ADVICE, "--author", "ada"]) == 0
            agent = ReactAgent({"base_url": server.base_url, "tool_protocol": "native", "llm_backoff": 0.01})
            result = run_episode(agent, env)
            server.assert_transcript_done()
    finally:
        env.workspace.close()
    assert result.score_final == 80.0
    return item


def test_labels_drop_what_the_rules_find_and_a_persons_mark_wins(finished_run: Path) -> None:
    trajectory_before = RunDir(finished_run).trajectory.read_bytes()
    assert cli(["label", str(finished_run)]) == 0
    labels = json.loads(RunDir(finished_run).labels.read_text())
    dropped = {e["step"]: e["source"] for e in labels["steps"] if e["label"] == "drop"}
    assert dropped == {3: "rule:unchanged_evaluation", 4: "rule:reverted_edit", 7: "rule:repeated_failure"}
    assert [e["step"] for e in labels["steps"]] == list(range(1, 10))

    assert cli(["label", str(finished_run), "--step", "3", "--keep", "checking the grader's noise"]) == 0
    assert (
        cli(["label", str(finished_run), "--step", "6", "--drop", "no such file was ever named", "--author", "bo"]) == 0
    )
    labels = json.loads(RunDir(finished_run).labels.read_text())
    by_step = {e["step"]: e for e in labels["steps"]}
    assert by_step[3]["label"] == "keep" and by_step[3]["source"].startswith("person:")
    assert (by_step[6]["label"], by_step[6]["source"], by_step[6]["reason"]) == (
        "drop",
        "person:bo",
        "no such file was ever named",
    )
    assert by_step[7]["label"] == "drop"  # the rule still stands where no one marked
    assert RunDir(finished_run).trajectory.read_bytes() == trajectory_before


def test_label_refuses_a_step_the_trajectory_lacks(finished_run: Path, capsys: Any) -> None:
    assert cli(["label", str(finished_run), "--step", "99", "--drop", "x"]) == 1
    assert "no step 99" in capsys.readouterr().err


def test_export_writes_valid_chat_jsonl_with_dropped_steps_at_weight_zero(
    finished_run: Path, tmp_path: Path, capsys: Any
) -> None:
    assert cli(["label", str(finished_run)]) == 0
    out = tmp_path / "train.jsonl"
    assert cli(["export", str(finished_run.parent), "--format", "openai-chat", "-o", str(out)]) == 0
    assert cli(["export", "--check", str(out)]) == 0
    assert check_file(out) == []
    [example] = [json.loads(line) for line in out.read_text().splitlines()]
    assert {t["function"]["name"] for t in example["tools"]} >= {"write_file", "evaluate", "finish"}
    replies = [m for m in example["messages"] if m["role"] == "assistant"]
    assert len(replies) == 9
    assert [r["weight"] for r in replies] == [1, 1, 0, 0, 1, 1, 0, 1, 1]
    # The guidance is the user message the agent read, after the first step's tool result.
    roles = [m["role"] for m in example["messages"]]
    first_tool = roles.index("tool")
    assert example["messages"][first_tool + 1]["role"] == "user"
    assert ADVICE in example["messages"][first_tool + 1]["content"]
    assert "guidance from a human researcher (ada" in example["messages"][first_tool + 1]["content"]


@pytest.mark.parametrize(
    ("selection", "expected"),
    [
        ((), 1),
        (("--min-score", "90"), 0),
        (("--domain", "loss_design"), 0),
        (("--agent", "test"), 1),
        (("--agent", "react"), 0),
    ],
)
def test_export_filters_by_score_domain_and_agent(
    finished_run: Path, tmp_path: Path, selection: tuple[str, ...], expected: int
) -> None:
    out = tmp_path / "train.jsonl"
    assert cli(["export", str(finished_run.parent.parent.parent), "-o", str(out), *selection]) == 0
    assert len(out.read_text().splitlines()) == expected


def test_the_validator_names_what_breaks_the_format(tmp_path: Path, capsys: Any) -> None:
    assert check_example({"messages": [{"role": "user", "content": "hi"}]}) == [
        "no assistant message: nothing to train on"
    ]
    bad = {
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "tool_calls": [{"id": "a", "type": "function", "function": {"name": "x"}}]},
            {"role": "tool", "tool_call_id": "b", "content": "ok"},
            {"role": "assistant", "content": "done", "weight": 2},
        ],
        "extra": 1,
    }
    problems = check_example(bad)
    assert "unknown key 'extra'" in problems
    assert "message 2: a tool call is {id, type: function, function: {name, arguments}}" in problems
    assert "message 3: tool_call_id does not answer a call made before it" in problems
    assert "message 4: weight is 0 or 1, on assistant messages only" in problems
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(bad) + "\nnot json\n")
    assert cli(["export", "--check", str(path)]) == 1
    err = capsys.readouterr().err
    assert "line 1: unknown key 'extra'" in err and "line 2: not JSON" in err


def test_export_leaves_out_and_names_an_item_without_a_message_log(
    finished_run: Path, number_task_dir: Path, tmp_path: Path, capsys: Any
) -> None:
    plain = finished_run.parent / "plain"
    env = make_env(number_task_dir, plain)
    try:
        run_episode(load_agent("null"), env)
    finally:
        env.workspace.close()
    out = tmp_path / "train.jsonl"
    assert cli(["export", str(finished_run.parent), "-o", str(out)]) == 0
    assert f"left out {plain}: no llm_messages.jsonl" in capsys.readouterr().out
    assert len(out.read_text().splitlines()) == 1
