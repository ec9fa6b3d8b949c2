"""An experiment task's hidden rubric (grader/rubric.toml): what the judge holds each phase to,
and the names the monitor forbids.

```toml
question = "Does label smoothing raise balanced accuracy under 30% label noise?"
forbidden = ["paper.pdf", "Rethinking the Inception Architecture"]   # the paper, its title or URL

[design]
constant = ["the model", "the optimiser and its learning rate", "the data and its noise"]
independent = ["the label smoothing factor: 0 and 0.1"]
dependent = ["balanced accuracy on the clean validation set"]

[[implementation]]
requirement = "the loss mixes the one-hot target with the uniform distribution by the factor"
file = "experiment.py"
lines = "20-30"

[execution]      # optional: what the rerun's output must show, beyond finishing
requirement = "results.json holds the balanced accuracy of both settings"

[conclusion]
expected_outcome = "Label smoothing raises balanced accuracy by a few points."
```
"""

from __future__ import annotations

import tomllib
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, ValidationError

if TYPE_CHECKING:
    from ..task import Task


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Design(_Strict):
    constant: tuple[str, ...] = Field(min_length=1)
    independent: tuple[str, ...] = Field(min_length=1)
    dependent: tuple[str, ...] = Field(min_length=1)


class Requirement(_Strict):
    requirement: str = Field(min_length=1)
    file: str = Field(min_length=1)  # the workspace file the removed code belongs in
    lines: str = ""  # e.g. "20-30", where the removed code was


class Execution(_Strict):
    requirement: str = "the script finished and its output shows the experiment ran and wrote its results"


class Conclusion(_Strict):
    expected_outcome: str = Field(min_length=1)


class Rubric(_Strict):
    question: str = Field(min_length=1)
    forbidden: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()  # starter files removed whole (EXP-Bench's masked source), which the agent recreates
    design: Design
    implementation: tuple[Requirement, ...] = Field(min_length=1)
    execution: Execution = Execution()
    conclusion: Conclusion

    def design_text(self) -> str:
        parts = [f"Research question: {self.question}", "The design names these variables (in any words):"]
        for kind in ("constant", "independent", "dependent"):
            parts += [f"- {kind}: {value}" for value in getattr(self.design, kind)]
        return "\n".join(parts)

    def implementation_text(self) -> str:
        parts = [f"Research question: {self.question}", "The implementation meets each requirement:"]
        if self.removed:
            parts.insert(1, f"These files were removed from the repository: {', '.join(self.removed)}")
        for r in self.implementation:
            where = f"{r.file}, lines {r.lines}" if r.lines else r.file
            parts.append(f"- {r.requirement} ({where})")
        return "\n".join(parts)

    def execution_text(self) -> str:
        return (
            f"Research question: {self.question}\nThe agent's reproduction script was rerun from a fresh copy of "
            f"the starter files plus the agent's changes. It passes when: {self.execution.requirement}."
        )

    def conclusion_text(self) -> str:
        return (
            f"Research question: {self.question}\nExpected outcome: {self.conclusion.expected_outcome}\n"
            "The conclusion passes when it agrees with the expected outcome and rests on the results shown."
        )


def load_rubric(task: Task) -> Rubric:
    """The task's rubric; ValueError says what is wrong (load_task checked it already)."""
    assert task.rubric_path is not None
    try:
        data = tomllib.loads(task.rubric_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"file grader/{task.spec.experiment.rubric} not found") from None  # type: ignore[union-attr]
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"not valid TOML: {exc}") from None
    try:
        return Rubric.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = ".".join(str(part) for part in error["loc"]) or "(top level)"
            message = "unknown key" if error["type"] == "extra_forbidden" else str(error["msg"])
            problems.append(f"{field}: {message.removeprefix('Value error, ')}")
        raise ValueError("; ".join(problems)) from None


def rubric_problems(task: Task) -> list[str]:
    """What load_task reports about an experiment task's rubric, each naming the rubric's field."""
    assert task.spec.experiment is not None
    try:
        rubric = load_rubric(task)
    except ValueError as exc:
        return [f"experiment.rubric: grader/{task.spec.experiment.rubric}: {exc}"]
    deliverables = set(task.spec.experiment.deliverables())
    named = {r.file for r in rubric.implementation}
    known = deliverables | set(rubric.removed)
    missing = sorted(f for f in named if f not in known and not (task.workspace_dir / f).exists())
    return [
        f"experiment.rubric: grader/{task.spec.experiment.rubric}: implementation.file {name!r} is neither a "
        "starter file in workspace/ nor a deliverable of [experiment]"
        for name in missing
    ]
