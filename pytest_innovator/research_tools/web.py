"""Web search and browsing: `web_search(query)` and `open_page(url, page, find)`.

Behind a provider (the run's `services["web"]`): Serper or Bing Web Search for the search, the
harness fetching the page with httpx and turning its HTML into text with trafilatura; or the
offline corpus for both. The agent gets a page's text in pages of PAGE_CHARS characters, or with
`find` the lines that contain a text, each with its page number.
"""

from __future__ import annotations

import ipaddress
import socket
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from pydantic import Field

from ..errors import pip_hint
from ..tools import Observation, Tool, ToolArgs
from .providers import RESULTS, Corpus, ProviderError, json_body, key_from_environment, malformed, request

if TYPE_CHECKING:
    import httpx

    from ..env import ResearchEnv

PAGE_CHARS = 3000  # a page and its header fit in a trajectory line (observations are cut at 4000)
MAX_FOUND_LINES = 60
SNIPPET_CHARS = 200  # ten results stay under the 4000 characters a trajectory line holds whole
MAX_PAGE_BYTES = 5 * 2**20  # a page's body is cut here: a research page is far smaller
CACHED_PAGES = 32  # paging through a page fetches it once
MAX_REDIRECTS = 5


@dataclass(frozen=True)
class SearchHit:
    title: str
    url: str
    snippet: str


@dataclass(frozen=True)
class Page:
    title: str
    text: str


class WebProvider(Protocol):
    name: str

    def search(self, query: str) -> list[SearchHit]: ...

    def open(self, url: str) -> Page: ...


# --- paging, shared with parse_document --------------------------------------------------------


def split_pages(text: str, size: int = PAGE_CHARS) -> list[str]:
    """The text in pages of at most `size` characters, cut at line ends where a line allows."""
    pages: list[str] = []
    current = ""
    for line in text.splitlines(keepends=True):
        while len(line) > size:
            if current:
                pages.append(current)
                current = ""
            pages.append(line[:size])
            line = line[size:]
        if len(current) + len(line) > size:
            pages.append(current)
            current = ""
        current += line
    if current or not pages:
        pages.append(current)
    return pages


def paged_observation(tool: str, source: str, text: str, page: int, find: str | None) -> Observation:
    pages = split_pages(text)
    if find is not None:
        needle = find.lower()
        found = [
            f"[page {number}] {line.strip()[:300]}"
            for number, content in enumerate(pages, 1)
            for line in content.splitlines()
            if needle in line.lower()
        ]
        shown = found[:MAX_FOUND_LINES]
        more = f"\n[{len(found) - len(shown)} more matching lines not shown]" if len(found) > len(shown) else ""
        header = f"[{source}: {len(found)} lines contain {find!r}, in {len(pages)} pages]"
        return Observation(tool, True, "\n".join([header, *shown]) + more, {"pages": len(pages), "found": len(found)})
    if page > len(pages):
        return Observation(tool, False, f"{source} has {len(pages)} page(s); there is no page {page}")
    more = f"\n[page {page + 1} follows: ask for page={page + 1}]" if page < len(pages) else ""
    header = f"[{source}: page {page} of {len(pages)}]"
    return Observation(tool, True, f"{header}\n{pages[page - 1]}{more}", {"pages": len(pages)})


# --- providers ---------------------------------------------------------------------------------


def html_to_text(html: str) -> Page:
    """The readable text of an HTML page: trafilatura keeps the main content and drops menus,
    footers and scripts; a page it finds no main content in gets its whole text."""
    try:
        import trafilatura
    except ImportError:
        raise ProviderError(f"opening web pages needs the web extra: {pip_hint('web')}") from None
    text = trafilatura.extract(html, favor_recall=True, include_tables=True) or trafilatura.html2txt(html) or ""
    metadata = trafilatura.extract_metadata(html)
    return Page(metadata.title if metadata and metadata.title else "", text)


class LiveWeb:
    """Pages fetched from the web by the harness; a subclass adds the search API."""

    name = "web"

    def __init__(self, client: httpx.Client, base_url: str):
        self.client = client
        self.base_url = base_url
        self._pages: OrderedDict[str, Page] = OrderedDict()

    def open(self, url: str) -> Page:
        if not url.startswith(("http://", "https://")):
            raise ProviderError(f"{url!r} is not a web address; give an http:// or https:// URL")
        if url not in self._pages:
            self._pages[url] = self._fetch(url)
            if len(self._pages) > CACHED_PAGES:
                self._pages.popitem(last=False)
        return self._pages[url]

    def _fetch(self, url: str) -> Page:
        import httpx

        for _ in range(MAX_REDIRECTS + 1):  # followed here, so that every hop's address is checked
            self._check_address(url)
            host = url.split("/")[2]
            response = request(self.client, host, "GET", url, stream=True, follow_redirects=False)
            if not response.is_redirect:
                break
            response.close()
            url = str(response.next_request.url) if response.next_request else url
        else:
            raise ProviderError(f"{url} redirected more than {MAX_REDIRECTS} times")
        kind = response.headers.get("content-type", "").split(";")[0].strip().lower()
        body = b""
        try:
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) >= MAX_PAGE_BYTES:  # the rest is never read
                    break
        except httpx.HTTPError as exc:
            raise ProviderError(f"{host} broke off the page ({type(exc).__name__}: {exc})") from None
        finally:
            response.close()
        body = body[:MAX_PAGE_BYTES]
        encoding = response.encoding or "utf-8"
        if kind in ("text/html", "application/xhtml+xml") or (not kind and body.lstrip()[:1] == b"<"):
            return html_to_text(body.decode(encoding, "replace"))
        if kind.startswith("text/") or kind in ("application/json", "application/xml"):
            return Page("", body.decode(encoding, "replace"))
        if kind == "application/pdf":
            from .documents import DocumentError, pdf_text

            try:
                return Page("", pdf_text(body))
            except DocumentError as exc:
                raise ProviderError(str(exc)) from None
        raise ProviderError(f"{url} is {kind or 'of an unknown type'}, not a page that can be read as text")

    def _check_address(self, url: str) -> None:
        """Pages come from the public web only: an address on the harness's own host or network
        (loopback, private, link-local: a model server, a cloud's metadata service) is refused,
        but for the provider's own server (a local one that answers in its API's format)."""
        parts = urlsplit(url)
        if parts.hostname is None:
            raise ProviderError(f"{url!r} names no host")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        base = urlsplit(self.base_url)
        if (parts.hostname, port) == (base.hostname, base.port or (443 if base.scheme == "https" else 80)):
            return
        try:
            addresses = {info[4][0] for info in socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)}
        except (socket.gaierror, UnicodeError) as exc:
            raise ProviderError(f"{parts.hostname} could not be resolved ({exc})") from None
        private = sorted(a for a in addresses if not ipaddress.ip_address(a.split("%")[0]).is_global)
        if private:
            raise ProviderError(
                f"{url} is on the harness's own host or network ({', '.join(private)}); open_page reads the public "
                "web only"
            )


class SerperSearch(LiveWeb):
    """Google results through Serper: POST /search with the key in X-API-KEY."""

    name = "serper"

    def search(self, query: str) -> list[SearchHit]:
        headers = {"X-API-KEY": key_from_environment("serper")}
        body = json_body(
            request(
                self.client,
                self.name,
                "POST",
                f"{self.base_url}/search",
                json={"q": query, "num": RESULTS},
                headers=headers,
            ),
            self.name,
        )
        try:
            return [SearchHit(r["title"], r["link"], r.get("snippet", "")) for r in body.get("organic", [])]
        except (KeyError, TypeError, AttributeError) as exc:
            raise malformed(self.name, exc) from None


class BingSearch(LiveWeb):
    """Bing Web Search v7: GET /v7.0/search with the key in Ocp-Apim-Subscription-Key."""

    name = "bing"

    def search(self, query: str) -> list[SearchHit]:
        headers = {"Ocp-Apim-Subscription-Key": key_from_environment("bing")}
        params = {"q": query, "count": RESULTS, "textFormat": "Raw"}
        response = request(
            self.client, self.name, "GET", f"{self.base_url}/v7.0/search", params=params, headers=headers
        )
        body = json_body(response, self.name)
        try:
            pages = body.get("webPages", {}).get("value", [])  # no webPages: nothing found
            return [SearchHit(r["name"], r["url"], r.get("snippet", "")) for r in pages]
        except (KeyError, TypeError, AttributeError) as exc:
            raise malformed(self.name, exc) from None


class OfflineWeb:
    """Search and pages from the offline corpus."""

    name = "offline"

    def __init__(self, corpus: Corpus):
        self.corpus = corpus

    def search(self, query: str) -> list[SearchHit]:
        return [SearchHit(e.title, e.url, " ".join(e.text.split())[:SNIPPET_CHARS]) for e in self.corpus.search(query)]

    def open(self, url: str) -> Page:
        entry = self.corpus.by_url.get(url)
        if entry is None:
            raise ProviderError(f"{url} is not in the offline corpus; open a URL that web_search returned")
        return Page(entry.title, entry.text)


# By --innovator-search-provider: the offline one takes the corpus, the others the HTTP client
# and the API's base URL.
PROVIDERS: dict[str, type[SerperSearch | BingSearch | OfflineWeb]] = {
    "serper": SerperSearch,
    "bing": BingSearch,
    "offline": OfflineWeb,
}


# --- the tools ---------------------------------------------------------------------------------


class WebSearch(ToolArgs):
    query: str = Field(min_length=1, description="What to search the web for.")


class OpenPage(ToolArgs):
    url: str = Field(min_length=1, description="Address of the page (from web_search or a link you know).")
    page: int = Field(1, ge=1, description=f"Which page of the text to show ({PAGE_CHARS} characters each).")
    find: str | None = Field(
        None, min_length=1, description="Show only the lines containing this text (any case), with their page numbers."
    )


def service(env: ResearchEnv, group: str, tool: str) -> Any:
    provider = env.services.get(group)
    if provider is None:
        raise ProviderError(f"{tool}: this run has no {group} provider configured")
    return provider


def web_search(env: ResearchEnv, a: WebSearch) -> Observation:
    try:
        provider: WebProvider = service(env, "web", "web_search")
        hits = provider.search(a.query)
    except ProviderError as exc:
        return Observation("web_search", False, str(exc))
    rows = [
        f"{n}. {h.title}\n   {h.url}\n   {' '.join(h.snippet.split())[:SNIPPET_CHARS]}" for n, h in enumerate(hits, 1)
    ]
    header = f"[{provider.name}: {len(hits)} results for {a.query!r}]"
    return Observation("web_search", True, "\n".join([header, *rows]), {"urls": [h.url for h in hits]})


def open_page(env: ResearchEnv, a: OpenPage) -> Observation:
    try:
        provider: WebProvider = service(env, "web", "open_page")
        page = provider.open(a.url)
    except ProviderError as exc:
        return Observation("open_page", False, str(exc))
    source = f"{a.url}" + (f" ({page.title})" if page.title else "")
    return paged_observation("open_page", source, page.text, a.page, a.find)


TOOLS = [
    Tool("web_search", "Search the web; returns titles, addresses and snippets.", WebSearch, web_search),
    Tool(
        "open_page",
        f"Read a web page as text, {PAGE_CHARS} characters a page; with `find`, the lines containing a text "
        "and their page numbers.",
        OpenPage,
        open_page,
    ),
]
