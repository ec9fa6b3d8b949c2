#!/usr/bin/env bash
# Writes the reference training set. Run with cwd = the workspace; INNOVATOR_SOLUTION_DIR = a copy of solution/.
set -euo pipefail
python3 "$INNOVATOR_SOLUTION_DIR/build_train.py" --out train.jsonl
