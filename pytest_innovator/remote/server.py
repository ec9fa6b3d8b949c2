"""The session server: the in-process workspace and session operations over HTTP.

``pytest-innovator serve`` runs it under uvicorn. It wraps the same runtime the in-process
backends use (``LocalWorkspace`` and ``SessionManager``), so behaviour and error messages are
those of the local backend; :mod:`pytest_innovator.remote.client` is its client. It serves

* the workspace given with ``--workspace DIR`` (id ``main``): how a Docker container serves the
  item's bind-mounted workspace; and
* with ``--root DIR``, workspaces created through the API (``POST /v1/workspaces``, then a tar
  upload of the task's starter files): how a remote GPU host serves the items of another host.

Every request needs ``Authorization: Bearer <token>`` (compared in constant time; 401
otherwise). A request that changes something may carry ``X-Request-Id``: a retry with the same id
gets the first response again instead of running twice (responses are kept for REQUEST_ID_TTL_S).
Mistakes a caller can make are 4xx answers whose JSON body is ``{"error": kind, "detail":
message}``: kind ``workspace`` (a path outside the workspace, a missing file), ``session`` (404
for an unknown session, 409 for one that is busy or closed), ``request`` (anything else wrong
with the request); schema violations are FastAPI's 422. Long waits run in worker threads and do
not hold up other requests.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import hmac
import os
import re
import secrets
import shutil
import socket
import sys
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Query, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from ..protected import ProtectedChange, from_json, to_json
from ..sandbox import Sandbox, bwrap_path
from ..sessions import (
    SESSION_NAME,
    CommandResult,
    Session,
    SessionError,
    SessionManager,
    SessionStatus,
)
from ..workspace import DirEntry, LocalWorkspace, WorkspaceError, command_environment
from .archive import ArchiveError, extract_tar, file_chunks, tar_stream

API_VERSION = 1
MAIN_WORKSPACE = "main"
MAX_WAIT_S = 600.0  # the longest a single request waits; clients wait longer by asking again
MAX_EXEC_S = 3600.0
MAX_OUTPUT_BYTES = 16 << 20
REQUEST_ID_TTL_S = 600.0
REQUEST_ID_CAPACITY = 4096
WORKER_THREADS = 256
UPLOAD_SPOOL_BYTES = 8 << 20

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class ApiError(Exception):
    def __init__(self, status: int, kind: str, detail: str):
        super().__init__(detail)
        self.status, self.kind, self.detail = status, kind, detail


# --- what the server holds -------------------------------------------------------------------

@dataclass
class Served:
    """A workspace the server serves, with the directory for what it keeps beside it."""

    id: str
    workspace: LocalWorkspace
    state_dir: Path  # exposed copies go here; for a provisioned workspace, everything of it
    provisioned: bool
    label: str = ""
    exposed: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class Registry:
    def __init__(self, root: Path | None, sandboxed: bool):
        self.root = root
        self.sandboxed = sandboxed
        self.served: dict[str, Served] = {}
        self.lock = threading.Lock()

    def add_existing(self, directory: Path, log_dir: Path, state_dir: Path, read_only: list[str]) -> Served:
        """Serve an existing directory (the `--workspace` of a container or a host) as `main`."""
        env = command_environment()
        sandbox = self._sandbox(directory, log_dir, network=False) if self.sandboxed else None
        sessions = SessionManager(directory, log_dir, env=env, wrap=sandbox.argv if sandbox else None)
        workspace = LocalWorkspace(directory, sessions, env, sandbox)
        workspace.linked = frozenset((directory / p).resolve() for p in read_only)
        served = Served(MAIN_WORKSPACE, workspace, state_dir, provisioned=False)
        self.served[served.id] = served
        return served

    def provision(self, env: dict[str, str], network: bool, label: str) -> Served:
        if self.root is None:
            raise ApiError(409, "request", "this server serves one workspace and creates none: start it with "
                           "--root DIR to let clients create workspaces")
        workspace_id = secrets.token_hex(8)
        state_dir = self.root / workspace_id
        directory, log_dir = state_dir / "workspace", state_dir / "sessions"
        directory.mkdir(parents=True)
        log_dir.mkdir()
        command_env = command_environment(env)
        sandbox = self._sandbox(directory, log_dir, network) if self.sandboxed else None
        sessions = SessionManager(directory, log_dir, env=command_env, wrap=sandbox.argv if sandbox else None)
        served = Served(workspace_id, LocalWorkspace(directory, sessions, command_env, sandbox), state_dir,
                        provisioned=True, label=label)
        with self.lock:
            self.served[workspace_id] = served
        return served

    def _sandbox(self, directory: Path, log_dir: Path, network: bool) -> Sandbox:
        hidden = [self.root] if self.root else []  # the other workspaces of this server
        return Sandbox(writable=[directory], readonly=[log_dir], hidden=hidden, network=network, chdir=directory)

    def get(self, workspace_id: str) -> Served:
        with self.lock:
            served = self.served.get(workspace_id)
            if served is None:
                raise ApiError(404, "workspace", f"there is no workspace {workspace_id!r} on this server; "
                               "create one with POST /v1/workspaces")
            return served

    def remove(self, workspace_id: str) -> None:
        served = self.get(workspace_id)
        if not served.provisioned:
            raise ApiError(409, "request", f"workspace {workspace_id!r} was given on the command line and is "
                           "not removed through the API; stop the server instead")
        with self.lock:
            self.served.pop(workspace_id, None)
        served.workspace.close()
        shutil.rmtree(served.state_dir, ignore_errors=True)

    def close_all(self) -> None:
        with self.lock:
            served = list(self.served.values())
        for item in served:
            item.workspace.close()


# --- request and response bodies -------------------------------------------------------------

class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


Seconds = Annotated[float, Field(ge=0, le=MAX_WAIT_S, allow_inf_nan=False)]
OutputBytes = Annotated[int, Field(ge=1, le=MAX_OUTPUT_BYTES)]


class CreateWorkspace(Body):
    env: dict[str, str] = Field(default_factory=dict, description="Extra environment for the workspace's commands.")
    network: bool = Field(False, description="Let commands use the network (when the server sandboxes them).")
    label: str = Field("", max_length=200, description="What the workspace is for (e.g. the task id).")


class WorkspaceInfo(BaseModel):
    id: str
    root: str
    backend: str
    protects: str
    label: str


class Health(BaseModel):
    ok: bool
    api_version: int
    workspaces: int
    can_create: bool


class Written(BaseModel):
    bytes: int


class Extracted(BaseModel):
    files: int
    bytes: int


class ExecBody(Body):
    command: str
    timeout: float = Field(60.0, ge=0, le=MAX_EXEC_S, allow_inf_nan=False)


class ExecResultModel(BaseModel):
    exit_code: int | None
    output: str


class ExposedPath(BaseModel):
    path: str


class FileStateModel(Body):
    kind: Literal["file", "dir", "symlink", "other", "missing"]
    sha256: str | None = None
    target: str | None = None
    mode: int | None = None


class PatternsBody(Body):
    patterns: list[str] = Field(max_length=1000)


class ChangesBody(Body):
    before: dict[str, FileStateModel]
    patterns: list[str] = Field(max_length=1000)


class ProtectedStates(BaseModel):
    states: dict[str, FileStateModel]


class ProtectedChangeModel(BaseModel):
    path: str
    before: FileStateModel
    after: FileStateModel
    what: str


class CreateSessionBody(Body):
    name: str | None = Field(None, max_length=200)


class RunBody(Body):
    command: str
    wait: Seconds = 0.0
    max_output: OutputBytes = 64 * 1024


class TimeoutBody(Body):
    timeout: Seconds


class Idle(BaseModel):
    idle: bool


class Finished(BaseModel):
    finished: bool


class Output(BaseModel):
    output: str
    next_offset: int


class InputBody(Body):
    text: str


class Done(BaseModel):
    ok: bool = True


class ErrorBody(BaseModel):
    error: str
    detail: str


def _change_model(change: ProtectedChange) -> ProtectedChangeModel:
    return ProtectedChangeModel(path=change.path, what=change.what,
                                before=FileStateModel(**dataclasses.asdict(change.before)),
                                after=FileStateModel(**dataclasses.asdict(change.after)))


# --- middleware ------------------------------------------------------------------------------

async def _send_json(send: Send, status: int, body: dict[str, Any], headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
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
                await _send_json(send, 401, {"error": "auth", "detail": "a valid bearer token is required: send "
                                             "'Authorization: Bearer <token>' with the token from the server's --token-file"},
                                 [(b"www-authenticate", b"Bearer")])
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
                await _send_json(send, 409, {"error": "request", "detail": "this X-Request-Id was used for another "
                                             "request; use a new id for each request (the same id only to retry it)"})
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


# --- the application -------------------------------------------------------------------------

def _served(request: Request, workspace_id: str) -> Served:
    registry: Registry = request.app.state.registry
    return registry.get(workspace_id)


Ws = Annotated[Served, Depends(_served)]

TAR_BODY = {"requestBody": {"required": True, "content": {"application/x-tar": {"schema": {"type": "string", "format": "binary"}}}}}
BYTES_BODY = {"requestBody": {"required": True, "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}}
BYTES_RESPONSE: dict[int | str, dict[str, Any]] = {200: {"content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}}
ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorBody} for code in (400, 401, 404, 409)}


def create_app(registry: Registry, token: str) -> ASGIApp:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        import anyio.to_thread

        anyio.to_thread.current_default_thread_limiter().total_tokens = WORKER_THREADS
        yield
        await asyncio.to_thread(registry.close_all)

    app = FastAPI(title="pytest-innovator session server", version=str(API_VERSION), lifespan=lifespan,
                  openapi_url=None, docs_url=None, redoc_url=None, responses=ERRORS)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse({"error": exc.kind, "detail": exc.detail}, status_code=exc.status)

    @app.exception_handler(WorkspaceError)
    async def workspace_error(request: Request, exc: WorkspaceError) -> JSONResponse:
        return JSONResponse({"error": "workspace", "detail": str(exc)}, status_code=400)

    @app.exception_handler(SessionError)
    async def session_error(request: Request, exc: SessionError) -> JSONResponse:
        return JSONResponse({"error": "session", "detail": str(exc)}, status_code=409)

    @app.exception_handler(ValueError)
    async def value_error(request: Request, exc: ValueError) -> JSONResponse:
        return JSONResponse({"error": "request", "detail": str(exc)}, status_code=400)

    @app.exception_handler(OSError)
    async def os_error(request: Request, exc: OSError) -> JSONResponse:
        where = f": {exc.filename}" if exc.filename else ""
        return JSONResponse({"error": "workspace", "detail": f"{exc.strerror or exc}{where}"}, status_code=400)

    app.state.registry = registry
    prefix = "/v1/workspaces/{workspace_id}"

    def session_of(item: Served, name: str) -> Session:
        try:
            return item.workspace.sessions.get(name)
        except SessionError as exc:
            raise ApiError(404, "session", str(exc)) from None

    # -- server and workspaces --

    @app.get("/v1/openapi.json", include_in_schema=False)
    def openapi() -> dict[str, Any]:
        return openapi_schema(app)

    @app.get("/v1/health", response_model=Health)
    def health() -> Health:
        return Health(ok=True, api_version=API_VERSION, workspaces=len(registry.served), can_create=registry.root is not None)

    @app.post("/v1/workspaces", response_model=WorkspaceInfo, status_code=201)
    def create_workspace(body: CreateWorkspace) -> WorkspaceInfo:
        return _info(registry.provision(body.env, body.network, body.label))

    @app.get("/v1/workspaces", response_model=list[WorkspaceInfo])
    def list_workspaces() -> list[WorkspaceInfo]:
        with registry.lock:
            items = list(registry.served.values())
        return [_info(item) for item in items]

    @app.get(prefix, response_model=WorkspaceInfo)
    def workspace_info(item: Ws) -> WorkspaceInfo:
        return _info(item)

    @app.delete(prefix, response_model=Done)
    def delete_workspace(workspace_id: str) -> Done:
        registry.remove(workspace_id)
        return Done()

    @app.post(prefix + "/close", response_model=Done)
    def close_workspace(item: Ws) -> Done:
        """End every session of the workspace (its files stay)."""
        item.workspace.close()
        return Done()

    # -- files --

    @app.get(prefix + "/files", response_model=list[DirEntry])
    def list_files(item: Ws, path: str = ".", depth: Annotated[int, Query(ge=1, le=20)] = 1) -> list[DirEntry]:
        return item.workspace.list_dir(path, depth)

    @app.get(prefix + "/file", responses=BYTES_RESPONSE, response_class=Response)
    def read_file(item: Ws, path: str) -> Response:
        return Response(item.workspace.read_file(path), media_type="application/octet-stream")

    @app.put(prefix + "/file", response_model=Written, openapi_extra=BYTES_BODY)
    async def write_file(item: Ws, path: str, request: Request) -> Written:
        data = await request.body()
        await asyncio.to_thread(item.workspace.write_file, path, data)
        return Written(bytes=len(data))

    @app.get(prefix + "/archive", responses=BYTES_RESPONSE, response_class=StreamingResponse)
    def download(item: Ws, path: str = ".") -> StreamingResponse:
        """A file's bytes (X-Innovator-Kind: file) or a directory as tar (dir); regular files only."""
        full = item.workspace.resolve(path)
        if full.is_dir():
            return StreamingResponse(tar_stream(full, symlinks=False), media_type="application/x-tar",
                                     headers={"X-Innovator-Kind": "dir"})
        if full.is_file() and not full.is_symlink():
            return StreamingResponse(file_chunks(full), media_type="application/octet-stream",
                                     headers={"X-Innovator-Kind": "file"})
        raise ApiError(404, "workspace", f"{path}: no such file or directory")

    @app.get(prefix + "/logs", responses=BYTES_RESPONSE, response_class=StreamingResponse)
    def logs(item: Ws) -> StreamingResponse:
        """The session logs of the workspace, as tar."""
        return StreamingResponse(tar_stream(item.workspace.sessions.log_dir, symlinks=False), media_type="application/x-tar")

    @app.put(prefix + "/archive", response_model=Extracted, openapi_extra=TAR_BODY)
    async def upload(item: Ws, request: Request, path: str = ".") -> Extracted:
        """Extract a tar archive into a directory of the workspace (how a workspace is provisioned)."""
        dest = item.workspace.resolve(path)
        return await _extract_body(request, dest)

    @app.post(prefix + "/expose", response_model=ExposedPath, openapi_extra=TAR_BODY)
    async def expose(item: Ws, request: Request) -> ExposedPath:
        """Unpack a tar archive outside the workspace, readable to commands started from now on."""
        with item.lock:
            item.exposed += 1
            dest = item.state_dir / "exposed" / str(item.exposed)
        await _extract_body(request, dest)
        return ExposedPath(path=item.workspace.expose(dest))

    @app.post(prefix + "/exec", response_model=ExecResultModel)
    def run_once(item: Ws, body: ExecBody) -> ExecResultModel:
        result = item.workspace.exec(body.command, body.timeout)
        return ExecResultModel(exit_code=result.exit_code, output=result.output)

    @app.get(prefix + "/disk", response_model=Written)
    def disk_usage(item: Ws) -> Written:
        """Bytes the workspace's files take (the task's shared read-only files not counted)."""
        return Written(bytes=item.workspace.disk_usage())

    @app.post(prefix + "/protected/state", response_model=ProtectedStates)
    def protected_state(item: Ws, body: PatternsBody) -> ProtectedStates:
        states = to_json(item.workspace.protected_state(body.patterns))
        return ProtectedStates(states={p: FileStateModel(**s) for p, s in states.items()})

    @app.post(prefix + "/protected/changes", response_model=list[ProtectedChangeModel])
    def protected_changes(item: Ws, body: ChangesBody) -> list[ProtectedChangeModel]:
        before = from_json({p: s.model_dump() for p, s in body.before.items()})
        return [_change_model(c) for c in item.workspace.protected_changes(before, body.patterns)]

    # -- sessions --

    @app.post(prefix + "/sessions", response_model=SessionStatus, status_code=201)
    def create_session(item: Ws, body: CreateSessionBody) -> SessionStatus:
        try:
            session = item.workspace.sessions.create(body.name)
        except SessionError as exc:
            bad_name = body.name is not None and not SESSION_NAME.fullmatch(body.name)
            raise ApiError(400 if bad_name else 409, "session", str(exc)) from None
        return session.status()

    @app.get(prefix + "/sessions", response_model=list[SessionStatus])
    def list_sessions(item: Ws) -> list[SessionStatus]:
        return item.workspace.sessions.list()

    @app.get(prefix + "/sessions/{name}", response_model=SessionStatus)
    def session_status(item: Ws, name: str) -> SessionStatus:
        return session_of(item, name).status()

    @app.delete(prefix + "/sessions/{name}", response_model=Done)
    def close_session(item: Ws, name: str) -> Done:
        session_of(item, name)
        item.workspace.sessions.close(name)
        return Done()

    @app.post(prefix + "/sessions/{name}/run", response_model=CommandResult)
    def run(item: Ws, name: str, body: RunBody) -> CommandResult:
        return session_of(item, name).run(body.command, body.wait, body.max_output)

    @app.post(prefix + "/sessions/{name}/wait", response_model=Idle)
    def wait(item: Ws, name: str, body: TimeoutBody) -> Idle:
        return Idle(idle=session_of(item, name).wait(body.timeout))

    @app.get(prefix + "/sessions/{name}/result", response_model=CommandResult)
    def result(item: Ws, name: str, max_output: Annotated[int, Query(ge=1, le=MAX_OUTPUT_BYTES)] = 64 * 1024) -> CommandResult:
        return session_of(item, name).result(max_output)

    @app.get(prefix + "/sessions/{name}/output", response_model=Output)
    def read(item: Ws, name: str, since: Annotated[int, Query(ge=0)] = 0,
             max_bytes: Annotated[int, Query(ge=1, le=MAX_OUTPUT_BYTES)] = 64 * 1024) -> Output:
        text, next_offset = session_of(item, name).read(since, max_bytes)
        return Output(output=text, next_offset=next_offset)

    @app.post(prefix + "/sessions/{name}/input", response_model=Done)
    def send_input(item: Ws, name: str, body: InputBody) -> Done:
        session_of(item, name).send_input(body.text)
        return Done()

    @app.post(prefix + "/sessions/{name}/interrupt", response_model=Done)
    def interrupt(item: Ws, name: str) -> Done:
        session_of(item, name).interrupt()
        return Done()

    @app.post(prefix + "/sessions/{name}/kill", response_model=Done)
    def kill(item: Ws, name: str) -> Done:
        session_of(item, name).kill()
        return Done()

    @app.post(prefix + "/watch", response_model=Finished)
    def watch_any(item: Ws, body: TimeoutBody) -> Finished:
        """Wait until a command running now finishes; false on timeout or when none runs."""
        return Finished(finished=item.workspace.sessions.watch_any(body.timeout))

    return RequestIdCache(TokenAuth(app, token))


def _info(item: Served) -> WorkspaceInfo:
    workspace = item.workspace
    return WorkspaceInfo(id=item.id, root=workspace.root, backend=workspace.backend, protects=workspace.protects,
                         label=item.label)


async def _extract_body(request: Request, dest: Path) -> Extracted:
    with tempfile.SpooledTemporaryFile(UPLOAD_SPOOL_BYTES) as spool:
        async for chunk in request.stream():
            spool.write(chunk)
        spool.seek(0)
        try:
            files, size = await asyncio.to_thread(extract_tar, spool, dest)  # type: ignore[arg-type]
        except ArchiveError as exc:
            raise ApiError(400, "request", str(exc)) from None
    return Extracted(files=files, bytes=size)


def openapi_schema(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
        schema.setdefault("components", {})["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        schema["security"] = [{"bearer": []}]
        app.openapi_schema = schema
    return app.openapi_schema


# --- the command -----------------------------------------------------------------------------

LOOPBACK = re.compile(r"^(127\.\d+\.\d+\.\d+|localhost|::1)$")


def read_or_create_token(token_file: Path | None) -> tuple[str, Path]:
    """The token in token_file; a new one (written 0600) when the file does not exist yet."""
    if token_file is None:
        token_file = Path(tempfile.mkdtemp(prefix="pytest-innovator-server-")) / "token"
    if token_file.exists():
        token = token_file.read_text(encoding="utf-8").strip()
        if len(token) < 16:
            raise SystemExit(f"error: the token in {token_file} is shorter than 16 characters; "
                             "delete the file to have a new one made")
        return token, token_file
    token = secrets.token_urlsafe(32)
    token_file.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with open(descriptor, "w", encoding="utf-8") as stream:
        stream.write(token + "\n")
    return token, token_file


def serve_command(args: argparse.Namespace) -> int:
    import uvicorn

    if args.workspace is None and args.root is None:
        print("error: give --workspace DIR (serve that directory), --root DIR (create workspaces there) or both",
              file=sys.stderr)
        return 2
    if args.workspace is not None and not args.workspace.is_dir():
        print(f"error: --workspace {args.workspace}: not a directory", file=sys.stderr)
        return 2
    sandboxed = args.sandbox == "on" or (args.sandbox == "auto" and bwrap_path() is not None)
    if args.sandbox == "on" and bwrap_path() is None:
        print("error: --sandbox on, but bubblewrap (bwrap) is not usable here: apt-get install bubblewrap", file=sys.stderr)
        return 2
    token, token_file = read_or_create_token(args.token_file)
    # One-shot commands inherit the server's stdin: never let them read the terminal it started in.
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    root = args.root.resolve() if args.root else None
    if root is not None:
        root.mkdir(parents=True, exist_ok=True)
    registry = Registry(root, sandboxed)
    if args.workspace is not None:
        state_dir = Path(tempfile.mkdtemp(prefix="pytest-innovator-state-"))
        log_dir = (args.log_dir or state_dir / "sessions").resolve()
        log_dir.mkdir(parents=True, exist_ok=True)
        registry.add_existing(args.workspace.resolve(), log_dir, state_dir, args.read_only)
    if args.uds is not None:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        args.uds.unlink(missing_ok=True)
        listener.bind(str(args.uds))
        os.chmod(args.uds, 0o600)
        address = f"unix:{args.uds}"
    else:
        family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Accepted connections inherit it; uvicorn sets it only on sockets it binds itself, and
        # without it each response waits out a delayed ACK (~40 ms).
        listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        listener.bind((args.host, args.port))
        scheme = "https" if args.ssl_certfile else "http"
        host = f"[{args.host}]" if family == socket.AF_INET6 else args.host
        address = f"{scheme}://{host}:{listener.getsockname()[1]}"
        if not LOOPBACK.match(args.host):
            print(f"warning: listening on {args.host}, not loopback: anyone who can reach it and holds the token "
                  "controls the workspaces; prefer an SSH tunnel or --ssl-certfile", file=sys.stderr)
    listener.listen(128)
    print(f"serving {address} (token in {token_file})", flush=True)
    config = uvicorn.Config(create_app(registry, token), log_level="warning", access_log=False,
                            ssl_certfile=args.ssl_certfile, ssl_keyfile=args.ssl_keyfile, timeout_keep_alive=30)
    uvicorn.Server(config).run(sockets=[listener])
    return 0
