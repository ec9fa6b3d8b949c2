#!/usr/bin/env bash
# Writes the reference augmented set. Run with cwd = the workspace; INNOVATOR_SOLUTION_DIR = a copy of solution/.
set -euo pipefail
python3 "$INNOVATOR_SOLUTION_DIR/augment_reference.py" --out augmented.jsonl
