"""Trains the classifier with the loss from loss.py. This script is fixed: the grader runs it as is.

    python3 train.py --train data/train.npz --out model.pt
    python3 train.py --train a.npz --out a.pt --train b.npz --out b.pt --seed 7   # several runs

Run i (counting from 0) is seeded with --seed + i (weights initialisation and batch order). Each
run: Adam (learning rate 1e-3), STEPS steps on random batches of BATCH_SIZE training examples,
no weight decay, no early stopping. The loss is built once per run by loss.make_loss and called
at every step; see loss.py for its interface.
"""

from __future__ import annotations

import argparse
import importlib
import math
import time
from pathlib import Path

import numpy as np
import torch
from model import Classifier

STEPS = 1500
BATCH_SIZE = 128
LEARNING_RATE = 1e-3
NUM_CLASSES = 10


class LossError(RuntimeError):
    """The loss from loss.py returned something training cannot use."""


def load_npz(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    with np.load(path) as data:
        return torch.from_numpy(data["inputs"]).float(), torch.from_numpy(data["labels"]).long()


def train(inputs: torch.Tensor, labels: torch.Tensor, seed: int) -> Classifier:
    loss_module = importlib.import_module("loss")
    torch.manual_seed(seed)
    batches = torch.Generator().manual_seed(seed)
    model = Classifier(inputs.shape[1], NUM_CLASSES)
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    class_counts = torch.bincount(labels, minlength=NUM_CLASSES)
    loss_fn = loss_module.make_loss(class_counts.clone(), STEPS)
    for step in range(STEPS):
        sample_ids = torch.randint(0, len(labels), (BATCH_SIZE,), generator=batches)
        logits = model(inputs[sample_ids])
        loss = loss_fn(logits, labels[sample_ids].clone(), sample_ids.clone(), step)
        if not isinstance(loss, torch.Tensor) or loss.numel() != 1 or not loss.requires_grad:
            raise LossError(f"step {step}: the loss must be a scalar tensor that depends on the logits, got {loss!r}")
        if not math.isfinite(loss.item()):
            raise LossError(f"step {step}: the loss is not finite ({loss.item()})")
        optimizer.zero_grad()
        loss.reshape(()).backward()
        optimizer.step()
    return model


def balanced_accuracy(model: Classifier, inputs: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean over classes of the fraction of that class's examples predicted correctly."""
    with torch.no_grad():
        predictions = model(inputs).argmax(dim=1)
    recalls = [(predictions[labels == c] == c).float().mean().item() for c in labels.unique()]
    return sum(recalls) / len(recalls)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--train",
        type=Path,
        action="append",
        required=True,
        help="training set (.npz: inputs, labels)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        action="append",
        required=True,
        help="where to save the weights (one per --train)",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if len(args.out) != len(args.train):
        parser.error("give one --out per --train")
    torch.set_num_threads(1)
    for index, (train_path, out_path) in enumerate(zip(args.train, args.out)):
        started = time.monotonic()
        model = train(*load_npz(train_path), seed=args.seed + index)
        torch.save(model.state_dict(), out_path)
        print(
            f"{train_path}: trained in {time.monotonic() - started:.1f}s, weights in {out_path}",
            flush=True,
        )


if __name__ == "__main__":
    main()
