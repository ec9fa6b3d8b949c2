"""Literature search: `literature_search(query)`, behind a provider (the run's
`services["literature"]`): Semantic Scholar's graph API, arXiv's export API (Atom XML), or the
offline corpus (its entries' optional `authors` and `year` are shown)."""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import Field

from ..tools import Observation, Tool, ToolArgs
from .providers import Corpus, ProviderError, json_body, key_from_environment, malformed, request
from .web import service

if TYPE_CHECKING:
    import httpx

    from ..env import ResearchEnv

# Five papers with 400 characters of abstract each keep an answer under the 4000 characters a
# trajectory line holds whole (trajectory.summarize).
PAPERS = 5
ABSTRACT_CHARS = 400
ATOM = "{http://www.w3.org/2005/Atom}"


@dataclass(frozen=True)
class Paper:
    title: str
    authors: list[str]
    year: int | None
    url: str
    abstract: str


class LiteratureProvider(Protocol):
    name: str

    def search(self, query: str) -> list[Paper]: ...


class SemanticScholar:
    """GET /graph/v1/paper/search; the key (optional) in x-api-key."""

    name = "semantic_scholar"
    FIELDS = "title,abstract,year,authors,url"

    def __init__(self, client: httpx.Client, base_url: str):
        self.client, self.base_url = client, base_url

    def search(self, query: str) -> list[Paper]:
        key = key_from_environment(self.name)
        headers = {"x-api-key": key} if key else {}
        params = {"query": query, "limit": PAPERS, "fields": self.FIELDS}
        url = f"{self.base_url}/graph/v1/paper/search"
        body = json_body(request(self.client, self.name, "GET", url, params=params, headers=headers), self.name)
        try:
            return [
                Paper(
                    p.get("title") or "",
                    [a["name"] for a in p.get("authors") or []],
                    p.get("year"),
                    p.get("url") or f"https://www.semanticscholar.org/paper/{p['paperId']}",
                    p.get("abstract") or "",
                )
                for p in body.get("data", [])  # no data: nothing found
            ]
        except (KeyError, TypeError, AttributeError) as exc:
            raise malformed(self.name, exc) from None


class Arxiv:
    """GET /api/query?search_query=all:...; the answer is an Atom feed."""

    name = "arxiv"

    def __init__(self, client: httpx.Client, base_url: str):
        self.client, self.base_url = client, base_url

    def search(self, query: str) -> list[Paper]:
        params = {"search_query": f"all:{query}", "start": 0, "max_results": PAPERS}
        response = request(self.client, self.name, "GET", f"{self.base_url}/api/query", params=params)
        try:
            feed = ElementTree.fromstring(response.content)
        except ElementTree.ParseError as exc:
            raise ProviderError(f"arxiv answered with malformed XML ({exc})") from None
        if feed.tag != f"{ATOM}feed":
            raise malformed(self.name, ValueError(f"the root element is {feed.tag}, not an Atom feed"))
        return [self._paper(entry) for entry in feed.iter(f"{ATOM}entry")]

    @staticmethod
    def _paper(entry: ElementTree.Element) -> Paper:
        def text(tag: str) -> str:
            return " ".join((entry.findtext(f"{ATOM}{tag}") or "").split())

        published = text("published")
        return Paper(
            text("title"),
            [" ".join((a.findtext(f"{ATOM}name") or "").split()) for a in entry.findall(f"{ATOM}author")],
            int(published[:4]) if published[:4].isdigit() else None,
            text("id"),
            text("summary"),
        )


class OfflineLiterature:
    name = "offline"

    def __init__(self, corpus: Corpus):
        self.corpus = corpus

    def search(self, query: str) -> list[Paper]:
        papers = []
        for entry in self.corpus.search(query, PAPERS):
            authors = entry.extra.get("authors", [])
            year = entry.extra.get("year")
            papers.append(
                Paper(
                    entry.title,
                    [str(a) for a in authors] if isinstance(authors, list) else [str(authors)],
                    int(year) if isinstance(year, int | str) and str(year).isdigit() else None,
                    entry.url,
                    entry.text,
                )
            )
        return papers


# By --innovator-literature-provider, as web.PROVIDERS.
PROVIDERS: dict[str, type[SemanticScholar | Arxiv | OfflineLiterature]] = {
    "semantic_scholar": SemanticScholar,
    "arxiv": Arxiv,
    "offline": OfflineLiterature,
}


class LiteratureSearch(ToolArgs):
    query: str = Field(min_length=1, description="What to search the research literature for.")


def _shown(paper: Paper, number: int) -> str:
    authors = ", ".join(paper.authors[:4]) + (" et al." if len(paper.authors) > 4 else "")
    abstract = " ".join(paper.abstract.split())
    if len(abstract) > ABSTRACT_CHARS:
        abstract = abstract[:ABSTRACT_CHARS] + " ..."
    year = f" ({paper.year})" if paper.year else ""
    return f"{number}. {paper.title}{year}\n   {authors or 'authors unknown'}\n   {paper.url}\n   {abstract}"


def literature_search(env: ResearchEnv, a: LiteratureSearch) -> Observation:
    try:
        provider: LiteratureProvider = service(env, "literature", "literature_search")
        papers = provider.search(a.query)
    except ProviderError as exc:
        return Observation("literature_search", False, str(exc))
    header = f"[{provider.name}: {len(papers)} papers for {a.query!r}]"
    data: dict[str, Any] = {"urls": [p.url for p in papers]}
    return Observation(
        "literature_search", True, "\n".join([header, *map(_shown, papers, range(1, 1 + len(papers)))]), data
    )


TOOLS = [
    Tool(
        "literature_search",
        "Search research papers; returns titles, authors, years, addresses and abstracts.",
        LiteratureSearch,
        literature_search,
    )
]
