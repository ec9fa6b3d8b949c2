"""Trains with reward.py on development mazes and prints the true success rate of each trained
policy: greedy actions from 100 random start cells per maze, the same evaluation as the grader's
on other mazes and other starts.

    python3 evaluate_dev.py               # mazes 0, 1, 2 (python3 env.py draws them)
    python3 evaluate_dev.py --mazes 8     # mazes 0..7: closer to the grader's mean over 8 mazes
    python3 evaluate_dev.py --seed 100    # other initialisations, start cells and action draws
"""

from __future__ import annotations

import argparse
import time

import env
import numpy as np
import torch
from policy import success
from train import train

STARTS_PER_MAZE = 100


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mazes", type=int, default=3, help="evaluate on mazes 0 .. MAZES-1")
    parser.add_argument("--seed", type=int, default=0, help="maze i trains with seed SEED + i")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rates = []
    for index in range(args.mazes):
        started = time.monotonic()
        maze = env.make_maze(index)
        policy = train(maze, seed=args.seed + index)
        starts = env.start_states(maze, STARTS_PER_MAZE, np.random.default_rng([args.seed, index, 1]))
        rates.append(float(success(policy, maze, *starts).mean()))
        seconds = time.monotonic() - started
        print(f"maze {index}: success rate {rates[-1]:.2f} ({seconds:.1f}s)", flush=True)
    print(f"mean over {len(rates)} mazes: {sum(rates) / len(rates):.3f}")


if __name__ == "__main__":
    main()
