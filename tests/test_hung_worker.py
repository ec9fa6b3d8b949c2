"""A worker hung so that pytest-timeout cannot end it (pytest-xdist issue 57): the GPU scheduler's
watchdog ends it once it has held its item past the item's limit and margin, xdist reports the
item crashed with the reason, and the other items run. From the command line, on simulated hosts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_innovator.plugin.scheduling import end_process

from .test_item_endings import AGENTS
from .test_plugin import add_task, results_log

pytest_plugins = ["pytester"]

# The hung agent holds the GIL for good: a thread runs a regular expression that backtracks for
# ever (ReDoS, e.g. in a log parser) and the C regex engine never gives the GIL back. Neither of
# pytest-timeout's methods can act then: the signal method's handler and the thread method's timer
# are Python code and wait for the GIL (tried here: both leave such a test running). The worker's
# own execnet threads cannot answer either: only killing the process ends it.
GIL_AGENT = """
    import re, threading

    class HoldsTheGil(Hangs):
        name = "holds-the-gil"

        def run(self, env):
            env.step("write_file", {"path": "answer.txt", "content": "0.55"})
            if env.task.id == "hung":
                with open(os.environ["HUNG_PID_FILE"], "w") as f:
                    f.write(str(os.getpid()))
                parse = threading.Thread(target=re.match, args=(r"(a+)+$", "a" * 64 + "b"), daemon=True)
                parse.start()
                parse.join()
            env.step("finish", {"summary": "done"})
"""

# Working time 300 s * 0.01, no agent evaluation, grace 1 s: the hung task (grader timeout 1 s)
# has a limit of 3 + 1 + 1 = 5 s and a margin of 1 + 1 = 2 s; the others a limit of 3 + 5 + 1 s.
FAST = ["--innovator-time-scale", "0.01", "--innovator-max-evals", "0", "--innovator-timeout-grace", "1"]


def process_is_gone(pid: int) -> bool:
    """No such process, or only its exit status left for its parent to collect (a zombie)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "\nState:\tZ" in status


def test_a_hung_worker_is_ended_its_item_fails_with_the_reason_and_the_others_run(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    for variable in [v for v in os.environ if v.startswith("INNOVATOR_")]:
        monkeypatch.delenv(variable)
    monkeypatch.setenv("TMPDIR", str(pytester.path))
    hung = add_task(pytester.path / "suite", "hung") / "task.toml"
    hung.write_text(hung.read_text().replace('timeout = "5s"', 'timeout = "1s"'))
    for name in ("healthy_1", "healthy_2", "healthy_3"):
        add_task(pytester.path / "suite", name)
    pid_file = pytester.path / "hung.pid"
    monkeypatch.setenv("HUNG_PID_FILE", str(pid_file))  # the workers inherit it
    pytester.makepyfile(agents=AGENTS + GIL_AGENT)
    result = pytester.runpytest_subprocess(
        "suite",
        "--dist",
        "load",
        "--tx",
        "2*popen//env:INNOVATOR_HOST=a//env:INNOVATOR_GPUS=0,1",
        "-p",
        "no:randomly",
        "--innovator-agent",
        "agents:HoldsTheGil",
        "--junitxml",
        "out.xml",
        *FAST,
        timeout=300,  # far beyond the run's length: a controller that hangs fails the test
    )
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*worker gw* held item suite/hung/task.toml::hung for * s, past its limit of 5 s"
            " (and a margin of 2 s): ended it*"
        ]
    )
    records = {r["innovator_task"]: r for r in results_log(pytester)}
    assert (records["hung"]["outcome"], records["hung"]["end_reason"]) == ("failed", "worker_hung")
    assert {records[f"healthy_{n}"]["outcome"] for n in (1, 2, 3)} == {"passed"}
    assert "held item" in (pytester.path / "out.xml").read_text()
    assert process_is_gone(int(pid_file.read_text()))


def test_a_worker_process_on_another_host_is_ended_through_a_gateway_of_its_spec() -> None:
    """The path an ssh worker takes (a new interpreter of the same spec kills the pid), here with a
    popen spec standing in for ssh: the interpreter is another local process."""
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:

        class Spec:
            popen = None

            def __str__(self) -> str:
                return f"popen//python={sys.executable}//id=gw9//env:X=1"

        end_process(Spec(), sleeper.pid)
        assert sleeper.wait(timeout=60) == -9
    finally:
        sleeper.kill()
        sleeper.wait()
