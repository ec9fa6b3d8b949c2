"""web_search and open_page: the react agent on the scripted LLM server searches and opens pages
through the offline corpus and through a local server speaking Serper's API, from the pytest
command line; Bing's client against the same server; provider errors as error observations;
the options, the skips, and keys that never reach the agent's sessions."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_innovator.env import Limits, ResearchEnv
from pytest_innovator.research_tools import providers
from pytest_innovator.research_tools.providers import build_services
from pytest_innovator.research_tools.web import PAGE_CHARS, split_pages
from pytest_innovator.task import load_task
from pytest_innovator.trajectory import read_trajectory
from pytest_innovator.workspace import LocalWorkspace, command_environment

from .scripted_llm import ScriptedLLMServer
from .test_plugin import add_task, results_log
from .web_apis import BING_KEY, SERPER_KEY, SearchAPIServer, WebPage

pytest_plugins = ["pytester"]

FILLER = "".join(f"<p>Paragraph {n} on schedules: the rate rises, holds, then decays.</p>" for n in range(90))
WARMUP = WebPage(
    "warmup",
    "Learning rate warmup explained",
    f"<nav>Home | Blog | About</nav><article><h1>Learning rate warmup</h1>{FILLER}"
    "<p>Use 2000 warmup steps for a 12-layer transformer.</p></article><footer>Copyright footer</footer>",
    "Why warmup steps stabilise transformer training.",
)
UNRELATED = WebPage("cooking", "Bread recipes", "<p>Flour, water, salt.</p>", "Baking bread at home.")


@pytest.fixture
def api() -> Iterator[SearchAPIServer]:
    server = SearchAPIServer([WARMUP, UNRELATED]).start()
    yield server
    server.stop()


@pytest.fixture
def scripted() -> Iterator[Callable[[dict[str, Any]], ScriptedLLMServer]]:
    servers: list[ScriptedLLMServer] = []

    def start(transcript: dict[str, Any]) -> ScriptedLLMServer:
        servers.append(ScriptedLLMServer(transcript).start())
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


def corpus(path: Path) -> Path:
    entries = [
        {
            "url": "https://example.org/warmup",
            "title": "Learning rate warmup",
            "text": "Intro.\n" + "Filler line.\n" * 400 + "Use 2000 warmup steps.\n",
        },
        {"url": "https://example.org/bread", "title": "Bread", "text": "Flour, water, salt."},
    ]
    path.write_text("".join(json.dumps(e) + "\n" for e in entries))
    return path


def web_task(root: Path, tools: str = '["web"]') -> Path:
    task = add_task(root, "alpha")
    toml = task / "task.toml"
    toml.write_text(toml.read_text().replace('domain = "', f'tools = {tools}\ndomain = "', 1))
    return task


def call(tool: str, /, **arguments: Any) -> dict[str, Any]:
    return {"name": tool, "arguments": arguments}


def run_react(pytester: pytest.Pytester, llm: ScriptedLLMServer, *args: str) -> pytest.RunResult:
    web_task(pytester.path / "suite")
    return pytester.runpytest_subprocess(
        "suite",
        "--innovator-agent=react",
        f"--innovator-base-url={llm.base_url}",
        "--innovator-model=scripted-model",
        "--innovator-tool-protocol=native",
        *args,
    )


def steps_of(pytester: pytest.Pytester) -> list[dict[str, Any]]:
    run_dir = Path(results_log(pytester)[-1]["run_dir"])
    return [line for line in read_trajectory(run_dir / "trajectory.jsonl") if line["type"] == "step"]


def finishing(*expected: str) -> dict[str, Any]:
    return {
        "expect": {"last_contains": list(expected)},
        "respond": {"tool_calls": [call("write_file", path="answer.txt", content="0.9"), call("finish")]},
    }


def test_the_react_agent_searches_and_reads_pages_of_the_offline_corpus(
    pytester: pytest.Pytester, scripted: Callable[[dict[str, Any]], ScriptedLLMServer]
) -> None:
    url = "https://example.org/warmup"
    llm = scripted(
        {
            "exchanges": [
                {"expect": {"tools": True}, "respond": {"tool_calls": [call("web_search", query="warmup steps")]}},
                {
                    "expect": {"last_contains": ["[offline: 1 results for 'warmup steps']", url]},
                    "respond": {"tool_calls": [call("open_page", url=url, find="warmup steps")]},
                },
                {
                    "expect": {"last_contains": ["[page 2] Use 2000 warmup steps."]},
                    "respond": {"tool_calls": [call("open_page", url=url, page=2)]},
                },
                finishing("page 2 of 2", "Use 2000 warmup steps."),
            ]
        }
    )
    corpus_file = corpus(pytester.path / "corpus.jsonl")
    result = run_react(
        pytester, llm, "--innovator-search-provider=offline", f"--innovator-offline-corpus={corpus_file}"
    )
    result.assert_outcomes(passed=1)
    llm.assert_transcript_done()
    steps = steps_of(pytester)
    assert [(s["tool"], s["ok"]) for s in steps][:3] == [("web_search", True), ("open_page", True), ("open_page", True)]
    assert json.loads(steps[0]["arguments"]) == {"query": "warmup steps"} and url in steps[0]["observation"]
    assert steps[1]["observation"].startswith(
        f"[{url} (Learning rate warmup): 1 lines contain 'warmup steps', in 2 pages]"
    )
    assert steps[2]["observation"].endswith("Use 2000 warmup steps.\n")


def test_the_react_agent_searches_through_serper_and_the_harness_fetches_the_page(
    pytester: pytest.Pytester,
    scripted: Callable[[dict[str, Any]], ScriptedLLMServer],
    api: SearchAPIServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SERPER_API_KEY", SERPER_KEY)
    url = f"{api.base_url}/pages/warmup"
    llm = scripted(
        {
            "exchanges": [
                {"respond": {"tool_calls": [call("web_search", query="warmup transformer")]}},
                {
                    "expect": {"last_contains": ["[serper: 1 results for 'warmup transformer']", url]},
                    "respond": {"tool_calls": [call("open_page", url=url, find="warmup steps")]},
                },
                {
                    "expect": {"last_contains": ["Use 2000 warmup steps for a 12-layer transformer."]},
                    "respond": {
                        "tool_calls": [
                            call("create_session", name="s"),
                            call("run_command", session="s", command="env"),
                        ]
                    },
                },
                finishing("finished, exit code 0"),
            ]
        }
    )
    result = run_react(
        pytester, llm, "--innovator-search-provider=serper", f"--innovator-api-base-url=serper={api.base_url}"
    )
    result.assert_outcomes(passed=1)
    llm.assert_transcript_done()
    (search,) = api.requests_to("/search")
    assert search.method == "POST" and search.headers["x-api-key"] == SERPER_KEY
    assert json.loads(search.body) == {"q": "warmup transformer", "num": 10}
    assert len(api.requests_to("/pages/warmup")) == 1  # the harness fetched it, once
    steps = steps_of(pytester)
    assert [s["tool"] for s in steps][:4] == ["web_search", "open_page", "create_session", "run_command"]
    page = steps[1]["observation"]
    assert "Use 2000 warmup steps" in page and "Copyright footer" not in page  # the page's text, no boilerplate
    environment = steps[3]["observation"]
    assert "PATH=" in environment and "SERPER" not in environment
    run_dir = Path(results_log(pytester)[-1]["run_dir"])
    written = [p for p in [*pytester.path.rglob("*"), *run_dir.rglob("*")] if p.is_file()]
    assert [p for p in written if SERPER_KEY.encode() in p.read_bytes()] == []


# --- the clients and their errors, through ResearchEnv.step --------------------------------------


@pytest.fixture
def make_env(number_task_dir: Path, tmp_path: Path) -> Iterator[Callable[..., ResearchEnv]]:
    made: list[tuple[ResearchEnv, Any]] = []

    def make(search: str | None, base_urls: dict[str, str] | None = None, literature: str | None = None) -> ResearchEnv:
        toml = number_task_dir / "task.toml"
        if "tools =" not in toml.read_text():
            toml.write_text(toml.read_text().replace('domain = "', 'tools = ["web", "literature"]\ndomain = "', 1))
        task = load_task(number_task_dir)
        corpus_file = tmp_path / "corpus.jsonl"  # a test may have written its own
        services, client = build_services(
            search, literature, corpus_file if corpus_file.exists() else corpus(corpus_file), base_urls or {}
        )
        run_dir = tmp_path / f"run{len(made)}"
        workspace, _ = LocalWorkspace.create(task, run_dir)
        limits = Limits(time_limit_s=300.0, step_limit=50, eval_budget=3, hints="off")
        env = ResearchEnv(task, workspace, run_dir, limits, agent_name="test", services=services)
        made.append((env, client))
        return env

    yield make
    for env, client in made:
        env.workspace.close()
        if client is not None:
            client.close()


def test_bing_answers_in_its_format_and_a_refused_key_is_an_error_observation(
    make_env: Callable[..., ResearchEnv], api: SearchAPIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BING_SEARCH_API_KEY", BING_KEY)
    env = make_env("bing", {"bing": api.base_url})
    found = env.step("web_search", {"query": "warmup"})
    assert found.ok and found.output.startswith("[bing: 1 results for 'warmup']")
    assert f"{api.base_url}/pages/warmup" in found.output
    (request,) = api.requests_to("/v7.0/search")
    assert request.headers["ocp-apim-subscription-key"] == BING_KEY and request.query["q"] == ["warmup"]
    assert env.step("web_search", {"query": "nothing matches"}).output == "[bing: 0 results for 'nothing matches']"
    monkeypatch.setenv("BING_SEARCH_API_KEY", "wrong")
    refused = env.step("web_search", {"query": "warmup"})
    assert not refused.ok and "bing refused the harness's key (HTTP 401" in refused.output
    assert "$BING_SEARCH_API_KEY" in refused.output


@pytest.mark.parametrize(
    ("failure", "said"),
    [
        ({"status": 429, "body": '{"message": "Too many requests"}'}, "serper is rate limiting (HTTP 429"),
        ({"status": 500, "body": "upstream down"}, "serper answered HTTP 500: upstream down"),
        ({"body": "<html>not json</html>"}, "serper answered with malformed JSON"),
        ({"body": '{"organic": [{"snippet": "no title"}]}'}, "serper answered in an unexpected format (KeyError"),
        ({"delay_s": 1.5}, "serper did not answer within 1 s"),
    ],
)
def test_provider_errors_are_error_observations_in_the_trajectory(
    make_env: Callable[..., ResearchEnv],
    api: SearchAPIServer,
    monkeypatch: pytest.MonkeyPatch,
    failure: dict[str, Any],
    said: str,
) -> None:
    monkeypatch.setenv("SERPER_API_KEY", SERPER_KEY)
    monkeypatch.setattr(providers, "TIMEOUT_S", 1.0)
    env = make_env("serper", {"serper": api.base_url})
    api.fail["/search"] = failure
    observation = env.step("web_search", {"query": "warmup"})
    assert not observation.ok and said in observation.output
    (line,) = [s for s in read_trajectory(env.run_dir / "trajectory.jsonl") if s["type"] == "step"]
    assert (line["tool"], line["ok"], line["observation"]) == ("web_search", False, observation.output)


def test_open_page_errors_say_what_went_wrong(
    make_env: Callable[..., ResearchEnv], api: SearchAPIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SERPER_API_KEY", SERPER_KEY)
    live = make_env("serper", {"serper": api.base_url})
    assert "HTTP 404" in live.step("open_page", {"url": f"{api.base_url}/pages/missing"}).output
    assert "not a web address" in live.step("open_page", {"url": "file:///etc/passwd"}).output
    too_far = live.step("open_page", {"url": f"{api.base_url}/pages/cooking", "page": 2})
    assert not too_far.ok and too_far.output.endswith("has 1 page(s); there is no page 2")
    api.fail["/pages/blocked"] = {"status": 403, "body": "Forbidden", "type": "text/plain"}
    blocked = live.step("open_page", {"url": f"{api.base_url}/pages/blocked"})
    assert blocked.output.endswith("answered HTTP 403: Forbidden") and "key" not in blocked.output
    for address in ("http://127.0.0.1:9/admin", "http://[::1]/", "http://169.254.169.254/latest/meta-data/"):
        refused = live.step("open_page", {"url": address})
        assert not refused.ok and refused.output.endswith("open_page reads the public web only"), address
    api.fail["/pages/hop"] = {"status": 302, "location": "http://127.0.0.1:9/admin", "type": "text/plain"}
    hop = live.step("open_page", {"url": f"{api.base_url}/pages/hop"})
    assert not hop.ok and "127.0.0.1:9/admin is on the harness's own host" in hop.output
    api.fail["/pages/moved"] = {"status": 301, "location": "/pages/warmup", "type": "text/plain"}
    assert "Learning rate warmup" in live.step("open_page", {"url": f"{api.base_url}/pages/moved"}).output
    api.fail["/pages/image"] = {"body": "GIF89a", "type": "image/gif"}
    image = live.step("open_page", {"url": f"{api.base_url}/pages/image"})
    assert image.output.endswith("is image/gif, not a page that can be read as text")
    offline = make_env("offline")
    unknown = offline.step("open_page", {"url": "https://example.org/elsewhere"})
    assert not unknown.ok and "not in the offline corpus" in unknown.output
    no_provider = make_env(None)
    assert (
        no_provider.step("web_search", {"query": "x"}).output == "web_search: this run has no web provider configured"
    )


def test_a_pdf_on_the_web_is_read_as_text(
    make_env: Callable[..., ResearchEnv], api: SearchAPIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from .test_documents import pdf_bytes

    monkeypatch.setenv("SERPER_API_KEY", SERPER_KEY)
    env = make_env("serper", {"serper": api.base_url})
    api.fail["/papers/results.pdf"] = {"body": pdf_bytes(), "type": "application/pdf"}
    page = env.step("open_page", {"url": f"{api.base_url}/papers/results.pdf", "find": "accuracy"})
    assert page.ok and page.output.splitlines()[1] == "[page 1] Results: accuracy 0.91 on the held-out set"


def test_pages_are_cut_at_line_ends_and_long_lines_are_split() -> None:
    text = "a" * 10 + "\n" + "b" * (PAGE_CHARS * 2 + 5) + "\n" + "c\n"
    pages = split_pages(text)
    assert "".join(pages) == text and all(len(p) <= PAGE_CHARS for p in pages)
    assert pages[0] == "a" * 10 + "\n" and pages[-1].endswith("c\n")
    assert split_pages("") == [""]


# --- options and skips ------------------------------------------------------------------------


def test_a_task_that_offers_web_tools_without_a_provider_is_skipped_naming_the_option(
    pytester: pytest.Pytester,
) -> None:
    web_task(pytester.path / "suite", '["web", "literature"]')
    result = pytester.runpytest_subprocess("suite", "--innovator-agent=null", "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(
        [
            "*web search and browsing tools for the agent (name their provider with --innovator-search-provider "
            "serper, bing or offline*literature search for the agent (name its provider with "
            "--innovator-literature-provider*"
        ]
    )


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (
            ["--innovator-search-provider=serper"],
            "--innovator-search-provider serper reads its key from $SERPER_API_KEY",
        ),
        (["--innovator-literature-provider=offline"], "name its JSONL file with --innovator-offline-corpus"),
        (["--innovator-search-provider=google"], "must be one of serper, bing, offline"),
        (["--innovator-api-base-url=duck=http://127.0.0.1:9"], "--innovator-api-base-url duck: unknown API"),
        (["--innovator-api-base-url=serper=127.0.0.1:9"], "must be an http:// or https:// URL"),
    ],
)
def test_a_provider_without_what_it_needs_is_a_usage_error(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, args: list[str], said: str
) -> None:
    monkeypatch.delenv("SERPER_API_KEY", raising=False)
    web_task(pytester.path / "suite")
    result = pytester.runpytest_subprocess("suite", "--innovator-agent=null", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert said in result.stderr.str()


def test_a_broken_corpus_line_is_named(pytester: pytest.Pytester) -> None:
    (pytester.path / "corpus.jsonl").write_text('{"url": "u", "title": "t", "text": "x"}\n{"url": "v"}\n')
    web_task(pytester.path / "suite")
    result = pytester.runpytest_subprocess(
        "suite",
        "--innovator-agent=null",
        "--innovator-search-provider=offline",
        "--innovator-offline-corpus=corpus.jsonl",
    )
    assert "corpus.jsonl:2: title, text missing or not a string" in result.stdout.str() + result.stderr.str()


def test_no_provider_key_is_in_the_environment_the_agents_commands_get(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in providers.KEY_ENVS.values():
        monkeypatch.setenv(variable, "secret")
    assert set(command_environment()) & set(providers.KEY_ENVS.values()) == set()
