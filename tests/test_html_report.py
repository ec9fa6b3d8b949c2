"""The HTML report of real runs, opened in headless Chromium (Debian's chromium and chromium-driver,
driven with Selenium)."""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_innovator.reporting.html_report import ReportError, write_report
from pytest_innovator.reporting.result_inputs import read_input

from .benchmark_runs import EVALUATE, FINISH, answer, make_task, run_pytest, write_replays

pytest.importorskip("matplotlib", reason="the HTML report needs matplotlib (the 'report' extra)")

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
BROWSER_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,1600",
]
TRICKY_THOUGHT = "compare </script><script>document.title='broken'</script> & <b>bold</b>"


@pytest.fixture
def browser(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        pytest.skip(
            f"headless Chromium is not installed ({CHROMIUM}, {CHROMEDRIVER}): apt-get install chromium chromium-driver"
        )
    pytest.importorskip("selenium", reason="the browser test drives Chromium with selenium (the 'report' extra)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    # Selenium Manager must neither download a driver nor report usage: both paths are given.
    monkeypatch.setenv("SE_AVOID_STATS", "true")
    monkeypatch.setenv("SE_OFFLINE", "true")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in BROWSER_FLAGS:
        options.add_argument(flag)
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        options.add_argument(f"--user-data-dir={profile}")
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        try:
            yield driver
        finally:
            driver.quit()


def rows(driver: Any, selector: str) -> list[list[str]]:
    return driver.execute_script(
        "return [...document.querySelectorAll(arguments[0])].map(r => [...r.cells].map(c => c.textContent))", selector
    )


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real run of two items: evaluations, the hint, a thought, a session command."""
    root = tmp_path_factory.mktemp("report")
    make_task(root / "suite", "alpha")
    make_task(root / "suite", "beta", domain="loss_design")
    replays = write_replays(
        root / "replays",
        {
            "alpha": [
                {"tool": "think", "arguments": {"thought": TRICKY_THOUGHT}},
                {"tool": "create_session", "arguments": {"name": "train"}},
                {
                    "tool": "run_command",
                    "arguments": {"session": "train", "command": "echo training; echo 0.55 > answer.txt", "wait": 10},
                },
                EVALUATE,
                {"tool": "view_hint"},
                answer(0.8),
                EVALUATE,
                FINISH,
            ],
            "beta": [answer(0.3), FINISH],
        },
    )
    done = run_pytest(
        root,
        "suite",
        "--innovator-agent",
        "replay",
        "--innovator-replay",
        str(replays),
        "--innovator-hints",
        "tool",
        "--innovator-results",
        "results",
    )
    [run] = list((root / "results" / "runs").iterdir())
    assert f"report: {run / 'report.html'}" in done.stdout.splitlines()  # every run writes its own
    return run


@pytest.mark.slow  # the run behind it takes a few seconds
def test_the_report_is_self_contained(run_dir: Path) -> None:
    report = write_report(run_dir)
    assert report == run_dir / "report.html"
    html = report.read_text()
    assert not re.search(r"<(script|img|link|iframe)[^>]+(src|href)=", html)  # nothing to fetch
    assert not re.search(r'href="(https?:)?//', html)
    assert TRICKY_THOUGHT not in html  # the raw "</script>" would have ended a JSON block
    assert '<a href="alpha/sessions/train.log">train.log</a>' in html
    elsewhere = write_report(run_dir, run_dir.parent.parent / "reports" / "run.html")
    assert f'href="../runs/{run_dir.name}/alpha/sessions/train.log"' in elsewhere.read_text()


def test_a_directory_without_items_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match="no item directories.*<results>/runs/<run id>"):
        write_report(tmp_path)


@pytest.mark.slow
def test_the_report_in_chromium(run_dir: Path, browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    report = run_dir / "report.html"  # as the run wrote it at its end
    results = {r["innovator_task"]: r for r in read_input(run_dir.parent.parent)}
    lines = [json.loads(line) for line in (run_dir / "alpha" / "trajectory.jsonl").read_text().splitlines()]
    browser.get(report.as_uri())
    assert browser.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1"
    assert browser.title == f"pytest-innovator run {run_dir.name}"

    [agent] = rows(browser, "#agents-table tbody tr")
    mean_final = (results["alpha"]["score_final"] + results["beta"]["score_final"]) / 2
    assert agent[0] == "replay@1" and agent[2] == f"{mean_final:.1f}"
    items = {r[0]: r for r in rows(browser, "#items-table tbody tr")}
    assert set(items) == {"alpha", "beta"}
    for task, cells in items.items():
        assert cells[3] == results[task]["outcome"]
        assert (cells[4], cells[5]) == (f"{results[task]['score_final']:.1f}", f"{results[task]['score_best']:.1f}")
        assert cells[7] == ("yes" if results[task]["hint_used"] else "no")
    evaluations = rows(browser, "#evaluations-0 tbody tr")
    assert [e[1] for e in evaluations] == ["agent", "agent", "final"]
    assert evaluations[-1][6] == f"{results['alpha']['score_final']:.2f}"

    # Click a step: its arguments and observation are shown.
    step = next(line for line in lines if line.get("tool") == "run_command")
    row = browser.find_element(By.XPATH, f"//div[@id='steps']/div[span[@class='n' and text()='#{step['step']}']]")
    row.click()
    detail = browser.find_element(By.CSS_SELECTOR, "#steps .detail")
    assert detail.is_displayed()
    assert detail.find_element(By.CSS_SELECTOR, "pre.observation").text == step["observation"].strip()
    assert (
        detail.find_element(By.LINK_TEXT, "session log of train")
        .get_attribute("href")
        .endswith("/alpha/sessions/train.log")
    )
    thought = browser.find_element(By.CSS_SELECTOR, "#steps .tool-think .sum").text
    assert TRICKY_THOUGHT[:40] in thought and browser.title.startswith("pytest-innovator")

    # Filter by tool, then jump to the hint from anywhere.
    Select(browser.find_element(By.ID, "filter")).select_by_value("evaluate")
    tools = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#steps .step .tool")]
    assert tools == ["evaluate", "evaluate"]
    hint_step = next(line["step"] for line in lines if line.get("tool") == "view_hint")
    browser.find_element(By.ID, "jump").send_keys(str(hint_step))
    browser.find_element(By.ID, "jump-go").click()
    shown = browser.find_element(By.CSS_SELECTOR, "#steps .detail")
    assert shown.text.startswith(f"step {hint_step} · view_hint · ok")
    assert browser.find_element(By.ID, "filter").get_attribute("value") == ""  # the filter hid it: reset

    # The second item, through the item selector.
    Select(browser.find_element(By.ID, "item")).select_by_value("1")
    assert [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#steps .step .tool")][:2] == [
        "write_file",
        "finish",
    ]
    assert not [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    browser.save_screenshot(str(tmp_path / "report.png"))
    assert (tmp_path / "report.png").stat().st_size > 10_000


@pytest.mark.slow
def test_a_5000_step_trajectory_and_200_mb_of_logs(browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    calls = [{"tool": "create_session", "arguments": {"name": "train"}}]
    calls += [
        {"tool": "think", "arguments": {"thought": f"idea {i}"}} if i % 2 else answer(0.2 + i / 10_000)
        for i in range(4_997)
    ]
    calls += [EVALUATE, FINISH]
    make_task(tmp_path / "suite", "long")
    replays = write_replays(tmp_path / "replays", {"long": calls})
    run_pytest(
        tmp_path,
        "suite",
        "--innovator-agent",
        "replay",
        "--innovator-replay",
        str(replays),
        "--innovator-max-steps",
        "6000",
        "--innovator-results",
        "results",
    )
    [run] = list((tmp_path / "results" / "runs").iterdir())
    with open(run / "long" / "sessions" / "train.log", "r+b") as log:  # 200 MB of output (sparse on disk)
        log.truncate(200 * 1024 * 1024)
    report = write_report(run)
    assert report.stat().st_size < 10 * 1024 * 1024
    assert 'train.log</a> <span class="muted">(200.0 MB)</span>' in report.read_text()

    browser.get(report.as_uri())
    assert browser.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1"
    assert len(browser.find_elements(By.CSS_SELECTOR, "#steps .step")) == 200
    info = browser.find_element(By.ID, "page-info").text
    assert info.startswith("page 1 of ") and info.endswith(" rows")
    browser.find_element(By.ID, "jump").send_keys("4321")
    browser.find_element(By.ID, "jump-go").click()
    detail = browser.find_element(By.CSS_SELECTOR, "#steps .detail")
    assert detail.is_displayed() and detail.text.startswith("step 4321 · ")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#steps .step")) == 200
    assert browser.execute_script("return document.getElementsByClassName('detail').length") == 1
    browser.find_element(By.ID, "next").click()
    first = browser.find_element(By.CSS_SELECTOR, "#steps .step .n").text
    assert int(first.lstrip("#·")) > 4321
    browser.save_screenshot(str(tmp_path / "long.png"))
