#!/usr/bin/env bash
# Writes the reference selection. Run with cwd = the workspace; INNOVATOR_SOLUTION_DIR = a copy of solution/.
set -euo pipefail
python3 "$INNOVATOR_SOLUTION_DIR/select_reference.py" --out selection.txt
