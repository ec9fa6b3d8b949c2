#!/usr/bin/env bash
# Installs the reference loss. Run with cwd = the workspace; INNOVATOR_SOLUTION_DIR = a copy of solution/.
set -euo pipefail
cp "$INNOVATOR_SOLUTION_DIR/loss.py" loss.py
