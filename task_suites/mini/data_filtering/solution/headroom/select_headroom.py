"""Headroom over the reference: rank by word-bigram closeness to the dev text, and stop early.

    python3 headroom/select_headroom.py [--out selection.txt]     (cwd = the workspace)

The reference's quality filters and near-duplicate removal, then two changes:
- The importance weight is a word-bigram log-ratio (interpolated with unigrams), dev text model
  against filtered-corpus model. Unigrams cannot tell a story from the same words shuffled;
  bigrams can.
- Only documents scoring at least --cutoff (-0.4: where the sorted scores show a gap between the
  stories and the rest) are kept, even if the budget is not full: fewer, cleaner bytes beat a
  full budget.
"""

from __future__ import annotations

import argparse
import itertools
import math
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, ".")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import lm
import select_reference as reference


class BigramModel:
    def __init__(self, texts: list[str]) -> None:
        self.unigrams: Counter[str] = Counter()
        self.bigrams: Counter[tuple[str, str]] = Counter()
        for text in texts:
            tokens = ["<s>", *reference.words(text)]
            self.unigrams.update(tokens)
            self.bigrams.update(itertools.pairwise(tokens))
        self.total = sum(self.unigrams.values())

    def log_prob(self, previous: str, word: str, vocabulary: int) -> float:
        unigram = (self.unigrams[word] + 1) / (self.total + vocabulary)
        context = self.unigrams[previous]
        bigram = self.bigrams[(previous, word)] / context if context else 0.0
        return math.log(0.7 * bigram + 0.3 * unigram)


def bigram_scores(ids: list[str], corpus: dict[str, str], dev_text: str) -> dict[str, float]:
    dev = BigramModel([dev_text])
    background = BigramModel([corpus[i] for i in ids])
    vocabulary = len(set(dev.unigrams) | set(background.unigrams)) + 1
    scores = {}
    for doc_id in ids:
        tokens = ["<s>", *reference.words(corpus[doc_id])]
        pairs = list(itertools.pairwise(tokens))
        ratio = sum(dev.log_prob(a, b, vocabulary) - background.log_prob(a, b, vocabulary) for a, b in pairs)
        scores[doc_id] = ratio / max(1, len(pairs))
    return scores


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path("selection.txt"))
    parser.add_argument("--cutoff", type=float, default=-0.4)
    args = parser.parse_args()
    corpus = lm.load_corpus(Path("corpus.jsonl"))
    dev_text = Path("data/dev_text.txt").read_text(encoding="utf-8")
    clean = reference.drop_near_duplicates([i for i, t in corpus.items() if reference.passes_quality(t)], corpus)
    scores = bigram_scores(clean, corpus, dev_text)
    selected: list[str] = []
    used = 0
    for doc_id in sorted(clean, key=lambda i: -scores[i]):
        if scores[doc_id] < args.cutoff:
            break
        size = len(corpus[doc_id].encode("utf-8")) + len(lm.SEPARATOR)
        if used + size <= lm.BUDGET_BYTES:
            selected.append(doc_id)
            used += size
    args.out.write_text("".join(i + "\n" for i in selected), encoding="utf-8")
    print(f"{len(clean)} documents pass the filters; selected {len(selected)}, {used} bytes")


if __name__ == "__main__":
    main()
