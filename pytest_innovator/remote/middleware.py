"""ASGI middleware of the session server, outermost first: the bearer token, then the request-id cache.

Every request needs ``Authorization: Bearer <token>`` (compared in constant time; 401 otherwise).
A request that changes something may carry ``X-Request-Id``: a retry with the same id gets the
first response again instead of running twice (responses are kept for REQUEST_ID_TTL_S).
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fastapi.responses import JSONResponse

REQUEST_ID_TTL_S = 600.0
REQUEST_ID_CAPACITY = 4096

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


async def _send_json(
    send: Send, status: int, body: dict[str, Any], headers: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    response = JSONResponse(body, status_code=status)
    response.raw_headers.extend(headers)
    await send({"type": "http.response.start", "status": status, "headers": response.raw_headers})
    await send({"type": "http.response.body", "body": response.body})


class TokenAuth:
    """401 for any request without the server's bearer token (before routing: unknown paths too)."""

    def __init__(self, app: ASGIApp, token: str):
        self.app = app
        self.token = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            given = b""
            for name, value in scope["headers"]:
                if name == b"authorization":
                    given = value
            scheme, _, credential = given.partition(b" ")
            if scheme.lower() != b"bearer" or not hmac.compare_digest(credential.strip(), self.token):
                detail = (
                    "a valid bearer token is required: send 'Authorization: Bearer <token>' with the token "
                    "from the server's --token-file"
                )
                await _send_json(send, 401, {"error": "auth", "detail": detail}, [(b"www-authenticate", b"Bearer")])
                return
        await self.app(scope, receive, send)


@dataclass
class _Recorded:
    key: tuple[str, str, bytes]
    done: asyncio.Event = field(default_factory=asyncio.Event)
    messages: list[Message] | None = None
    finished_at: float = 0.0


class RequestIdCache:
    """A retried request (same X-Request-Id) gets the first response; it is not run again.

    A retry that arrives while the first is still running waits for it. Only requests that may
    change something (not GET or HEAD) are recorded.
    """

    def __init__(self, app: ASGIApp, ttl_s: float = REQUEST_ID_TTL_S, capacity: int = REQUEST_ID_CAPACITY):
        self.app = app
        self.ttl_s = ttl_s
        self.capacity = capacity
        self.recorded: OrderedDict[bytes, _Recorded] = OrderedDict()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request_id = None
        if scope["type"] == "http" and scope["method"] not in ("GET", "HEAD"):
            request_id = next((v for k, v in scope["headers"] if k == b"x-request-id"), None)
        if request_id is None:
            await self.app(scope, receive, send)
            return
        if not 0 < len(request_id) <= 200:
            await _send_json(send, 400, {"error": "request", "detail": "X-Request-Id must be 1 to 200 characters"})
            return
        key = (scope["method"], scope["path"], scope.get("query_string", b""))
        record = self.recorded.get(request_id)
        if record is not None:
            if record.key != key:
                await _send_json(
                    send,
                    409,
                    {
                        "error": "request",
                        "detail": "this X-Request-Id was used for another "
                        "request; use a new id for each request (the same id only to retry it)",
                    },
                )
                return
            await record.done.wait()
            if record.messages is not None:
                for message in record.messages:
                    await send(message)
                return
            # The first attempt failed without a response: this one runs in its place.
        self._forget_old()
        record = _Recorded(key)
        self.recorded[request_id] = record
        messages: list[Message] = []

        async def keep(message: Message) -> None:
            messages.append(message)

        try:
            await self.app(scope, receive, keep)
        except BaseException:
            self.recorded.pop(request_id, None)
            record.done.set()
            raise
        record.messages, record.finished_at = messages, time.monotonic()
        record.done.set()
        for message in messages:
            await send(message)

    def _forget_old(self) -> None:
        now = time.monotonic()
        while self.recorded:
            oldest_id, oldest = next(iter(self.recorded.items()))
            expired = oldest.done.is_set() and now - oldest.finished_at > self.ttl_s
            if not (expired or (len(self.recorded) >= self.capacity and oldest.done.is_set())):
                break
            del self.recorded[oldest_id]
