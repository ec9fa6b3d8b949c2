"""Run a trained model on inputs.

python3 predict.py data/sample_inputs.txt          # one input a line -> prints input<TAB>output
python3 predict.py data/examples.jsonl             # labelled pairs -> exact-match accuracy
python3 predict.py my_dev.jsonl --show 20          # ... and 20 of the misses
python3 predict.py data/sample_inputs.txt --model other.pt --out predictions.tsv
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import seq2seq
import torch


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("inputs", type=Path, help=".txt (one input a line) or .jsonl with input/output pairs")
    parser.add_argument("--model", type=Path, default=Path("model.pt"))
    parser.add_argument("--out", type=Path, help="write input<TAB>prediction lines here instead of stdout")
    parser.add_argument("--show", type=int, default=10, help="misses to print for a .jsonl file")
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = seq2seq.CharTransformer()
    model.load_state_dict(torch.load(args.model))
    lines = [line for line in args.inputs.read_text(encoding="utf-8").splitlines() if line.strip()]
    labelled = args.inputs.suffix == ".jsonl"
    rows = [json.loads(line) for line in lines] if labelled else [{"input": line} for line in lines]
    predictions = seq2seq.predict(model, [row["input"] for row in rows])
    if not labelled:
        text = "".join(f"{row['input']}\t{prediction}\n" for row, prediction in zip(rows, predictions))
        if args.out:
            args.out.write_text(text, encoding="utf-8")
        else:
            print(text, end="")
        return 0
    misses = [(row, p) for row, p in zip(rows, predictions) if p != row["output"]]
    for row, prediction in misses[: args.show]:
        print(f"{row['input']!r:45} expected {row['output']!r:14} got {prediction!r}")
    print(f"exact match {1 - len(misses) / len(rows):.3f} ({len(rows) - len(misses)}/{len(rows)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
