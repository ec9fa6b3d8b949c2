"""EXP-Bench's task records as items, on a stand-in laid out as the released dataset
(fixtures/expbench): collected from the pytest command line, one item per question, the
repository cloned and masked, the rubric hidden, judged by a scripted judge on 127.0.0.1."""

from __future__ import annotations

import json
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from .conftest import FIXTURES
from .scripted_llm import ScriptedLLMServer
from .test_experiments import PHASE_NAMES, verdict
from .test_plugin import junit_properties

pytest_plugins = ["pytester"]

STAND_IN = FIXTURES / "expbench"


def make_dataset(root: Path) -> Path:
    """The stand-in dataset under root, its paper's code_url a git repository of fixtures/expbench/repo."""
    repo = root / "repo"
    shutil.copytree(STAND_IN / "repo", repo)
    for argv in (["init", "-q"], ["add", "."], ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x"]):
        subprocess.run(["git", "-C", str(repo), *argv], check=True)
    dataset = root / "expbench" / "dataset"
    shutil.copytree(STAND_IN / "dataset", dataset)
    listing = dataset / "neurips2024" / "conference_data.jsonl"
    paper = json.loads(listing.read_text()) | {"code_url": str(repo)}
    listing.write_text(json.dumps(paper) + "\n")
    return dataset


def test_each_question_is_an_item_on_the_masked_repository_and_is_judged(pytester: pytest.Pytester) -> None:
    dataset = make_dataset(pytester.path)
    cache = pytester.path / "cache"
    calls = [
        {
            "tool": "write_file",
            "arguments": {"path": "design.md", "content": "constant: 51 samples; independent: estimator"},
        },
        {
            "tool": "write_file",
            "arguments": {
                "path": "noise.py",
                "content": "def contaminate(values, rng):\n"
                "    return [rng.uniform(20.0, 40.0) if rng.random() < 0.1 else v for v in values]\n",
            },
        },
        {"tool": "write_file", "arguments": {"path": "reproduce.sh", "content": "python3 run.py > results.txt\n"}},
        {"tool": "run_command", "arguments": {"command": "bash reproduce.sh && cat results.txt", "wait_s": 30}},
        {"tool": "write_file", "arguments": {"path": "conclusion.md", "content": "The median is far more accurate."}},
        {"tool": "finish", "arguments": {"summary": "done"}},
    ]
    replay = pytester.path / "calls.jsonl"
    replay.write_text("\n".join(json.dumps(c) for c in calls) + "\n")
    with ScriptedLLMServer({"exchanges": [verdict(phase) for phase in PHASE_NAMES]}) as server:
        result = pytester.runpytest_subprocess(
            str(dataset),
            "-k",
            "93022_0",
            "--innovator-agent",
            "replay",
            "--innovator-replay",
            str(replay),
            "--innovator-cache-dir",
            str(cache),
            "--innovator-judge-model",
            "judge",
            "--innovator-judge-base-url",
            server.base_url,
            "--junitxml",
            "out.xml",
        )
        server.assert_transcript_done()
        texts = [r.text for r in server.requests]
    result.assert_outcomes(passed=1, deselected=1)
    props = junit_properties(pytester.path / "out.xml")["93022_0"]
    assert (props["exp_DICE"], props["exp_M"], props["score_final"]) == ("1", "0", "100.0")
    # The rubric comes from the record: its design variables, its requirements, its expected outcome.
    assert "constant: samples per set: 51" in texts[0] and "independent: estimator: sample mean" in texts[0]
    assert "Step 1: noise.py's contaminate" in texts[1] and "removed from the repository: noise.py" in texts[1]
    assert "'mean':" in texts[2] and "'median':" in texts[2]  # the rerun's own results
    assert "Expected outcome: The median's error is several times smaller" in texts[3]
    # The workspace the agent started from: the repository without the removed code, its README or history.
    [task_dir] = list(cache.glob("expbench/*/93022_0"))
    starter = task_dir / "workspace"
    assert (starter / "run.py").is_file() and not (starter / "noise.py").exists()
    assert not (starter / "README.md").exists() and not (starter / ".git").exists()
    rubric = tomllib.loads((task_dir / "grader" / "rubric.toml").read_text())
    assert rubric["forbidden"] == ["Robust estimators under contamination"]


def test_a_record_whose_paper_is_not_listed_is_a_collection_error_naming_it(pytester: pytest.Pytester) -> None:
    dataset = make_dataset(pytester.path)
    (dataset / "neurips2024" / "conference_data.jsonl").write_text('{"id": "other", "code_url": "x"}\n')
    result = pytester.runpytest_subprocess(str(dataset), "--co", "--innovator-cache-dir", str(pytester.path / "c"))
    result.stdout.fnmatch_lines(["*conference_data.jsonl: no paper with id '93022'*"])
    assert result.ret != 0


def test_the_dataset_option_collects_every_question_of_the_dataset(pytester: pytest.Pytester) -> None:
    dataset = make_dataset(pytester.path)
    cache = str(pytester.path / "cache")
    named = f"expbench={dataset.parent}"
    result = pytester.runpytest_subprocess("--innovator-dataset", named, "--innovator-cache-dir", cache, "--co", "-q")
    result.stdout.fnmatch_lines(["*93022_complete_final.json::93022_0", "*93022_complete_final.json::93022_1"])
    assert result.ret == 0
