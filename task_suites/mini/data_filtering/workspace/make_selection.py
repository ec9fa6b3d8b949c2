"""Writes selection.txt: the documents the language model will be trained on.

    python3 make_selection.py           # corpus.jsonl -> selection.txt

This starting version applies no filter at all: it takes documents in corpus order while they
fit in the byte budget (lm.BUDGET_BYTES).
"""

from __future__ import annotations

from pathlib import Path

import lm


def main() -> None:
    corpus = lm.load_corpus(Path("corpus.jsonl"))
    selected: list[str] = []
    used = 0
    for doc_id, text in corpus.items():
        size = len(text.encode("utf-8")) + len(lm.SEPARATOR)
        if used + size <= lm.BUDGET_BYTES:
            selected.append(doc_id)
            used += size
    Path("selection.txt").write_text("".join(doc_id + "\n" for doc_id in selected), encoding="utf-8")
    print(f"selected {len(selected)} of {len(corpus)} documents, {used} bytes")


if __name__ == "__main__":
    main()
