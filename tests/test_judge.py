"""The experiment judge against a scripted server speaking the OpenAI protocol on 127.0.0.1."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pytest_innovator.experiments.judge import Judge, JudgeFailure
from pytest_innovator.llm.client import LLMClient, RetryPolicy

from .scripted_llm import ScriptedLLMServer

RUBRIC = "The design names the label noise rate as constant and the smoothing factor as independent."


def verdict(answer: str, reasons: str = "as the rubric asks") -> dict[str, Any]:
    return {
        "respond": {
            "content": json.dumps({"verdict": answer, "reasons": reasons}),
            "usage": {"prompt_tokens": 300, "completion_tokens": 20},
        }
    }


def judge_on(server: ScriptedLLMServer, **options: Any) -> Judge:
    client = LLMClient(
        model="judge-model", base_url=server.base_url, api_key="k", retry=RetryPolicy(retries=2, base_delay_s=0.01)
    )
    return Judge(client, **options)


def test_a_verdict_is_asked_in_a_schema_at_temperature_zero_and_counted_apart() -> None:
    with ScriptedLLMServer({"exchanges": [verdict("pass", "both variables named")]}) as server:
        result = judge_on(server).judge("design", RUBRIC, "constant: noise 0.2; independent: smoothing")
        body = server.requests[0].body
    assert result.passed and result.reasons == "both variables named" and result.votes == (True,)
    assert body["temperature"] == 0 and body["seed"] == 0
    assert body["response_format"]["json_schema"]["schema"]["required"] == ["verdict", "reasons"]
    assert RUBRIC in server.requests[0].text and "smoothing" in server.requests[0].text


def test_a_failing_verdict_fails_the_phase() -> None:
    with ScriptedLLMServer({"exchanges": [verdict("fail", "no independent variable")]}) as server:
        result = judge_on(server).judge("design", RUBRIC, "we trained a model")
    assert not result.passed and result.reasons == "no independent variable"


def test_k_samples_with_different_seeds_and_the_majority_decides() -> None:
    exchanges = [verdict("pass"), verdict("fail", "misses the seed"), verdict("fail", "misses the seed")]
    with ScriptedLLMServer({"exchanges": exchanges}) as server:
        judge = judge_on(server, samples=3, seed=7)
        result = judge.judge("implementation", RUBRIC, "diff")
        seeds = [request.body["seed"] for request in server.requests]
    assert result.votes == (True, False, False) and not result.passed and result.reasons == "misses the seed"
    assert seeds == [7, 8, 9]
    assert judge.usage.calls == 3 and judge.usage.tokens_in == 900


def test_a_malformed_answer_is_asked_again() -> None:
    exchanges = [
        {"respond": {"content": "I think it passes."}},
        {"respond": {"content": '{"verdict": "maybe"}'}},
        verdict("pass"),
    ]
    with ScriptedLLMServer({"exchanges": exchanges}) as server:
        assert judge_on(server).judge("conclusion", RUBRIC, "smoothing helps").passed
        assert len(server.requests) == 3


def test_garbage_that_persists_is_a_judge_failure() -> None:
    with ScriptedLLMServer({"exchanges": [{"times": 3, "respond": {"content": "garbage"}}]}) as server:
        with pytest.raises(JudgeFailure, match="conclusion were malformed 3 times.*garbage"):
            judge_on(server).judge("conclusion", RUBRIC, "smoothing helps")


def test_a_rate_limit_is_waited_out_and_one_that_persists_is_a_judge_failure() -> None:
    limited = {"respond": {"status": 429, "error": "rate limited", "headers": {"Retry-After": "0"}}}
    with ScriptedLLMServer({"exchanges": [limited, verdict("pass")]}) as server:
        assert judge_on(server).judge("design", RUBRIC, "d").passed
    with ScriptedLLMServer({"exchanges": [{**limited, "times": 3}]}) as server:
        with pytest.raises(JudgeFailure, match="no verdict on the design.*HTTP 429"):
            judge_on(server).judge("design", RUBRIC, "d")


def test_an_endpoint_that_refuses_a_seed_is_asked_without_one() -> None:
    refused = {"respond": {"status": 400, "error": "Unsupported parameter: 'seed'"}}
    with ScriptedLLMServer({"exchanges": [refused, verdict("pass"), verdict("pass")]}) as server:
        judge = judge_on(server)
        assert judge.judge("design", RUBRIC, "d").passed and judge.judge("design", RUBRIC, "d").passed
        assert ["seed" in request.body for request in server.requests] == [True, False, False]
