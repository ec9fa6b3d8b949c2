"""Trains the classifier of model.py on data/train.npz (long-tailed classes, 40% noisy labels) and
prints its balanced accuracy on the clean, balanced data/val.npz as one JSON line.

    python3 experiment.py --power 0 1 --seeds 0 1 2    # one line per setting and seed

Everything but the power of the loss's class weights is fixed: Adam (learning rate 1e-3), STEPS steps
on random batches of BATCH_SIZE examples, one CPU thread.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from model import Classifier

STEPS = 400
BATCH_SIZE = 128
LEARNING_RATE = 1e-3
NUM_CLASSES = 10
DATA = Path(__file__).resolve().parent / "data"


def load(name: str) -> tuple[torch.Tensor, torch.Tensor]:
    with np.load(DATA / name) as data:
        return torch.from_numpy(data["inputs"]).float(), torch.from_numpy(data["labels"]).long()


def class_weights(class_counts: torch.Tensor, power: float) -> torch.Tensor:
    """One weight per class for the cross-entropy: proportional to class_counts ** -power and
    normalised to a mean of 1 over the classes; power 0 weighs every class alike."""
    weights = class_counts.clamp(min=1) ** -power
    return weights * len(weights) / weights.sum()


def balanced_accuracy(model: Classifier, inputs: torch.Tensor, labels: torch.Tensor) -> float:
    with torch.no_grad():
        predictions = model(inputs).argmax(dim=1)
    recalls = [(predictions[labels == c] == c).float().mean().item() for c in labels.unique()]
    return sum(recalls) / len(recalls)


def run(power: float, seed: int) -> float:
    torch.manual_seed(seed)
    inputs, labels = load("train.npz")
    weights = class_weights(torch.bincount(labels, minlength=NUM_CLASSES).float(), power)
    batches = torch.Generator().manual_seed(seed)
    model = Classifier(inputs.shape[1], NUM_CLASSES)
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    for _ in range(STEPS):
        ids = torch.randint(0, len(labels), (BATCH_SIZE,), generator=batches)
        loss = F.cross_entropy(model(inputs[ids]), labels[ids], weight=weights)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return balanced_accuracy(model, *load("val.npz"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--power", type=float, nargs="+", required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    args = parser.parse_args()
    torch.set_num_threads(1)
    for power in args.power:
        for seed in args.seeds:
            accuracy = run(power, seed)
            print(json.dumps({"power": power, "seed": seed, "balanced_accuracy": round(accuracy, 4)}), flush=True)


if __name__ == "__main__":
    main()
