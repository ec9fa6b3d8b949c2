"""Grades a selection: trains the fixed byte-level model on it and measures bits per byte on hidden text.

The submission is data, never executed: submission/selection.txt lists corpus document ids. The
grader regenerates the corpus itself (make_data.corpus_documents, the same documents as the
workspace's corpus.jsonl), checks the selection with the workspace's own lm.read_selection
(known ids, no repeats, within the byte budget), trains with lm.train (seed = the request's seed)
and reports lm.bits_per_byte on the hidden held-out stories. Lower is better.
"""

from __future__ import annotations

import time
from pathlib import Path

import lm
import torch
from make_data import corpus_documents

from pytest_innovator.grader_kit import GradeRequest, invalid, pin_numerics, read_request, report

HERE = Path(__file__).resolve().parent


def grade(request: GradeRequest) -> None:
    selection_path = request.submission_dir / "selection.txt"
    if not selection_path.is_file():
        invalid(
            request,
            "the submission has no selection.txt: write the selected document ids to selection.txt",
        )
        return
    corpus = corpus_documents()
    try:
        ids = lm.read_selection(selection_path, corpus)
        data = lm.training_bytes(ids, corpus)
        started = time.monotonic()
        model = lm.train(data, seed=request.seed)
    except (lm.SelectionError, UnicodeDecodeError) as exc:
        invalid(request, f"selection.txt cannot be used: {exc}")
        return
    train_seconds = time.monotonic() - started
    bpb = lm.bits_per_byte(model, (HERE / "data" / "heldout.txt").read_bytes())
    report(
        request,
        valid=True,
        metric=bpb,
        metrics={
            "documents": len(ids),
            "training_bytes": len(data),
            "train_seconds": train_seconds,
        },
        message=f"{bpb:.4f} bits per byte on the held-out text after training on {len(ids)} documents "
        f"({len(data)} bytes)",
    )


def main() -> int:
    pin_numerics()
    torch.set_num_threads(1)
    grade(read_request())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
