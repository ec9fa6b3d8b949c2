"""The judge: a model asked, once per phase, whether a deliverable meets the phase's rubric.

It answers in a JSON schema (a verdict and its reasons), at temperature 0 with a seed, optionally
k times with the majority deciding. Its endpoint and model are the user's choice apart from the
agent's, and its tokens and cost are counted apart (`Judge.usage`). Faults that pass (rate limits,
timeouts, dropped connections) are retried by the client; a malformed answer is asked for again.
What persists is a `JudgeFailure`: the grader failed, which is never the agent's zero.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..errors import InnovatorError
from ..llm.client import LLMClient, LLMError, RequestRefused, Usage

PHASES = ("design", "implementation", "execution", "conclusion")

VERDICT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "verdict": {"type": "string", "enum": ["pass", "fail"]},
        "reasons": {"type": "string"},
    },
    "required": ["verdict", "reasons"],
    "additionalProperties": False,
}

SYSTEM_PROMPT = (
    "You judge one phase of a research experiment that an AI agent carried out. You are given the "
    "phase's rubric, written by the people who ran the experiment, and what the agent delivered for "
    "that phase. Decide whether the deliverable meets every requirement of the rubric; a partial or "
    "vague deliverable fails. Answer only with a JSON object: "
    '{"verdict": "pass" or "fail", "reasons": "which requirements are met or missed, and why"}.'
)


class JudgeFailure(InnovatorError):
    """The judge gave no usable verdict: a grader failure, not the agent's zero."""


@dataclass(frozen=True)
class Verdict:
    phase: str
    passed: bool
    reasons: str
    votes: tuple[bool, ...]  # one per sample; the majority decides (a tie fails)


class Judge:
    def __init__(self, client: LLMClient, *, samples: int = 1, seed: int = 0, malformed_retries: int = 2):
        if samples < 1:
            raise ValueError("samples must be at least 1")
        self.client = client
        self.samples = samples
        self.seed = seed
        self.malformed_retries = malformed_retries
        self._takes_seed = True  # until the endpoint refuses it

    @property
    def usage(self) -> Usage:
        return self.client.usage

    def judge(self, phase: str, rubric: str, deliverable: str) -> Verdict:
        if phase not in PHASES:
            raise ValueError(f"unknown phase {phase!r}; phases: {', '.join(PHASES)}")
        messages = [
            {"role": "system", "content": SYSTEM_PROMPT},
            {
                "role": "user",
                "content": f"Phase: {phase}\n\n## Rubric\n\n{rubric.strip()}\n\n"
                f"## What the agent delivered\n\n{deliverable.strip() or '(nothing)'}",
            },
        ]
        answers = [self._ask(phase, messages, self.seed + sample) for sample in range(self.samples)]
        votes = tuple(answer["verdict"] == "pass" for answer in answers)
        passed = sum(votes) * 2 > len(votes)
        reasons = next(a["reasons"] for a in answers if (a["verdict"] == "pass") == passed)
        return Verdict(phase, passed, reasons, votes)

    def _ask(self, phase: str, messages: list[dict[str, Any]], seed: int) -> dict[str, str]:
        problems = []
        for _ in range(self.malformed_retries + 1):
            try:
                content = self._complete(messages, seed)
            except LLMError as exc:
                raise JudgeFailure(f"the judge gave no verdict on the {phase}: {exc}") from None
            answer, problem = parse_verdict(content)
            if answer is not None:
                return answer
            problems.append(problem)
        raise JudgeFailure(
            f"the judge's answers on the {phase} were malformed {len(problems)} times in a row "
            f"(last: {problems[-1]}); check --innovator-judge-model and its endpoint"
        )

    def _complete(self, messages: list[dict[str, Any]], seed: int) -> str:
        parameters: dict[str, Any] = {
            "temperature": 0,
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "verdict", "schema": VERDICT_SCHEMA, "strict": True},
            },
        }
        if self._takes_seed:
            try:
                return self.client.complete(messages, **parameters, seed=seed).content
            except RequestRefused as exc:
                if "seed" not in str(exc).lower():
                    raise
                self._takes_seed = False
        return self.client.complete(messages, **parameters).content


def parse_verdict(content: str) -> tuple[dict[str, str] | None, str]:
    """The verdict object in a judge's answer, or None and what is wrong with it."""
    text = content.strip()
    if text.startswith("```"):  # a fenced answer from an endpoint that ignores response_format
        text = text.strip("`").removeprefix("json").strip()
    try:
        answer = json.loads(text)
    except json.JSONDecodeError:
        return None, f"not JSON: {content[:120]!r}"
    if not isinstance(answer, dict) or answer.get("verdict") not in ("pass", "fail"):
        return None, f"no verdict 'pass' or 'fail': {content[:120]!r}"
    reasons = answer.get("reasons")
    return {"verdict": answer["verdict"], "reasons": reasons if isinstance(reasons, str) else ""}, ""
