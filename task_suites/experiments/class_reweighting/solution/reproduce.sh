#!/usr/bin/env bash
# Reproduces the experiment: unweighted and inverse-frequency weighted cross-entropy over three
# seeds, then their means in results.json.
set -euo pipefail
python3 experiment.py --power 0 1 --seeds 0 1 2 > runs.jsonl
python3 - <<'PY'
import json
from collections import defaultdict

runs = [json.loads(line) for line in open("runs.jsonl")]
by_power = defaultdict(list)
for run in runs:
    by_power[str(run["power"])].append(run["balanced_accuracy"])
summary = {
    power: {"runs": values, "mean": round(sum(values) / len(values), 4), "spread": round(max(values) - min(values), 4)}
    for power, values in by_power.items()
}
json.dump({"balanced_accuracy_by_power": summary}, open("results.json", "w"), indent=2)
print(json.dumps(summary))
PY
