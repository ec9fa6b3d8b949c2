"""Grades a training file: trains the fixed model on it and scores it on hidden test dates.

The submission is data, not code: submission/train.jsonl is read and checked by the same
seq2seq.load_pairs the workspace uses, the model is trained here with seq2seq.train (seed = the
request's seed), and its greedy predictions on the 1000 hidden test inputs are compared with the
hidden canonical dates. The metric is exact match. An unreadable or rule-breaking file is an
invalid submission, with the reason.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import seq2seq
import torch

from pytest_innovator.grader_kit import GradeRequest, invalid, pin_numerics, read_request, report

HERE = Path(__file__).resolve().parent


def grade(request: GradeRequest) -> None:
    train_path = request.submission_dir / "train.jsonl"
    if not train_path.is_file():
        invalid(
            request,
            "the submission has no train.jsonl: write your training pairs to train.jsonl in the workspace",
        )
        return
    try:
        pairs = seq2seq.load_pairs(train_path)
    except (seq2seq.TrainingDataError, UnicodeDecodeError) as exc:
        invalid(request, f"train.jsonl cannot be used: {exc}")
        return
    test = [json.loads(line) for line in (HERE / "data" / "test.jsonl").read_text(encoding="utf-8").splitlines()]
    started = time.monotonic()
    model = seq2seq.train(pairs, seed=request.seed)
    train_seconds = time.monotonic() - started
    predictions = seq2seq.predict(model, [row["input"] for row in test])
    correct = sum(prediction == row["output"] for prediction, row in zip(predictions, test))
    accuracy = correct / len(test)
    well_formed = sum(len(p) == 10 and p[4] == "-" and p[7] == "-" for p in predictions) / len(test)
    report(
        request,
        valid=True,
        metric=accuracy,
        metrics={
            "train_pairs": len(pairs),
            "well_formed": well_formed,
            "train_seconds": train_seconds,
        },
        message=f"exact match {accuracy:.3f} ({correct}/{len(test)} test dates) after training on {len(pairs)} pairs",
    )


def main() -> int:
    pin_numerics()
    torch.set_num_threads(1)
    grade(read_request())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
