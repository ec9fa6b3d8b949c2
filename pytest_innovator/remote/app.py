"""The session server's ASGI application: the FastAPI app with its routes, inside its middleware."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from .errors import EXCEPTION_HANDLERS
from .middleware import ASGIApp, RequestIdCache, TokenAuth
from .models import API_VERSION, ERRORS
from .registry import Registry
from .routes import ROUTERS

WORKER_THREADS = 256  # long waits run in worker threads and must not hold up other requests
LEASE_CHECK_S = 2.0  # how often leases are checked for expiry when nobody asks about them


def create_app(registry: Registry, token: str) -> ASGIApp:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        import anyio.to_thread

        anyio.to_thread.current_default_thread_limiter().total_tokens = WORKER_THREADS
        expiry = asyncio.create_task(_expire_leases(registry))
        yield
        expiry.cancel()
        await asyncio.to_thread(registry.close_all)

    app = FastAPI(
        title="pytest-innovator session server",
        version=str(API_VERSION),
        lifespan=lifespan,
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
        responses=ERRORS,
        exception_handlers=EXCEPTION_HANDLERS,
    )
    app.state.registry = registry

    @app.get("/v1/openapi.json", include_in_schema=False)
    def openapi() -> dict[str, Any]:
        return openapi_schema(app)

    for router in ROUTERS:
        app.include_router(router)
    return RequestIdCache(TokenAuth(app, token))


async def _expire_leases(registry: Registry) -> None:
    """A holder that died stops renewing: its GPUs are freed and its commands ended within seconds."""
    while True:
        await asyncio.sleep(LEASE_CHECK_S)
        await asyncio.to_thread(registry.leases.expire_now)


def openapi_schema(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
        schema.setdefault("components", {})["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        schema["security"] = [{"bearer": []}]
        app.openapi_schema = schema
    return app.openapi_schema
