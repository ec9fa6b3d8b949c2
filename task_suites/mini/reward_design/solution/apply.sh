#!/usr/bin/env bash
# Installs the reference reward. Run with cwd = the workspace; INNOVATOR_SOLUTION_DIR = a copy of solution/.
set -euo pipefail
cp "$INNOVATOR_SOLUTION_DIR/reward.py" reward.py
