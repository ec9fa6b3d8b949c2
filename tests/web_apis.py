"""A local stand-in for the search and literature APIs on 127.0.0.1, answering in each API's own
format: Serper (POST /search, X-API-KEY), Bing Web Search v7 (GET /v7.0/search,
Ocp-Apim-Subscription-Key), Semantic Scholar (GET /graph/v1/paper/search, x-api-key optional)
and arXiv (GET /api/query, an Atom feed), and the web pages the search results point to
(GET /pages/NAME). A wrong key gets the API's own refusal.

`fail[path] = {"status": 429, "body": "..."}` makes a path answer an error (`"location"`: a redirect); `{"delay_s": 5}`
answers late; `{"body": "not json"}` answers 200 with that body (`"type"`: its content type). Every request is recorded.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit
from xml.sax.saxutils import escape

SERPER_KEY = "serper-test-key-7c41"
BING_KEY = "bing-test-key-93af"


@dataclass(frozen=True)
class WebPage:
    name: str  # served at /pages/NAME
    title: str
    html: str  # the page's <body>
    snippet: str


@dataclass(frozen=True)
class Record:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes


PAPERS = [
    {
        "paperId": "204e3073870fae3d05bcbc2f6a8e263d9b72e776",
        "title": "Attention is All you Need",
        "abstract": "The dominant sequence transduction models are based on complex recurrent networks.",
        "year": 2017,
        "authors": [
            {"authorId": "40348417", "name": "Ashish Vaswani"},
            {"authorId": "1846258", "name": "Noam Shazeer"},
        ],
        "arxiv": "1706.03762",
    },
    {
        "paperId": "df2b0e26d0599ce3e70df8a9da02e51594e0e992",
        "title": "BERT: Pre-training of Deep Bidirectional Transformers for Language Understanding",
        "abstract": "We introduce a new language representation model called BERT.",
        "year": 2018,
        "authors": [{"authorId": "39172707", "name": "Jacob Devlin"}],
        "arxiv": "1810.04805",
    },
]


class SearchAPIServer:
    def __init__(self, pages: list[WebPage]):
        self.pages = {page.name: page for page in pages}
        self.fail: dict[str, dict[str, Any]] = {}
        self.records: list[Record] = []
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def requests_to(self, path: str) -> list[Record]:
        return [r for r in self.records if r.path == path]

    # --- answers in each API's format ----------------------------------------------------------

    def _hits(self, query: str) -> list[WebPage]:
        words = set(query.lower().split())
        return [p for p in self.pages.values() if words & set(f"{p.title} {p.snippet}".lower().split())]

    def serper(self, request: dict[str, Any]) -> dict[str, Any]:
        hits = self._hits(request["q"])[: request.get("num", 10)]
        return {
            "searchParameters": {
                "q": request["q"],
                "type": "search",
                "num": request.get("num", 10),
                "engine": "google",
            },
            "organic": [
                {"title": p.title, "link": f"{self.base_url}/pages/{p.name}", "snippet": p.snippet, "position": n}
                for n, p in enumerate(hits, 1)
            ],
            "relatedSearches": [],
            "credits": 1,
        }

    def bing(self, query: dict[str, list[str]]) -> dict[str, Any]:
        q = query["q"][0]
        hits = self._hits(q)[: int(query.get("count", ["10"])[0])]
        answer: dict[str, Any] = {"_type": "SearchResponse", "queryContext": {"originalQuery": q}}
        if hits:  # Bing leaves webPages out when nothing is found
            answer["webPages"] = {
                "webSearchUrl": f"https://www.bing.com/search?q={q}",
                "totalEstimatedMatches": len(hits),
                "value": [
                    {
                        "id": f"https://api.bing.microsoft.com/api/v7/#WebPages.{n}",
                        "name": p.title,
                        "url": f"{self.base_url}/pages/{p.name}",
                        "isFamilyFriendly": True,
                        "displayUrl": f"127.0.0.1/pages/{p.name}",
                        "snippet": p.snippet,
                        "dateLastCrawled": "2026-11-30T08:12:00.0000000Z",
                        "language": "en",
                        "isNavigational": False,
                    }
                    for n, p in enumerate(hits)
                ],
            }
            answer["rankingResponse"] = {
                "mainline": {"items": [{"answerType": "WebPages", "resultIndex": n} for n in range(len(hits))]}
            }
        return answer

    def semantic_scholar(self, query: dict[str, list[str]]) -> dict[str, Any]:
        fields = query["fields"][0].split(",")
        words = set(query["query"][0].lower().split())
        found = [p for p in PAPERS if words & set(f"{p['title']} {p['abstract']}".lower().split())]
        data = []
        for paper in found:
            item = {"paperId": paper["paperId"]}
            item.update({f: paper[f] for f in fields if f in paper})
            if "url" in fields:
                item["url"] = f"https://www.semanticscholar.org/paper/{paper['paperId']}"
            data.append(item)
        return {"total": len(data), "offset": 0, "data": data}

    def arxiv(self, query: dict[str, list[str]]) -> str:
        words = set(query["search_query"][0].removeprefix("all:").lower().split())
        found = [p for p in PAPERS if words & set(f"{p['title']} {p['abstract']}".lower().split())]
        entries = "".join(
            f"""
  <entry>
    <id>http://arxiv.org/abs/{p["arxiv"]}v1</id>
    <updated>{p["year"]}-08-02T00:00:00Z</updated>
    <published>{p["year"]}-06-12T17:57:34Z</published>
    <title>{escape(str(p["title"]))}</title>
    <summary>  {escape(str(p["abstract"]))}
</summary>
    {"".join(f"<author><name>{escape(a['name'])}</name></author>" for a in p["authors"])}
    <link href="http://arxiv.org/abs/{p["arxiv"]}v1" rel="alternate" type="text/html"/>
    <link title="pdf" href="http://arxiv.org/pdf/{p["arxiv"]}v1" rel="related" type="application/pdf"/>
    <arxiv:primary_category xmlns:arxiv="http://arxiv.org/schemas/atom" term="cs.CL" scheme="http://arxiv.org/schemas/atom"/>
    <category term="cs.CL" scheme="http://arxiv.org/schemas/atom"/>
  </entry>"""
            for p in found
        )
        return f"""<?xml version="1.0" encoding="UTF-8"?>
<feed xmlns="http://www.w3.org/2005/Atom">
  <link href="http://arxiv.org/api/query" rel="self" type="application/atom+xml"/>
  <title type="html">ArXiv Query: search_query={escape(query["search_query"][0])}</title>
  <id>http://arxiv.org/api/cHxbiOdZaP56ODnBPIenZhzg5f8</id>
  <updated>2026-12-03T00:00:00-05:00</updated>
  <opensearch:totalResults xmlns:opensearch="http://a9.com/-/spec/opensearch/1.1/">{len(found)}</opensearch:totalResults>
  <opensearch:startIndex xmlns:opensearch="http://a9.com/-/spec/opensearch/1.1/">0</opensearch:startIndex>
  <opensearch:itemsPerPage xmlns:opensearch="http://a9.com/-/spec/opensearch/1.1/">10</opensearch:itemsPerPage>{entries}
</feed>
"""


def _handler(server: SearchAPIServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            self._answer("GET")

        def do_POST(self) -> None:
            self._answer("POST")

        def _send(
            self, status: int, body: str | bytes, content_type: str = "application/json", location: str = ""
        ) -> None:
            data = body.encode() if isinstance(body, str) else body
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            if location:
                self.send_header("Location", location)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _answer(self, method: str) -> None:
            split = urlsplit(self.path)
            query = parse_qs(split.query)
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = {k.lower(): v for k, v in self.headers.items()}
            server.records.append(Record(method, split.path, query, headers, body))
            failure = server.fail.get(split.path)
            if failure:
                time.sleep(failure.get("delay_s", 0))
                status, body = failure.get("status", 200), failure.get("body", "")
                self._send(status, body, failure.get("type", "application/json"), failure.get("location", ""))
                return
            if split.path == "/search" and method == "POST":
                if headers.get("x-api-key") != SERPER_KEY:
                    self._send(403, json.dumps({"message": "Unauthorized.", "statusCode": 403}))
                else:
                    self._send(200, json.dumps(server.serper(json.loads(body))))
            elif split.path == "/v7.0/search":
                if headers.get("ocp-apim-subscription-key") != BING_KEY:
                    message = "Access denied due to invalid subscription key or wrong API endpoint."
                    self._send(401, json.dumps({"error": {"code": "401", "message": message}}))
                else:
                    self._send(200, json.dumps(server.bing(query)))
            elif split.path == "/graph/v1/paper/search":
                self._send(200, json.dumps(server.semantic_scholar(query)))
            elif split.path == "/api/query":
                self._send(200, server.arxiv(query), "application/atom+xml; charset=UTF-8")
            elif split.path.startswith("/pages/") and split.path[7:] in server.pages:
                page = server.pages[split.path[7:]]
                html = f"<html><head><title>{page.title}</title></head><body>{page.html}</body></html>"
                self._send(200, html, "text/html; charset=utf-8")
            else:
                self._send(404, "not found", "text/plain")

    return Handler
