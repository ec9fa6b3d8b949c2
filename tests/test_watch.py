"""`pytest-innovator watch`: the live page of a running item, in headless Chromium, while pytest
runs the item with the react agent on the scripted LLM server."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pytest_innovator.cli import main as cli
from pytest_innovator.reporting.watch import collect_items
from pytest_innovator.rundir import RunDir

from .scripted_llm import RecordedRequest, ScriptedLLMServer
from .test_guidance import call, trajectory
from .test_html_report import browser  # noqa: F401
from .test_memory import pytest_command
from .test_plugin import add_task

ADVICE = "Check the data loader first: </script><b>bold</b> & more."


class GatedServer(ScriptedLLMServer):
    """An exchange with ``gate: NAME`` is answered only once the test opens that gate."""

    def __init__(self, exchanges: list[dict[str, Any]]):
        super().__init__({"exchanges": exchanges})
        self.gates = {e["gate"]: threading.Event() for e in exchanges if "gate" in e}

    def _take(
        self, body: dict[str, Any], headers: dict[str, str], received_at: float
    ) -> tuple[RecordedRequest, dict[str, Any] | None]:
        request, exchange = super()._take(body, headers, received_at)
        if exchange and "gate" in exchange:
            self.gates[exchange["gate"]].wait(60)
        return request, exchange


def wait_until(what: str, condition: Callable[[], Any], *processes: subprocess.Popen[Any]) -> Any:
    deadline = time.monotonic() + 45
    while not (value := condition()):
        assert time.monotonic() < deadline, f"never saw: {what}"
        for process in processes:
            assert process.poll() is None, f"{process.args} ended before: {what}"
        time.sleep(0.1)
    return value


def post(url: str, body: dict[str, Any], token: str | None) -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": "application/json", **({"X-Watch-Token": token} if token else {})}
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def card_state(driver: Any, item_id: str) -> dict[str, Any] | None:
    return driver.execute_script(
        """const card = [...document.querySelectorAll('section.item')].find(c => c.dataset.item === arguments[0]);
        if (!card) return null;
        return {title: card.querySelector('.title').textContent,
                evaluations: [...card.querySelectorAll('.evaluation')].map(e => e.textContent),
                tail: card.querySelector('.tail').textContent,
                tail_bold: card.querySelectorAll('.tail b').length,
                notice: card.querySelector('.notice').textContent,
                loaded: window.loadedOnce === true};""",
        item_id,
    )


@pytest.mark.slow
def test_the_live_page_shows_a_new_evaluation_and_delivers_guidance_typed_into_it(
    tmp_path: Path,
    browser: Any,  # noqa: F811
) -> None:
    from selenium.webdriver.common.by import By

    add_task(tmp_path / "suite", "watched")
    exchanges = [
        call("write_file", path="answer.txt", content="0.9"),
        {"gate": "evaluate", **call("evaluate")},
        {"gate": "guidance", **call("think", thought="what next")},
        {"expect": {"last_role": "user", "last_contains": [ADVICE]}, **call("finish", summary="done")},
    ]
    results = tmp_path / "results"
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    with GatedServer(exchanges) as llm:
        run = subprocess.Popen(
            pytest_command(llm, str(results)),
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        page: subprocess.Popen[str] | None = None
        try:
            wait_until("the agent waiting for its evaluation's answer", lambda: len(llm.requests) >= 2, run)
            page = subprocess.Popen(
                [sys.executable, "-m", "pytest_innovator.cli", "watch", str(results)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            line = page.stdout.readline()  # type: ignore[union-attr]
            assert line.startswith(f"watching {results}: http://127.0.0.1:"), line + page.stderr.read()  # type: ignore[union-attr]
            url = line.rsplit(" ", 1)[1].strip()
            base, token = url.split("/?token=")
            [item_dir] = list((results / "runs").glob("*/watched"))
            item_id = f"{item_dir.parent.name}/watched"

            browser.get(url)
            browser.execute_script("window.loadedOnce = true")
            before = wait_until("the running item on the page", lambda: card_state(browser, item_id), run, page)
            assert "running" in before["title"] and before["evaluations"] == []

            llm.gates["evaluate"].set()
            after = wait_until(
                "the evaluation on the page", lambda: (s := card_state(browser, item_id)) and s["evaluations"] and s
            )
            assert after["loaded"]  # the same page, not a reload
            [evaluation] = after["evaluations"]
            assert "agent at step 2: scored, score 80.0" in evaluation  # the number task scores 0.9 as 80

            wait_until("the agent waiting after its evaluation", lambda: len(llm.requests) >= 3, run)
            card = browser.find_element(By.CSS_SELECTOR, f'section.item[data-item="{item_id}"]')
            card.find_element(By.CSS_SELECTOR, "input.author").send_keys("ada")
            card.find_element(By.CSS_SELECTOR, "textarea.guidance-text").send_keys(ADVICE)
            card.find_element(By.CSS_SELECTOR, "button.send").click()
            wait_until("the page's answer", lambda: "sent" in card_state(browser, item_id)["notice"])
            card.find_element(By.CSS_SELECTOR, "button.pause").click()
            wait_until("the paused item", lambda: "(paused)" in card_state(browser, item_id)["title"])
            assert RunDir(item_dir).pause_request.exists()
            card.find_element(By.CSS_SELECTOR, "button.resume").click()
            wait_until("the released item", lambda: "paused" not in card_state(browser, item_id)["title"])
            assert not RunDir(item_dir).pause_request.exists()
            llm.gates["guidance"].set()

            output, _ = run.communicate(timeout=60)
            assert run.returncode == 0, output[-3000:]
            assert not llm.failures, llm.failures
            assert llm.requests[3].messages[-1]["role"] == "user" and ADVICE in llm.requests[3].messages[-1]["content"]
            [event] = [r for r in trajectory(item_dir) if r.get("event") == "guidance"]
            assert (event["step"], event["author"], event["text"]) == (3, "ada", ADVICE)

            shown = wait_until(
                "the finished item", lambda: (s := card_state(browser, item_id)) and "finished" in s["title"] and s
            )
            assert ADVICE in shown["tail"] and shown["tail_bold"] == 0  # the text, not markup

            card.find_element(By.CSS_SELECTOR, "input.mark-step").send_keys("3")
            card.find_element(By.CSS_SELECTOR, "input.mark-reason").send_keys("thought instead of reading")
            card.find_element(By.CSS_SELECTOR, "button.mark-drop").click()
            wait_until("the mark's answer", lambda: "marked drop" in card_state(browser, item_id)["notice"])
            [marked] = [s for s in json.loads((item_dir / "labels.json").read_text())["steps"] if s["step"] == 3]
            assert (marked["label"], marked["source"]) == ("drop", "person:ada")

            status, answer = post(f"{base}/api/guide", {"item": item_id, "text": "more"}, token)
            assert status == 409 and "has ended" in answer["error"]
            status, answer = post(f"{base}/api/guide", {"item": "../../etc", "text": "more"}, token)
            assert status == 409 and "no item" in answer["error"]
            for bad_token in (None, token[:-1] + ("A" if token[-1] != "A" else "B")):
                assert post(f"{base}/api/pause", {"item": item_id}, bad_token)[0] == 401
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(f"{base}/api/items", timeout=10)
            assert refused.value.code == 401
        finally:
            for process in (run, page):
                if process is not None and process.poll() is None:
                    process.kill()
                    process.communicate()


def test_watch_refuses_a_missing_directory_and_a_port_in_use(tmp_path: Path, capsys: Any) -> None:
    assert cli(["watch", str(tmp_path / "nowhere")]) == 1
    assert "is not a directory; give the directory passed to --innovator-results" in capsys.readouterr().err
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        assert cli(["watch", str(tmp_path), "--port", str(taken.getsockname()[1])]) == 1
    assert "give another --port, or 0 for any free one" in capsys.readouterr().err


def test_the_page_lists_the_latest_run_and_earlier_items_that_have_not_ended(tmp_path: Path) -> None:
    for run_id, task, ended in (
        ("20261201-000000-aaaaaa", "old_done", True),
        ("20261201-000000-aaaaaa", "old_running", False),
        ("20261202-000000-bbbbbb", "new_done", True),
    ):
        item = RunDir.of(tmp_path, run_id, task)
        item.path.mkdir(parents=True)
        item.trajectory.write_text(json.dumps({"type": "header", "task": task, "limits": {}}) + "\n")
        if ended:
            item.result.write_text(json.dumps({"score_final": 10.0, "end_reason": "finished"}))
    listed = [(i["id"], i["state"]) for i in collect_items(tmp_path)]
    assert listed == [
        ("20261201-000000-aaaaaa/old_running", "running"),
        ("20261202-000000-bbbbbb/new_done", "finished"),
    ]
