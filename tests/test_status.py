"""`pytest-innovator status`: the progress of a real run, read while it runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_innovator.cli import main
from pytest_innovator.ledger import EvalLedger
from pytest_innovator.reporting.status import StatusError, collect_status, format_status, last_record
from pytest_innovator.rundir import RunDir

from .benchmark_runs import (
    EVALUATE,
    FINISH,
    answer,
    make_task,
    start_pytest,
    wait_for_item,
    write_replays,
)


def test_last_record_skips_a_partial_line_and_reads_long_lines(tmp_path: Path) -> None:
    path = tmp_path / "trajectory.jsonl"
    long_step = {"type": "step", "step": 7, "t": 1.5, "observation": "x" * 300_000}
    path.write_text(json.dumps({"type": "header"}) + "\n" + json.dumps(long_step) + "\n" + '{"type": "st')
    assert last_record(path) == long_step
    path.write_text("")
    assert last_record(path) is None


def test_the_table_never_cuts_a_task_or_an_agent_name(tmp_path: Path) -> None:
    names = {"a_task_whose_name_is_rather_long": "react@1[smollm2-135m-instruct-q8_0]", "short": "null@1"}
    for task, agent in names.items():
        item = RunDir.of(tmp_path, "20260101-000000-abcdef", task)
        item.path.mkdir(parents=True)
        item.trajectory.write_text(json.dumps({"type": "header", "task": task, "agent": agent, "limits": {}}) + "\n")
        EvalLedger(task_id=task, budget=3, hint_penalty=0.0).save(item.ledger)
    table = format_status(collect_status(tmp_path)).splitlines()
    for task, agent in names.items():
        [row] = [line for line in table if line.split()[0] == task]
        assert row.split()[1] == agent
    assert len({line.index("running") for line in table if "running" in line and "run " not in line}) == 1


def test_a_results_directory_without_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(StatusError, match="no runs/ directory; give the directory passed to --innovator-results"):
        collect_status(tmp_path)
    assert main(["status", str(tmp_path)]) == 1
    assert "--innovator-results" in capsys.readouterr().err


@pytest.mark.slow
def test_status_while_a_run_is_in_progress(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_task(tmp_path / "suite", "slow")
    replays = write_replays(
        tmp_path / "replays",
        {
            "slow": [
                answer(0.5),
                EVALUATE,
                {"tool": "create_session", "arguments": {"name": "train"}},
                {"tool": "run_command", "arguments": {"session": "train", "command": "sleep 3", "wait": 30}},
                FINISH,
            ]
        },
    )
    results = tmp_path / "results"
    process = start_pytest(
        tmp_path,
        "suite",
        "--innovator-agent",
        "replay",
        "--innovator-replay",
        str(replays),
        "--innovator-results",
        str(results),
    )
    try:
        running = wait_for_item(results, process, lambda i: i["state"] == "running" and i["evaluations"] == 1)
        assert running is not None, "never saw the item running after its evaluation"
        assert main(["status", str(results), "--json"]) == 0
        [from_cli] = json.loads(capsys.readouterr().out)["runs"][0]["items"]
        assert main(["status", str(results)]) == 0
        table = capsys.readouterr().out
    finally:
        output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output

    [item_dir] = list((results / "runs").glob("*/slow"))
    result = json.loads((item_dir / "result.json").read_text())
    # While the 3-second command ran: after the evaluation (step 2) or the session (step 3).
    assert running["step"] in (2, 3) and running["step_limit"] == 50 and running["time_limit_s"] == 300
    assert running["evals_used"] == 1 and running["evals_budget"] == 3
    assert running["best_score"] == running["last_score"] == result["score_best"]
    assert running["score_final"] is None and running["agent"] == "replay@1"
    assert from_cli["state"] == "running" and from_cli["step"] in (2, 3, 4)
    assert "slow" in table and "running" in table and f"{result['score_best']:.1f}" in table

    [run] = collect_status(results)
    [done] = run["items"]
    assert run["counts"] == {"running": 0, "stopped": 0, "finished": 1}
    assert done["state"] == "finished" and done["step"] == result["steps"] == 5
    assert done["score_final"] == result["score_final"] and done["evaluations"] == 2
