"""Guidance from a person to a running item, and pausing it: through the run directory (the
mailbox), from the command line, under xdist, across a kill and a resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_innovator.agents import run_episode
from pytest_innovator.agents.react import ReactAgent
from pytest_innovator.cli import main as cli
from pytest_innovator.env import ResearchEnv
from pytest_innovator.trajectory import read_trajectory

from .scripted_llm import RecordedRequest, ScriptedLLMServer, _Script, check_request
from .session_server import ServerProcess, session_server  # noqa: F401
from .test_env import make_env
from .test_memory import pytest_command
from .test_plugin import add_task

pytest_plugins = ["pytester"]

ADVICE = "Stop tuning the learning rate; the data loader drops half the rows."


@pytest.fixture(params=["local", "remote"])
def env(request: pytest.FixtureRequest, number_task_dir: Path, tmp_path: Path) -> Iterator[ResearchEnv]:
    """On the in-process backend and the remote one: the harness reads the mailbox, not the workspace."""
    server: ServerProcess | None = request.getfixturevalue("session_server") if request.param == "remote" else None
    environment = make_env(number_task_dir, tmp_path / "run", server)
    yield environment
    environment.workspace.close()


def events(env: ResearchEnv, name: str) -> list[dict[str, Any]]:
    return [r for r in read_trajectory(env.trajectory.path) if r.get("event") == name]


def test_guidance_reaches_the_next_step_once_with_its_author_and_time(env: ResearchEnv, capsys: Any) -> None:
    env.step("think", {"thought": "first"})
    assert cli(["guide", str(env.run_dir), ADVICE, "--author", "ada"]) == 0
    seen = env.step("think", {"thought": "second"})
    assert "[guidance from a human researcher (ada, " in seen.output and ADVICE in seen.output
    assert ADVICE not in env.step("think", {"thought": "third"}).output
    [event] = events(env, "guidance")
    assert (event["step"], event["author"], event["text"]) == (2, "ada", ADVICE)
    assert event["sent_at"] <= event["wall"]


def test_a_paused_item_is_still_ended_by_its_time_limit(number_task_dir: Path, tmp_path: Path) -> None:
    environment = make_env(number_task_dir, tmp_path / "run", time_limit_s=0.5)
    try:
        assert cli(["pause", str(environment.run_dir)]) == 0
        observation = environment.step("think", {"thought": "held here"})
        assert observation.done and environment.end_reason == "time_limit"
        assert "ran out while the item was paused" in observation.output
        assert [e["event"] for e in read_trajectory(environment.trajectory.path) if e["type"] == "event"][-2:] == [
            "paused",
            "released",
        ]
    finally:
        environment.workspace.close()


def test_guidance_to_what_is_not_a_running_item_says_what_to_give(tmp_path: Path, capsys: Any) -> None:
    assert cli(["guide", str(tmp_path), "hello"]) == 1
    assert "not an item's run directory" in capsys.readouterr().err
    (tmp_path / "trajectory.jsonl").write_text("")
    (tmp_path / "result.json").write_text("{}")
    assert cli(["pause", str(tmp_path)]) == 1
    assert "has ended" in capsys.readouterr().err


class PerItemServer(ScriptedLLMServer):
    """One script per item (told apart by the task's instruction), so items running side by side
    under xdist each get their own answers; an exchange with ``gate: true`` is answered only once
    the test opens that item's gate."""

    def __init__(self, scripts: dict[str, list[dict[str, Any]]]):
        super().__init__({"exchanges": []})
        self.scripts = {item: _Script(exchanges) for item, exchanges in scripts.items()}
        self.gates = {item: threading.Event() for item in scripts}

    def item_requests(self, item: str) -> list[RecordedRequest]:
        with self._lock:
            return list(self.scripts[item].requests)

    def _take(
        self, body: dict[str, Any], headers: dict[str, str], received_at: float
    ) -> tuple[RecordedRequest, dict[str, Any] | None]:
        item = next(name for name in self.scripts if f"item-{name}" in json.dumps(body.get("messages", [])[:2]))
        with self._lock:
            script = self.scripts[item]
            index, exchange = script.next_exchange()
            request = RecordedRequest(len(script.requests) + 1, index, body, headers, received_at)
            script.requests.append(request)
            problems = check_request((exchange or {}).get("expect") or {}, body) if exchange else ["no answer left"]
            self._script.failures += [f"{item} request {request.number}: {p}" for p in problems]
        if exchange and exchange.get("gate"):
            self.gates[item].wait(120)
        return request, exchange


def call(name: str, **arguments: Any) -> dict[str, Any]:
    return {"respond": {"tool_calls": [{"name": name, "arguments": arguments}]}}


def scripts() -> dict[str, list[dict[str, Any]]]:
    """alpha gets guidance while paused after its step 2, reads it before its step 3, is killed
    waiting for its fourth answer (after the snapshot of step 3) and finishes once resumed; beta
    runs beside it and never sees the guidance."""
    return {
        "alpha": [
            call("think", thought="one"),
            {"gate": True, **call("think", thought="two")},
            {"expect": {"last_role": "user", "last_contains": [ADVICE]}, **call("think", thought="three")},
            {"respond": {"delay_s": 120, "tool_calls": [{"name": "finish", "arguments": {}}]}},
            {"expect": {"contains": [ADVICE]}, **call("write_file", path="answer.txt", content="0.9")},
            call("finish", summary="done"),
        ],
        "beta": [
            call("think", thought="one"),
            {"gate": True, **call("think", thought="two")},
            {"expect": {"not_contains": [ADVICE]}, **call("write_file", path="answer.txt", content="0.9")},
            call("finish", summary="done"),
        ],
    }


def item_dir(root: Path, results: str, item: str) -> Path:
    runs = root / results / "runs"
    return next(runs.iterdir(), runs) / item if runs.is_dir() else runs / item


def trajectory(item: Path) -> list[dict[str, Any]]:
    path = item / "trajectory.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def wait_for(what: str, condition: Any, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 120
    while not condition():
        assert time.monotonic() < deadline and process.poll() is None, f"the run never reached: {what}"
        time.sleep(0.1)


def guide(*args: str) -> None:
    cli_run = subprocess.run(
        [sys.executable, "-m", "pytest_innovator.cli", *args], capture_output=True, text=True, timeout=60
    )
    assert cli_run.returncode == 0, cli_run.stderr


@pytest.mark.slow
def test_guidance_under_xdist_reaches_only_its_item_at_its_next_step_and_once_across_a_resume(
    pytester: pytest.Pytester,
) -> None:
    root = pytester.path
    for name in ("alpha", "beta"):
        task = add_task(root / "suite", name)
        (task / "instruction.md").write_text(f"# Write the right number (item-{name})\n\nWrite 0.9 into answer.txt.\n")
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    with PerItemServer(scripts()) as server:
        first = subprocess.Popen(
            pytest_command(server, "crashed", "-n", "2"),
            cwd=root,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            wait_for(
                "both items waiting for their second answer",
                lambda: all(len(server.item_requests(i)) >= 2 for i in ("alpha", "beta")),
                first,
            )
            alpha, beta = item_dir(root, "crashed", "alpha"), item_dir(root, "crashed", "beta")
            guide("pause", str(alpha))
            guide("guide", str(alpha), ADVICE, "--author", "ada")
            server.gates["alpha"].set()
            wait_for(
                "alpha held after step 2", lambda: any(r.get("event") == "paused" for r in trajectory(alpha)), first
            )
            assert len(server.item_requests("alpha")) == 2  # held: no third request while paused
            guide("resume", str(alpha))
            server.gates["beta"].set()
            wait_for(
                "alpha's kill point after its snapshot of step 3",
                lambda: (
                    len(server.item_requests("alpha")) >= 4
                    and any(r.get("event") == "snapshot" and r["step"] == 3 for r in trajectory(alpha))
                    and (beta / "result.json").exists()
                ),
                first,
            )
        finally:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait()

        resumed = subprocess.run(
            pytest_command(server, "resumed", "-n", "2", "--innovator-resume", str(alpha.parent)),
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert resumed.returncode == 0, resumed.stdout[-3000:]
        assert not server.failures, server.failures
        assert all(script.unfinished() == 0 for script in server.scripts.values())

    requests = server.item_requests("alpha")
    # Seen at the step after which it was sent, as a user message after the tool result, and once.
    assert ADVICE not in requests[1].text and requests[2].messages[-1]["role"] == "user"
    assert requests[4].text.count(ADVICE) == 1
    assert not any(ADVICE in r.text for r in server.item_requests("beta"))
    resumed_alpha = item_dir(root, "resumed", "alpha")
    [delivered] = [r for r in trajectory(resumed_alpha) if r.get("event") == "guidance"]
    assert (delivered["step"], delivered["author"], delivered["text"]) == (2, "ada", ADVICE)
    assert not [r for r in trajectory(beta) if r.get("event") == "guidance"]
    assert json.loads((resumed_alpha / "result.json").read_text())["score_final"] == 80.0


def text_action(tool: str, **arguments: Any) -> dict[str, Any]:
    return {"respond": {"content": "```json\n" + json.dumps({"tool": tool, "arguments": arguments}) + "\n```"}}


def test_the_react_agent_reads_guidance_as_a_user_message_under_the_text_protocol_too(
    number_task_dir: Path, tmp_path: Path
) -> None:
    environment = make_env(number_task_dir, tmp_path / "run")
    transcript = {
        "exchanges": [
            text_action("write_file", path="answer.txt", content="0.9"),
            {"expect": {"last_role": "user", "last_contains": [ADVICE]}, **text_action("finish", summary="done")},
        ]
    }
    try:
        with ScriptedLLMServer(transcript) as llm:
            assert cli(["guide", str(environment.run_dir), ADVICE]) == 0
            agent = ReactAgent({"base_url": llm.base_url, "tool_protocol": "text", "llm_backoff": 0.01})
            run_episode(agent, environment)
            llm.assert_transcript_done()
            second = llm.requests[1].messages
    finally:
        environment.workspace.close()
    observation, advice = second[-2], second[-1]
    assert advice["content"].startswith("[guidance from a human researcher (") and ADVICE in advice["content"]
    assert "write_file" in observation["content"] and ADVICE not in observation["content"]  # the tool's own
