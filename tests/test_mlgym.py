"""MLGym's task configs as items: pytest given an MLGym checkout's configs (fixtures/mlgym/MLGym, laid
out as MLGym's repository is) runs each task and reports what the checkout's evaluate.py prints."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pytest_innovator.mlgym import load_mlgym_task, metric_direction
from pytest_innovator.mlgym_evaluation import EvaluationFailed, evaluation_command, parse_metrics
from pytest_innovator.scores import normalize
from pytest_innovator.task import TaskError

from .conftest import FIXTURES

pytest_plugins = ["pytester"]

CHECKOUT = FIXTURES / "mlgym" / "MLGym"
TASKS = "MLGym/configs/tasks"


@pytest.fixture
def checkout(pytester: pytest.Pytester) -> Path:
    """A copy of the synthetic checkout in pytester's directory, free to edit."""
    return Path(shutil.copytree(CHECKOUT, pytester.path / "MLGym"))


def results_by_task(pytester: pytest.Pytester) -> dict[str, dict]:
    lines = (pytester.path / ".innovator" / "results.jsonl").read_text().splitlines()
    return {r["innovator_task"]: r for r in map(json.loads, lines) if r.get("innovator_task")}


def evaluate_by_hand(checkout: Path, task: str, into: Path, *arguments: str) -> dict:
    """What the checkout's evaluate.py prints for the untouched starter code, in a workspace laid
    out as MLGym lays it out: local datasets under data/, starter code at the top."""
    config = yaml.safe_load((checkout / "configs" / "tasks" / f"{task}.yaml").read_text())
    into.mkdir()
    for dataset_config in config.get("dataset_configs", []):
        dataset = yaml.safe_load((checkout / "configs" / dataset_config).read_text())
        shutil.copytree(checkout / dataset["data_path"], into / "data")
    for path in config["starter_code"]:
        shutil.copy(checkout / path, into / Path(path).name)
    done = subprocess.run(
        [sys.executable, "evaluate.py", *arguments], cwd=into, capture_output=True, text=True, check=True
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    return json.loads(lines[0])


def test_csv_python_and_model_tasks_report_the_starter_codes_metrics(
    pytester: pytest.Pytester, checkout: Path, tmp_path: Path
) -> None:
    """The null agent on three entry point kinds: each item's final metrics are exactly what the
    checkout's evaluate.py prints for the starter code, and it fails for not beating the baseline.
    The evaluation runs under the interpreter named for mlgym."""
    before = sorted((str(p), p.stat().st_mtime_ns) for p in checkout.rglob("*"))
    python = tmp_path / "evaluation-python"
    python.write_text(f'#!/bin/sh\necho "evaluation-python ran: $@" >&2\nexec {sys.executable} "$@"\n')
    python.chmod(0o755)
    result = pytester.runpytest_subprocess(
        f"{TASKS}/titanic.yaml",
        f"{TASKS}/blotto.yaml",
        f"{TASKS}/configTuning.yaml",
        "--innovator-agent",
        "null",
        "--innovator-evaluation-python",
        f"mlgym={python}",
    )
    result.assert_outcomes(failed=3)
    result.stdout.fnmatch_lines(
        [
            "final Accuracy 0.6 does not beat the baseline 0.6 (higher is better) (task titanicSurvival*",
            "*last evaluation's message:",
            '  evaluate.py: {"Accuracy": 0.6, "Correct": 6}',
            'Baseline Score: {"Accuracy": 0.6}',
        ]
    )
    results = results_by_task(pytester)
    expected = {
        "titanicSurvival": evaluate_by_hand(
            checkout, "titanic", tmp_path / "titanic", "--submission_file", "submission.csv"
        ),
        "blotto": evaluate_by_hand(checkout, "blotto", tmp_path / "blotto"),
        "configTuning": evaluate_by_hand(
            checkout, "configTuning", tmp_path / "tuning", "--config_fname", "config.yaml"
        ),
    }
    for task, metrics in expected.items():
        record = results[task]
        assert {k.removeprefix("mlgym_final."): v for k, v in record.items() if k.startswith("mlgym_final.")} == metrics
        assert record["final_status"] == "scored" and record["score_final"] == 0.0
        assert record["evals_used"] == 0 and record["end_reason"] == "finished"
    assert results["titanicSurvival"]["metric_final"] == expected["titanicSurvival"]["Accuracy"]
    assert results["titanicSurvival"]["mlgym_baseline.Accuracy"] == 0.6
    for record in results.values():  # the grader's standard error is its log
        (log,) = (Path(record["run_dir"]) / "grader").glob("*.log")
        assert "evaluation-python ran: -m pytest_innovator.mlgym_evaluation" in log.read_text()
    assert sorted((str(p), p.stat().st_mtime_ns) for p in checkout.rglob("*")) == before  # read where it is


def test_a_folder_of_configs_collects_the_tasks_and_skips_a_hub_dataset(
    pytester: pytest.Pytester, checkout: Path
) -> None:
    """defaults.yaml names no task_entrypoint: not a task. tinyLM's dataset is on the hub."""
    result = pytester.runpytest_subprocess(TASKS, "--collect-only", "-q")
    result.stdout.fnmatch_lines(
        [
            f"{TASKS}/blotto.yaml::blotto",
            f"{TASKS}/configTuning.yaml::configTuning",
            f"{TASKS}/tinyLM.yaml::tinyLM",
            f"{TASKS}/titanic.yaml::titanicSurvival",
            "4 tests collected*",
        ]
    )
    result = pytester.runpytest_subprocess(f"{TASKS}/tinyLM.yaml", "--innovator-agent", "null", "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*tinyLM needs the hub dataset 'example-org/fineweb-tokens'*fineweb.yaml*"])


def perfect_submission(checkout: Path) -> str:
    with open(checkout / "data" / "titanic" / "ground_truth.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    return "PassengerId,Survived\n" + "".join(f"{r['PassengerId']},{r['Survived']}\n" for r in rows)


def test_validate_is_unlimited_submit_ends_and_the_leaderboard_has_best_at_k(
    pytester: pytest.Pytester, checkout: Path, tmp_path: Path
) -> None:
    """The agent validates a perfect submission four times, then submits a worse one that still
    beats the baseline: the item passes on its final metric; Best Attempt@k is the perfect one,
    Best Submission@k the submitted one. The agent's copy of evaluate.py (read-only, protected)
    is never what grades it."""
    perfect = perfect_submission(checkout)
    better = perfect.replace(",1\n", ",0\n", 1)  # one passenger wrong
    calls = [
        {"tool": "write_file", "arguments": {"path": "submission.csv", "content": perfect}},
        *[{"tool": "validate", "arguments": {}}] * 4,
        {"tool": "write_file", "arguments": {"path": "submission.csv", "content": better}},
        {"tool": "submit", "arguments": {"summary": "one mistake"}},
        {"tool": "validate", "arguments": {}},  # never played: submit ended the episode
    ]
    replay = tmp_path / "titanicSurvival.yaml"
    replay.write_text(yaml.safe_dump(calls))
    result = pytester.runpytest_subprocess(
        f"{TASKS}/titanic.yaml",
        f"{TASKS}/blotto.yaml",
        "--innovator-agent",
        "replay",
        "--innovator-replay",
        str(tmp_path),
    )
    result.assert_outcomes(passed=1, failed=1)  # blotto's replay is missing: the agent fails
    result.stdout.fnmatch_lines(["titanicSurvival*mlgym*4/∞*passed"])
    record = results_by_task(pytester)["titanicSurvival"]
    truth_count = perfect.count("\n") - 1
    assert record["evals_used"] == 4 and record["end_reason"] == "finished"
    steps = [json.loads(line) for line in (Path(record["run_dir"]) / "trajectory.jsonl").read_text().splitlines()]
    validations = [s["observation"] for s in steps if s.get("tool") == "validate"]
    assert len(validations) == 4 and all("evaluations are unlimited" in o for o in validations)
    assert record["metric_best"] == 1.0
    assert record["metric_final"] == (truth_count - 1) / truth_count == record["mlgym_final.Accuracy"]
    task = load_mlgym_task(checkout / "configs" / "tasks" / "titanic.yaml")
    assert record["score_final"] == round(normalize(record["metric_final"], task.spec.scoring), 4)

    board_path = pytester.path / "board.json"
    subprocess.run(
        [sys.executable, "-m", "pytest_innovator.cli", "leaderboard", ".innovator", "--json", str(board_path)],
        cwd=pytester.path,
        check=True,
        capture_output=True,
    )
    board = json.loads(board_path.read_text())
    (row,) = board["agents"]
    stats = row["tasks"]["titanicSurvival"]
    assert stats["best_attempt_at_k"] == round(normalize(1.0, task.spec.scoring), 4)
    assert stats["best_submission_at_k"] == record["score_final"] < stats["best_attempt_at_k"]
    assert row["aup"]["best_attempt"] is not None and row["aup"]["best_submission"] is not None


def test_max_evals_limits_validate_and_a_limit_submits_the_last_artefact(
    pytester: pytest.Pytester, checkout: Path, tmp_path: Path
) -> None:
    """blotto: two validations are allowed, the third is refused. titanic: the step limit ends the
    episode before the agent submits; the final evaluation scores what the workspace holds."""
    (tmp_path / "blotto.yaml").write_text(
        yaml.safe_dump([{"tool": "validate", "arguments": {}}] * 3 + [{"tool": "submit", "arguments": {}}])
    )
    perfect = perfect_submission(checkout)
    titanic = [
        {"tool": "write_file", "arguments": {"path": "submission.csv", "content": perfect}},
        *[{"tool": "think", "arguments": {"thought": "done, but not submitted"}}] * 3,
        {"tool": "write_file", "arguments": {"path": "submission.csv", "content": "PassengerId,Survived\n"}},
    ]
    (tmp_path / "titanicSurvival.yaml").write_text(yaml.safe_dump(titanic))
    pytester.runpytest_subprocess(
        f"{TASKS}/blotto.yaml",
        f"{TASKS}/titanic.yaml",
        "--innovator-agent",
        "replay",
        "--innovator-replay",
        str(tmp_path),
        "--innovator-max-evals",
        "2",
        "--innovator-max-steps",
        "4",
    )
    results = results_by_task(pytester)
    assert results["blotto"]["evals_used"] == 2 and results["blotto"]["evals_budget"] == 2
    record = results["titanicSurvival"]
    assert record["end_reason"] == "step_limit" and record["steps"] == 4
    assert record["metric_final"] == 1.0 and record["outcome"] == "passed"


def test_edited_evaluation_does_not_count_and_a_crash_is_a_grader_failure(
    pytester: pytest.Pytester, checkout: Path, tmp_path: Path
) -> None:
    """configTuning's evaluate.py is writable (no evaluation_read_only): the agent rewrites it to
    print a perfect loss, and the checkout's pristine copy grades it all the same. blotto's agent
    breaks strategy.py: evaluate.py crashes, a grader failure naming it, not the agent's zero."""
    cheat = [
        {"tool": "write_file", "arguments": {"path": "evaluate.py", "content": "print('{\"Loss\": 0.0}')\n"}},
        {"tool": "validate", "arguments": {}},
        {"tool": "submit", "arguments": {"summary": ""}},
    ]
    crash = [
        {"tool": "write_file", "arguments": {"path": "strategy.py", "content": "def row_strategy(h):\n    1/0\n"}},
        {"tool": "submit", "arguments": {"summary": ""}},
    ]
    (tmp_path / "configTuning.yaml").write_text(yaml.safe_dump(cheat))
    (tmp_path / "blotto.yaml").write_text(yaml.safe_dump(crash))
    result = pytester.runpytest_subprocess(
        f"{TASKS}/configTuning.yaml",
        f"{TASKS}/blotto.yaml",
        "--innovator-agent",
        "replay",
        "--innovator-replay",
        str(tmp_path),
    )
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        ["*the final evaluation's grader failed: grader exited with status 1: evaluate.py exited*"]
    )
    results = results_by_task(pytester)
    assert results["blotto"]["final_status"] == "grader_failed"
    tuning = Path(results["configTuning"]["run_dir"])
    steps = [json.loads(line) for line in (tuning / "trajectory.jsonl").read_text().splitlines()]
    assert [s["ok"] for s in steps if s.get("tool") == "write_file"] == [True]
    expected = evaluate_by_hand(checkout, "configTuning", tmp_path / "tuning", "--config_fname", "config.yaml")
    ledger = json.loads((tuning / "ledger.json").read_text())
    assert [e["metric"] for e in ledger["evaluations"]] == [expected["Loss"]] * 2


def write_config(checkout: Path, name: str, text: str) -> Path:
    path = checkout / "configs" / "tasks" / name
    path.write_text(text)
    return path


def test_bad_configs_are_collection_errors_naming_the_file_and_the_field(
    pytester: pytest.Pytester, checkout: Path
) -> None:
    good = (checkout / "configs" / "tasks" / "titanic.yaml").read_text()
    write_config(checkout, "no_id.yaml", good.replace("id: titanicSurvival\n", ""))
    write_config(checkout, "bad_entry.yaml", good.replace("CSVSubmissionTasks", "ImageTasks"))
    write_config(checkout, "no_dataset.yaml", good.replace("datasets/titanic.yaml", "datasets/missing.yaml"))
    result = pytester.runpytest_subprocess(TASKS, "--collect-only", "-q")
    result.stdout.fnmatch_lines_random(
        [
            "*MLGym/configs/tasks/no_id.yaml: id: required field is missing*",
            "*MLGym/configs/tasks/bad_entry.yaml: task_entrypoint: unknown task class 'ImageTasks'; known: *",
            "*MLGym/configs/tasks/no_dataset.yaml: dataset_configs[[]0[]]: *configs/datasets/missing.yaml not found*",
            "*4 tests collected, 3 errors*",
        ]
    )


def test_the_adapter_gives_the_task_mlgyms_layout_and_description() -> None:
    task = load_mlgym_task(CHECKOUT / "configs" / "tasks" / "titanic.yaml")
    assert task.id == "titanicSurvival" and task.root == CHECKOUT == task.dataset_root
    parts = task.spec.dataset.workspace
    assert parts["evaluate.py"] == "data/titanic/evaluate.py" and parts["data/train.csv"] == "data/titanic/train.csv"
    assert "TITANIC:\nPassengers of a small synthetic Titanic" in task.instruction()
    assert "{dataset_docs}" not in task.instruction()
    assert task.spec.protected == ("evaluate.py",) and task.spec.grader.timeout == 120
    assert task.spec.tools[0] == "mlgym"
    assert task.spec.memory_seed == "data/titanic/memory.json"  # memory_path seeds the memory tools
    with pytest.raises(TaskError, match="not inside an MLGym checkout"):
        load_mlgym_task(CHECKOUT / "configs" / "datasets" / "titanic.yaml")


def test_commands_and_output_rules_per_entry_point() -> None:
    python = sys.executable
    assert evaluation_command("CSVSubmissionTasks", "evaluate.py", python, ["--submission_file", "s.csv"], 0) == [
        python,
        "evaluate.py",
        "--submission_file",
        "s.csv",
    ]
    assert evaluation_command("ModelSubmissionTasks", "evaluate.py", python, ["--config_fname", "c.yaml"], 0)[2:] == [
        "--config_fname",
        "c.yaml",
    ]
    lm = evaluation_command("LMSubmissionTasks", "evaluate.py", python, [], 4)
    assert Path(lm[0]).name == "torchrun" and lm[1:] == ["--nproc_per_node=4", "--standalone", "evaluate.py"]
    noisy = 'loading\n{"val_loss": 3.5}\n{"ignored": 1}\ndone\n'
    assert parse_metrics("LMSubmissionTasks", noisy, "evaluate.py") == {"val_loss": 3.5}
    assert parse_metrics("ModelSubmissionTasks", noisy, "evaluate.py") == {"val_loss": 3.5}
    with pytest.raises(EvaluationFailed, match="evaluate.py: its output is not JSON"):
        parse_metrics("CSVSubmissionTasks", noisy, "evaluate.py")
    with pytest.raises(EvaluationFailed, match="no line starting with"):
        parse_metrics("ModelSubmissionTasks", "nothing\n", "evaluate.py")
    assert metric_direction("val_loss") == "minimize" and metric_direction("Accuracy") == "maximize"


def test_the_lm_entry_point_runs_torchrun_beside_the_interpreter(tmp_path: Path) -> None:
    """A torchrun next to the evaluation interpreter is the one run, with the GPUs of CUDA_VISIBLE_DEVICES."""
    from pytest_innovator.mlgym_evaluation import gpu_count

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    torchrun = bin_dir / "torchrun"
    torchrun.write_text("#!/bin/sh\n")
    command = evaluation_command("LMSubmissionTasks", "evaluate.py", str(bin_dir / "python"), [], 2)
    assert command[0] == str(torchrun)
    assert gpu_count({"CUDA_VISIBLE_DEVICES": "0,3"}) == 2 and gpu_count({}) == 0
    assert gpu_count(dict(os.environ, CUDA_VISIBLE_DEVICES="-1")) == 0


def test_a_malformed_memory_seed_is_a_collection_error(checkout: Path) -> None:
    (checkout / "data" / "titanic" / "memory.json").write_text("{not json")
    with pytest.raises(TaskError, match="titanic.yaml: memory_seed: .*not valid JSON"):
        load_mlgym_task(checkout / "configs" / "tasks" / "titanic.yaml")
