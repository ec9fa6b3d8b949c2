"""The session server: the in-process workspace and session operations over HTTP.

``pytest-innovator serve`` runs it under uvicorn. It wraps the same runtime the in-process
backends use (``LocalWorkspace`` and ``SessionManager``), so behaviour and error messages are
those of the local backend; :mod:`pytest_innovator.remote.client` is its client. It serves

* the workspace given with ``--workspace DIR`` (id ``main``): how a Docker container serves the
  item's bind-mounted workspace; and
* with ``--root DIR``, workspaces created through the API (``POST /v1/workspaces``, then a tar
  upload of the task's starter files): how a remote GPU host serves the items of another host.

This module is the command. The rest of the server, by role: :mod:`.app` (the application),
:mod:`.middleware` (bearer token, ``X-Request-Id`` replay), :mod:`.registry` (the workspaces it
serves), :mod:`.routes` (one module per resource), :mod:`.models` (request and response bodies),
:mod:`.errors` (how mistakes are answered).
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import socket
import sys
import tempfile
from pathlib import Path

from ..gpus import detect_gpus
from ..sandbox import bwrap_path
from .app import create_app
from .registry import Registry

LOOPBACK = re.compile(r"^(127\.\d+\.\d+\.\d+|localhost|::1)$")


def read_or_create_token(token_file: Path | None) -> tuple[str, Path]:
    """The token in token_file; a new one (written 0600) when the file does not exist yet."""
    if token_file is None:
        token_file = Path(tempfile.mkdtemp(prefix="pytest-innovator-server-")) / "token"
    if token_file.exists():
        token = token_file.read_text(encoding="utf-8").strip()
        if len(token) < 16:
            raise SystemExit(
                f"error: the token in {token_file} is shorter than 16 characters; "
                "delete the file to have a new one made"
            )
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
        print(
            "error: give --workspace DIR (serve that directory), --root DIR (create workspaces there) or both",
            file=sys.stderr,
        )
        return 2
    if args.workspace is not None and not args.workspace.is_dir():
        print(f"error: --workspace {args.workspace}: not a directory", file=sys.stderr)
        return 2
    sandboxed = args.sandbox == "on" or (args.sandbox == "auto" and bwrap_path() is not None)
    if args.sandbox == "on" and bwrap_path() is None:
        print(
            "error: --sandbox on, but bubblewrap (bwrap) is not usable here: apt-get install bubblewrap",
            file=sys.stderr,
        )
        return 2
    token, token_file = read_or_create_token(args.token_file)
    # One-shot commands inherit the server's stdin: never let them read the terminal it started in.
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    root = args.root.resolve() if args.root else None
    if root is not None:
        root.mkdir(parents=True, exist_ok=True)
    try:
        gpus = tuple(detect_gpus(args.gpus))
    except ValueError as exc:
        print(f"error: --gpus: {exc}", file=sys.stderr)
        return 2
    registry = Registry(root, sandboxed, gpus)
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
            print(
                f"warning: listening on {args.host}, not loopback: anyone who can reach it and holds the token "
                "controls the workspaces; prefer an SSH tunnel or --ssl-certfile",
                file=sys.stderr,
            )
    listener.listen(128)
    print(f"serving {address} (token in {token_file})", flush=True)
    print(f"GPUs it leases: {','.join(gpus) or 'none'}", file=sys.stderr, flush=True)
    config = uvicorn.Config(
        create_app(registry, token),
        log_level="warning",
        access_log=False,
        ssl_certfile=args.ssl_certfile,
        ssl_keyfile=args.ssl_keyfile,
        timeout_keep_alive=30,
    )
    uvicorn.Server(config).run(sockets=[listener])
    return 0
