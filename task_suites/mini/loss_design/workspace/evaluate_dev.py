"""Trains with loss.py on development worlds and prints the balanced accuracy on their clean
validation sets: the same training as the grader's, on other worlds.

    python3 evaluate_dev.py              # worlds 0, 1, 2 (world 0 is data/train.npz, data/val.npz)
    python3 evaluate_dev.py --worlds 8   # worlds 0..7: closer to the grader's mean over 8 worlds
    python3 evaluate_dev.py --seed 100   # other initialisations and batch orders
"""

from __future__ import annotations

import argparse
import time

import data
import torch
from train import balanced_accuracy, train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worlds", type=int, default=3, help="evaluate on worlds 0 .. WORLDS-1")
    parser.add_argument("--seed", type=int, default=0, help="world i trains with seed SEED + i")
    args = parser.parse_args()
    torch.set_num_threads(1)
    scores = []
    for world in range(args.worlds):
        started = time.monotonic()
        inputs, labels = (torch.from_numpy(a) for a in data.training_set(world))
        model = train(inputs, labels, seed=args.seed + world)
        val_inputs, val_labels = (torch.from_numpy(a) for a in data.clean_set(world, data.DEV_VAL_PER_CLASS, stream=2))
        scores.append(balanced_accuracy(model, val_inputs, val_labels))
        seconds = time.monotonic() - started
        print(
            f"world {world}: val balanced accuracy {scores[-1]:.4f} ({seconds:.1f}s)",
            flush=True,
        )
    print(f"mean over {len(scores)} worlds: {sum(scores) / len(scores):.4f}")


if __name__ == "__main__":
    main()
