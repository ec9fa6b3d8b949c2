"""Train the fixed byte-level model on a selection and report bits per byte on a text.

    python3 train_lm.py                                   # selection.txt, eval on data/dev_text.txt, seed 0
    python3 train_lm.py --selection other.txt --seed 1
    python3 train_lm.py --eval my_text.txt --save model.pt

The grader runs exactly this training (lm.train) on your selection.txt and evaluates on hidden
text of the same kind as data/dev_text.txt.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import lm
import torch


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--selection", type=Path, default=Path("selection.txt"))
    parser.add_argument("--corpus", type=Path, default=Path("corpus.jsonl"))
    parser.add_argument("--eval", type=Path, default=Path("data/dev_text.txt"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save", type=Path, help="also save the trained model's state_dict here")
    parser.add_argument("--log-every", type=int, default=100)
    args = parser.parse_args()
    torch.set_num_threads(1)
    corpus = lm.load_corpus(args.corpus)
    try:
        ids = lm.read_selection(args.selection, corpus)
        data = lm.training_bytes(ids, corpus)
        started = time.monotonic()
        model = lm.train(data, seed=args.seed, log_every=args.log_every)
    except lm.SelectionError as exc:
        print(f"{args.selection}: {exc}", file=sys.stderr)
        return 1
    print(f"trained on {len(ids)} documents ({len(data)} bytes) in {time.monotonic() - started:.1f}s")
    if args.save:
        torch.save(model.state_dict(), args.save)
    print(f"bits per byte on {args.eval}: {lm.bits_per_byte(model, args.eval.read_bytes()):.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
