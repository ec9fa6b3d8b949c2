"""Train the fixed classifier on a training file and report its accuracy on labelled messages.

    python3 train_classifier.py                                  # augmented.jsonl, accuracy on data/train.jsonl
    python3 train_classifier.py --eval my_dev.jsonl --show 10    # accuracy on your own dev set, 10 misses
    python3 train_classifier.py --data other.jsonl --seed 1

The grader runs exactly this training (classifier.train) on your augmented.jsonl.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import classifier
import torch


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("augmented.jsonl"))
    parser.add_argument("--eval", type=Path, default=Path("data/train.jsonl"), help="labelled .jsonl to measure on")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--show", type=int, default=0, help="print up to N misclassified messages")
    args = parser.parse_args()
    torch.set_num_threads(1)
    try:
        examples = classifier.load_examples(args.data)
        evaluation = classifier.load_examples(args.eval)
    except classifier.TrainingDataError as exc:
        print(f"{exc}", file=sys.stderr)
        return 1
    started = time.monotonic()
    model = classifier.train(examples, seed=args.seed, log_every=100)
    print(f"trained on {len(examples)} examples ({len(model.vocabulary)} words) in {time.monotonic() - started:.1f}s")
    predictions = model.predict([text for text, _ in evaluation])
    misses = [(text, label, p) for p, (text, label) in zip(predictions, evaluation) if p != label]
    for text, label, predicted in misses[: args.show]:
        print(f"  {text!r}: expected {label}, got {predicted}")
    print(
        f"accuracy on {args.eval}: {1 - len(misses) / len(evaluation):.4f} "
        f"({len(evaluation) - len(misses)}/{len(evaluation)})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
