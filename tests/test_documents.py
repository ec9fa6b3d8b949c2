"""parse_document: real PDF, Word, PowerPoint and LaTeX files, written by the libraries that make
them, read from the workspace as text; paging, find, unknown kinds, broken files, a missing extra,
and a run from the pytest command line."""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_innovator.env import Limits, ResearchEnv
from pytest_innovator.task import load_task
from pytest_innovator.trajectory import read_trajectory
from pytest_innovator.workspace import LocalWorkspace

from .test_plugin import results_log
from .test_web_tools import web_task

pytest_plugins = ["pytester"]


def pdf_bytes() -> bytes:
    from reportlab.pdfgen import canvas

    buffer = io.BytesIO()
    pdf = canvas.Canvas(buffer)
    pdf.drawString(72, 720, "Results: accuracy 0.91 on the held-out set")
    pdf.showPage()
    pdf.drawString(72, 720, "Ablations: without warmup 0.84")
    pdf.save()
    return buffer.getvalue()


def docx_bytes() -> bytes:
    import docx

    document = docx.Document()
    document.add_heading("Experiment plan", level=1)
    document.add_paragraph("Train for 3 epochs with warmup.")
    table = document.add_table(rows=1, cols=2)
    table.rows[0].cells[0].text, table.rows[0].cells[1].text = "lr", "3e-4"
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def pptx_bytes() -> bytes:
    import pptx

    presentation = pptx.Presentation()
    for title, body in (("Motivation", "Long runs diverge"), ("Findings", "Warmup fixes it")):
        slide = presentation.slides.add_slide(presentation.slide_layouts[1])
        slide.shapes.title.text = title
        slide.placeholders[1].text = body
    buffer = io.BytesIO()
    presentation.save(buffer)
    return buffer.getvalue()


LATEX = rb"""\documentclass{article}
\begin{document}
\section{Method}
We set $\alpha = 0.5$ and use \textbf{warmup}. % a comment the reader never sees
\end{document}
"""


@pytest.fixture
def env(number_task_dir: Path, tmp_path: Path) -> Iterator[ResearchEnv]:
    toml = number_task_dir / "task.toml"
    toml.write_text(toml.read_text().replace('domain = "', 'tools = ["documents"]\ndomain = "', 1))
    docs = number_task_dir / "workspace" / "docs"
    docs.mkdir()
    for name, data in {
        "paper.pdf": pdf_bytes(),
        "plan.docx": docx_bytes(),
        "talk.pptx": pptx_bytes(),
        "paper.tex": LATEX,
        "broken.pdf": b"%PDF-1.4 this is not a PDF",
        "notes.odt": b"x",
        "long.tex": "".join(f"Line {n} of a long appendix.\n\n" for n in range(400)).encode(),
    }.items():
        (docs / name).write_bytes(data)
    task = load_task(number_task_dir)
    workspace, _ = LocalWorkspace.create(task, tmp_path / "run")
    limits = Limits(time_limit_s=300.0, step_limit=50, eval_budget=3, hints="off")
    environment = ResearchEnv(task, workspace, tmp_path / "run", limits, agent_name="test")
    yield environment
    workspace.close()


@pytest.mark.parametrize(
    ("path", "lines"),
    [
        ("docs/paper.pdf", ["--- PDF page 1 ---", "Results: accuracy 0.91 on the held-out set", "--- PDF page 2 ---"]),
        ("docs/plan.docx", ["Experiment plan", "Train for 3 epochs with warmup.", "lr | 3e-4"]),
        (
            "docs/talk.pptx",
            ["--- slide 1 ---", "Motivation", "Long runs diverge", "--- slide 2 ---", "Warmup fixes it"],
        ),
        ("docs/paper.tex", ["§ METHOD", "We set α = 0.5 and use warmup."]),
    ],
)
def test_each_kind_is_read_as_text(env: ResearchEnv, path: str, lines: list[str]) -> None:
    observation = env.step("parse_document", {"path": path})
    assert observation.ok, observation.output
    assert observation.output.splitlines()[0] == f"[{path}: page 1 of 1]"
    shown = [line.strip() for line in observation.output.splitlines()]
    assert all(line in shown for line in lines), observation.output
    assert "a comment" not in observation.output


def test_a_long_document_is_paged_and_searched(env: ResearchEnv) -> None:
    first = env.step("parse_document", {"path": "docs/long.tex"})
    pages = int(first.output.splitlines()[0].split(" of ")[1].rstrip("]"))
    assert pages > 2 and first.output.endswith("[page 2 follows: ask for page=2]")
    found = env.step("parse_document", {"path": "docs/long.tex", "find": "line 399 "})
    assert found.output.splitlines()[1:] == [f"[page {pages}] Line 399 of a long appendix."]


def test_what_cannot_be_read_is_an_error_observation(env: ResearchEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    unknown = env.step("parse_document", {"path": "docs/notes.odt"})
    assert (
        not unknown.ok and unknown.output == "docs/notes.odt: cannot parse .odt; known kinds: .pdf, .docx, .pptx, .tex"
    )
    broken = env.step("parse_document", {"path": "docs/broken.pdf"})
    assert not broken.ok and broken.output.startswith("docs/broken.pdf: not a readable PDF")
    missing = env.step("parse_document", {"path": "docs/absent.pdf"})
    assert not missing.ok
    monkeypatch.setitem(sys.modules, "docx", None)  # as where the documents extra is not installed
    no_extra = env.step("parse_document", {"path": "docs/plan.docx"})
    assert not no_extra.ok and no_extra.output == (
        "docs/plan.docx: parsing this kind of document needs python-docx: pip install 'pytest-innovator[documents]'"
    )


def test_a_document_read_from_the_pytest_command_line_goes_to_the_trajectory(pytester: pytest.Pytester) -> None:
    task = web_task(pytester.path / "suite", '["documents"]')
    (task / "workspace" / "plan.docx").write_bytes(docx_bytes())
    steps = [{"tool": "parse_document", "arguments": {"path": "plan.docx"}}, {"tool": "finish", "arguments": {}}]
    (pytester.path / "replay.jsonl").write_text("".join(json.dumps(s) + "\n" for s in steps))
    result = pytester.runpytest_subprocess("suite", "--innovator-agent=replay", "--innovator-replay=replay.jsonl")
    result.assert_outcomes(failed=1)  # the replay writes no answer
    record = results_log(pytester)[-1]
    assert record["final_status"] == "scored"
    run_dir = Path(record["run_dir"])
    (step,) = [s for s in read_trajectory(run_dir / "trajectory.jsonl") if s.get("tool") == "parse_document"]
    assert step["ok"] and "Train for 3 epochs with warmup." in step["observation"]
