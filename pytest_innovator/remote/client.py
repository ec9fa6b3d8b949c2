"""The `remote` backend: a Workspace (and sessions) behind a session server, over HTTP.

:class:`RemoteWorkspace` implements the Workspace protocol, and :class:`RemoteSessionManager` /
:class:`RemoteSession` the part of the session API the environment and the tools use, by calling
``pytest-innovator serve`` (see server.py). Errors come back as the in-process backend raises
them: WorkspaceError and SessionError with the same messages.

Transport: every request that may change something carries a fresh ``X-Request-Id``, so it can be
retried after a dropped connection without running twice; reads are retried as they are. Waits
longer than LONG_POLL_S are split into several requests (each one idempotent), so no request
outlives a proxy's idle timeout, and each request's read timeout is its server-side wait plus
RESPONSE_MARGIN_S. A server that cannot be reached after the retries raises ServerUnreachable
(a ConnectionError, so the environment shows it to the agent as an error observation).
"""

from __future__ import annotations

import hashlib
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx

from ..archive import extract_tar, tar_stream
from ..errors import InnovatorError
from ..grading import GradeOutcome, GraderAccess
from ..mounts import Overlay
from ..protected import FileState, ProtectedChange, from_json, to_json
from ..provision import ProvisionReport
from ..sandbox import Sandbox
from ..sessions import CommandResult, SessionError, SessionStatus
from ..task import Task
from ..workspace import DirEntry, ExecResult, WorkspaceError

LONG_POLL_S = 60.0
RESPONSE_MARGIN_S = 30.0
CONNECT_TIMEOUT_S = 10.0
RETRIES = 5
RETRY_BACKOFF_S = 0.2
SESSION_START_S = 30.0 + RESPONSE_MARGIN_S
KILL_S = 25.0 + RESPONSE_MARGIN_S
DEFAULT_MAX_OUTPUT = 64 * 1024
RETRYABLE = (httpx.TransportError,)  # connect, read, write, protocol errors and timeouts


class ServerUnreachable(InnovatorError, ConnectionError):
    """The session server did not answer (it stopped, or the network between us failed)."""


class RemoteError(InnovatorError, RuntimeError):
    """The server answered in a way no caller mistake explains (a server bug, a wrong token)."""


class LeaseRefused(RemoteError):
    """A GPU lease the server did not grant: ``busy`` (409: not enough free now) or ``lease``
    (400: the host has fewer GPUs; 404: no such lease, released or expired)."""

    def __init__(self, status: int, kind: str, detail: str):
        super().__init__(detail)
        self.status, self.kind = status, kind


def _raise_for(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    try:
        body = response.json()
    except ValueError:
        body = {}
    kind = body.get("error") if isinstance(body, dict) else None
    detail = body.get("detail") if isinstance(body, dict) else None
    if kind == "session":
        raise SessionError(str(detail))
    if kind == "workspace":
        raise WorkspaceError(str(detail))
    if kind in ("busy", "lease"):
        raise LeaseRefused(response.status_code, kind, str(detail))
    if kind == "request" or response.status_code == 422:
        raise ValueError(_validation_message(detail) if response.status_code == 422 else str(detail))
    if response.status_code == 401:
        raise RemoteError(
            f"the session server refused the token ({detail}): use the token of the server's --token-file"
        )
    raise RemoteError(
        f"session server error {response.status_code} on {response.request.method} "
        f"{response.request.url.path}: {response.text[:2000]}"
    )


def _validation_message(detail: Any) -> str:
    if isinstance(detail, list):
        parts = [
            f"{'.'.join(str(p) for p in e.get('loc', [])[1:])}: {e.get('msg')}" for e in detail if isinstance(e, dict)
        ]
        return "invalid request: " + "; ".join(parts)
    return f"invalid request: {detail}"


class Connection:
    """One server: the HTTP client, retries, request ids, and errors turned into exceptions."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        transport: httpx.BaseTransport | None = None,
        retries: int = RETRIES,
        alive_check: Callable[[], None] | None = None,
        host_name: str = "",
    ):
        self.base_url = base_url
        self.host_name = host_name  # a pool host's name, for the messages
        self.retries = retries
        self.alive_check = alive_check  # raises ServerUnreachable at once when the server is known gone
        if transport is None:
            # A request body written after its headers must not wait for the server's delayed ACK.
            transport = httpx.HTTPTransport(socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
        self.client = httpx.Client(
            base_url=base_url,
            transport=transport,
            headers={"Authorization": f"Bearer {token}"},
            timeout=httpx.Timeout(RESPONSE_MARGIN_S, connect=CONNECT_TIMEOUT_S),
        )

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        content: Callable[[], Iterator[bytes]] | bytes | None = None,
        wait_s: float = 0.0,
        stream_to: Callable[[httpx.Response], Any] | None = None,
    ) -> Any:
        """Send a request (retried on transport errors); the JSON answer, or stream_to(response)."""
        headers = {} if method in ("GET", "HEAD") else {"X-Request-Id": uuid.uuid4().hex}
        timeout = httpx.Timeout(wait_s + RESPONSE_MARGIN_S, connect=CONNECT_TIMEOUT_S)
        last_error: Exception | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                if self.alive_check is not None:
                    self.alive_check()
                time.sleep(min(RETRY_BACKOFF_S * 2 ** (attempt - 1), 5.0))
            body = content() if callable(content) else content
            try:
                request = self.client.build_request(
                    method, path, json=json, params=params, content=body, headers=headers, timeout=timeout
                )
                response = self.client.send(request, stream=stream_to is not None)
                try:
                    if stream_to is not None and response.status_code < 400:
                        return stream_to(response)
                    if stream_to is not None:
                        response.read()
                    _raise_for(response)
                    return response.json() if response.content else None
                finally:
                    response.close()
            except RETRYABLE as exc:
                last_error = exc
        lost = f"host {self.host_name} stopped answering: " if self.host_name else ""
        raise ServerUnreachable(
            f"{lost}the session server at {self.base_url} did not answer {method} {path} after "
            f"{self.retries + 1} attempts ({type(last_error).__name__}: {last_error}); "
            "is it running?"
        )

    def close(self) -> None:
        self.client.close()


def _status(data: dict[str, Any]) -> SessionStatus:
    return SessionStatus(**data)


def _result(data: dict[str, Any]) -> CommandResult:
    return CommandResult(**data)


class RemoteSession:
    """A session on the server; the same methods as :class:`pytest_innovator.sessions.Session`."""

    def __init__(self, manager: RemoteSessionManager, name: str):
        self.manager = manager
        self.name = name
        self._path = f"{manager.path}/sessions/{name}"

    def _call(self, method: str, suffix: str = "", **kwargs: Any) -> Any:
        return self.manager.connection.request(method, self._path + suffix, **kwargs)

    @property
    def busy(self) -> bool:
        return self.status().busy

    @property
    def pid(self) -> int | None:
        return self.status().pid

    def run(self, command: str, wait: float = 0.0, max_output: int = DEFAULT_MAX_OUTPUT) -> CommandResult:
        started = time.monotonic()
        first_wait = min(wait, LONG_POLL_S)
        body = {"command": command, "wait": first_wait, "max_output": max_output}
        result = _result(self._call("POST", "/run", json=body, wait_s=first_wait))
        if result.done or wait <= first_wait:
            return result
        self.wait(wait - (time.monotonic() - started))
        return self.result(max_output)

    def wait(self, timeout: float) -> bool:
        deadline = time.monotonic() + max(timeout, 0.0)
        while True:
            chunk = min(max(deadline - time.monotonic(), 0.0), LONG_POLL_S)
            if self._call("POST", "/wait", json={"timeout": chunk}, wait_s=chunk)["idle"]:
                return True
            if time.monotonic() >= deadline:
                return False

    def result(self, max_output: int = DEFAULT_MAX_OUTPUT) -> CommandResult:
        return _result(self._call("GET", "/result", params={"max_output": max_output}))

    def read(self, since: int, max_bytes: int = DEFAULT_MAX_OUTPUT) -> tuple[str, int]:
        data = self._call("GET", "/output", params={"since": since, "max_bytes": max_bytes})
        return data["output"], data["next_offset"]

    def send_input(self, text: str) -> None:
        self._call("POST", "/input", json={"text": text})

    def interrupt(self) -> None:
        self._call("POST", "/interrupt", wait_s=KILL_S)

    def kill(self) -> None:
        self._call("POST", "/kill", wait_s=KILL_S)

    def status(self) -> SessionStatus:
        return _status(self._call("GET"))

    def close(self) -> None:
        self.manager.close(self.name)


class RemoteSessionManager:
    """The sessions of one remote workspace; the methods of :class:`SessionManager` the env uses."""

    def __init__(self, connection: Connection, workspace_path: str):
        self.connection = connection
        self.path = workspace_path

    def create(self, name: str | None = None) -> RemoteSession:
        data = self.connection.request("POST", f"{self.path}/sessions", json={"name": name}, wait_s=SESSION_START_S)
        return RemoteSession(self, data["name"])

    def get(self, name: str) -> RemoteSession:
        """A handle; an unknown name raises SessionError at its first use, with the server's message."""
        return RemoteSession(self, name)

    def list(self) -> list[SessionStatus]:
        return [_status(s) for s in self.connection.request("GET", f"{self.path}/sessions")]

    def close(self, name: str) -> None:
        self.connection.request("DELETE", f"{self.path}/sessions/{name}", wait_s=SESSION_START_S)

    def close_all(self) -> None:
        self.connection.request("POST", f"{self.path}/close", wait_s=SESSION_START_S)

    def watch_any(self, timeout: float) -> bool:
        """Wait until a command running now finishes (or timeout); False at once when none runs."""
        running = {(s.name, s.command_id) for s in self.list() if s.busy}
        if not running:
            return False
        deadline = time.monotonic() + max(timeout, 0.0)
        while True:
            chunk = min(max(deadline - time.monotonic(), 0.0), LONG_POLL_S)
            if self.connection.request("POST", f"{self.path}/watch", json={"timeout": chunk}, wait_s=chunk)["finished"]:
                return True
            # Between two requests a command may have finished unseen: compare with the start.
            still = {(s.name, s.command_id) for s in self.list() if s.busy}
            if running - still:
                return True
            if time.monotonic() >= deadline:
                return False


class RemoteWorkspace:
    """A workspace served by a session server; implements the Workspace protocol.

    Files and commands live on the server's host; `copy_out` downloads (the grader runs here),
    `expose` uploads. `wrap_grader` runs the grader in a local bubblewrap sandbox when
    `grader_hidden` names what it must not see, as the sandbox backend does.
    """

    backend = "remote"
    host_root: Path | None = None  # the files are on the server's host
    provisioning = "host"  # made there; the server's header says how
    overlay: Overlay | None = None

    def limit_events(self) -> list[str]:
        return self._call("GET", "/limit-events")["said"]

    def __init__(
        self,
        base_url: str,
        token: str,
        workspace_id: str = "main",
        *,
        transport: httpx.BaseTransport | None = None,
        grader_hidden: Sequence[Path] = (),
        log_dir: Path | None = None,
        remove_on_close: bool = False,
        retries: int = RETRIES,
        alive_check: Callable[[], None] | None = None,
        host_name: str = "",
    ):
        self.connection = Connection(
            base_url, token, transport=transport, retries=retries, alive_check=alive_check, host_name=host_name
        )
        self.workspace_id = workspace_id
        self.path = f"/v1/workspaces/{workspace_id}"
        self.grader_hidden = list(grader_hidden)
        self.log_dir = log_dir  # where close() saves the session logs; None: they stay on the server
        self.remove_on_close = remove_on_close
        self._closed = False
        self.grader_timeout: float | None = None  # set when the server made it from the task: it grades it
        self.companions: list[RemoteWorkspace] = []  # an item's workspaces on its other hosts (hosts/spanning.py)
        self.held_hosts: dict[str, tuple[str, ...]] = {}  # pool host -> the GPUs leased there, for list_hosts
        info = self.connection.request("GET", self.path)
        self.root: str = info["root"]
        self.server_protects: str = info["protects"]
        self.host_limits: str = info.get("limits") or "not said"
        self.sessions = RemoteSessionManager(self.connection, self.path)

    @property
    def protects(self) -> str:
        return f"remote backend ({self.connection.base_url}), where {self.server_protects}"

    @property
    def limits_text(self) -> str:
        return f"on the host: {self.host_limits}"

    def _call(self, method: str, suffix: str, **kwargs: Any) -> Any:
        return self.connection.request(method, self.path + suffix, **kwargs)

    def read_file(self, path: str) -> bytes:
        return self._call("GET", "/file", params={"path": path}, stream_to=lambda r: r.read())

    def write_file(self, path: str, data: bytes) -> None:
        self._call("PUT", "/file", params={"path": path}, content=data)

    def list_dir(self, path: str, depth: int = 1) -> list[DirEntry]:
        return [DirEntry(**e) for e in self._call("GET", "/files", params={"path": path, "depth": depth})]

    def exec(self, command: str, timeout: float) -> ExecResult:
        data = self._call("POST", "/exec", json={"command": command, "timeout": timeout}, wait_s=timeout)
        return ExecResult(data["exit_code"], data["output"])

    def copy_out(self, path: str, dest: Path) -> bool:
        """Download a workspace file or directory (regular files only) to dest; False when absent."""

        def save(response: httpx.Response) -> bool:
            if response.headers.get("x-innovator-kind") == "dir":
                extract_tar(_ResponseReader(response), dest)
            else:
                dest.parent.mkdir(parents=True, exist_ok=True)
                with open(dest, "wb") as stream:
                    stream.writelines(response.iter_bytes())
            return True

        try:
            return self._call("GET", "/archive", params={"path": path}, stream_to=save)
        except WorkspaceError:
            return False

    def upload(self, source: Path, path: str = ".") -> tuple[int, int]:
        """Send the directory `source` into `path` of the workspace; (files, bytes) extracted."""
        data = self._call("PUT", "/archive", params={"path": path}, content=lambda: tar_stream(source, symlinks=True))
        return data["files"], data["bytes"]

    def expose(self, host_path: Path) -> str:
        """Upload a host directory outside the workspace; its path on the server."""
        return self._call("POST", "/expose", content=lambda: tar_stream(host_path, symlinks=True))["path"]

    @property
    def grades_on_host(self) -> bool:
        return self.grader_timeout is not None

    def grade(self, seed: int, index: int, log_path: Path) -> GradeOutcome:
        """The task's grader run by the server on its host (a workspace made from the task)."""
        assert self.grader_timeout is not None
        data = self._call(
            "POST", "/grade", json={"seed": seed, "index": index}, wait_s=self.grader_timeout + RESPONSE_MARGIN_S
        )
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.write_text(data.pop("log"), encoding="utf-8")
        return GradeOutcome(**data)

    def wrap_grader(self, argv: list[str], scratch: Path, access: GraderAccess = GraderAccess()) -> list[str]:
        if access.workspace:  # the plugin skips such tasks on this backend
            raise RemoteError("a remote workspace cannot be shown to a grader on this host")
        if not self.grader_hidden:
            return argv
        sandbox = Sandbox(
            writable=[scratch],
            readonly=list(access.readable),
            hidden=self.grader_hidden,
            network=access.network,
            chdir=scratch / "grader",
        )
        return sandbox.argv(argv)

    def disk_usage(self) -> int:
        return self._call("GET", "/disk")["bytes"]

    def protected_state(self, patterns: Sequence[str]) -> dict[str, FileState]:
        data = self._call("POST", "/protected/state", json={"patterns": list(patterns)})
        return from_json(data["states"])

    def protected_changes(self, before: dict[str, FileState], patterns: Sequence[str]) -> list[ProtectedChange]:
        data = self._call("POST", "/protected/changes", json={"before": to_json(before), "patterns": list(patterns)})
        return [ProtectedChange(c["path"], FileState(**c["before"]), FileState(**c["after"]), c["what"]) for c in data]

    def close(self) -> None:
        """End every session; save the logs to log_dir; remove the workspace if it was made for this item."""
        if self._closed:
            return
        self._closed = True
        try:
            RemoteSessionManager(self.connection, self.path).close_all()  # this host's (self.sessions may span hosts)
            if self.log_dir is not None:
                log_dir = self.log_dir
                self.connection.request(
                    "GET", self.path + "/logs", stream_to=lambda r: extract_tar(_ResponseReader(r), log_dir)
                )
            if self.remove_on_close:
                self.connection.request("DELETE", self.path)
        except ServerUnreachable as exc:
            # The item already failed (or its result is recorded); what stayed on the host is said here.
            if self.log_dir is not None:
                (self.log_dir / "unreachable.txt").write_text(f"the session logs stayed on the host: {exc}\n")
        finally:
            for companion in self.companions:
                companion.close()
            self.connection.close()


class _ResponseReader:
    """A file-like view of a streamed response body, for tarfile's stream mode."""

    def __init__(self, response: httpx.Response):
        self._chunks = response.iter_bytes()
        self._buffer = b""

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buffer) < size:
            try:
                self._buffer += next(self._chunks)
            except StopIteration:
                break
        if size < 0:
            data, self._buffer = self._buffer, b""
        else:
            data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data


def task_digest(task: Task) -> str:
    """Names a task directory's content: its files' paths, sizes, modes and times."""
    digest = hashlib.sha256(task.id.encode())
    for directory, subdirectories, names in os.walk(task.root):
        subdirectories.sort()
        for name in sorted(names):
            path = Path(directory, name)
            info = path.lstat()
            line = f"{path.relative_to(task.root)}\0{info.st_size}\0{info.st_mode}\0{info.st_mtime_ns}\n"
            digest.update(line.encode())
    return digest.hexdigest()


def send_task(connection: Connection, task: Task) -> str:
    """Upload the task's directory unless the server has it already; its digest."""
    digest = task_digest(task)
    if not connection.request("GET", f"/v1/tasks/{digest}")["known"]:
        connection.request(
            "PUT",
            f"/v1/tasks/{digest}",
            content=lambda: tar_stream(task.root, symlinks=True),
            wait_s=SESSION_START_S,
        )
    return digest


def connect_remote_workspace(
    task: Task,
    run_dir: Path,
    env: dict[str, str] | None = None,
    *,
    base_url: str,
    token: str,
    grader_hidden: Sequence[Path] = (),
    keep_remote: bool = False,
    transport: httpx.BaseTransport | None = None,
    lease_id: str | None = None,
    alive_check: Callable[[], None] | None = None,
    host_name: str = "",
    from_task: bool = False,
) -> tuple[RemoteWorkspace, ProvisionReport]:
    """Create the item's workspace on a session server (started with --root) from the task's starter
    files; the counterpart of LocalWorkspace.create. Session logs come back to run_dir/sessions at
    close; the remote copy is removed then unless keep_remote. Under a GPU lease of that server
    (lease_id), its commands see the lease's GPUs. With from_task, the task's directory is sent
    to the server, which makes the workspace from it (a dataset's too, found at the same path on
    that host) and grades it there (remote/routes/tasks.py)."""
    started = time.perf_counter()
    connection = Connection(base_url, token, transport=transport, host_name=host_name)
    body: dict[str, Any] = {"env": dict(env or {}), "network": task.spec.network, "label": task.id, "lease": lease_id}
    resources = task.spec.resources
    body["limits"] = {"memory": resources.memory, "cpus": resources.cpus, "processes": resources.processes}
    try:
        if from_task:
            body.update(
                task=send_task(connection, task),
                dataset=str(task.dataset_root) if task.dataset_root else None,
                dataset_python=str(task.dataset_python) if task.dataset_python else None,
            )
        info = connection.request("POST", "/v1/workspaces", json=body)
    finally:
        connection.close()
    log_dir = run_dir / "sessions"
    log_dir.mkdir(parents=True, exist_ok=True)
    workspace = RemoteWorkspace(
        base_url,
        token,
        info["id"],
        transport=transport,
        grader_hidden=grader_hidden,
        log_dir=log_dir,
        remove_on_close=not keep_remote,
        alive_check=alive_check,
        host_name=host_name,
    )
    if from_task:
        workspace.grader_timeout = task.spec.grader.timeout
        seconds = time.perf_counter() - started
        nothing = ProvisionReport(files=0, bytes=0, reflinked=0, linked=0, copied=0, linked_paths=(), seconds=seconds)
        return workspace, nothing  # provisioned on the server, which does not say how
    try:
        files, size = workspace.upload(task.workspace_dir)
    except BaseException:
        workspace.close()
        raise
    report = ProvisionReport(
        files=files,
        bytes=size,
        reflinked=0,
        linked=0,
        copied=files,
        linked_paths=(),
        seconds=time.perf_counter() - started,
    )
    return workspace, report
