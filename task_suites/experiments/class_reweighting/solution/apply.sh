#!/usr/bin/env bash
# Writes the reference experiment and runs it. Run with cwd = the workspace; INNOVATOR_SOLUTION_DIR = a copy of solution/.
set -euo pipefail
cp "$INNOVATOR_SOLUTION_DIR"/{experiment.py,reproduce.sh,design.md,conclusion.md} .
bash reproduce.sh
