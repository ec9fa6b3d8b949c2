"""A real `pytest-innovator serve` process on 127.0.0.1 for the tests of the remote backend."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass
class ServerProcess:
    url: str
    token: str
    root: Path
    process: subprocess.Popen[str]
    log_path: Path


def start_server(
    directory: Path, *arguments: str, create: bool = True, env: dict[str, str] | None = None
) -> ServerProcess:
    """Start a server (with --root directory/root if create) on a free port of 127.0.0.1; its URL is
    read from its first line of output."""
    directory.mkdir(parents=True, exist_ok=True)
    root, token_file, log_path = directory / "root", directory / "token", directory / "server.log"
    command = [
        sys.executable,
        "-m",
        "pytest_innovator.cli",
        "serve",
        "--port",
        "0",
        "--token-file",
        str(token_file),
        *(["--root", str(root)] if create else []),
        *arguments,
    ]
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL, text=True, env=env
        )
    assert process.stdout is not None
    first_line = process.stdout.readline()
    if not first_line.startswith("serving http://"):
        process.kill()
        raise RuntimeError(f"the session server did not start: {first_line!r} {log_path.read_text()}")
    url = first_line.split()[1]
    return ServerProcess(url, token_file.read_text().strip(), root, process, log_path)


def stop_server(server: ServerProcess) -> None:
    server.process.terminate()
    try:
        server.process.wait(15)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


@pytest.fixture(scope="session")
def session_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = start_server(tmp_path_factory.mktemp("session-server"))
    try:
        yield server
    finally:
        stop_server(server)
