"""Train the fixed model on a training file and save it.

    python3 train.py                          # train.jsonl -> model.pt, seed 0
    python3 train.py --data other.jsonl --seed 1 --out other.pt

The grader runs exactly this training (seq2seq.train) on your train.jsonl.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import seq2seq
import torch


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("train.jsonl"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("model.pt"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    try:
        pairs = seq2seq.load_pairs(args.data)
    except seq2seq.TrainingDataError as exc:
        print(f"{args.data}: {exc}", file=sys.stderr)
        return 1
    started = time.monotonic()
    model = seq2seq.train(pairs, seed=args.seed, log_every=100)
    torch.save(model.state_dict(), args.out)
    print(f"trained on {len(pairs)} pairs in {time.monotonic() - started:.1f}s; saved {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
