"""The default agent with nothing configured: react on the embedded model, through the plugin."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from pytest_innovator.llm.embedded import SERVER_MODULES, EmbeddedModelError, default_cache_dir, default_model_file

from .test_plugin import junit_properties

ROOT = Path(__file__).resolve().parent.parent


def embedded_model_missing() -> str | None:
    try:
        default_model_file()
    except EmbeddedModelError as exc:
        return str(exc)
    missing = [m for m in SERVER_MODULES if importlib.util.find_spec(m) is None]
    return f"needs {', '.join(missing)}" if missing else None


@pytest.mark.slow
@pytest.mark.skipif(
    embedded_model_missing() is not None, reason=f"embedded model unavailable: {embedded_model_missing()}"
)
def test_react_on_the_embedded_model_runs_a_mini_task(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # pytester gives the run a fresh HOME; keep the converted model's cache where it already is.
    monkeypatch.setenv("XDG_CACHE_HOME", str(default_cache_dir().parent.parent))
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    task = ROOT / "task_suites" / "mini" / "scaffold_construction"
    # 20 minutes x 0.05 = 60 s of working time: a call or two of the model, then the final evaluation.
    result = pytester.runpytest_subprocess(
        str(task),
        "--innovator-time-scale",
        "0.05",
        "--junitxml",
        "out.xml",
        "--innovator-results",
        str(pytester.path / "results"),
    )
    props = junit_properties(pytester.path / "out.xml")["scaffold_construction"]
    assert props["innovator_agent"].startswith("react@"), result.stdout.str()[-2000:]
    assert props["model"] == "smollm2-135m-instruct"
    assert int(props["llm_calls"]) >= 1 and int(props["tokens_in"]) > 0 and int(props["tokens_out"]) > 0
    assert props["final_status"] == "scored"  # the final evaluation ran, whatever the model did
    run_dir = Path(props["run_dir"])
    calls = [json.loads(line) for line in (run_dir / "trajectory.jsonl").read_text().splitlines()]
    assert any(r.get("event") == "llm_call" for r in calls)
    # The embedded server enforces tool calls, so every reply the model gave was an action.
    assert props["tool_protocol"] == "native"
    assert int(props["replies"]) >= 1 and props["action_replies"] == props["replies"]
