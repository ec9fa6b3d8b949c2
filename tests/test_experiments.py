"""Experiment tasks end to end from the pytest command line: the mini experiment suite judged
phase by phase by a scripted judge speaking the OpenAI protocol on 127.0.0.1, the execution check's
rerun, the monitor's zeroing, and the item properties (JUnit XML, results log)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from pytest_innovator.cli import main
from pytest_innovator.plugin.items import experiment_properties
from pytest_innovator.task import TaskError, load_task

from .scripted_llm import ScriptedLLMServer
from .test_plugin import junit_properties, results_log

pytest_plugins = ["pytester"]

SUITE = Path(__file__).resolve().parent.parent / "task_suites" / "experiments"
PHASE_NAMES = ("design", "implementation", "execution", "conclusion")
TASKS = ("class_reweighting", "label_smoothing")


def verdict(phase: str, answer: str = "pass", reasons: str = "meets the rubric") -> dict[str, Any]:
    return {
        "expect": {"contains": [f"Phase: {phase}"]},
        "respond": {
            "content": json.dumps({"verdict": answer, "reasons": f"{phase}: {reasons}"}),
            "usage": {"prompt_tokens": 500, "completion_tokens": 30},
        },
    }


def copy_task(pytester: pytest.Pytester, task_id: str) -> None:
    shutil.copytree(SUITE / task_id, pytester.path / "suite" / task_id)


def run(pytester: pytest.Pytester, server: ScriptedLLMServer, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess(
        "suite",
        "--innovator-judge-model",
        "judge-model",
        "--innovator-judge-base-url",
        server.base_url,
        "--innovator-llm-backoff",
        "0.01",
        "--junitxml",
        "out.xml",
        *args,
    )


def test_the_oracle_passes_every_phase_of_both_experiments_and_the_execution_is_rerun(
    pytester: pytest.Pytester,
) -> None:
    for task_id in TASKS:
        copy_task(pytester, task_id)
    exchanges = [verdict(phase) for _ in TASKS for phase in PHASE_NAMES]
    with ScriptedLLMServer({"exchanges": exchanges}) as server:
        result = run(pytester, server, "--innovator-agent", "oracle")
        server.assert_transcript_done()
        requests = {
            ("label_smoothing" if "label smoothing" in r.text else "class_reweighting", phase): r.text
            for r, phase in zip(server.requests, PHASE_NAMES * len(TASKS))
        }
    result.assert_outcomes(passed=2)
    for task_id in TASKS:
        props = junit_properties(pytester.path / "out.xml")[task_id]
        phases = {name: props[name] for name in ("exp_D", "exp_I", "exp_E", "exp_C", "exp_M")}
        assert phases == {"exp_D": "1", "exp_I": "1", "exp_E": "1", "exp_C": "1", "exp_M": "0"}
        assert (props["exp_IE"], props["exp_DIC"], props["exp_DICE"], props["score_final"]) == ("1", "1", "1", "100.0")
        assert (props["judge_calls"], props["judge_tokens_in"], props["judge_tokens_out"]) == ("4", "2000", "120")
    assert len(requests) == 8  # each task's four phases, each asked once
    # Each phase's rubric and deliverable reach the judge; the rerun's own results reach E.
    smoothing = {phase: requests["label_smoothing", phase] for phase in PHASE_NAMES}
    assert "independent: the label smoothing factor" in smoothing["design"] and "Constant:" in smoothing["design"]
    assert "+++ agent/experiment.py" in smoothing["implementation"] and "log_softmax" in smoothing["implementation"]
    assert "exit status 0" in smoothing["execution"] and "balanced_accuracy_by_smoothing" in smoothing["execution"]
    assert "Expected outcome: No reliable gain" in smoothing["conclusion"]
    assert "does not raise balanced accuracy" in smoothing["conclusion"]
    assert "balanced_accuracy_by_power" in requests["class_reweighting", "execution"]
    assert "Expected outcome: A large gain" in requests["class_reweighting", "conclusion"]
    assert [r["exp_DICE"] for r in results_log(pytester)] == [1, 1]
    summary = "experiment phases passed: D 2/2, I 2/2, E 2/2, C 2/2, I·E 2/2, D·I·C 2/2, D·I·C·E 2/2"
    result.stdout.fnmatch_lines([f"{summary}; flagged by the monitor: 0/2"])

    # A second run, by the null agent, and the leaderboard over both runs.
    with ScriptedLLMServer({"exchanges": []}) as server:
        run(pytester, server, "--innovator-agent", "null").assert_outcomes(failed=2)
    board_path, markdown = pytester.path / "board.json", pytester.path / "board.md"
    arguments = [
        "leaderboard",
        str(pytester.path / ".innovator"),
        "--json",
        str(board_path),
        "--markdown",
        str(markdown),
    ]
    assert main(arguments) == 0
    rows = {row["agent"].split("@")[0]: row["experiments"] for row in json.loads(board_path.read_text())["agents"]}
    assert rows["oracle"]["conjunctions"] == {"IE": 1.0, "DIC": 1.0, "DICE": 1.0}
    assert rows["oracle"]["phase_failures"] == {"D": 0, "I": 0, "E": 0, "C": 0}
    assert rows["null"]["conjunctions"] == {"IE": 0.0, "DIC": 0.0, "DICE": 0.0}
    assert rows["null"]["phase_failures"] == {"D": 2, "I": 2, "E": 2, "C": 2} and rows["null"]["flagged"] == 0
    table = markdown.read_text()
    assert "| agent | items | D failed | I failed | E failed | C failed | flagged | I·E | D·I·C | D·I·C·E |" in table
    assert "| 2 | 0 | 0 | 0 | 0 | 0 | 100.0 % | 100.0 % | 100.0 % |" in table
    assert "| 2 | 2 | 2 | 2 | 2 | 0 | 0.0 % | 0.0 % | 0.0 % |" in table


def test_the_null_agent_fails_every_phase_without_asking_the_judge(pytester: pytest.Pytester) -> None:
    for task_id in TASKS:
        copy_task(pytester, task_id)
    with ScriptedLLMServer({"exchanges": []}) as server:
        result = run(pytester, server, "--innovator-agent", "null")
        asked = len(server.requests)
    result.assert_outcomes(failed=2)
    assert asked == 0
    for task_id in TASKS:
        props = junit_properties(pytester.path / "out.xml")[task_id]
        assert [props[f"exp_{k}"] for k in ("D", "I", "E", "C", "M", "IE", "DIC", "DICE")] == ["0"] * 8
    result.stdout.fnmatch_lines(["*D fail: design.md is missing or empty*", "*E fail: reproduce.sh is missing*"])
    [report] = (pytester.path / ".innovator" / "runs").glob("*/report.html")
    html = report.read_text()
    assert 'id="experiments-table"' in html and "<th>D·I·C·E</th>" in html


def test_git_log_in_a_session_and_a_paper_read_are_flagged_and_zero_the_run(pytester: pytest.Pytester) -> None:
    copy_task(pytester, "label_smoothing")
    calls = [
        {"tool": "run_command", "arguments": {"command": "git log --oneline -- experiment.py", "wait_s": 5}},
        {"tool": "write_file", "arguments": {"path": "design.md", "content": "constant: all; independent: ε"}},
        {"tool": "open_file", "arguments": {"path": "papers/1512.00567.pdf"}},
        {"tool": "finish", "arguments": {"summary": "done"}},
    ]
    replay = pytester.path / "calls.jsonl"
    replay.write_text("\n".join(json.dumps(c) for c in calls) + "\n")
    with ScriptedLLMServer({"exchanges": []}) as server:
        result = run(pytester, server, "--innovator-agent", "replay", "--innovator-replay", str(replay))
        asked = len(server.requests)
    result.assert_outcomes(failed=1)
    assert asked == 0
    props = junit_properties(pytester.path / "out.xml")["label_smoothing"]
    assert (props["exp_M"], props["exp_DICE"], props["score_final"]) == ("1", "0", "0.0")
    result.stdout.fnmatch_lines(
        [
            "*monitor flag paper_access (step 3): open_file names '1512.00567'*",
            "*monitor flag git_operations (step 1): run_command: 'git log --oneline*",
            "experiment phases passed: D 0/1, * D·I·C·E 0/1; flagged by the monitor: 1/1",
        ]
    )


def test_a_reproduction_script_that_fails_fails_execution_alone(pytester: pytest.Pytester) -> None:
    copy_task(pytester, "label_smoothing")
    calls = [
        {"tool": "write_file", "arguments": {"path": "design.md", "content": "constant: model; independent: ε"}},
        {"tool": "write_file", "arguments": {"path": "experiment.py", "content": "raise SystemExit('not yet')\n"}},
        {"tool": "write_file", "arguments": {"path": "reproduce.sh", "content": "echo starting; exit 3\n"}},
        {"tool": "write_file", "arguments": {"path": "conclusion.md", "content": "Smoothing does not help."}},
        {"tool": "finish", "arguments": {"summary": "done"}},
    ]
    replay = pytester.path / "calls.jsonl"
    replay.write_text("\n".join(json.dumps(c) for c in calls) + "\n")
    exchanges = [verdict("design"), verdict("implementation"), verdict("conclusion")]
    with ScriptedLLMServer({"exchanges": exchanges}) as server:
        result = run(pytester, server, "--innovator-agent", "replay", "--innovator-replay", str(replay))
        server.assert_transcript_done()  # E was decided without asking the judge
    result.assert_outcomes(failed=1)
    props = junit_properties(pytester.path / "out.xml")["label_smoothing"]
    assert [props[f"exp_{k}"] for k in ("D", "I", "E", "C", "IE", "DIC", "DICE")] == ["1", "1", "0", "1", "0", "1", "0"]
    result.stdout.fnmatch_lines(["*E fail: reproduce.sh exited with status 3: starting*"])


def test_a_judge_that_answers_garbage_is_a_grader_failure_not_a_zero(pytester: pytest.Pytester) -> None:
    copy_task(pytester, "label_smoothing")
    calls = [
        {"tool": "write_file", "arguments": {"path": "design.md", "content": "constant: model; independent: ε"}},
        {"tool": "finish", "arguments": {"summary": "done"}},
    ]
    replay = pytester.path / "calls.jsonl"
    replay.write_text("\n".join(json.dumps(c) for c in calls) + "\n")
    garbage = {"respond": {"content": "I think it is fine."}, "times": 3}
    with ScriptedLLMServer({"exchanges": [garbage]}) as server:
        result = run(pytester, server, "--innovator-agent", "replay", "--innovator-replay", str(replay))
        server.assert_transcript_done()
    result.assert_outcomes(failed=1)
    headline = "harness error: the final evaluation's grader failed: the judge's answers on the design were malformed"
    result.stdout.fnmatch_lines([f"{headline} 3 times*"])
    [record] = results_log(pytester)
    assert (record["outcome"], record["final_status"], record["score_final"]) == ("error", "grader_failed", None)
    assert "exp_D" not in record  # no phase was decided


def test_an_experiment_item_without_a_judge_is_skipped_saying_which_option(pytester: pytest.Pytester) -> None:
    copy_task(pytester, "label_smoothing")
    result = pytester.runpytest_subprocess("suite", "--innovator-agent", "null", "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*needs a judge for its phases (name its model with --innovator-judge-model*"])


@pytest.mark.parametrize(
    ("phases", "flagged", "expected"),
    [
        ("DICE", 0, {"IE": 1, "DIC": 1, "DICE": 1}),
        ("DIE", 0, {"IE": 1, "DIC": 0, "DICE": 0}),
        ("DIC", 0, {"IE": 0, "DIC": 1, "DICE": 0}),
        ("IE", 0, {"IE": 1, "DIC": 0, "DICE": 0}),
        ("DICE", 1, {"IE": 0, "DIC": 0, "DICE": 0}),
    ],
)
def test_each_conjunction_needs_each_of_its_phases_and_no_flag(phases: str, flagged: int, expected: dict) -> None:
    metrics = {key: float(key in phases) for key in "DICE"} | {"M": float(flagged)}
    properties = dict(experiment_properties(metrics))
    assert {k: properties[f"exp_{k}"] for k in expected} == expected
    assert all(properties[f"exp_{k}"] == int(k in phases) for k in "DICE") and properties["exp_M"] == flagged


def write_experiment_task(root: Path, toml_extra: str = "", rubric: str | None = None) -> Path:
    shutil.copytree(SUITE / "label_smoothing", root / "t")
    toml = root / "t" / "task.toml"
    toml.write_text(toml.read_text() + toml_extra)
    if rubric is not None:
        (root / "t" / "grader" / "rubric.toml").write_text(rubric)
    return root / "t"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("outputs", "outputs: must list every deliverable of [experiment]; add results.json"),
        ("command", "grader.command: given, but [experiment] tasks are judged, not graded by a command"),
        ("mode", "scoring.mode: must be 'as_is' for [experiment] tasks"),
        ("timeout", "experiment.execution_timeout: must be a duration like"),
        ("results", "experiment.results: paths are relative to the workspace"),
    ],
)
def test_a_bad_experiment_section_names_the_field(tmp_path: Path, change: str, message: str) -> None:
    task = write_experiment_task(tmp_path)
    toml = task / "task.toml"
    text = toml.read_text()
    text = {
        "outputs": text.replace('"results.json", "experiment.py"', '"experiment.py"'),
        "command": text.replace("[scoring]", '[grader]\ncommand = "python3 grade.py"\n\n[scoring]'),
        "mode": text.replace('mode = "as_is"\nmetric = "DICE"', "baseline = 0\nreference = 1"),
        "timeout": text.replace('execution_timeout = "3m"', 'execution_timeout = "soon"'),
        "results": text.replace('results = ["results.json"]', 'results = ["../results.json"]'),
    }[change]
    toml.write_text(text)
    with pytest.raises(TaskError, match=message.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(")):
        load_task(task)


def test_a_bad_rubric_names_its_file_and_field(tmp_path: Path) -> None:
    rubric = (SUITE / "label_smoothing" / "grader" / "rubric.toml").read_text()
    broken = rubric.replace("[conclusion]\nexpected_outcome", "[conclusion]\nexpected").replace(
        'file = "reproduce.sh"', 'file = "nowhere.py"'
    )
    task = write_experiment_task(tmp_path, rubric=broken)
    with pytest.raises(TaskError) as error:
        load_task(task)
    assert "experiment.rubric: grader/rubric.toml: conclusion.expected_outcome: Field required" in str(error.value)
    broken = rubric.replace('file = "reproduce.sh"', 'file = "nowhere.py"')
    (task / "grader" / "rubric.toml").write_text(broken)
    with pytest.raises(TaskError, match="implementation.file 'nowhere.py' is neither a starter file"):
        load_task(task)
