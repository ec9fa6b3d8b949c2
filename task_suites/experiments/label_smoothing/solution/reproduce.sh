#!/usr/bin/env bash
# Reproduces the experiment: both smoothing factors over three seeds, then their means in results.json.
set -euo pipefail
python3 experiment.py --smoothing 0.0 0.1 --seeds 0 1 2 > runs.jsonl
python3 - <<'PY'
import json
from collections import defaultdict

runs = [json.loads(line) for line in open("runs.jsonl")]
by_factor = defaultdict(list)
for run in runs:
    by_factor[str(run["smoothing"])].append(run["balanced_accuracy"])
summary = {
    factor: {"runs": values, "mean": round(sum(values) / len(values), 4), "spread": round(max(values) - min(values), 4)}
    for factor, values in by_factor.items()
}
json.dump({"balanced_accuracy_by_smoothing": summary}, open("results.json", "w"), indent=2)
print(json.dumps(summary))
PY
