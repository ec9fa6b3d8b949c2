"""Generates the classification data: imbalanced classes, noisy training labels.

A world is a random mixture of Gaussians in DIM dimensions: each of the NUM_CLASSES classes has
COMPONENTS_PER_CLASS blobs of unit variance with randomly placed centres. Training sets are long
tailed (class c has HEAD_COUNT * IMBALANCE ** (-c / 9) examples) and their labels are noisy: a
fraction NOISE_RATE of the examples get a wrong label, drawn in proportion to the class sizes (so
wrong labels point mostly to the frequent classes, as a hurried annotator's would). Test and
validation sets are balanced and clean.

Every world and set is a pure function of its seed. `python3 data.py` writes the development
files data/train.npz and data/val.npz (world 0); `python3 data.py --world 7 --out dev7` writes
another world's files to dev7/.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

NUM_CLASSES = 10
DIM = 10
COMPONENTS_PER_CLASS = 2
CENTRE_SPREAD = 1.6
HEAD_COUNT = 800
IMBALANCE = 100.0
NOISE_RATE = 0.4
DEV_WORLD_SEED = 0
DEV_VAL_PER_CLASS = 100


def class_counts() -> list[int]:
    """Training examples per class, most frequent first."""
    return [round(HEAD_COUNT * IMBALANCE ** (-c / (NUM_CLASSES - 1))) for c in range(NUM_CLASSES)]


def make_world(world_seed: int) -> np.ndarray:
    """Blob centres, shape (NUM_CLASSES, COMPONENTS_PER_CLASS, DIM)."""
    rng = np.random.default_rng([world_seed, 0])
    return rng.normal(0.0, CENTRE_SPREAD, size=(NUM_CLASSES, COMPONENTS_PER_CLASS, DIM))


def sample(centres: np.ndarray, counts: list[int], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """`counts[c]` inputs of each class c, with their true labels."""
    inputs, labels = [], []
    for label, count in enumerate(counts):
        component = rng.integers(0, COMPONENTS_PER_CLASS, size=count)
        inputs.append(centres[label, component] + rng.normal(size=(count, DIM)))
        labels.append(np.full(count, label))
    return np.concatenate(inputs).astype(np.float32), np.concatenate(labels).astype(np.int64)


def corrupt(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Replace a NOISE_RATE fraction of labels by a different class, drawn by class frequency."""
    prior = np.bincount(labels, minlength=NUM_CLASSES) / len(labels)
    noisy = labels.copy()
    flipped = np.flatnonzero(rng.random(len(labels)) < NOISE_RATE)
    for index in flipped:
        others = prior.copy()
        others[labels[index]] = 0.0
        noisy[index] = rng.choice(NUM_CLASSES, p=others / others.sum())
    return noisy


def training_set(world_seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, noisy labels), shuffled."""
    rng = np.random.default_rng([world_seed, 1])
    inputs, labels = sample(make_world(world_seed), class_counts(), rng)
    noisy = corrupt(labels, rng)
    order = rng.permutation(len(labels))
    return inputs[order], noisy[order]


def clean_set(world_seed: int, per_class: int, stream: int) -> tuple[np.ndarray, np.ndarray]:
    """A balanced set with true labels; different `stream`s give independent sets."""
    rng = np.random.default_rng([world_seed, stream])
    return sample(make_world(world_seed), [per_class] * NUM_CLASSES, rng)


def main() -> None:
    parser = argparse.ArgumentParser(description="Write a world's train.npz (noisy) and val.npz (clean).")
    parser.add_argument("--world", type=int, default=DEV_WORLD_SEED)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "data")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    inputs, labels = training_set(args.world)
    np.savez(args.out / "train.npz", inputs=inputs, labels=labels)
    inputs, labels = clean_set(args.world, DEV_VAL_PER_CLASS, stream=2)
    np.savez(args.out / "val.npz", inputs=inputs, labels=labels)


if __name__ == "__main__":
    main()
