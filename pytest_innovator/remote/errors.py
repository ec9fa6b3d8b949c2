"""How the session server answers a mistake: a 4xx whose JSON body is ``{"error": kind, "detail": message}``.

Kinds: ``workspace`` (a path outside the workspace, a missing file), ``session`` (404 for an
unknown session, 409 for one that is busy or closed), ``request`` (anything else wrong with the
request). Schema violations are FastAPI's own 422.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response

from ..errors import InnovatorError
from ..sessions import SessionError
from ..workspace import WorkspaceError


class ApiError(InnovatorError):
    def __init__(self, status: int, kind: str, detail: str):
        super().__init__(detail)
        self.status, self.kind, self.detail = status, kind, detail


def _answer(status: int, kind: str, detail: str) -> JSONResponse:
    return JSONResponse({"error": kind, "detail": detail}, status_code=status)


async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
    return _answer(exc.status, exc.kind, exc.detail)


async def _workspace_error(request: Request, exc: WorkspaceError) -> JSONResponse:
    return _answer(400, "workspace", str(exc))


async def _session_error(request: Request, exc: SessionError) -> JSONResponse:
    return _answer(409, "session", str(exc))


async def _value_error(request: Request, exc: ValueError) -> JSONResponse:
    return _answer(400, "request", str(exc))


async def _os_error(request: Request, exc: OSError) -> JSONResponse:
    where = f": {exc.filename}" if exc.filename else ""
    return _answer(400, "workspace", f"{exc.strerror or exc}{where}")


# The handler of the closest class in an exception's MRO answers it.
EXCEPTION_HANDLERS: dict[int | type[Exception], Callable[[Request, Any], Coroutine[Any, Any, Response]]] = {
    ApiError: _api_error,
    WorkspaceError: _workspace_error,
    SessionError: _session_error,
    ValueError: _value_error,
    OSError: _os_error,
}
