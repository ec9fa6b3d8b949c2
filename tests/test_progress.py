"""Live progress in the terminal and the report at the end of a run, seen from the command line."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from pytest_innovator.ledger import EvalLedger
from pytest_innovator.plugin.report import html_report
from pytest_innovator.reporting.status import clock
from pytest_innovator.rundir import RunDir

from .benchmark_runs import EVALUATE, FINISH, answer, make_task, write_replays

pytest_plugins = ["pytester"]

TASKS = ("alpha", "beta")
TWO_SECOND_COMMAND = [
    {"tool": "create_session", "arguments": {"name": "train"}},
    {"tool": "run_command", "arguments": {"session": "train", "command": "sleep 2", "wait": 30}},
]
LINE = re.compile(r"innovator: (?P<task>\S+) (?P<what>.*)")


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """Two items, each evaluated twice around a 2-second command (long enough for status lines)."""
    calls = [answer(0.5), EVALUATE, *TWO_SECOND_COMMAND, answer(0.9), EVALUATE, FINISH]
    for task in TASKS:
        make_task(pytester.path / "suite", task)
    replays = write_replays(pytester.path / "replays", dict.fromkeys(TASKS, calls))
    result = pytester.runpytest_subprocess(
        "suite", "--innovator-agent", "replay", "--innovator-replay", str(replays), *args
    )
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()  # -qq prints no "2 passed" to count
    glued = [line for line in result.stdout.lines if "innovator: " in line and not line.startswith("innovator: ")]
    assert glued == [], "a progress line shares its line with pytest's output"
    return result


def lines_by_task(result: pytest.RunResult) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {task: [] for task in TASKS}
    for line in result.stdout.lines:
        if match := LINE.fullmatch(line):
            found[match["task"]].append(match["what"])
    return found


def kind(what: str) -> str:
    return what.split(":")[0].split(" (")[0]


def expected_evaluations(item_dir: Path) -> list[str]:
    """The evaluation lines the ledger on disk calls for, in order."""
    ledger = EvalLedger.load(RunDir(item_dir).ledger)
    names = [f"evaluation 1/{ledger.budget}", f"evaluation 2/{ledger.budget}", "final evaluation"]
    assert [e.kind for e in ledger.evaluations] == ["agent", "agent", "final"]
    return [
        f"{name}: score {ledger.effective(e.score):.1f}, metric {e.metric:.4g} - {e.message.splitlines()[0]}"
        for name, e in zip(names, ledger.evaluations, strict=True)
    ]


def result_records(pytester: pytest.Pytester) -> dict[str, dict]:
    log = pytester.path / ".innovator" / "results.jsonl"
    return {r["innovator_task"]: r for r in map(json.loads, log.read_text().splitlines())}


@pytest.mark.parametrize("workers", [["-n", "2"], []], ids=["xdist", "no-xdist"])
def test_each_item_starts_is_evaluated_shows_its_status_and_ends_in_order(
    pytester: pytest.Pytester, workers: list[str]
) -> None:
    result = run(pytester, *workers, "--innovator-progress", "0.2")
    records = result_records(pytester)
    for task, lines in lines_by_task(result).items():
        record = records[task]
        kinds = [kind(line) for line in lines]
        assert kinds[0] == "started" and kinds[-1] == "ended", lines
        assert lines[0] == (
            f"started (agent {record['innovator_agent']}, model –, "
            "limits 0:05:00 working time, 50 steps, 3 evaluations)"
        )
        assert [line for line in lines if line.startswith(("evaluation", "final"))] == expected_evaluations(
            Path(record["run_dir"])
        )
        assert lines[-1] == (
            f"ended (passed): final {record['score_final']:.1f}, best {record['score_best']:.1f}, "
            f"ended by finished, {clock(record['working_time_s'])} working time"
        )
        assert "running" in kinds, "no status line while the 2-second command ran"
        for line in lines:
            if kind(line) == "running":
                status = r"running: step \d+/50, working time \d:\d\d:\d\d/0:05:00, evaluations [0-2]/3, best \S+"
                assert re.fullmatch(status + r", idle \d+s", line), line


@pytest.mark.parametrize(
    ("quiet", "shown"),
    [("-q", ["evaluation 1/3", "evaluation 2/3", "final evaluation", "ended"]), ("-qq", [])],
    ids=["q", "qq"],
)
def test_quiet_keeps_the_evaluations_and_ends_and_very_quiet_only_the_summary(
    pytester: pytest.Pytester, quiet: str, shown: list[str]
) -> None:
    result = run(pytester, "-n", "2", "--innovator-progress", "0.2", quiet)
    for lines in lines_by_task(result).values():
        assert [kind(line) for line in lines] == shown
    result.stdout.fnmatch_lines(["*innovator results*", "report: *report.html"])
    result.stdout.fnmatch_lines_random(["alpha*passed", "beta*passed"])


def test_progress_zero_turns_the_status_lines_off(pytester: pytest.Pytester) -> None:
    result = run(pytester, "--innovator-progress", "0")
    for lines in lines_by_task(result).values():
        assert [kind(line) for line in lines] == [
            "started",
            "evaluation 1/3",
            "evaluation 2/3",
            "final evaluation",
            "ended",
        ]


def test_the_printed_report_exists_and_holds_every_item(pytester: pytest.Pytester) -> None:
    result = run(pytester, "-n", "2", "-q")
    [report_line] = [line for line in result.stdout.lines if line.startswith("report: ")]
    report = Path(report_line.removeprefix("report: "))
    records = result_records(pytester)
    assert report.parent == Path(records["alpha"]["run_dir"]).parent
    page = report.read_text(encoding="utf-8")
    for task in TASKS:
        assert f'">{task}</a>' in page
    result.stdout.fnmatch_lines(["leaderboard: pytest-innovator leaderboard .innovator --markdown leaderboard.md"])
    # How to use a real model is said only to a run of the react agent on the embedded model.
    assert not [line for line in result.stdout.lines if line.startswith("a real model:")]


def test_a_report_that_cannot_be_made_says_why(tmp_path: Path) -> None:
    assert html_report(tmp_path).startswith(f"not written: {tmp_path}: no item directories")
