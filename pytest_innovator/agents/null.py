"""The null agent does nothing: it scores the untouched workspace, which must be the baseline."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..env import ResearchEnv


class NullAgent:
    name = "null"
    version = "1"

    def __init__(self, options: Mapping[str, Any]):
        self.options = options

    def run(self, env: ResearchEnv) -> None:
        env.step("submit" if "submit" in env.tools else "finish", {"summary": "did nothing"})  # MLGym names it submit
