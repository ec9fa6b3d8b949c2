"""ResearchGym node files in: imported, labelled and exported from the command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pytest_innovator.cli import main as cli
from pytest_innovator.rundir import RunDir
from pytest_innovator.training.export import check_file
from pytest_innovator.trajectory import read_trajectory

from .conftest import FIXTURES

# In step order: the files are named react_<uuid>_<time>.json
NODES = sorted(
    (str(p) for p in (FIXTURES / "researchgym" / "nodes").glob("react_*.json")), key=lambda p: p.rsplit("_", 1)[1]
)


def test_an_imported_researchgym_run_can_be_labelled_and_exported(tmp_path: Path) -> None:
    item = tmp_path / "imported" / "task_1"
    assert (
        cli(
            [
                "import-researchgym",
                *reversed(NODES),
                "-o",
                str(item),
                "--task",
                "task_1",
                "--domain",
                "data_construction",
            ]
        )
        == 0
    )
    steps = [r for r in read_trajectory(RunDir(item).trajectory) if r["type"] == "step"]
    assert [(s["step"], s["tool"], s["ok"]) for s in steps] == [
        (1, "think", True),
        (2, "run_command", False),
        (3, "run_command", False),
        (4, "eval", True),
    ]
    assert cli(["label", str(item)]) == 0
    labels = json.loads(RunDir(item).labels.read_text())
    assert [(e["step"], e["label"], e["source"]) for e in labels["steps"] if e["label"] == "drop"] == [
        (3, "drop", "rule:repeated_failure")
    ]

    out = tmp_path / "train.jsonl"
    assert cli(["export", str(item.parent), "--domain", "data_construction", "-o", str(out)]) == 0
    assert check_file(out) == []
    [example] = [json.loads(line) for line in out.read_text().splitlines()]
    assert {t["function"]["name"] for t in example["tools"]} == {"think", "run_command", "eval"}
    replies = [m for m in example["messages"] if m["role"] == "assistant"]
    assert [r["weight"] for r in replies] == [1, 1, 0, 1]
    assert [json.loads(r["tool_calls"][0]["function"]["arguments"]).get("command") for r in replies][1:3] == [
        "python clean.py --in training_data.json"
    ] * 2
    users = [m["content"] for m in example["messages"] if m["role"] == "user"]
    assert users[-1].startswith("<real_user>")  # the person's message, where the agent read it


def test_import_says_what_is_wrong_with_its_input(tmp_path: Path, capsys: Any) -> None:
    not_a_node = tmp_path / "other.json"
    not_a_node.write_text('{"id": "x"}')
    assert cli(["import-researchgym", str(not_a_node), "-o", str(tmp_path / "a")]) == 1
    assert "not a ResearchGym node (missing parent_id, timestamp, messages, response)" in capsys.readouterr().err
    assert cli(["import-researchgym", NODES[0], NODES[1], NODES[3], "-o", str(tmp_path / "b")]) == 1
    assert "every step of it" in capsys.readouterr().err
