"""Graded runs compute with grader_kit.PINNED_NUMERICS, so a metric does not depend on the CPU.

Another CPU is simulated with the variables that make torch's libraries and glibc pick other
code here (task_suites/mini/README.md, Calibration): without the pins, loss_design's baseline
moves with them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_innovator import grading
from pytest_innovator.grader_kit import PINNED_NUMERICS, run_untrusted
from pytest_innovator.task import load_task

from .task_checks import MINI_SUITE, edited_task, grade_workspace

PRINTS_ENVIRONMENT = "import json, os; print(json.dumps(dict(os.environ)))"

# Each set of variables makes the libraries compute as on another CPU (here, unpinned).
SIMULATED_CPUS = {
    "without AVX2": {
        "ATEN_CPU_CAPABILITY": "default",
        "MKL_ENABLE_INSTRUCTIONS": "SSE4_2",
        "ONEDNN_MAX_CPU_ISA": "SSE41",
        "GLIBC_TUNABLES": "glibc.cpu.hwcaps=-AVX2,-FMA",
    },
    "with AVX2": {"ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"},
}


def pinned_part(environment: dict[str, str]) -> dict[str, str]:
    return {name: environment.get(name, "unset") for name in PINNED_NUMERICS}


def test_the_agents_code_gets_the_pins_over_the_callers_values(tmp_path: Path) -> None:
    caller = {name: "the caller's" for name in PINNED_NUMERICS} | {"SCAFFOLD_SOCKET": "model.sock"}
    proc = run_untrusted([sys.executable, "-c", PRINTS_ENVIRONMENT], cwd=tmp_path, timeout=60, env=caller)
    seen = json.loads(proc.stdout)
    assert pinned_part(seen) == PINNED_NUMERICS
    assert seen["SCAFFOLD_SOCKET"] == "model.sock"


def test_the_harness_starts_graders_with_the_pins(tmp_path: Path) -> None:
    assert pinned_part(grading.grader_environment(tmp_path)) == PINNED_NUMERICS


def test_a_grader_run_by_hand_restarts_itself_with_the_pins() -> None:
    # As a grader's main() does: pin_numerics() first, then read the request from stdin.
    source = f"from pytest_innovator.grader_kit import pin_numerics\npin_numerics()\n{PRINTS_ENVIRONMENT}\n"
    source += "import sys\nprint(sys.stdin.read())"
    outer = {**os.environ, **{name: "the caller's" for name in PINNED_NUMERICS}}
    proc = subprocess.run(
        [sys.executable, "-c", source], input="the request", env=outer, capture_output=True, text=True, check=True
    )
    environment, request = proc.stdout.splitlines()
    assert pinned_part(json.loads(environment)) == PINNED_NUMERICS
    assert request == "the request"


@pytest.mark.slow
def test_loss_designs_metric_is_the_same_on_simulated_cpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The simulated CPU's variables go over the environment the harness gives the grader and
    into the one the grader gives the trainer; the pins must win over both."""
    task = load_task(MINI_SUITE / "loss_design")
    harness_environment = grading.grader_environment
    hint = 'rerun_hint="python3 evaluate_dev.py shows the error",'
    metrics = {}
    for name, cpu in SIMULATED_CPUS.items():
        monkeypatch.setattr(grading, "grader_environment", lambda scratch, cpu=cpu: harness_environment(scratch) | cpu)
        simulated = edited_task(task, tmp_path / name, {hint: f"{hint} env={cpu!r},"})
        outcome = grade_workspace(simulated, tmp_path / name, apply_solution=False)
        assert outcome.status == "scored", outcome.message
        metrics[name] = outcome.metric
    assert len(set(metrics.values())) == 1, metrics
