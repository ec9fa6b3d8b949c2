"""Run scaffold.solve on the dev questions against the dev model and print its accuracy.

    python3 evaluate_dev.py                 # all dev questions, seed 0
    python3 evaluate_dev.py --seed 1        # another draw of the model's noise
    python3 evaluate_dev.py --show 10       # also print 10 questions it got wrong

The hidden test uses the same model code and budget with a different world, different
questions and a different model key, so dev accuracy is an estimate of the test accuracy.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import traceback
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

from noisy_model import NoisyModel, World, load_questions, normalise

HERE = Path(__file__).resolve().parent
CALL_BUDGET = 8
DEV_MODEL_KEY = "dev-model"


class BudgetExceeded(RuntimeError):
    """Raised by ask() once a question has used its call budget."""


def budgeted(model: NoisyModel, budget: int) -> tuple[Callable[[str], str], list[int]]:
    calls = [0]

    def ask(prompt: str) -> str:
        if calls[0] >= budget:
            raise BudgetExceeded(f"this question has used its {budget} model calls")
        calls[0] += 1
        return model.ask(prompt)

    return ask, calls


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0, help="seed of the model's noise (default 0)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N questions")
    parser.add_argument("--show", type=int, default=0, help="print up to N wrong answers")
    args = parser.parse_args()

    sys.path.insert(0, str(HERE))
    scaffold = importlib.import_module("scaffold")
    world = World.load(HERE / "data" / "dev_world.json")
    questions = load_questions(HERE / "data" / "dev_questions.jsonl")[: args.limit]
    model = NoisyModel(world, DEV_MODEL_KEY, seed=args.seed)

    correct_by_hops: dict[int, list[bool]] = defaultdict(list)
    total_calls = errors = 0
    wrong: list[str] = []
    started = time.monotonic()
    for q in questions:
        ask, calls = budgeted(model, CALL_BUDGET)
        try:
            answer = scaffold.solve(str(q["question"]), ask)
        except Exception:
            errors += 1
            answer = None
            if errors == 1:
                traceback.print_exc()
        ok = isinstance(answer, str) and normalise(answer) == normalise(str(q["answer"]))
        correct_by_hops[int(q["hops"])].append(ok)  # type: ignore[call-overload]
        total_calls += calls[0]
        if not ok and len(wrong) < args.show:
            wrong.append(f"  {q['question']}\n    expected {q['answer']!r}, got {answer!r}")
    seconds = time.monotonic() - started

    results = [ok for oks in correct_by_hops.values() for ok in oks]
    right, count = sum(results), len(results)
    print(f"accuracy {right / count:.3f}  ({right}/{count} questions, seed {args.seed})")
    for hops in sorted(correct_by_hops):
        oks = correct_by_hops[hops]
        print(f"  {hops} hops: {sum(oks) / len(oks):.3f}  ({sum(oks)}/{len(oks)})")
    mean_calls = total_calls / count
    print(f"calls per question {mean_calls:.2f}; solve() raised on {errors}; {seconds:.1f}s")
    if wrong:
        print("wrong answers:")
        print("\n".join(wrong))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
