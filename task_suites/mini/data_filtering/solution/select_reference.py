"""Writes selection.txt: quality filters, near-duplicate removal, then ranking by closeness to the dev text.

    python3 select_reference.py [--out selection.txt] [--cutoff SCORE]     (cwd = the workspace)

1. Quality filters: almost only printable ASCII (drops corrupted bytes, mojibake and most foreign
   text), enough English function words (drops spam, markup, the rest of the foreign text),
   no boilerplate-only pages (mostly short lines).
2. Near duplicates: a document whose word 5-gram shingles overlap a kept document's by Jaccard
   >= 0.5 is dropped.
3. Targeting: each document gets the mean log-ratio of its words under a unigram model of
   data/dev_text.txt and under one of the filtered corpus (DSIR-style importance weight, add-one
   smoothing); documents are taken best first until the byte budget is full, or, with --cutoff,
   only while their score is at least SCORE.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, ".")
import lm

STOPWORDS = {
    "the",
    "a",
    "an",
    "and",
    "or",
    "but",
    "of",
    "to",
    "in",
    "on",
    "at",
    "by",
    "for",
    "with",
    "from",
    "as",
    "is",
    "was",
    "were",
    "be",
    "been",
    "it",
    "its",
    "he",
    "she",
    "they",
    "his",
    "her",
    "their",
    "who",
    "which",
    "that",
    "this",
    "there",
    "not",
    "no",
    "had",
    "has",
    "have",
    "did",
    "do",
    "said",
}
WORD = re.compile(r"[A-Za-z']+")


def words(text: str) -> list[str]:
    return [w.lower() for w in WORD.findall(text)]


def passes_quality(text: str) -> bool:
    if not text:
        return False
    printable = sum(" " <= c <= "~" or c == "\n" for c in text) / len(text)
    tokens = words(text)
    if printable < 0.99 or len(tokens) < 20:
        return False
    if sum(t in STOPWORDS for t in tokens) / len(tokens) < 0.2:
        return False
    lines = [line for line in text.splitlines() if line.strip()]
    return sum(len(line) for line in lines) / len(lines) >= 60


def shingles(text: str) -> set[tuple[str, ...]]:
    tokens = words(text)
    return {tuple(tokens[i : i + 5]) for i in range(len(tokens) - 4)}


def drop_near_duplicates(ids: list[str], corpus: dict[str, str]) -> list[str]:
    kept: list[str] = []
    kept_shingles: list[set[tuple[str, ...]]] = []
    owners: dict[tuple[str, ...], list[int]] = {}
    for doc_id in ids:
        mine = shingles(corpus[doc_id])
        candidates = Counter(k for s in mine for k in owners.get(s, []))
        if any(shared / len(mine | kept_shingles[k]) >= 0.5 for k, shared in candidates.items()):
            continue
        for s in mine:
            owners.setdefault(s, []).append(len(kept))
        kept.append(doc_id)
        kept_shingles.append(mine)
    return kept


def unigram_log_probs(texts: list[str]) -> tuple[Counter[str], int]:
    counts = Counter(w for text in texts for w in words(text))
    return counts, sum(counts.values())


def target_scores(ids: list[str], corpus: dict[str, str], dev_text: str) -> dict[str, float]:
    dev_counts, dev_total = unigram_log_probs([dev_text])
    raw_counts, raw_total = unigram_log_probs([corpus[i] for i in ids])
    vocabulary = len(set(dev_counts) | set(raw_counts)) + 1

    def log_ratio(w: str) -> float:
        return math.log((dev_counts[w] + 1) / (dev_total + vocabulary)) - math.log(
            (raw_counts[w] + 1) / (raw_total + vocabulary)
        )

    return {i: sum(map(log_ratio, words(corpus[i]))) / max(1, len(words(corpus[i]))) for i in ids}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path("selection.txt"))
    parser.add_argument("--cutoff", type=float, default=None, help="keep only documents scoring at least this")
    args = parser.parse_args()
    corpus = lm.load_corpus(Path("corpus.jsonl"))
    dev_text = Path("data/dev_text.txt").read_text(encoding="utf-8")
    clean = drop_near_duplicates([i for i, text in corpus.items() if passes_quality(text)], corpus)
    scores = target_scores(clean, corpus, dev_text)
    selected: list[str] = []
    used = 0
    for doc_id in sorted(clean, key=lambda i: -scores[i]):
        if args.cutoff is not None and scores[doc_id] < args.cutoff:
            break
        size = len(corpus[doc_id].encode("utf-8")) + len(lm.SEPARATOR)
        if used + size <= lm.BUDGET_BYTES:
            selected.append(doc_id)
            used += size
    args.out.write_text("".join(i + "\n" for i in selected), encoding="utf-8")
    print(f"{len(clean)} documents pass the filters; selected {len(selected)}, {used} bytes")


if __name__ == "__main__":
    main()
