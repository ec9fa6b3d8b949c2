"""The plugin seen from the command line: pytester runs pytest in a subprocess on task directories."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from pytest_innovator.mounts import readable_upper
from pytest_innovator.rundir import RunDir
from pytest_innovator.workspace import copy_final_workspace

from .conftest import FIXTURES

pytest_plugins = ["pytester"]


def add_task(
    root: Path, task_id: str, *, domain: str = "data_construction", gpus: int = 0, solution: str | None = None
) -> Path:
    """A copy of the fixtures' `number` task under root/<task_id>, with a few fields changed."""
    target = root / task_id
    shutil.copytree(FIXTURES / "tasks" / "number", target)
    toml = target / "task.toml"
    text = toml.read_text().replace('id = "number"', f'id = "{task_id}"')
    text = text.replace('domain = "data_construction"', f'domain = "{domain}"')
    if gpus:
        text = text.replace("[grader]", f"[resources]\ngpus = {gpus}\n\n[grader]")
    if solution is not None:
        text = text.replace('cp \\"$INNOVATOR_SOLUTION_DIR/answer.txt\\" answer.txt', solution)
    toml.write_text(text)
    return target


def results_log(pytester: pytest.Pytester) -> list[dict]:
    path = pytester.path / ".innovator" / "results.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def ended_workspace(run_dir: Path | str, into: Path) -> Path:
    """The item's workspace as it ended, copied into ``into`` (an overlay workspace is unmounted
    at the item's end: its layers are combined, as `pytest-innovator workspace` does)."""
    copy_final_workspace(Path(run_dir), into)
    return into


@contextmanager
def upper_layer(run_dir: Path | str) -> Iterator[Path]:
    """The item's own layer of its overlay workspace, readable after the item ended."""
    run = RunDir(Path(run_dir))
    with readable_upper(run.workspace_upper, run.layers_image) as upper:
        yield upper


def junit_properties(path: Path) -> dict[str, dict[str, str]]:
    tree = ET.parse(path)
    return {
        case.get("name", ""): {p.get("name", ""): p.get("value", "") for p in case.iter("property")}
        for case in tree.iter("testcase")
    }


def test_oracle_passes_with_properties_in_junit_xml(pytester: pytest.Pytester) -> None:
    add_task(pytester.path / "suite", "alpha")
    result = pytester.runpytest_subprocess("suite", "--innovator-agent", "oracle", "--junitxml", "out.xml")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            "*innovator results*",
            "alpha*data_construction*80.0*80.0*0/3*no*passed",
            "overall (task-weighted) mean: final 80.0*",
        ]
    )
    props = junit_properties(pytester.path / "out.xml")["alpha"]
    expected = {
        "innovator_task",
        "innovator_domain",
        "innovator_agent",
        "score_final",
        "score_best",
        "metric_final",
        "metric_best",
        "evals_used",
        "evals_budget",
        "hint_used",
        "steps",
        "working_time_s",
        "end_reason",
        "run_dir",
    }
    assert expected <= set(props)
    assert (props["score_final"], props["metric_final"], props["evals_used"], props["end_reason"]) == (
        "80.0",
        "0.9",
        "0",
        "finished",
    )
    [record] = results_log(pytester)
    assert (
        record["outcome"] == "passed"
        and record["score_final"] == 80.0
        and record["nodeid"] == "suite/alpha/task.toml::alpha"
    )


def test_null_fails_with_a_readable_report(pytester: pytest.Pytester) -> None:
    add_task(pytester.path / "suite", "alpha")
    result = pytester.runpytest_subprocess("suite", "--innovator-agent", "null")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*final score 0.00 is below the pass score 1 (task alpha, agent null@1, ended by finished)",
            "*evaluations:*",
            "*1  final*scored*0.2*0.00",
            "*last evaluation's message:*",
            "*read 0.2",
            "*last steps of the trajectory:*",
            "*finish(*",
        ]
    )
    assert "Traceback" not in result.stdout.str()
    assert "def run_task_body" not in result.stdout.str()


def test_broken_task_file_does_not_stop_the_good_one(pytester: pytest.Pytester) -> None:
    add_task(pytester.path / "suite", "good")
    broken = add_task(pytester.path / "suite", "bad")
    toml = broken / "task.toml"
    toml.write_text(toml.read_text().replace('direction = "maximize"', 'direction = "up"'))
    result = pytester.runpytest_subprocess("suite", "--innovator-agent", "oracle")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*suite/bad/task.toml: scoring.direction: must be 'maximize' or 'minimize', got 'up'"])
    assert "Traceback" not in result.stdout.str()


def test_domain_markers_select_tasks(pytester: pytest.Pytester) -> None:
    add_task(pytester.path / "suite", "one", domain="loss_design")
    add_task(pytester.path / "suite", "two", domain="reward_design")
    add_task(pytester.path / "suite", "three", domain="my_own_domain")
    result = pytester.runpytest_subprocess("suite", "--co", "-q", "-m", "loss_design", "--strict-markers")
    result.stdout.fnmatch_lines(["suite/one/task.toml::one", "*1/3 tests collected (2 deselected)*"])
    result = pytester.runpytest_subprocess("suite", "--co", "-q", "-m", "not reward_design")
    result.stdout.fnmatch_lines(["*2/3 tests collected (1 deselected)*"])
    result = pytester.runpytest_subprocess("suite", "--co", "-q", "-m", "my_own_domain")
    result.stdout.fnmatch_lines(["suite/three/task.toml::three", "*1/3 tests collected*"])


def test_timeout_marker_covers_time_grading_and_grace(pytester: pytest.Pytester) -> None:
    add_task(pytester.path / "suite", "alpha")
    pytester.makeconftest(
        "def pytest_collection_modifyitems(items):\n"
        "    for item in items:\n"
        "        print('TIMEOUT', item.get_closest_marker('timeout').args[0])\n"
    )
    result = pytester.runpytest_subprocess(
        "suite", "--co", "-s", "--innovator-time-scale", "0.5", "--innovator-timeout-grace", "60"
    )
    # 300 s * 0.5 + 5 s grader timeout * (3 + 1) evaluations + 60 s grace
    result.stdout.fnmatch_lines(["TIMEOUT 230.0"])


def test_bad_option_names_its_source(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    add_task(pytester.path / "suite", "alpha")
    monkeypatch.setenv("INNOVATOR_TIME_SCALE", "fast")
    result = pytester.runpytest_subprocess("suite")
    result.stderr.fnmatch_lines(
        ["*invalid --innovator-time-scale 'fast' (from environment variable INNOVATOR_TIME_SCALE)*"]
    )
    monkeypatch.delenv("INNOVATOR_TIME_SCALE")
    result = pytester.runpytest_subprocess("suite", "--innovator-hints", "always")
    result.stderr.fnmatch_lines(
        ["*invalid --innovator-hints 'always' (from command line --innovator-hints): must be one of off, tool, prompt*"]
    )
    pytester.makeini("[pytest]\ninnovator_agent = nobody\n")
    result = pytester.runpytest_subprocess("suite")
    result.stdout.fnmatch_lines(["*unknown agent 'nobody'; available: *null*oracle*replay*"])


def test_task_needing_more_gpus_than_the_host_is_skipped(pytester: pytest.Pytester) -> None:
    add_task(pytester.path / "suite", "big", gpus=3)
    result = pytester.runpytest_subprocess(
        "suite", "--innovator-gpus", "0,1", "-rs", "--innovator-gpu-lock-dir", str(pytester.path / "locks")
    )
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*task big needs 3 GPUs, this host has 2 (0,1)*"])
    [record] = results_log(pytester)
    assert record["outcome"] == "skipped"


def test_user_test_with_the_innovator_task_marker(pytester: pytest.Pytester) -> None:
    add_task(pytester.path / "task_suites" / "mine", "alpha")
    pytester.makepyfile(
        test_custom="""
        import pytest

        @pytest.mark.innovator_task("mine/alpha")
        def test_drive_it(research_env, record_property):
            research_env.workspace.write_file("answer.txt", b"0.55")
            observation = research_env.step("evaluate")
            assert "score 40.00/100" in observation.output
            record_property("custom", 1)
    """
    )
    result = pytester.runpytest_subprocess("test_custom.py", "--junitxml", "out.xml")
    result.assert_outcomes(passed=1)
    props = junit_properties(pytester.path / "out.xml")["test_drive_it"]
    assert props["score_final"] == "40.0" and props["custom"] == "1" and props["end_reason"] == "agent_returned"


@pytest.mark.slow
def test_xdist_properties_reach_the_controller(pytester: pytest.Pytester) -> None:
    for name in ("a1", "a2", "a3"):
        add_task(pytester.path / "suite", name)
    result = pytester.runpytest_subprocess("suite", "-n", "2", "--innovator-agent", "oracle", "--junitxml", "out.xml")
    result.assert_outcomes(passed=3)
    props = junit_properties(pytester.path / "out.xml")
    assert {name: p["score_final"] for name, p in props.items()} == {"a1": "80.0", "a2": "80.0", "a3": "80.0"}
    records = results_log(pytester)
    assert sorted(r["innovator_task"] for r in records) == ["a1", "a2", "a3"]
    assert {r["worker"] for r in records} <= {"gw0", "gw1"}
    assert len({r["run_id"] for r in records}) == 1


@pytest.mark.slow
def test_xdist_workers_never_share_a_gpu(pytester: pytest.Pytester) -> None:
    # Each oracle holds its GPU while the solution sleeps, so the items overlap in time.
    for name in ("g1", "g2", "g3", "g4"):
        add_task(
            pytester.path / "suite",
            name,
            gpus=1,
            solution='sleep 1.5 && cp \\"$INNOVATOR_SOLUTION_DIR/answer.txt\\" answer.txt',
        )
    result = pytester.runpytest_subprocess(
        "suite",
        "-n",
        "2",
        "--innovator-agent",
        "oracle",
        "--innovator-gpus",
        "0,1",
        "--innovator-gpu-lock-dir",
        str(pytester.path / "locks"),
    )
    result.assert_outcomes(passed=4)
    leases = [json.loads(p.read_text()) for p in (pytester.path / ".innovator" / "runs").glob("*/*/gpu_lease.json")]
    assert len(leases) == 4
    for device in ("0", "1"):
        spans = sorted((lease["acquired_at"], lease["released_at"]) for lease in leases if lease["devices"] == [device])
        assert all(end <= next_start for (_, end), (next_start, _) in zip(spans, spans[1:])), spans
    assert all(len(lease["devices"]) == 1 for lease in leases)


@pytest.mark.slow
def test_crashed_worker_keeps_finished_items_in_the_results_log(pytester: pytest.Pytester) -> None:
    for name in ("c1", "c2", "crash"):
        add_task(pytester.path / "suite", name)
    pytester.makepyfile(
        crashing_agent="""
        import os, signal
        from pytest_innovator.agents.oracle import OracleAgent

        class CrashOnTask(OracleAgent):
            def run(self, env):
                if env.task.id == "crash":
                    os.kill(os.getpid(), signal.SIGKILL)
                super().run(env)
    """
    )
    result = pytester.runpytest_subprocess(
        "suite",
        "-n",
        "2",
        "-p",
        "no:randomly",
        "--innovator-agent",
        "crashing_agent:CrashOnTask",
        "--max-worker-restart",
        "1",
    )
    result.stdout.fnmatch_lines(["*crash*"])
    finished = {r["innovator_task"]: r["outcome"] for r in results_log(pytester)}
    assert finished.get("c1") == "passed" and finished.get("c2") == "passed"


def test_a_backend_named_but_unavailable_stops_the_run_with_the_fix(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_task(pytester.path / "suite", "alpha")
    monkeypatch.setenv("DOCKER_HOST", f"unix://{pytester.path}/no-such-docker.sock")
    result = pytester.runpytest_subprocess("suite", "--innovator-backend", "docker", "--innovator-agent", "oracle")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--innovator-backend docker: cannot reach the Docker daemon*start it*"])
    assert not (pytester.path / ".innovator" / "runs").exists()
    monkeypatch.setenv("INNOVATOR_BACKEND", "remote")
    result = pytester.runpytest_subprocess("suite", "--innovator-agent", "oracle")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--innovator-backend remote: the remote backend needs --innovator-remote-url*"])


def test_the_default_backend_is_chosen_quietly(pytester: pytest.Pytester) -> None:
    add_task(pytester.path / "suite", "alpha")
    result = pytester.runpytest_subprocess("suite", "--innovator-agent", "oracle")
    result.assert_outcomes(passed=1)


def test_the_backends_command_says_which_backends_can_run_here(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/no-such-docker.sock"}
    command = [str(Path(sys.executable).parent / "pytest-innovator"), "backends"]
    listing = subprocess.run(command, capture_output=True, text=True, env=env, check=True).stdout
    assert "local: available" in listing
    assert "docker: unavailable: cannot reach the Docker daemon" in listing
    assert "remote: unavailable: the remote backend needs --innovator-remote-url" in listing
    assert listing.count("protects: ") == 4 and "pytest-innovator[server]" in listing
