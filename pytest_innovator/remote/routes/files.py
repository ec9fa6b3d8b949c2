"""A workspace's files: list, read, write, tar archives both ways, its session logs, exposed copies."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response, StreamingResponse

from ...archive import ArchiveError, extract_tar, file_chunks, tar_stream
from ...workspace import DirEntry
from ..errors import ApiError
from ..models import BYTES_BODY, BYTES_RESPONSE, TAR_BODY, ExposedPath, Extracted, Written
from .dependencies import WORKSPACE_PATH, Ws

UPLOAD_SPOOL_BYTES = 8 << 20

router = APIRouter(prefix=WORKSPACE_PATH)


@router.get("/files", response_model=list[DirEntry])
def list_files(item: Ws, path: str = ".", depth: Annotated[int, Query(ge=1, le=20)] = 1) -> list[DirEntry]:
    return item.workspace.list_dir(path, depth)


@router.get("/file", responses=BYTES_RESPONSE, response_class=Response)
def read_file(item: Ws, path: str) -> Response:
    return Response(item.workspace.read_file(path), media_type="application/octet-stream")


@router.put("/file", response_model=Written, openapi_extra=BYTES_BODY)
async def write_file(item: Ws, path: str, request: Request) -> Written:
    data = await request.body()
    await asyncio.to_thread(item.workspace.write_file, path, data)
    return Written(bytes=len(data))


@router.get("/archive", responses=BYTES_RESPONSE, response_class=StreamingResponse)
def download(item: Ws, path: str = ".") -> StreamingResponse:
    """A file's bytes (X-Innovator-Kind: file) or a directory as tar (dir); regular files only."""
    full = item.workspace.resolve(path)
    if full.is_dir():
        return StreamingResponse(
            tar_stream(full, symlinks=False), media_type="application/x-tar", headers={"X-Innovator-Kind": "dir"}
        )
    if full.is_file() and not full.is_symlink():
        return StreamingResponse(
            file_chunks(full), media_type="application/octet-stream", headers={"X-Innovator-Kind": "file"}
        )
    raise ApiError(404, "workspace", f"{path}: no such file or directory")


@router.get("/logs", responses=BYTES_RESPONSE, response_class=StreamingResponse)
def logs(item: Ws) -> StreamingResponse:
    """The session logs of the workspace, as tar."""
    return StreamingResponse(
        tar_stream(item.workspace.sessions.log_dir, symlinks=False), media_type="application/x-tar"
    )


@router.put("/archive", response_model=Extracted, openapi_extra=TAR_BODY)
async def upload(item: Ws, request: Request, path: str = ".") -> Extracted:
    """Extract a tar archive into a directory of the workspace (how a workspace is provisioned)."""
    dest = item.workspace.resolve(path)
    return await extract_request_body(request, dest)


@router.post("/expose", response_model=ExposedPath, openapi_extra=TAR_BODY)
async def expose(item: Ws, request: Request) -> ExposedPath:
    """Unpack a tar archive outside the workspace, readable to commands started from now on."""
    with item.lock:
        item.exposed += 1
        dest = item.state_dir / "exposed" / str(item.exposed)
    await extract_request_body(request, dest)
    return ExposedPath(path=item.workspace.expose(dest))


@router.get("/disk", response_model=Written)
def disk_usage(item: Ws) -> Written:
    """Bytes the workspace's files take (the task's shared read-only files not counted)."""
    return Written(bytes=item.workspace.disk_usage())


async def extract_request_body(request: Request, dest: Path) -> Extracted:
    with tempfile.SpooledTemporaryFile(UPLOAD_SPOOL_BYTES) as spool:
        async for chunk in request.stream():
            spool.write(chunk)
        spool.seek(0)
        try:
            files, size = await asyncio.to_thread(extract_tar, spool, dest)  # type: ignore[arg-type]
        except ArchiveError as exc:
            raise ApiError(400, "request", str(exc)) from None
    return Extracted(files=files, bytes=size)
