"""Grades a reward.py: trains the fixed policy with it on hidden mazes, measures true success.

Each hidden maze is saved (walls, key, door) into an empty work directory together with this
grader's copies of train.py, env.py and policy.py and the submitted reward.py. train.py runs
there once for all mazes, sandboxed by grader_kit.run_untrusted, and saves each trained
policy's weights. This process then loads the weights (tensors only) into its own copy of the
policy and runs it greedily, in its own copy of the environment, from held-out start states that
only it knows; the metric is the fraction of those episodes that reach the door with the key
within the horizon (env.py's true success check). The reward the policy was trained on plays no
part in the evaluation.

Outcomes:
- invalid: no reward.py; training failed (an import error, an exception in the reward, a reward
  that is not a finite array with one number per transition), used more than TRAIN_CPU_SECONDS
  of CPU time (or hung for TRAIN_TIMEOUT seconds), or left weights that are missing, malformed
  or not finite. The message says which, with the end of the trainer's error output when the
  trainer ran isolated (it cannot read the grader's files then, so the text cannot carry
  anything of them).
- valid: the success rate over all hidden mazes and their held-out start states.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import env
import numpy as np
import torch
from policy import Policy, success

from pytest_innovator.grader_kit import (
    GradeRequest,
    invalid,
    isolation_available,
    pin_numerics,
    program_failure,
    read_request,
    report,
)

HERE = Path(__file__).resolve().parent
HIDDEN_MAZE_SEEDS = (798962, 907567, 551460, 641070, 795854, 710183, 689255, 161108)
EVAL_STARTS_SEED = 653297
STARTS_PER_MAZE = 100
TRAIN_CPU_SECONDS = 60
TRAIN_TIMEOUT = 150.0  # wall clock: only a program that hangs or sleeps gets near it


def load_weights(path: Path) -> Policy | str:
    """The trained policy, or why the weights cannot be used."""
    if not path.is_file():
        return f"train.py saved no weights to {path.name}"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        policy = Policy()
        policy.load_state_dict(state, strict=True)
    except Exception as exc:  # noqa: BLE001 - whatever the file holds is the submission's doing
        return f"the weights in {path.name} do not fit the policy ({type(exc).__name__})"
    if not all(torch.isfinite(p).all() for p in policy.parameters()):
        return f"the weights in {path.name} are not finite (nan or inf from the reward?)"
    return policy.eval()


def train_sandboxed(reward_path: Path, mazes: list[env.Maze], seed: int) -> list[Policy] | str:
    """The trained policies, or why training failed."""
    workdir = Path(tempfile.mkdtemp(prefix="reward-design-"))
    try:
        for name in ("train.py", "env.py", "policy.py"):
            shutil.copyfile(HERE / name, workdir / name)
        shutil.copyfile(reward_path, workdir / "reward.py")
        args = ["train.py", "--seed", str(seed)]
        for index, maze in enumerate(mazes):
            env.save_maze(maze, workdir / f"maze_{index}.npz")
            args += ["--maze-file", f"maze_{index}.npz", "--out", f"policy_{index}.pt"]
        failure = program_failure(
            [sys.executable, "-E", "-s", *args],
            cwd=workdir,
            timeout=TRAIN_TIMEOUT,
            cpu_seconds=TRAIN_CPU_SECONDS,
            activity="training",
            failed="train.py failed with your reward.py",
            rerun_hint="python3 evaluate_dev.py shows the error",
        )
        if failure is not None:
            return failure
        policies = []
        for index in range(len(mazes)):
            policy = load_weights(workdir / f"policy_{index}.pt")
            if isinstance(policy, str):
                return policy
            policies.append(policy)
        return policies
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def grade(request: GradeRequest) -> None:
    reward_path = request.submission_dir / "reward.py"
    if not reward_path.is_file():
        invalid(
            request,
            "the submission has no reward.py: write your reward to reward.py in the workspace",
        )
        return
    torch.set_num_threads(1)
    mazes = [env.make_maze(seed) for seed in HIDDEN_MAZE_SEEDS]
    # Every maze gets its own initialisation: train.py adds the run index to the seed.
    trained = train_sandboxed(reward_path, mazes, seed=100 * request.seed)
    if isinstance(trained, str):
        invalid(request, trained)
        return
    by_maze = []
    for index, (maze, policy) in enumerate(zip(mazes, trained)):
        starts = env.start_states(maze, STARTS_PER_MAZE, np.random.default_rng([EVAL_STARTS_SEED, index]))
        by_maze.append(float(success(policy, maze, *starts).mean()))
    metric = float(np.mean(by_maze))
    metrics = {f"maze_{i}": rate for i, rate in enumerate(by_maze)}
    metrics["isolated"] = 1.0 if isolation_available() else 0.0
    solved = sum(rate >= 0.9 for rate in by_maze)
    report(
        request,
        valid=True,
        metric=metric,
        metrics=metrics,
        message=f"success rate {metric:.3f} over {len(mazes)} hidden mazes x {STARTS_PER_MAZE} "
        f"held-out starts; {solved} of {len(mazes)} mazes solved from at least 90% of the starts",
    )


def main() -> int:
    pin_numerics()
    grade(read_request())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
