"""What the web and literature tools reach outside the workspace through: the HTTP APIs' shared
client and error handling, the offline corpus, and the services a run builds from its options.

The harness process makes every request: keys come from its environment (named in KEY_ENVS) and
never reach the agent's sessions, whose environment drops every variable named like a secret
(workspace.command_environment). httpx is imported only when a live provider is configured.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InnovatorError, pip_hint

if TYPE_CHECKING:
    import httpx

# Each live API's key variable (Semantic Scholar's is optional: without it, the shared rate limit).
KEY_ENVS = {"serper": "SERPER_API_KEY", "bing": "BING_SEARCH_API_KEY", "semantic_scholar": "SEMANTIC_SCHOLAR_API_KEY"}
DEFAULT_BASE_URLS = {
    "serper": "https://google.serper.dev",
    "bing": "https://api.bing.microsoft.com",
    "semantic_scholar": "https://api.semanticscholar.org",
    "arxiv": "https://export.arxiv.org",
}
SEARCH_PROVIDERS = ("serper", "bing", "offline")
LITERATURE_PROVIDERS = ("semantic_scholar", "arxiv", "offline")
TIMEOUT_S = 30.0
RESULTS = 10  # hits a search returns
USER_AGENT = "pytest-innovator (research-agent benchmark harness)"


class ProviderError(InnovatorError):
    """A provider failed (refused key, rate limit, timeout, malformed answer): the agent sees
    the message as an error observation."""


class CorpusError(InnovatorError):
    """The offline corpus file is not what it must be: the message names the line."""


def http_client() -> httpx.Client:
    try:
        import httpx
    except ImportError:
        raise InnovatorError(f"live providers need the web extra: {pip_hint('web')}") from None

    return httpx.Client(timeout=TIMEOUT_S, follow_redirects=True, headers={"User-Agent": USER_AGENT})


def request(
    client: httpx.Client,
    provider: str,
    method: str,
    url: str,
    *,
    stream: bool = False,
    follow_redirects: bool = True,
    **kwargs: Any,
) -> httpx.Response:
    """The provider's answer; a failure of any kind is a ProviderError that says what happened.
    With `stream`, a successful answer's body is left unread (the caller reads and closes it)."""
    import httpx

    try:
        request = client.build_request(method, url, **kwargs)
        response = client.send(request, stream=stream, follow_redirects=follow_redirects)
        status = response.status_code
        if status >= 400 and stream:
            response.read()
            response.close()
    except httpx.TimeoutException:
        raise ProviderError(f"{provider} did not answer within {TIMEOUT_S:.0f} s; try again later") from None
    except httpx.HTTPError as exc:
        raise ProviderError(f"{provider} could not be reached ({type(exc).__name__}: {exc})") from None
    if status < 400:
        return response
    detail = " ".join(response.text.split())[:200]
    if status in (401, 403) and provider in KEY_ENVS:
        raise ProviderError(
            f"{provider} refused the harness's key (HTTP {status}: {detail}); "
            f"this tool will not work in this run (the run must set a valid ${KEY_ENVS[provider]})"
        )
    if status == 429:
        raise ProviderError(f"{provider} is rate limiting (HTTP 429: {detail}); wait a while before the next call")
    raise ProviderError(f"{provider} answered HTTP {status}: {detail}")


def json_body(response: httpx.Response, provider: str) -> Any:
    try:
        return response.json()
    except ValueError:
        raise ProviderError(
            f"{provider} answered with malformed JSON: {' '.join(response.text.split())[:120]!r}"
        ) from None


def malformed(provider: str, exc: Exception) -> ProviderError:
    """A JSON answer without the fields the API's format promises."""
    return ProviderError(f"{provider} answered in an unexpected format ({type(exc).__name__}: {exc})")


# --- the offline corpus ----------------------------------------------------------------------


@dataclass(frozen=True)
class CorpusEntry:
    url: str
    title: str
    text: str
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. authors, year for literature_search


class Corpus:
    """Pages from a JSONL file (one object a line: url, title, text; other keys kept as extra),
    searched by BM25 (memory's) over title and text, opened by URL. For air-gapped runs and tests."""

    def __init__(self, path: Path):
        self.path = path
        self.entries: list[CorpusEntry] = []
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                self.entries.append(self._entry(line, number))
        if not self.entries:
            raise CorpusError(f"{path}: the offline corpus holds no entries (one JSON object a line: url, title, text)")
        self.by_url = {entry.url: entry for entry in self.entries}
        self._documents = [f"{e.title} {e.title} {e.text}" for e in self.entries]  # the title counts twice

    def _entry(self, line: str, number: int) -> CorpusEntry:
        where = f"{self.path}:{number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise CorpusError(f"{where}: not JSON ({exc})") from None
        if not isinstance(record, dict):
            raise CorpusError(f"{where}: must be a JSON object with url, title and text")
        missing = [k for k in ("url", "title", "text") if not isinstance(record.get(k), str)]
        if missing:
            raise CorpusError(f"{where}: {', '.join(missing)} missing or not a string")
        url, title, text = record.pop("url"), record.pop("title"), record.pop("text")
        return CorpusEntry(url, title, text, record)

    def search(self, query: str, count: int = RESULTS) -> list[CorpusEntry]:
        from .memory import bm25_scores  # not at import: the plugin's options import this module

        scores = bm25_scores(query, self._documents)
        ranked = sorted((i for i, score in enumerate(scores) if score > 0), key=lambda i: (-scores[i], i))
        return [self.entries[i] for i in ranked[:count]]


# --- what a run builds from its options ------------------------------------------------------


def build_services(
    search: str | None, literature: str | None, corpus_path: Path | None, base_urls: dict[str, str]
) -> tuple[dict[str, Any], httpx.Client | None]:
    """The services by tool group ("web", "literature") and the HTTP client they share (None
    when no live provider is configured; the caller closes it)."""
    from . import literature as literature_tools
    from . import web as web_tools

    corpus = Corpus(corpus_path) if corpus_path is not None and "offline" in (search, literature) else None
    live = [p for p in (search, literature) if p not in (None, "offline")]
    client = http_client() if live else None

    services: dict[str, Any] = {}
    for group, module, name in (("web", web_tools, search), ("literature", literature_tools, literature)):
        if name == "offline":
            if corpus is None:
                raise InnovatorError(
                    "the offline provider searches a corpus: name its file with --innovator-offline-corpus"
                )
            services[group] = module.PROVIDERS[name](corpus)
        elif name is not None:
            base_url = base_urls.get(name, DEFAULT_BASE_URLS[name]).rstrip("/")
            services[group] = module.PROVIDERS[name](client, base_url)
    return services, client


def key_from_environment(provider: str) -> str:
    return os.environ.get(KEY_ENVS.get(provider, ""), "")
