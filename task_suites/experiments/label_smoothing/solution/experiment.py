"""Trains the classifier of model.py on data/train.npz (long-tailed classes, 40% noisy labels) and
prints its balanced accuracy on the clean, balanced data/val.npz as one JSON line.

    python3 experiment.py --smoothing 0.0 0.1 --seeds 0 1 2    # one line per setting and seed

Everything but the loss's label smoothing factor is fixed: Adam (learning rate 1e-3), STEPS steps
on random batches of BATCH_SIZE examples, one CPU thread.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from model import Classifier

STEPS = 400
BATCH_SIZE = 128
LEARNING_RATE = 1e-3
NUM_CLASSES = 10
DATA = Path(__file__).resolve().parent / "data"


def load(name: str) -> tuple[torch.Tensor, torch.Tensor]:
    with np.load(DATA / name) as data:
        return torch.from_numpy(data["inputs"]).float(), torch.from_numpy(data["labels"]).long()


def smoothed_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, smoothing: float) -> torch.Tensor:
    """Cross-entropy against targets that put 1 - smoothing on the label and spread smoothing
    uniformly over all NUM_CLASSES classes; smoothing 0 is plain cross-entropy."""
    log_probs = torch.log_softmax(logits, dim=1)
    targets = torch.full_like(log_probs, smoothing / NUM_CLASSES)
    targets.scatter_(1, labels.unsqueeze(1), 1.0 - smoothing + smoothing / NUM_CLASSES)
    return -(targets * log_probs).sum(dim=1).mean()


def balanced_accuracy(model: Classifier, inputs: torch.Tensor, labels: torch.Tensor) -> float:
    with torch.no_grad():
        predictions = model(inputs).argmax(dim=1)
    recalls = [(predictions[labels == c] == c).float().mean().item() for c in labels.unique()]
    return sum(recalls) / len(recalls)


def run(smoothing: float, seed: int) -> float:
    torch.manual_seed(seed)
    inputs, labels = load("train.npz")
    batches = torch.Generator().manual_seed(seed)
    model = Classifier(inputs.shape[1], NUM_CLASSES)
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    for _ in range(STEPS):
        ids = torch.randint(0, len(labels), (BATCH_SIZE,), generator=batches)
        loss = smoothed_cross_entropy(model(inputs[ids]), labels[ids], smoothing)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return balanced_accuracy(model, *load("val.npz"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--smoothing", type=float, nargs="+", required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    args = parser.parse_args()
    torch.set_num_threads(1)
    for smoothing in args.smoothing:
        for seed in args.seeds:
            accuracy = run(smoothing, seed)
            print(
                json.dumps({"smoothing": smoothing, "seed": seed, "balanced_accuracy": round(accuracy, 4)}), flush=True
            )


if __name__ == "__main__":
    main()
