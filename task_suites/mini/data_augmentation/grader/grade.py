"""Grades an augmented training file: trains the fixed classifier on it and scores it on hidden messages.

The submission is data, never executed: submission/augmented.jsonl is read and checked by the
workspace's own classifier.load_examples, the classifier is trained here with classifier.train
(seed = the request's seed) and its accuracy is measured on the 800 hidden test messages.
An unreadable or rule-breaking file is an invalid submission, with the reason.
"""

from __future__ import annotations

import time
from pathlib import Path

import classifier
import torch

from pytest_innovator.grader_kit import GradeRequest, invalid, pin_numerics, read_request, report

HERE = Path(__file__).resolve().parent


def grade(request: GradeRequest) -> None:
    train_path = request.submission_dir / "augmented.jsonl"
    if not train_path.is_file():
        invalid(
            request,
            "the submission has no augmented.jsonl: write your training examples to augmented.jsonl",
        )
        return
    try:
        examples = classifier.load_examples(train_path)
    except (classifier.TrainingDataError, UnicodeDecodeError) as exc:
        invalid(request, f"augmented.jsonl cannot be used: {exc}")
        return
    test = classifier.load_examples(HERE / "data" / "test.jsonl")
    started = time.monotonic()
    model = classifier.train(examples, seed=request.seed)
    train_seconds = time.monotonic() - started
    predictions = model.predict([text for text, _ in test])
    correct = sum(p == label for p, (_, label) in zip(predictions, test))
    accuracy = correct / len(test)
    report(
        request,
        valid=True,
        metric=accuracy,
        metrics={
            "examples": len(examples),
            "vocabulary": len(model.vocabulary),
            "train_seconds": train_seconds,
        },
        message=f"accuracy {accuracy:.4f} ({correct}/{len(test)} test messages) after training on "
        f"{len(examples)} examples",
    )


def main() -> int:
    pin_numerics()
    torch.set_num_threads(1)
    grade(read_request())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
