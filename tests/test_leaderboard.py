"""The leaderboard: statistics by hand, reading inputs, and merging real runs."""

from __future__ import annotations

import json
import math
import os
import signal
import statistics
from pathlib import Path
from typing import Any

import pytest

from pytest_innovator.cli import main
from pytest_innovator.reporting import leaderboard as lb
from pytest_innovator.reporting.result_inputs import InputError, read_input, read_inputs, typed

from .benchmark_runs import (
    EVALUATE,
    FINISH,
    answer,
    junit_properties,
    make_task,
    run_pytest,
    start_pytest,
    wait_for_item,
    write_replays,
)


def item(
    task: str, final: float | None, best: float | None, *, run: str, domain: str = "dc", **extra: Any
) -> dict[str, Any]:
    return {
        "run_id": run,
        "innovator_task": task,
        "innovator_domain": domain,
        "agent": "a@1",
        "innovator_agent": "a@1",
        "score_final": final,
        "score_best": best,
        "task_version": "1",
        **extra,
    }


# --- statistics by hand ----------------------------------------------------------------------


def test_best_at_k_and_mean_with_standard_error() -> None:
    stats = lb.task_stats([item("t", 30, 50, run="r1"), item("t", 40, 45, run="r2"), item("t", 20, 20, run="r3")])
    assert stats["k"] == 3
    assert stats["best_attempt_at_k"] == 50  # the best any evaluation reached
    assert stats["best_submission_at_k"] == 40  # the best final submission
    assert stats["final"] == {"mean": 30.0, "se": round(10 / math.sqrt(3), 4), "n": 3}  # sd 10
    assert stats["best"]["mean"] == 38.3333


def test_an_item_without_a_score_is_left_out_of_the_means() -> None:
    stats = lb.task_stats(
        [item("t", 30, 60, run="r1", outcome="failed"), item("t", None, 70, run="r2", outcome="error")]
    )  # the final grading failed
    assert stats["final"] == {"mean": 30.0, "se": None, "n": 1}
    assert stats["best_attempt_at_k"] == 70 and stats["best_submission_at_k"] == 30
    assert stats["outcomes"] == {"error": 1, "failed": 1}


def test_domains_and_overall_are_task_weighted() -> None:
    items = [item("t1", s, s, run=f"r{i}") for i, s in enumerate([30, 40, 20])]
    items += [item("t2", 60, 60, run=f"r{i}") for i in range(2)]
    items += [item("t3", s, s, run=f"r{i}", domain="ld") for i, s in enumerate([90, 70])]
    row = lb.agent_row("a@1", items)
    assert row["domains"]["dc"]["final"]["mean"] == 45.0  # (30 + 60) / 2
    assert row["domains"]["ld"]["final"]["mean"] == 80.0
    assert row["overall"]["final"]["mean"] == round(170 / 3, 4)  # (30 + 60 + 80) / 3, not (45 + 80) / 2
    # se of t1: 10/√3, t2: 0, t3: √200/√2 = 10  ->  √(100/3 + 0 + 100) / 3
    assert row["overall"]["final"]["se"] == round(math.sqrt(100 / 3 + 100) / 3, 4)
    assert row["overall"]["best_attempt_at_k"] == round((40 + 60 + 90) / 3, 4)
    assert row["runs"] == 3 and row["k"] == {"min": 2, "max": 3}


def test_a_task_with_one_run_has_no_standard_error_overall() -> None:
    row = lb.agent_row("a@1", [item("t1", 10, 10, run="r1"), item("t1", 20, 20, run="r2"), item("t2", 5, 5, run="r1")])
    assert row["overall"]["final"] == {"mean": 10.0, "se": None, "n": 2}


def test_profiles_count_a_task_an_agent_never_ran_as_infeasible() -> None:
    items = [
        item("t1", 80, 80, run="r1"),
        item("t2", 40, 40, run="r1"),
        {**item("t1", 40, 40, run="r2"), "agent": "b@1", "innovator_agent": "b@1"},
    ]
    board = lb.build(items, history=[])
    profile = board["profiles"]["best_submission"]
    assert profile["ratios"]["b@1"] == {"t1": 2.0, "t2": 2.1}
    assert profile["infeasible"]["b@1"] == ["t2"]
    assert [row["agent"] for row in board["agents"]] == ["a@1", "b@1"]


def test_a_setup_error_belongs_to_its_run_and_a_skip_is_not_a_run(tmp_path: Path) -> None:
    log = tmp_path / "results.jsonl"
    records = [
        item("t1", 50, 50, run="r1", outcome="passed", domain="dc"),
        {"run_id": "r1", "innovator_task": "t2", "outcome": "error"},  # provisioning failed
        item("t2", 20, 20, run="r2", outcome="failed", domain="ld"),
        {"run_id": "r1", "innovator_task": "t3", "outcome": "skipped"},
    ]  # needs GPUs
    log.write_text("".join(json.dumps(r) + "\n" for r in records))
    items = read_inputs([log])
    error = next(i for i in items if i["innovator_task"] == "t2" and i["run_id"] == "r1")
    assert error["agent"] == "a@1" and error["innovator_domain"] == "ld"
    board = lb.build(items, history=[])
    [row] = board["agents"]
    assert row["tasks"]["t2"]["k"] == 2 and row["tasks"]["t2"]["final"]["n"] == 1
    assert row["tasks"]["t2"]["outcomes"] == {"error": 1, "failed": 1} and row["totals"]["errors"] == 1
    assert "t3" not in row["tasks"] and len(board["items"]) == 4


# --- reading inputs ---------------------------------------------------------------------------


def test_junit_text_is_typed_like_the_results_log() -> None:
    assert typed("score_final", "80") == 80.0 and isinstance(typed("score_final", "80"), float)
    assert typed("score_final", "None") is None
    assert typed("evals_used", "2") == 2
    assert typed("hint_used", "False") is False
    assert typed("task_version", "1") == "1" and typed("final_message", "0.9") == "0.9"
    assert typed("cost_usd", "0.0125") == 0.0125 and typed("my_label", "x") == "x"


def test_a_partial_last_line_is_ignored_and_a_bad_line_is_named(tmp_path: Path) -> None:
    line = json.dumps({"schema": 1, "run_id": "r1", "innovator_task": "t", "score_final": 1.0})
    log = tmp_path / "results.jsonl"
    log.write_text(line + "\n" + line[:30])  # the run died while writing the second line
    assert len(read_input(log)) == 1
    log.write_text(line[:30] + "\n" + line + "\n")
    with pytest.raises(InputError, match=r"results.jsonl:1: not a JSON line"):
        read_input(log)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no results.jsonl and no run directory"):
        read_input(tmp_path / "empty")


def test_version_conflicts_are_refused_unless_forced() -> None:
    new = [{**item("t", 10, 10, run="20260101-000000-aaaaaa"), "task_version": "2"}]
    with pytest.raises(
        lb.LeaderboardError,
        match=r"task t: version 1 in the existing leaderboard, version 2 in run "
        r"20260101-000000-aaaaaa(.|\n)*--force",
    ):
        lb.check_versions({"t": "1"}, new, force=False)
    lb.check_versions({"t": "1"}, new, force=True)


def test_not_a_leaderboard_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "board.json").write_text('{"hello": 1}')
    (tmp_path / "results.jsonl").write_text(json.dumps({"run_id": "r", "innovator_task": "t"}) + "\n")
    assert main(["leaderboard", str(tmp_path / "results.jsonl"), "--update", str(tmp_path / "board.json")]) == 1
    assert "not a pytest-innovator leaderboard" in capsys.readouterr().err


# --- real runs ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Run A in one process, run B with -n 2 and the hint tool: two tasks each, other answers."""
    root = tmp_path_factory.mktemp("runs")
    make_task(root / "suite", "alpha")
    make_task(root / "suite", "beta", domain="loss_design")
    replays_a = write_replays(
        root / "replays_a",
        {
            "alpha": [answer(0.55), EVALUATE, answer(0.4), FINISH],  # best 40, final 22.857
            "beta": [answer(0.9), FINISH],  # 80
        },
    )
    replays_b = write_replays(
        root / "replays_b",
        {
            "alpha": [{"tool": "view_hint"}, answer(0.9), EVALUATE, FINISH],  # 80 × 0.75 = 60
            "beta": [answer(0.3), FINISH],  # 11.43
        },
    )
    run_pytest(
        root,
        "suite",
        "--innovator-agent",
        "replay",
        "--innovator-replay",
        str(replays_a),
        "--innovator-results",
        "results_a",
        "--junitxml",
        "a.xml",
    )
    run_pytest(
        root,
        "suite",
        "-n",
        "2",
        "--innovator-agent",
        "replay",
        "--innovator-replay",
        str(replays_b),
        "--innovator-hints",
        "tool",
        "--innovator-results",
        "results_b",
        "--junitxml",
        "b.xml",
    )
    return root


@pytest.mark.slow
def test_two_real_runs_merge_into_numbers_that_match_the_properties(two_runs: Path, tmp_path: Path) -> None:
    root = two_runs
    properties = junit_properties(root / "a.xml") + junit_properties(root / "b.xml")
    assert len(properties) == 4
    # Every input twice over (results directory and XML of both runs, one log named twice): 4 items.
    inputs = [
        root / "results_a",
        root / "a.xml",
        root / "results_b",
        root / "b.xml",
        root / "results_b" / "results.jsonl",
    ]
    out = tmp_path / "board.json"
    assert main(["leaderboard", *map(str, inputs), "--json", str(out), "--markdown", str(tmp_path / "board.md")]) == 0
    board = json.loads(out.read_text())
    assert len(board["items"]) == 4 and len(board["runs"]) == 2
    workers = sorted(run["workers"] for run in board["runs"])
    assert workers[0] == [] and workers[1] and set(workers[1]) <= {"gw0", "gw1"}  # run B ran on xdist workers
    [row] = board["agents"]
    assert row["agent"] == "replay@1" and row["runs"] == 2 and row["k"] == {"min": 2, "max": 2}
    task_means = {}
    for task in ("alpha", "beta"):
        finals = [float(p["score_final"]) for p in properties if p["innovator_task"] == task]
        bests = [float(p["score_best"]) for p in properties if p["innovator_task"] == task]
        stats = row["tasks"][task]
        assert stats["final"] == {
            "mean": round(statistics.mean(finals), 4),
            "se": round(statistics.stdev(finals) / math.sqrt(2), 4),
            "n": 2,
        }
        assert stats["best"]["mean"] == round(statistics.mean(bests), 4)
        assert stats["best_attempt_at_k"] == max(bests)
        assert stats["best_submission_at_k"] == max(finals)
        assert stats["evals_used"] == statistics.mean(
            int(p["evals_used"]) for p in properties if p["innovator_task"] == task
        )
        task_means[task] = statistics.mean(finals)
    assert row["tasks"]["alpha"]["hints_used"] == 1 and row["totals"]["hints_used"] == 1
    assert row["domains"]["loss_design"]["final"]["mean"] == round(task_means["beta"], 4)
    assert row["overall"]["final"]["mean"] == round(statistics.mean(task_means.values()), 4)
    assert row["totals"]["working_time_s"] == round(sum(float(p["working_time_s"]) for p in properties), 4)
    assert row["aup"] == {"best_attempt": 0.1, "best_submission": 0.1}  # the only agent: best everywhere
    markdown = (tmp_path / "board.md").read_text()
    alpha_mean = statistics.mean(float(p["score_final"]) for p in properties if p["innovator_task"] == "alpha")
    assert f"| alpha | data_construction | 1 | replay@1 | 2 | {alpha_mean:.1f} ±" in markdown


@pytest.mark.slow
def test_plots_of_two_runs(two_runs: Path, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="plots need matplotlib (the 'report' extra)")
    assert main(["plots", str(two_runs / "results_a"), str(two_runs / "b.xml"), "--out", str(tmp_path)]) == 0
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted(
        f"{stem}.{ext}"
        for stem in (
            "score_over_time-alpha",
            "score_over_time-beta",
            "domains",
            "profile-best_attempt",
            "profile-best_submission",
        )
        for ext in ("png", "svg")
    )
    assert all((tmp_path / n).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for n in names if n.endswith(".png"))
    alpha = (tmp_path / "score_over_time-alpha.svg").read_text()
    assert "alpha: every evaluation over working time" in alpha and "replay@1 (evaluate)" in alpha
    assert "AUP 0.100" in (tmp_path / "profile-best_attempt.svg").read_text()


@pytest.mark.slow
def test_update_keeps_history_and_refuses_another_task_version(
    two_runs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = two_runs
    board_path = tmp_path / "leaderboard.json"
    assert main(["leaderboard", str(root / "results_a"), "--update", str(board_path)]) == 0
    assert main(["leaderboard", str(root / "b.xml"), "--update", str(board_path)]) == 0
    written = board_path.read_bytes()
    assert main(["leaderboard", str(root / "results_b"), "--update", str(board_path)]) == 0  # the same run again
    assert board_path.read_bytes() == written  # nothing new: nothing to commit
    board = lb.load(board_path)
    assert [h["items_added"] for h in board["history"]] == [2, 2]
    once = lb.build(read_inputs([root / "results_a", root / "results_b"]), history=[])
    assert board["agents"] == once["agents"] and board["profiles"] == once["profiles"]

    make_task(root / "suite_v2", "beta", domain="loss_design", version="2")
    run_pytest(root, "suite_v2", "--innovator-agent", "oracle", "--innovator-results", "results_c")
    assert main(["leaderboard", str(root / "results_c"), "--update", str(board_path)]) == 1
    assert "task beta: version 1 in the existing leaderboard, version 2 in run" in capsys.readouterr().err
    assert lb.load(board_path)["history"] == board["history"]  # untouched
    assert main(["leaderboard", str(root / "results_c"), "--update", str(board_path), "--force"]) == 0
    forced = lb.load(board_path)
    assert forced["tasks"]["beta"] == {"domain": "loss_design", "task_version": "2", "versions_seen": ["1", "2"]}
    assert forced["items_not_counted"] == 2 and len(forced["items"]) == 5
    rows = {row["agent"]: row for row in forced["agents"]}
    assert rows["oracle@1"]["tasks"]["beta"]["final"]["mean"] == 80.0
    assert "beta" not in rows["replay@1"]["tasks"]
    assert forced["history"][-1]["forced"] is True


@pytest.mark.slow
def test_a_run_that_died_and_its_resumed_run_count_each_item_once(tmp_path: Path) -> None:
    make_task(tmp_path / "suite", "fast")
    make_task(tmp_path / "suite", "slow")
    slow_calls = [
        answer(0.5),
        EVALUATE,
        {"tool": "create_session", "arguments": {"name": "train"}},
        {"tool": "run_command", "arguments": {"session": "train", "command": "sleep 60", "wait": 120}},
        answer(0.8),
        FINISH,
    ]
    replays = write_replays(tmp_path / "replays", {"fast": [answer(0.7), FINISH], "slow": slow_calls})
    results = tmp_path / "results"
    args = (
        "suite",
        "--innovator-agent",
        "replay",
        "--innovator-replay",
        str(replays),
        "--innovator-results",
        str(results),
    )
    process = start_pytest(tmp_path, *args)
    try:
        stuck = wait_for_item(
            results, process, lambda i: i["task"] == "slow" and i["step"] >= 3 and i["evaluations"] == 1
        )
        assert stuck is not None, "the first run never reached the long command"
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # the machine dies; the session reapers end the command
        process.communicate(timeout=30)
    [old_run] = list((results / "runs").iterdir())
    assert not (old_run / "slow" / "result.json").exists()

    slow_calls[3]["arguments"]["command"] = "sleep 0.1"  # what the resumed agent restarts
    write_replays(replays, {"slow": slow_calls})
    run_pytest(tmp_path, *args, "--innovator-resume", str(old_run), "--junitxml", "resumed.xml")
    log = [json.loads(line) for line in (results / "results.jsonl").read_text().splitlines()]
    assert [(r["innovator_task"], r["run_id"] == old_run.name) for r in log] == [
        ("fast", True),
        ("fast", False),
        ("slow", False),
    ]

    board = lb.build(read_inputs([results, tmp_path / "resumed.xml"]), history=[])
    assert sorted((i["innovator_task"], i["run_id"]) for i in board["items"]) == sorted(
        [("fast", old_run.name), ("slow", log[2]["run_id"])]
    )  # the carried-over "fast" is the first run's episode
    [row] = board["agents"]
    properties = {p["innovator_task"]: p for p in junit_properties(tmp_path / "resumed.xml")}
    for task in ("fast", "slow"):  # a carried-over item's properties have every digit: 4 are kept, as for the rest
        assert row["tasks"][task]["k"] == 1
        assert row["tasks"][task]["final"]["mean"] == round(float(properties[task]["score_final"]), 4)
        assert row["tasks"][task]["best_attempt_at_k"] == round(float(properties[task]["score_best"]), 4)
    assert row["tasks"]["slow"]["evals_used"] == int(properties["slow"]["evals_used"]) == 1  # the budget survived
