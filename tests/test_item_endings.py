"""Every way an item can end is reported: a timeout, a harness error inside the body, a crashed
worker. Each gets its report, its line in the results log and its JUnit entry; the run goes on
and pytest exits non-zero. Run from the command line, as a user would."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from .test_plugin import add_task, junit_properties, results_log

pytest_plugins = ["pytester"]

# The agents write 0.55 (score 40) before they misbehave, so a final evaluation has something to
# grade: the report must carry that score.
AGENTS = """
    import os, signal, time

    class Hangs:
        name, version = "hangs", "1"

        def __init__(self, options):
            pass

        def run(self, env):
            env.step("write_file", {"path": "answer.txt", "content": "0.55"})
            if env.task.id == "hung":
                time.sleep(3600)  # a model call that never returns
            env.step("finish", {"summary": "done"})

    class HarnessFails:
        name, version = "harness-fails", "1"

        def __init__(self, options):
            pass

        def run(self, env):
            env.step("write_file", {"path": "answer.txt", "content": "0.55"})
            if env.task.id == "broken":
                # Fault injection: the harness's own end of the episode fails once, outside
                # anything the agent did (as a full disk or a lost session server would).
                finalize = env.finalize

                def fails_once(*args, **kwargs):
                    env.finalize = finalize
                    raise SystemError("the session server went away")

                env.finalize = fails_once

    class CrashesWorker:
        name, version = "crashes", "1"

        def __init__(self, options):
            pass

        def run(self, env):
            env.step("write_file", {"path": "answer.txt", "content": "0.55"})
            env.step("evaluate", {})
            if env.task.id == "crash":
                os.kill(os.getpid(), signal.SIGKILL)
            env.step("finish", {"summary": "done"})
"""

# 300 s * 0.01 working time + 5 s grader timeout * (0 + 1) evaluations + 1 s grace = 9 s
FAST_TIMEOUT = ["--innovator-time-scale", "0.01", "--innovator-max-evals", "0", "--innovator-timeout-grace", "1"]


def junit_failures(path) -> dict[str, str]:
    """testcase name -> the message of its failure or error element ("" when it has none)."""
    failures = {}
    for case in ET.parse(path).iter("testcase"):
        element = case.find("failure")
        if element is None:
            element = case.find("error")
        failures[case.get("name", "")] = "" if element is None else (element.get("message") or element.text or "")
    return failures


@pytest.mark.slow
def test_a_hung_agent_alone_is_reported_as_failed_with_its_final_score(pytester: pytest.Pytester) -> None:
    add_task(pytester.path / "suite", "hung")
    pytester.makepyfile(agents=AGENTS)
    result = pytester.runpytest_subprocess(
        "suite", "--innovator-agent", "agents:Hangs", "--junitxml", "out.xml", *FAST_TIMEOUT
    )
    assert result.ret == 1
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*timed out after 9*s (pytest-timeout)*final score 40.00*", "*evaluations:*", "*final*scored*0.55*40.00*"]
    )
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()
    [record] = results_log(pytester)
    assert (record["outcome"], record["end_reason"], record["score_final"]) == ("failed", "timeout", 40.0)
    assert "timed out" in junit_failures(pytester.path / "out.xml")["hung"]
    assert junit_properties(pytester.path / "out.xml")["hung"]["score_final"] == "40.0"


@pytest.mark.slow
def test_a_hung_agent_beside_a_healthy_one_under_xdist(pytester: pytest.Pytester) -> None:
    add_task(pytester.path / "suite", "hung")
    add_task(pytester.path / "suite", "healthy")
    pytester.makepyfile(agents=AGENTS)
    result = pytester.runpytest_subprocess(
        "suite", "-n", "2", "--innovator-agent", "agents:Hangs", "--junitxml", "out.xml", *FAST_TIMEOUT
    )
    assert result.ret == 1
    result.assert_outcomes(passed=1, failed=1)
    records = {r["innovator_task"]: r for r in results_log(pytester)}
    assert (records["hung"]["outcome"], records["hung"]["end_reason"], records["hung"]["score_final"]) == (
        "failed",
        "timeout",
        40.0,
    )
    assert (records["healthy"]["outcome"], records["healthy"]["end_reason"], records["healthy"]["score_final"]) == (
        "passed",
        "finished",
        40.0,
    )
    failures = junit_failures(pytester.path / "out.xml")
    assert "timed out" in failures["hung"] and failures["healthy"] == ""


@pytest.mark.slow
def test_a_harness_error_in_the_body_is_reported_and_the_run_goes_on(pytester: pytest.Pytester) -> None:
    add_task(pytester.path / "suite", "broken")
    add_task(pytester.path / "suite", "fine")
    pytester.makepyfile(agents=AGENTS)
    result = pytester.runpytest_subprocess(
        "suite", "-n", "2", "--innovator-agent", "agents:HarnessFails", "--junitxml", "out.xml"
    )
    assert result.ret == 1
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*harness error*SystemError: the session server went away*final score 40.00*"])
    records = {r["innovator_task"]: r for r in results_log(pytester)}
    assert (records["broken"]["outcome"], records["broken"]["end_reason"], records["broken"]["score_final"]) == (
        "failed",
        "harness_error",
        40.0,
    )
    assert records["fine"]["outcome"] == "passed"
    assert "SystemError" in junit_failures(pytester.path / "out.xml")["broken"]


@pytest.mark.slow
def test_a_crashed_worker_fails_its_own_item_in_the_log_and_the_junit_xml(pytester: pytest.Pytester) -> None:
    for name in ("crash", "other"):
        add_task(pytester.path / "suite", name)
    pytester.makepyfile(agents=AGENTS)
    result = pytester.runpytest_subprocess(
        "suite", "-n", "2", "-p", "no:randomly", "--innovator-agent", "agents:CrashesWorker", "--junitxml", "out.xml"
    )
    assert result.ret == 1
    records = {r["innovator_task"]: r for r in results_log(pytester)}
    assert records["other"]["outcome"] == "passed"
    crashed = records["crash"]
    assert crashed["outcome"] == "failed" and crashed["end_reason"] == "worker_crashed"
    # What the worker had done before it died is read back from the item's run directory.
    assert crashed["evals_used"] == 1 and crashed["score_best"] == 40.0 and crashed["score_final"] is None
    assert "crashed" in junit_failures(pytester.path / "out.xml")["crash"]
