"""Document parsing: `parse_document(path, page, find)` turns a PDF, Word (.docx), PowerPoint
(.pptx) or LaTeX (.tex) file of the workspace into text, paged as open_page pages a web page.

The harness reads the file through the workspace (any backend) and parses it with a library made
for the format: pypdf, python-docx, python-pptx, pylatexenc (the `documents` extra). No model.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import PurePosixPath
from typing import TYPE_CHECKING

from pydantic import Field

from ..errors import InnovatorError, pip_hint
from ..tools import Observation, Tool, ToolArgs
from .web import PAGE_CHARS, paged_observation

if TYPE_CHECKING:
    from ..env import ResearchEnv


class DocumentError(InnovatorError):
    """The file cannot be parsed: the message says why (a missing extra, a broken file)."""


def _needs(module: str) -> DocumentError:
    return DocumentError(f"parsing this kind of document needs {module}: {pip_hint('documents')}")


def pdf_text(data: bytes) -> str:
    try:
        from pypdf import PdfReader
        from pypdf.errors import PyPdfError
    except ImportError:
        raise _needs("pypdf") from None
    try:
        reader = PdfReader(io.BytesIO(data))
        pages = [page.extract_text() or "" for page in reader.pages]
    except (PyPdfError, ValueError, KeyError) as exc:
        raise DocumentError(f"not a readable PDF ({type(exc).__name__}: {exc})") from None
    return "\n\n".join(f"--- PDF page {n} ---\n{text}" for n, text in enumerate(pages, 1))


def docx_text(data: bytes) -> str:
    try:
        import docx
    except ImportError:
        raise _needs("python-docx") from None
    try:
        document = docx.Document(io.BytesIO(data))
    except Exception as exc:  # python-docx raises zipfile, lxml and its own errors for a broken file
        raise DocumentError(f"not a readable .docx file ({type(exc).__name__}: {exc})") from None
    parts = [paragraph.text for paragraph in document.paragraphs]
    for table in document.tables:
        parts += [" | ".join(cell.text for cell in row.cells) for row in table.rows]
    return "\n".join(parts)


def pptx_text(data: bytes) -> str:
    try:
        import pptx
    except ImportError:
        raise _needs("python-pptx") from None
    try:
        presentation = pptx.Presentation(io.BytesIO(data))
    except Exception as exc:  # as for .docx: zipfile, lxml and the library's own errors
        raise DocumentError(f"not a readable .pptx file ({type(exc).__name__}: {exc})") from None
    slides = []
    for number, slide in enumerate(presentation.slides, 1):
        texts = [shape.text_frame.text for shape in slide.shapes if shape.has_text_frame]
        slides.append(f"--- slide {number} ---\n" + "\n".join(texts))
    return "\n\n".join(slides)


def latex_text(data: bytes) -> str:
    try:
        from pylatexenc.latex2text import LatexNodes2Text
    except ImportError:
        raise _needs("pylatexenc") from None
    return LatexNodes2Text().latex_to_text(data.decode("utf-8", "replace"))


READERS: dict[str, Callable[[bytes], str]] = {
    ".pdf": pdf_text,
    ".docx": docx_text,
    ".pptx": pptx_text,
    ".tex": latex_text,
}


class ParseDocument(ToolArgs):
    path: str = Field(min_length=1, description="The document in the workspace: .pdf, .docx, .pptx or .tex.")
    page: int = Field(1, ge=1, description=f"Which page of the text to show ({PAGE_CHARS} characters each).")
    find: str | None = Field(
        None, min_length=1, description="Show only the lines containing this text (any case), with their page numbers."
    )


def parse_document(env: ResearchEnv, a: ParseDocument) -> Observation:
    kind = PurePosixPath(a.path).suffix.lower()
    reader = READERS.get(kind)
    if reader is None:
        known = ", ".join(READERS)
        return Observation(
            "parse_document", False, f"{a.path}: cannot parse {kind or 'a file without a suffix'}; known kinds: {known}"
        )
    data = env.workspace.read_file(a.path)
    try:
        text = reader(data)
    except DocumentError as exc:
        return Observation("parse_document", False, f"{a.path}: {exc}")
    return paged_observation("parse_document", a.path, text, a.page, a.find)


TOOLS = [
    Tool(
        "parse_document",
        f"Read a PDF, Word, PowerPoint or LaTeX file of the workspace as text, {PAGE_CHARS} characters a page; "
        "with `find`, the lines containing a text and their page numbers.",
        ParseDocument,
        parse_document,
    )
]
