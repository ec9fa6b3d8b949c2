"""literature_search: Semantic Scholar's and arXiv's clients against a local server answering in
their formats, the offline corpus, errors as observations, and a run from the pytest command line."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pytest_innovator.env import ResearchEnv
from pytest_innovator.trajectory import read_trajectory

from .test_plugin import results_log
from .test_web_tools import api, make_env, web_task  # noqa: F401  (fixtures)
from .web_apis import SearchAPIServer

pytest_plugins = ["pytester"]


def test_semantic_scholar_papers_with_the_optional_key(
    make_env: Callable[..., ResearchEnv],  # noqa: F811
    api: SearchAPIServer,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SEMANTIC_SCHOLAR_API_KEY", raising=False)
    env = make_env(None, {"semantic_scholar": api.base_url}, literature="semantic_scholar")
    found = env.step("literature_search", {"query": "transformers attention"})
    assert found.ok, found.output
    assert found.output.splitlines()[:5] == [
        "[semantic_scholar: 2 papers for 'transformers attention']",
        "1. Attention is All you Need (2017)",
        "   Ashish Vaswani, Noam Shazeer",
        "   https://www.semanticscholar.org/paper/204e3073870fae3d05bcbc2f6a8e263d9b72e776",
        "   The dominant sequence transduction models are based on complex recurrent networks.",
    ]
    (request,) = api.requests_to("/graph/v1/paper/search")
    assert "x-api-key" not in request.headers
    assert (request.query["query"], request.query["limit"]) == (["transformers attention"], ["5"])
    monkeypatch.setenv("SEMANTIC_SCHOLAR_API_KEY", "s2-key")
    env.step("literature_search", {"query": "BERT"})
    assert api.requests_to("/graph/v1/paper/search")[-1].headers["x-api-key"] == "s2-key"
    api.fail["/graph/v1/paper/search"] = {"status": 429, "body": '{"message": "Too Many Requests.", "code": "429"}'}
    limited = env.step("literature_search", {"query": "BERT"})
    assert not limited.ok and "semantic_scholar is rate limiting (HTTP 429" in limited.output


def test_arxiv_reads_the_atom_feed(make_env: Callable[..., ResearchEnv], api: SearchAPIServer) -> None:  # noqa: F811
    env = make_env(None, {"arxiv": api.base_url}, literature="arxiv")
    found = env.step("literature_search", {"query": "bidirectional"})
    assert found.ok, found.output
    assert found.output.splitlines()[:4] == [
        "[arxiv: 1 papers for 'bidirectional']",
        "1. BERT: Pre-training of Deep Bidirectional Transformers for Language Understanding (2018)",
        "   Jacob Devlin",
        "   http://arxiv.org/abs/1810.04805v1",
    ]
    assert api.requests_to("/api/query")[0].query == {
        "search_query": ["all:bidirectional"],
        "start": ["0"],
        "max_results": ["5"],
    }
    api.fail["/api/query"] = {"body": "<feed><entry>"}
    broken = env.step("literature_search", {"query": "bidirectional"})
    assert not broken.ok and broken.output.startswith("arxiv answered with malformed XML")


def test_the_offline_corpus_shows_authors_and_year(
    tmp_path: Path,
    make_env: Callable[..., ResearchEnv],  # noqa: F811
) -> None:
    papers = [
        {
            "url": "https://example.org/warmup",
            "title": "Warmup study",
            "text": "Warmup helps.",
            "authors": ["A. B"],
            "year": 2020,
        },
        {"url": "https://example.org/bread", "title": "Bread", "text": "Flour."},
    ]
    (tmp_path / "corpus.jsonl").write_text("".join(json.dumps(p) + "\n" for p in papers))
    env = make_env(None, literature="offline")
    found = env.step("literature_search", {"query": "warmup"})
    assert found.ok and found.output.splitlines() == [
        "[offline: 1 papers for 'warmup']",
        "1. Warmup study (2020)",
        "   A. B",
        "   https://example.org/warmup",
        "   Warmup helps.",
    ]


@pytest.fixture
def replay(pytester: pytest.Pytester) -> Iterator[Callable[[list[dict[str, object]]], Path]]:
    def write(steps: list[dict[str, object]]) -> Path:
        path = pytester.path / "replay.jsonl"
        path.write_text("".join(json.dumps(s) + "\n" for s in steps))
        return path

    yield write


def test_a_literature_search_from_the_pytest_command_line_goes_to_the_trajectory(
    pytester: pytest.Pytester,
    api: SearchAPIServer,  # noqa: F811
    replay: Callable[[list[dict[str, object]]], Path],
) -> None:
    web_task(pytester.path / "suite", '["literature"]')
    steps = [{"tool": "literature_search", "arguments": {"query": "attention"}}, {"tool": "finish", "arguments": {}}]
    result = pytester.runpytest_subprocess(
        "suite",
        "--innovator-agent=replay",
        f"--innovator-replay={replay(steps)}",
        "--innovator-literature-provider=semantic_scholar",
        f"--innovator-api-base-url=semantic_scholar={api.base_url}",
    )
    result.assert_outcomes(failed=1)  # the replay writes no answer: the baseline's score
    record = results_log(pytester)[-1]
    assert record["final_status"] == "scored"
    run_dir = Path(record["run_dir"])
    (step,) = [s for s in read_trajectory(run_dir / "trajectory.jsonl") if s.get("tool") == "literature_search"]
    assert step["ok"] and step["arguments"] == {"query": "attention"}
    assert "1. Attention is All you Need (2017)" in step["observation"]
