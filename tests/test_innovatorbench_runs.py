"""InnovatorBench's CPU-only tasks (18 and 19) run end to end on the sandbox backend, from the
command line, with a synthetic dataset in the released layout: the workspace at /workspace, the
environment unpacked once and shared copy-on-write, the score the dataset's own evaluation computes,
the evaluations and hints out of the agent's reach, the hint's penalty, an evaluation that fails."""

from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from pytest_innovator.datasets import DatasetError, unpacked_environment
from pytest_innovator.sandbox import bwrap_path

from .scripted_llm import ScriptedLLMServer
from .test_innovatorbench import make_dataset, no_innovator_variables, run, suite  # noqa: F401 (fixtures)
from .test_plugin import ended_workspace, upper_layer
from .test_resume import processes_with, snapshot_after_step, wait_for

pytestmark = pytest.mark.skipif(bwrap_path() is None, reason="the sandbox backend needs bubblewrap")

pytest_plugins = ["pytester"]

NO_API = ("--innovator-task-api-url", "http://127.0.0.1:9/v1")  # nothing listens: no task code calls it here


def run_replay(pytester: pytest.Pytester, steps: list[dict[str, Any]], *args: str) -> pytest.RunResult:
    replay = pytester.path / f"replay-{len(list(pytester.path.glob('replay-*')))}.jsonl"
    replay.write_text("".join(json.dumps(step) + "\n" for step in steps))
    dataset = pytester.path / "dataset"
    return run(
        pytester,
        "--innovator-backend",
        "sandbox",
        "--innovator-dataset",
        f"innovatorbench={dataset}",
        "--innovator-agent",
        "replay",
        "--innovator-replay",
        str(replay),
        *args,
    )


def shell(command: str) -> list[dict[str, Any]]:
    return [
        {"tool": "create_session", "arguments": {"name": "s"}},
        {"tool": "run_command", "arguments": {"session": "s", "command": command, "wait": 60}},
    ]


def answer(x: float, extra: float | None = None) -> str:
    parts = ["mkdir -p /workspace/data/outputs", f"echo {x} > /workspace/data/outputs/answer.txt"]
    if extra is not None:
        parts.append(f"echo {extra} > /workspace/data/outputs/extra.txt")
    return " && ".join(parts)


FINISH = {"tool": "finish", "arguments": {"summary": "done"}}
EVALUATE = {"tool": "evaluate", "arguments": {}}


def records(pytester: pytest.Pytester) -> dict[str, dict[str, Any]]:
    lines = (pytester.path / ".innovator" / "results.jsonl").read_text().splitlines()
    return {record["innovator_task"]: record for record in map(json.loads, lines)}


def observations(record: dict[str, Any]) -> list[str]:
    steps = [json.loads(line) for line in (Path(record["run_dir"]) / "trajectory.jsonl").read_text().splitlines()]
    return [step["observation"] for step in steps if step.get("type") == "step"]


def evaluation_score(dataset: Path, task: str, workspace: Path) -> float:
    """What the dataset's own evaluation computes for a workspace, called here directly."""
    sys.path.insert(0, str(dataset))
    try:
        for name in [m for m in sys.modules if m == "evaluations" or m.startswith("evaluations.")]:
            del sys.modules[name]
        evaluation = importlib.import_module(f"evaluations.{task}.task.evaluation")
        config = importlib.import_module(f"evaluations.{task}.task.config")
        results = evaluation.TaskBenchmark(config.TaskConfig(str(dataset / "evaluations"), str(workspace))).validate()
        return min(sum(r.to_dict()["eval_results"]["score"] for r in results), 100.0)
    finally:
        sys.path.remove(str(dataset))


@pytest.fixture
def dataset(pytester: pytest.Pytester, suite: Path) -> Path:  # noqa: F811
    return make_dataset(pytester.path / "dataset", 18, 19)


@pytest.mark.parametrize(("x", "extra"), [(40, None), (60, 30), (85, None)])
def test_cpu_only_tasks_get_the_score_their_datasets_evaluation_computes(
    pytester: pytest.Pytester, dataset: Path, x: float, extra: float | None
) -> None:
    result = run_replay(pytester, [*shell(answer(x, extra)), FINISH], "-k", "task_18 or task_19", *NO_API)
    result.assert_outcomes(passed=2, skipped=0)
    for task, record in records(pytester).items():
        workspace = ended_workspace(record["run_dir"], pytester.path / f"ended-{task}")
        expected = evaluation_score(dataset, task, workspace)
        assert expected == (100.0 if extra else 10 + 70 * min((x - 20) / 40, 1) + 20 * max((x - 60) / 40, 0))
        assert record["score_final"] == pytest.approx(expected, abs=0.005), task
        assert record["final_status"] == "scored"
    if extra:
        assert records(pytester)["task_18"]["final_message"] == "task_18: 10 + 70 + 30 = 110, capped at 100"


def test_without_an_api_model_the_cpu_only_tasks_are_skipped_saying_how_to_give_one(
    pytester: pytest.Pytester, dataset: Path
) -> None:
    result = run_replay(pytester, [FINISH], "-k", "task_18 or task_19")
    result.assert_outcomes(skipped=2)
    result.stdout.fnmatch_lines(["*task task_18 needs an API model its code calls*--innovator-task-api-url URL*"])


def test_the_local_backend_cannot_place_the_workspace_at_slash_workspace(
    pytester: pytest.Pytester, dataset: Path
) -> None:
    result = run_replay(pytester, [FINISH], "-k", "task_18", *NO_API, "--innovator-backend", "local")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(
        ["*task task_18 needs its workspace at /workspace, which the local backend cannot give (use*sandbox or docker)"]
    )


def test_the_agent_works_in_slash_workspace_and_never_sees_the_evaluations_or_the_hint(
    pytester: pytest.Pytester, dataset: Path
) -> None:
    hint = (dataset / "evaluations" / "task_18" / "hint.md").read_text().strip()
    looks = (
        f"pwd; ls /workspace; cat /workspace/task/task_description.md; cat /workspace/conda/ENV; echo; "
        f"ls -a {dataset} {dataset}/evaluations; cat {dataset}/evaluations/task_18/hint.md; "
        f"grep -rl advanced / --include=hint.md 2>/dev/null; echo end-of-looking"
    )
    steps = [
        *shell(looks),
        {"tool": "read_file", "arguments": {"path": str(dataset / "evaluations" / "task_18" / "hint.md")}},
        {"tool": "list_files", "arguments": {"path": "/workspace"}},
        FINISH,
    ]
    run_replay(pytester, steps, "-k", "task_18", *NO_API).assert_outcomes(failed=1)
    seen = observations(records(pytester)["task_18"])
    assert "created session 's' in /workspace" in seen[0]
    output = seen[1]
    assert "\n/workspace\nconda  data  task\n# task_18 (synthetic)" in output
    assert "vllm_retriever" in output  # the task's environment, from conda/vllm_retriever/conda.tar
    assert "hint.md: No such file or directory" in output and "end-of-looking" in output
    assert "outside the workspace" in seen[2]
    assert all(hint not in text for text in seen)


def test_the_task_code_calls_the_api_model_it_is_given(pytester: pytest.Pytester, dataset: Path) -> None:
    transcript = {"model": "gpt-4o", "exchanges": [{"respond": {"content": "the API model answers"}}]}
    code = (
        "from openai import OpenAI; "
        "print(OpenAI().chat.completions.create(model='gpt-4o', messages=[{'role': 'user', 'content': 'hi'}])"
        ".choices[0].message.content)"
    )
    with ScriptedLLMServer(transcript) as server:
        os.environ["TASK_KEY_FOR_TEST"] = "sk-task-key"
        try:
            result = run_replay(
                pytester,
                [*shell(f'python3 -c "{code}"'), FINISH],
                "-k",
                "task_18",
                "--innovator-task-api-url",
                server.base_url,
                "--innovator-task-api-key-env",
                "TASK_KEY_FOR_TEST",
            )
        finally:
            del os.environ["TASK_KEY_FOR_TEST"]
        result.assert_outcomes(failed=1)
        server.assert_transcript_done()
        assert server.requests[0].headers["authorization"] == "Bearer sk-task-key"
    assert "the API model answers" in observations(records(pytester)["task_18"])[1]


def test_the_hint_comes_from_the_evaluations_and_costs_its_penalty(pytester: pytest.Pytester, dataset: Path) -> None:
    hint = (dataset / "evaluations" / "task_18" / "hint.md").read_text().strip()
    steps = [{"tool": "view_hint", "arguments": {}}, *shell(answer(60)), FINISH]
    run_replay(pytester, steps, "-k", "task_18", *NO_API, "--innovator-hints", "tool").assert_outcomes(passed=1)
    record = records(pytester)["task_18"]
    assert hint in observations(record)[0]
    assert record["hint_used"] is True
    assert record["metric_final"] == 80.0 and record["score_final"] == pytest.approx(72.0)  # 80 x (1 - 0.1)


def test_the_evaluation_runs_apart_and_cannot_write_the_workspace(pytester: pytest.Pytester, dataset: Path) -> None:
    evaluation = dataset / "evaluations" / "task_18" / "task" / "evaluation.py"
    evaluation.write_text(
        evaluation.read_text() + "\n\nimport os\n\n_validate = TaskBenchmark.validate\n\n\n"
        "def validate(self):\n"
        "    try:\n"
        "        open(os.path.join(self.config.workspace, 'data', 'outputs', 'pwned'), 'w').write('x')\n"
        "        print('wrote the workspace')\n"
        "    except OSError as exc:\n"
        "        print(f'cannot write the workspace: {exc.strerror}', flush=True)\n"
        "    try:\n"
        "        open(os.path.join(self.config.workspace, 'conda', 'pwned'), 'w').write('x')\n"
        "        print('wrote the environment')\n"
        "    except OSError as exc:\n"
        "        print(f'cannot write the environment: {exc.strerror}', flush=True)\n"
        "    return _validate(self)\n\n\n"
        "TaskBenchmark.validate = validate\n"
    )
    steps = [*shell(answer(60)), EVALUATE, FINISH]
    run_replay(pytester, steps, "-k", "task_18", *NO_API).assert_outcomes(passed=1)
    record = records(pytester)["task_18"]
    run_dir = Path(record["run_dir"])
    with upper_layer(run_dir) as upper:
        assert not (upper / "data" / "outputs" / "pwned").exists()
        assert not (upper / "conda" / "pwned").exists()
    logs = [(run_dir / "grader" / name).read_text() for name in ("eval-1.log", "eval-2.log")]
    for log in logs:
        assert "cannot write the workspace: Read-only file system" in log  # printed by the evaluation's process
        assert "cannot write the environment: Read-only file system" in log  # an overlay mounted inside it
    assert record["score_final"] == 80.0


def test_an_evaluation_that_raises_is_a_grader_failure_that_keeps_the_agents_evaluation(
    pytester: pytest.Pytester, dataset: Path
) -> None:
    steps = [*shell(answer(60) + " && touch /workspace/data/outputs/raise"), EVALUATE, FINISH]
    run_replay(pytester, steps, "-k", "task_18", *NO_API).assert_outcomes(failed=1)
    record = records(pytester)["task_18"]
    assert record["final_status"] == "grader_failed" and record["evals_used"] == 0
    log = (Path(record["run_dir"]) / "grader" / "eval-1.log").read_text()
    assert "Traceback (most recent call last)" in log
    assert "RuntimeError: synthetic evaluation failure (data/outputs/raise exists)" in log
    assert "grader exited with status 1" in observations(record)[2]


def test_an_evaluation_past_its_timeout_is_a_grader_failure(pytester: pytest.Pytester, dataset: Path) -> None:
    task_toml = pytester.path / "innovatorbench" / "task_18" / "task.toml"
    task_toml.write_text(task_toml.read_text().replace('timeout = "5000s"', 'timeout = "2s"'))
    evaluation = dataset / "evaluations" / "task_18" / "task" / "evaluation.py"
    evaluation.write_text(evaluation.read_text() + "\nimport time\n\ntime.sleep(60)\n")
    run_replay(pytester, [*shell(answer(60)), FINISH], "-k", "task_18", *NO_API).assert_outcomes(failed=1)
    record = records(pytester)["task_18"]
    assert record["final_status"] == "grader_failed"
    assert record["final_message"].startswith("grader timed out after 2s")


@pytest.mark.skipif(os.geteuid() != 0, reason="overlay mounts need root (elsewhere the cache is copied)")
def test_the_environment_is_unpacked_once_and_each_item_writes_its_own_layer(
    pytester: pytest.Pytester, dataset: Path
) -> None:
    writes = "ls /workspace/conda; echo mine > /workspace/conda/mine; echo x > /workspace/conda/bin/activate"
    steps = [*shell(writes), FINISH]
    for _ in range(2):
        run_replay(pytester, steps, "-k", "task_18 or task_19", *NO_API).assert_outcomes(failed=2)
    cache = pytester.path / "cache" / "environments"
    unpacked = sorted(p.name.rsplit("-", 1)[0] for p in cache.iterdir() if p.is_dir())
    assert unpacked == ["visualsketchpad", "vllm_retriever"]  # once each, for two runs of two items
    for directory in (p for p in cache.iterdir() if p.is_dir()):
        assert sorted(os.listdir(directory / "conda")) == ["ENV", "bin"]  # the cache is never written
        assert (directory / "conda" / "bin" / "activate").read_text().startswith("# synthetic conda environment")
    lines = (pytester.path / ".innovator" / "results.jsonl").read_text().splitlines()
    assert len(lines) == 4
    for record in map(json.loads, lines):
        run_dir = Path(record["run_dir"])
        assert observations(record)[1].splitlines()[1] == "ENV  bin"  # no other item's "mine"
        assert record["workspace_provisioning"] == "overlay"
        with upper_layer(run_dir) as upper:  # the item's own layer
            assert (upper / "conda" / "mine").read_text() == "mine\n"
        assert not os.path.ismount(run_dir / "workspace")  # unmounted at the end
    mounts = subprocess.run(["mount"], capture_output=True, text=True).stdout
    assert str(pytester.path) not in mounts


def test_an_archive_that_is_not_a_tar_file_is_an_error_naming_it(tmp_path: Path) -> None:
    archive = tmp_path / "conda" / "broken" / "conda.tar"
    archive.parent.mkdir(parents=True)
    archive.write_bytes(b"not a tar file at all" * 100)
    with pytest.raises(DatasetError, match=f"{archive}: not a valid tar archive"):
        unpacked_environment(archive, tmp_path / "cache")
    assert not [p for p in (tmp_path / "cache" / "environments").iterdir() if p.is_dir()]  # nothing half-made


def test_a_changed_archive_is_unpacked_again(tmp_path: Path) -> None:
    dataset = make_dataset(tmp_path / "dataset", 18)
    archive = dataset / "conda" / "vllm_retriever" / "conda.tar"
    first = unpacked_environment(archive, tmp_path / "cache")
    assert unpacked_environment(archive, tmp_path / "cache") == first
    os.utime(archive, ns=(0, archive.stat().st_mtime_ns + 10**9))
    second = unpacked_environment(archive, tmp_path / "cache")
    assert second != first and (second / "conda" / "ENV").read_text() == "vllm_retriever"


def test_the_leaderboard_shows_innovatorbenchs_per_domain_final_and_best_and_the_task_weighted_mean(
    pytester: pytest.Pytester, dataset: Path
) -> None:
    # One evaluation at 100 and a final one at 45 (the answer lowered after it): Best 100, Final 45.
    lower = "rm /workspace/data/outputs/extra.txt && " + answer(40)
    steps = [*shell(answer(60, 30)), EVALUATE, *shell(lower)[1:], FINISH]
    run_replay(pytester, steps, "-k", "task_18 or task_19", *NO_API).assert_outcomes(passed=2)
    board_path = pytester.path / "board.json"
    command = [sys.executable, "-m", "pytest_innovator.cli", "leaderboard", str(pytester.path / ".innovator")]
    subprocess.run([*command, "--json", str(board_path)], check=True, capture_output=True)
    (row,) = json.loads(board_path.read_text())["agents"]
    domain = row["domains"]["scaffold_construction"]
    assert (domain["final"]["mean"], domain["best"]["mean"]) == (45.0, 100.0)
    assert (row["overall"]["final"]["mean"], row["overall"]["best"]["mean"]) == (45.0, 100.0)
    assert row["overall"]["tasks"] == 2


def test_kill_the_harness_then_resume_with_the_environment_mounted_again(
    pytester: pytest.Pytester, dataset: Path
) -> None:
    marker = f"7.{uuid.uuid4().int % 10**6:06d}"
    steps = [
        *shell(answer(60) + " && echo mine > /workspace/conda/mine"),
        EVALUATE,
        {"tool": "run_command", "arguments": {"session": "s", "command": f"sleep {marker}", "wait": 0}},
        {"tool": "wait", "arguments": {"seconds": 60, "session": "s"}},
        *shell("ls /workspace/conda"),
        FINISH,
    ]
    replay = pytester.path / "replay.jsonl"
    replay.write_text("".join(json.dumps(step) + "\n" for step in steps))
    command = [
        sys.executable,
        "-m",
        "pytest",
        "innovatorbench",
        "-p",
        "no:cacheprovider",
        "-k",
        "task_18",
        "--innovator-dataset",
        f"innovatorbench={dataset}",
        "--innovator-cache-dir",
        str(pytester.path / "cache"),
        "--innovator-agent",
        "replay",
        "--innovator-replay",
        str(replay),
        "--innovator-snapshot-steps",
        "1",
        *NO_API,
    ]
    first = subprocess.Popen([*command, "--innovator-results", "crashed"], cwd=pytester.path)
    wait_for(lambda: any((pytester.path / "crashed" / "runs").glob("*/task_18")))
    item = next((pytester.path / "crashed" / "runs").glob("*/task_18"))
    wait_for(lambda: snapshot_after_step(item, 4))
    assert processes_with(marker), "the long command should be running at the kill"
    first.send_signal(signal.SIGKILL)
    first.wait()
    wait_for(lambda: not os.path.ismount(item / "workspace"))  # its guard unmounts a killed harness's overlay

    resumed = subprocess.run(
        [*command, "--innovator-results", "resumed", "--innovator-resume", str(item.parent)],
        cwd=pytester.path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stdout[-3000:]
    (record,) = map(json.loads, (pytester.path / "resumed" / "results.jsonl").read_text().splitlines())
    ledger = json.loads((Path(record["run_dir"]) / "ledger.json").read_text())
    assert [(e["kind"], e["score"]) for e in ledger["evaluations"]] == [("agent", 80.0), ("final", 80.0)]
    assert record["evals_used"] == 1
    listing = observations(record)[-2]
    assert "ENV" in listing and "bin" in listing  # the environment is there again, over a fresh layer
