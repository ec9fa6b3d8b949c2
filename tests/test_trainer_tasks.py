"""Checks shared by the mini tasks whose graders train with submitted code: loss_design
(loss.py) and reward_design (reward.py).

Each grader runs the fixed trainer on the submitted file through grader_kit.program_failure, so
both must stop a trainer at its CPU limit, keep the grader's files out of its reach, ignore
result frames it prints, and score the untouched workspace and the reference solution exactly
as calibrated. Task-specific checks stay in tests/test_task_<name>.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from pytest_innovator.grader_kit import isolation_available
from pytest_innovator.task import Task, load_task

from .task_checks import (
    MINI_SUITE,
    calibrated,
    check_probe_finds_grader_files,
    edited_task,
    grade_files,
    grade_workspace,
    grader_files_probe,
    torch_build,
)

# Prints forged result frames (no nonce, guessed nonces) on stdout and stderr when imported.
PRINTS_FORGED_FRAMES = """
import sys

FORGED = '{"valid": true, "metric": 1.0, "metrics": {}, "message": "forged"}'
for nonce in ("abc", "0" * 32, ""):
    frame = f"--- innovator-result {nonce} ---\\n{FORGED}\\n--- end innovator-result {nonce} ---"
    print(frame, flush=True)
    print(frame, file=sys.stderr)
"""


@dataclass(frozen=True)
class TrainerTask:
    task: Task
    submitted: str  # the file the grader trains with
    like_the_baseline: str  # source that trains exactly like the workspace's own file


TRAINER_TASKS = {
    "loss_design": (
        "loss.py",
        (
            "import torch.nn.functional as F\n\n"
            "def make_loss(class_counts, num_steps):\n"
            "    return lambda logits, labels, sample_ids, step: F.cross_entropy(logits, labels)\n"
        ),
    ),
    "reward_design": (
        "reward.py",
        ("def make_reward(maze, gamma):\n    return lambda transition: transition.success.astype(float)\n"),
    ),
}


@pytest.fixture(scope="module", params=sorted(TRAINER_TASKS))
def trainer(request: pytest.FixtureRequest) -> TrainerTask:
    submitted, like_the_baseline = TRAINER_TASKS[request.param]
    return TrainerTask(load_task(MINI_SUITE / request.param), submitted, like_the_baseline)


@pytest.mark.slow
def test_training_is_stopped_at_the_cpu_limit(trainer: TrainerTask, tmp_path: Path) -> None:
    busy = "import time\nwhile True:\n    time.process_time()\n"
    edits = {"TRAIN_CPU_SECONDS = 60": "TRAIN_CPU_SECONDS = 2"}
    lower_limit = edited_task(trainer.task, tmp_path, edits)
    outcome = grade_files(lower_limit, {trainer.submitted: busy}, tmp_path)
    assert outcome.status == "invalid"
    assert "more than 2 seconds of CPU time" in outcome.message


@pytest.mark.slow
@pytest.mark.skipif(not isolation_available(), reason="the grader sandboxes the trainer only where bubblewrap works")
def test_graders_files_are_out_of_the_trainers_reach(trainer: TrainerTask, tmp_path: Path) -> None:
    check_probe_finds_grader_files(trainer.task)  # control: unsandboxed, the probe finds them
    probe = {trainer.submitted: grader_files_probe(trainer.task)}
    outcome = grade_files(trainer.task, probe, tmp_path)
    assert outcome.status == "invalid"
    assert "readable: nothing" in outcome.message


@pytest.mark.slow
def test_untouched_workspace_scores_the_baseline(trainer: TrainerTask, tmp_path: Path) -> None:
    outcome = grade_workspace(trainer.task, tmp_path, apply_solution=False)
    assert outcome.status == "scored", outcome.message
    assert outcome.metric == pytest.approx(calibrated(trainer.task, "baseline"), abs=1e-12), torch_build()
    assert outcome.metrics["isolated"] == (1.0 if isolation_available() else 0.0)


@pytest.mark.slow
def test_reference_solution_scores_the_reference(trainer: TrainerTask, tmp_path: Path) -> None:
    outcome = grade_workspace(trainer.task, tmp_path, apply_solution=True)
    assert outcome.status == "scored", outcome.message
    assert outcome.metric == pytest.approx(calibrated(trainer.task, "reference"), abs=1e-12), torch_build()


@pytest.mark.slow
def test_forged_result_frames_do_not_count(trainer: TrainerTask, tmp_path: Path) -> None:
    # The baseline's own training, with forged frames printed on import.
    source = PRINTS_FORGED_FRAMES + "\n" + trainer.like_the_baseline
    outcome = grade_files(trainer.task, {trainer.submitted: source}, tmp_path)
    assert outcome.status == "scored", outcome.message
    assert "forged" not in outcome.message
    assert outcome.metric == pytest.approx(calibrated(trainer.task, "baseline"), abs=1e-12), torch_build()
