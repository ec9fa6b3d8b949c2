"""The session server and its client, against real `pytest-innovator serve` processes on 127.0.0.1."""

from __future__ import annotations

import io
import os
import signal
import socket
import stat
import tarfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from pytest_innovator.archive import HAS_DATA_FILTER, ArchiveError, extract_tar
from pytest_innovator.remote.client import (
    RemoteWorkspace,
    ServerUnreachable,
    connect_remote_workspace,
)
from pytest_innovator.sessions import SessionError
from pytest_innovator.task import load_task
from pytest_innovator.workspace import LocalWorkspace, Workspace, WorkspaceError

from .session_server import ServerProcess, session_server, start_server, stop_server  # noqa: F401


@pytest.fixture
def remote(number_task_dir: Path, tmp_path: Path, session_server: ServerProcess) -> Iterator[RemoteWorkspace]:  # noqa: F811
    workspace, _ = connect_remote_workspace(
        load_task(number_task_dir), tmp_path / "run", base_url=session_server.url, token=session_server.token
    )
    yield workspace
    workspace.close()


def client(server: ServerProcess, token: str | None = None) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token or server.token}"}, timeout=60)


def wait_for_file(name: str) -> str:
    """A command that runs until `name` appears in the workspace (written by the test)."""
    return f"while [ ! -e {name} ]; do sleep 0.02; done"


def test_every_request_needs_the_token(session_server: ServerProcess) -> None:  # noqa: F811
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {session_server.token}"}):
        for path in ("/v1/health", "/v1/openapi.json", "/v1/workspaces", "/no/such/path"):
            response = httpx.get(session_server.url + path, headers=headers)
            assert response.status_code == 401, (headers, path)
            assert response.json()["error"] == "auth" and response.headers["www-authenticate"] == "Bearer"
    with client(session_server) as http:
        assert http.get("/v1/health").json()["ok"] is True
        assert http.get("/no/such/path").status_code == 404


def test_errors_are_those_of_the_in_process_backend(
    remote: RemoteWorkspace,
    number_task_dir: Path,
    tmp_path: Path,
    session_server: ServerProcess,  # noqa: F811
) -> None:
    local, _ = LocalWorkspace.create(load_task(number_task_dir), tmp_path / "local")
    messages: dict[str, list[str]] = {"local": [], "remote": []}
    try:
        for name, workspace in (("local", local), ("remote", remote)):
            workspace.sessions.create("busy").run(wait_for_file("go"))  # type: ignore[union-attr]
            calls = mistakes(workspace)
            for call in calls:
                with pytest.raises((WorkspaceError, SessionError)) as raised:
                    call()
                message = f"{type(raised.value).__name__}: {raised.value}"
                messages[name].append(message.replace(workspace.root, "<root>"))
            workspace.write_file("go", b"")
    finally:
        local.close()
    assert messages["remote"] == messages["local"]
    # The statuses that say what kind of mistake it was.
    with client(session_server) as http:
        base = f"/v1/workspaces/{remote.workspace_id}"
        assert http.get(base + "/file", params={"path": "../x"}).status_code == 400
        assert http.get(base + "/sessions/nope").status_code == 404
        assert http.get("/v1/workspaces/nope").status_code == 404
        remote.sessions.get("busy").run(wait_for_file("go2"))
        assert http.post(base + "/sessions/busy/run", json={"command": "true"}).status_code == 409
        remote.write_file("go2", b"")


def mistakes(workspace: Workspace | RemoteWorkspace) -> list[Callable[[], object]]:
    """Calls a caller may get wrong, each raising WorkspaceError or SessionError."""
    return [
        lambda: workspace.read_file("../../etc/passwd"),
        lambda: workspace.read_file("/etc/passwd"),
        lambda: workspace.read_file("data"),
        lambda: workspace.read_file("missing.txt"),
        lambda: workspace.list_dir("answer.txt"),
        lambda: workspace.sessions.get("nope").status(),
        lambda: workspace.sessions.get("busy").run("true"),
        lambda: workspace.sessions.create("bad name!"),
        lambda: workspace.sessions.create("busy"),
        lambda: workspace.sessions.get("busy").read(10**9),
    ]


class DropFirstResponse(httpx.HTTPTransport):
    """Delivers every request, but loses the first response of each kind of request given."""

    def __init__(self, paths: set[str]):
        super().__init__()
        self.paths = paths
        self.dropped: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        if request.url.path in self.paths and request.url.path not in self.dropped:
            response.read()
            self.dropped.append(request.url.path)
            raise httpx.ReadError("connection reset while reading the response", request=request)
        return response


def test_a_retried_request_is_not_run_twice(remote: RemoteWorkspace, session_server: ServerProcess) -> None:  # noqa: F811
    remote.sessions.create("s")
    run_path = f"/v1/workspaces/{remote.workspace_id}/sessions/s/run"
    exec_path = f"/v1/workspaces/{remote.workspace_id}/exec"
    transport = DropFirstResponse({run_path, exec_path})
    retrying = RemoteWorkspace(session_server.url, session_server.token, remote.workspace_id, transport=transport)
    result = retrying.sessions.get("s").run("echo ran >> count.txt; cat count.txt", wait=10)
    once = retrying.exec("echo ran >> once.txt; wc -l < once.txt", timeout=10)
    assert transport.dropped == [run_path, exec_path]  # both were answered, the answers lost, and sent again
    assert (result.done, result.exit_code, result.output) == (True, 0, "ran\n")
    assert remote.read_file("count.txt") == b"ran\n"
    assert once.output.strip() == "1" and remote.read_file("once.txt") == b"ran\n"


def test_request_ids_replay_the_first_answer(remote: RemoteWorkspace, session_server: ServerProcess) -> None:  # noqa: F811
    remote.sessions.create("s")
    path = f"/v1/workspaces/{remote.workspace_id}/sessions/s/run"
    request_id = uuid.uuid4().hex
    body = {"command": f"{wait_for_file('go')}; echo ran >> count.txt", "wait": 30}
    answers: list[httpx.Response] = []
    with client(session_server) as http:
        headers = {"X-Request-Id": request_id}
        first = threading.Thread(target=lambda: answers.append(http.post(path, json=body, headers=headers)))
        first.start()
        while not remote.sessions.get("s").status().busy:
            time.sleep(0.01)
        # A retry while the first attempt still runs waits for it instead of starting the command again.
        retry = threading.Thread(target=lambda: answers.append(http.post(path, json=body, headers=headers)))
        retry.start()
        remote.write_file("go", b"")
        first.join(30)
        retry.join(30)
        late = http.post(path, json=body, headers={"X-Request-Id": request_id})
        other = http.post(path.replace("/run", "/wait"), json={"timeout": 0}, headers={"X-Request-Id": request_id})
    assert [a.status_code for a in answers] == [200, 200] and answers[0].json() == answers[1].json() == late.json()
    assert answers[0].json()["command_id"] == 1 and answers[0].json()["done"]
    assert remote.read_file("count.txt") == b"ran\n"
    assert other.status_code == 409 and "another request" in other.json()["detail"]


def test_long_waits_do_not_hold_up_other_requests(remote: RemoteWorkspace, session_server: ServerProcess) -> None:  # noqa: F811
    """More waiting requests than anyio's default 40 worker threads, and the server still answers."""
    remote.sessions.create("s").run(wait_for_file("go"))
    path = f"/v1/workspaces/{remote.workspace_id}"
    finished: list[bool] = []
    with client(session_server) as http:
        waiters = [
            threading.Thread(
                target=lambda: finished.append(http.post(path + "/watch", json={"timeout": 60}).json()["finished"])
            )
            for _ in range(60)
        ]
        for waiter in waiters:
            waiter.start()
        for _ in range(20):
            assert http.get(path + "/sessions").json()[0]["busy"] is True
            assert http.get("/v1/health").status_code == 200
        assert any(waiter.is_alive() for waiter in waiters)
        remote.write_file("go", b"")
        for waiter in waiters:
            waiter.join(60)
    assert finished == [True] * 60


def _tar(*members: tuple[tarfile.TarInfo, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for info, data in members:
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _member(
    name: str, data: bytes = b"x", kind: bytes = tarfile.REGTYPE, link: str = ""
) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type, info.size, info.linkname = kind, len(data) if kind == tarfile.REGTYPE else 0, link
    return info, data


@pytest.mark.parametrize(
    ("archive", "detail"),
    [
        pytest.param(b"not a tar archive at all", "not a valid tar archive", id="garbage"),
        pytest.param(_tar(_member("../escaped.txt")), "may not be extracted here", id="dotdot"),
        pytest.param(
            _tar(_member("link", kind=tarfile.SYMTYPE, link="/etc/passwd")),
            "may not be extracted here",
            id="absolute-symlink",
        ),
        pytest.param(
            _tar(_member("link", kind=tarfile.SYMTYPE, link="../../..")), "may not be extracted here", id="symlink-out"
        ),
    ],
)
def test_bad_archives_are_refused(
    remote: RemoteWorkspace,
    session_server: ServerProcess,  # noqa: F811
    archive: bytes,
    detail: str,
) -> None:
    with client(session_server) as http:
        response = http.put(f"/v1/workspaces/{remote.workspace_id}/archive", params={"path": "sub"}, content=archive)
        assert response.status_code == 400 and detail in response.json()["detail"]
        root = session_server.root / remote.workspace_id
        assert not (root / "workspace" / "escaped.txt").exists() and not (root / "escaped.txt").exists()
        # An absolute name is put below the destination, not at its absolute path.
        placed = http.put(
            f"/v1/workspaces/{remote.workspace_id}/archive",
            params={"path": "sub"},
            content=_tar(_member("/tmp/absolute.txt")),
        )
    assert placed.status_code == 200 and remote.read_file("sub/tmp/absolute.txt") == b"x"


WITH_FILTER = pytest.param(
    True,
    id="data-filter",
    marks=pytest.mark.skipif(not HAS_DATA_FILTER, reason="tarfile has no extraction filters before Python 3.11.4"),
)
BOTH_WAYS = pytest.mark.parametrize("data_filter", [WITH_FILTER, pytest.param(False, id="checked-here")])


@BOTH_WAYS
@pytest.mark.parametrize(
    ("members", "refusal"),
    [
        pytest.param([_member("../escaped.txt")], "would be extracted to", id="dotdot"),
        pytest.param([_member("sub/../../escaped.txt")], "would be extracted to", id="dotdot-inside"),
        pytest.param([_member("link/escaped.txt")], "would be extracted to", id="through-a-symlink"),
        pytest.param(
            [_member("abs", kind=tarfile.SYMTYPE, link="/etc")], "link to an absolute path", id="absolute-symlink"
        ),
        pytest.param([_member("up", kind=tarfile.SYMTYPE, link="../..")], "would link to", id="symlink-out"),
        pytest.param(
            [_member("hard", kind=tarfile.LNKTYPE, link="../escaped.txt")], "would link to", id="hardlink-out"
        ),
        pytest.param([_member("fifo", kind=tarfile.FIFOTYPE)], "special file", id="fifo"),
        pytest.param([_member("null", kind=tarfile.CHRTYPE)], "special file", id="device"),
    ],
)
def test_archives_cannot_reach_outside_their_destination(
    tmp_path: Path, data_filter: bool, members: list[tuple[tarfile.TarInfo, bytes]], refusal: str
) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "link").symlink_to(tmp_path)  # as a command in the workspace could have made it
    (tmp_path / "escaped.txt").write_text("outside")
    with pytest.raises(ArchiveError, match=f"may not be extracted here: .*{refusal}"):
        extract_tar(io.BytesIO(_tar(*members)), dest, data_filter=data_filter)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dest", "escaped.txt"]
    assert os.listdir(dest) == ["link"] and (tmp_path / "escaped.txt").read_text() == "outside"


@BOTH_WAYS
def test_extracted_files_get_sane_owners_and_modes(tmp_path: Path, data_filter: bool) -> None:
    members = [
        _member("/absolute.txt"),
        _member("run.sh", b"#!/bin/sh\n"),
        _member("notes.txt", b"notes"),
        _member("dir", kind=tarfile.DIRTYPE),
        _member("dir/link", kind=tarfile.SYMTYPE, link="../run.sh"),
        _member("hard", kind=tarfile.LNKTYPE, link="notes.txt"),
    ]
    for (info, _), mode in zip(members, [0o644, 0o4777, 0o066, 0o700, 0o777, 0o066]):
        info.mode, info.uid, info.gid = mode, 12345, 12345
    dest = tmp_path / "dest"
    assert extract_tar(io.BytesIO(_tar(*members)), dest, data_filter=data_filter) == (3, 1 + 10 + 5)
    (tmp_path / "default").mkdir()
    modes = {p.name: stat.S_IMODE(p.lstat().st_mode) for p in dest.rglob("*") if not p.is_symlink()}
    default = stat.S_IMODE((tmp_path / "default").stat().st_mode)
    assert modes == {"absolute.txt": 0o644, "run.sh": 0o755, "notes.txt": 0o644, "hard": 0o644, "dir": default}
    assert {p.lstat().st_uid for p in dest.rglob("*")} == {os.geteuid()}
    assert (dest / "dir" / "link").read_bytes() == b"#!/bin/sh\n"
    assert os.path.samefile(dest / "hard", dest / "notes.txt")


def test_outputs_come_back_without_symlinks(remote: RemoteWorkspace, tmp_path: Path) -> None:
    remote.exec("mkdir -p out/deep && echo a > out/a.txt && echo b > out/deep/b.txt && ln -s /etc/passwd out/link", 10)
    assert remote.copy_out("out", tmp_path / "copy")
    copied = sorted(str(p.relative_to(tmp_path / "copy")) for p in (tmp_path / "copy").rglob("*"))
    assert copied == ["a.txt", "deep", "deep/b.txt"]
    assert remote.copy_out("out/a.txt", tmp_path / "single.txt") and (tmp_path / "single.txt").read_text() == "a\n"
    assert not remote.copy_out("missing", tmp_path / "missing")
    assert not remote.copy_out("../../etc", tmp_path / "etc")


def test_expose_puts_a_copy_outside_the_workspace(remote: RemoteWorkspace, tmp_path: Path) -> None:
    (tmp_path / "solution").mkdir()
    (tmp_path / "solution" / "answer.txt").write_text("0.9\n")
    exposed = remote.expose(tmp_path / "solution")
    assert not exposed.startswith(remote.root)
    assert remote.exec(f"cat {exposed}/answer.txt", 10).output == "0.9\n"


def test_close_keeps_the_logs_and_removes_the_remote_copy(
    number_task_dir: Path,
    tmp_path: Path,
    session_server: ServerProcess,  # noqa: F811
) -> None:
    workspace, report = connect_remote_workspace(
        load_task(number_task_dir), tmp_path / "run", base_url=session_server.url, token=session_server.token
    )
    assert report.files == 2 and remote_dir_exists(session_server, workspace.workspace_id)
    workspace.sessions.create("s").run("echo logged", wait=10)
    workspace.close()
    workspace.close()
    assert (tmp_path / "run" / "sessions" / "s.log").read_text() == "logged\n"
    assert not remote_dir_exists(session_server, workspace.workspace_id)


def remote_dir_exists(server: ServerProcess, workspace_id: str) -> bool:
    return (server.root / workspace_id).exists()


def test_an_unreachable_server_is_a_connection_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ServerUnreachable, match="did not answer") as raised:
        RemoteWorkspace(f"http://127.0.0.1:{port}", "token", retries=1)
    assert isinstance(raised.value, ConnectionError)


def test_served_directory_read_only_files_and_no_provisioning(tmp_path: Path) -> None:
    served = tmp_path / "served"
    (served / "data").mkdir(parents=True)
    (served / "data" / "facts.txt").write_text("fact\n")
    server = start_server(
        tmp_path / "server", "--workspace", str(served), "--read-only", "data/facts.txt", create=False
    )
    try:
        workspace = RemoteWorkspace(server.url, server.token)
        assert workspace.root == str(served.resolve()) and workspace.list_dir("data")[0].path == "data/facts.txt"
        with pytest.raises(WorkspaceError, match="read-only"):
            workspace.write_file("data/facts.txt", b"changed")
        with client(server) as http:
            created = http.post("/v1/workspaces", json={})
            removed = http.delete("/v1/workspaces/main")
        assert created.status_code == 409 and "--root" in created.json()["detail"]
        assert removed.status_code == 409 and "stop the server" in removed.json()["detail"]
        workspace.close()
    finally:
        stop_server(server)


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGKILL])
def test_nothing_survives_the_server(tmp_path: Path, number_task_dir: Path, stop_signal: int) -> None:
    server = start_server(tmp_path / "server")
    marker = uuid.uuid4().hex[:12]
    try:
        workspace, _ = connect_remote_workspace(
            load_task(number_task_dir), tmp_path / "run", base_url=server.url, token=server.token
        )
        sleeper = f"python3 -c 'import time; time.sleep(600)' {marker}"
        workspace.sessions.create("s").run(f"{sleeper} & setsid {sleeper} &", wait=5)
        deadline = time.monotonic() + 10
        while len(processes_with(marker)) != 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(processes_with(marker)) == 2
        os.kill(server.process.pid, stop_signal)
        server.process.wait(15)
        deadline = time.monotonic() + 15
        while processes_with(marker) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert processes_with(marker) == []
    finally:
        stop_server(server)


def processes_with(marker: str) -> list[str]:
    """The sleepers that have started Python: not the shell's forks before their exec, nor setsid
    and its fork (counting those made the number pass through 2 before both sleepers ran)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            arguments = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if entry.name.isdigit() and arguments[0].startswith(b"python3") and marker.encode() in arguments:
            found.append(entry.name)
    return found


def test_serve_says_what_it_needs(tmp_path: Path) -> None:
    from pytest_innovator.cli import main

    assert main(["serve"]) == 2
    assert main(["serve", "--workspace", str(tmp_path / "missing")]) == 2
    (tmp_path / "token").write_text("short\n")
    with pytest.raises(SystemExit, match="shorter than 16 characters"):
        main(["serve", "--root", str(tmp_path / "root"), "--token-file", str(tmp_path / "token")])


@pytest.mark.skipif(os.geteuid() != 0, reason="cgroups for the host's items need root")
def test_what_the_hosts_limits_did_reaches_the_client(
    number_task_dir: Path,
    tmp_path: Path,
    session_server: ServerProcess,  # noqa: F811
) -> None:
    toml = number_task_dir / "task.toml"
    toml.write_text(toml.read_text().replace("[grader]", '[resources]\nmemory = "256M"\n\n[grader]'))
    workspace, _ = connect_remote_workspace(
        load_task(number_task_dir), tmp_path / "run", base_url=session_server.url, token=session_server.token
    )
    try:
        assert workspace.limits_text.startswith("on the host: limits by cgroup") and "0.25 GiB" in workspace.limits_text
        workspace.sessions.create("s").run("head -c 512M /dev/zero | tail > /dev/null", wait=60)
        told = [said for said in workspace.limit_events() if not said.startswith("CPU limit")]
        assert len(told) == 1 and told[0].startswith("out of memory: the kernel killed")
        assert not [said for said in workspace.limit_events() if not said.startswith("CPU limit")]  # told once
    finally:
        workspace.close()
