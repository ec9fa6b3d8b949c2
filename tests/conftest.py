from __future__ import annotations

import shutil
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


@pytest.fixture
def number_task_dir(tmp_path: Path) -> Path:
    """A private copy of the fixtures' `number` task, free to edit."""
    target = tmp_path / "tasks" / "number"
    shutil.copytree(FIXTURES / "tasks" / "number", target)
    return target
