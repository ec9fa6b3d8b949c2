"""An InnovatorBench item on the docker backend, run from the command line: its workspace at
/workspace made from the dataset, the dataset's evaluations out of the agent's reach, and the
dataset's own evaluation grading it in a container that sees the workspace read-only."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from .docker_support import docker_daemon, docker_image  # noqa: F401
from .test_innovatorbench import make_dataset, no_innovator_variables, run, suite  # noqa: F401
from .test_plugin import upper_layer

pytest_plugins = ["pytester"]

pytest.importorskip("docker", reason="the docker backend needs the docker package: pip install docker")

# The evaluation tries to write the workspace before it scores it, and says what happened.
TRY_TO_WRITE = """

_validate = TaskBenchmark.validate


def validate(self):
    import os
    import sys

    for name in ("data/outputs/pwned", "conda/pwned"):
        try:
            with open(os.path.join(self.config.workspace, name), "w") as file:
                file.write("written by the evaluation")
            print(f"evaluation wrote {name}", file=sys.stderr)
        except OSError as exc:
            print(f"evaluation cannot write {name}: {exc}", file=sys.stderr)
    return _validate(self)


TaskBenchmark.validate = validate
"""


def replay(path: Path, dataset: Path) -> Path:
    calls = [
        ("create_session", {"name": "main"}),
        ("run_command", {"session": "main", "command": "pwd; ls -1 /workspace", "wait": 30}),
        ("run_command", {"session": "main", "command": f"ls {dataset} {dataset}/evaluations", "wait": 30}),
        ("run_command", {"session": "main", "command": f"cat {dataset}/evaluations/task_18/hint.md", "wait": 30}),
        ("read_file", {"path": "/workspace/task/task_description.md"}),
        (
            "run_command",
            {
                "session": "main",
                "command": "mkdir -p /workspace/data/outputs && echo 60 > /workspace/data/outputs/answer.txt"
                " && echo 30 > /workspace/data/outputs/extra.txt && echo agent > /workspace/conda/mine && echo done",
                "wait": 30,
            },
        ),
        ("evaluate", {}),
        ("finish", {"summary": "answered 60, with 30 extra"}),
    ]
    path.write_text("".join(json.dumps({"tool": tool, "arguments": arguments}) + "\n" for tool, arguments in calls))
    return path


def test_task_18_runs_in_its_container_at_workspace_and_is_graded_by_the_dataset_evaluation(
    pytester: pytest.Pytester,
    suite: Path,  # noqa: F811
    docker_image: str,  # noqa: F811
) -> None:
    dataset = make_dataset(pytester.path / "dataset", 18)
    evaluation = dataset / "evaluations" / "task_18" / "task" / "evaluation.py"
    evaluation.write_text(evaluation.read_text() + TRY_TO_WRITE)
    hint = (dataset / "evaluations" / "task_18" / "hint.md").read_text().strip()
    results = pytester.path / "results"
    result = run(
        pytester,
        "-k",
        "task_18",
        "--innovator-backend",
        "docker",
        "--innovator-docker-image",
        docker_image,
        "--innovator-dataset",
        f"innovatorbench={dataset}",
        "--innovator-task-api-url",
        "http://127.0.0.1:9/v1",
        "--innovator-results",
        str(results),
        "--innovator-agent",
        "replay",
        "--innovator-replay",
        str(replay(pytester.path / "calls.jsonl", dataset)),
    )
    [record] = [json.loads(line) for line in (results / "results.jsonl").read_text().splitlines()]
    assert record["backend"] == "docker"
    assert record["score_final"] == 100.0, result.stdout.str()
    assert record["final_message"] == "task_18: 10 + 70 + 30 = 110, capped at 100"
    result.assert_outcomes(passed=1)
    run_dir = Path(record["run_dir"])

    outputs = [json.loads(line) for line in (run_dir / "trajectory.jsonl").read_text().splitlines()]
    text = json.dumps(outputs)
    assert hint not in text and "advanced target" not in text
    commands = [o for o in outputs if o.get("tool") == "run_command"]
    assert len(commands) == 4, text
    where, listing, reading, written = [o["observation"] for o in commands]
    assert "/workspace\nconda\ndata\ntask" in where
    assert "No such file or directory" in listing and "hint.md" not in listing
    assert "No such file or directory" in reading
    assert "done" in written

    log = (run_dir / "grader" / "eval-2.log").read_text()
    assert "evaluation cannot write data/outputs/pwned: [Errno 30] Read-only file system" in log
    assert "evaluation cannot write conda/pwned: [Errno 30] Read-only file system" in log
    with upper_layer(run_dir) as upper:  # the item's own layer
        assert not (upper / "data" / "outputs" / "pwned").exists()
        assert (upper / "conda" / "mine").read_text() == "agent\n"
        assert not (upper / "conda" / "pwned").exists()

    mounts = subprocess.run(["mount"], capture_output=True, text=True, check=True).stdout
    assert [line for line in mounts.splitlines() if "overlay" in line and str(run_dir) in line] == []
