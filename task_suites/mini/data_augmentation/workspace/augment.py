"""Writes augmented.jsonl: the training examples the classifier will be trained on.

    python3 augment.py            # data/train.jsonl -> augmented.jsonl

This starting version does no augmentation: it copies the 48 labelled examples.
"""

from __future__ import annotations

from pathlib import Path


def main() -> None:
    seeds = Path("data/train.jsonl").read_text(encoding="utf-8")
    Path("augmented.jsonl").write_text(seeds, encoding="utf-8")
    print(f"wrote {len(seeds.splitlines())} examples to augmented.jsonl")


if __name__ == "__main__":
    main()
