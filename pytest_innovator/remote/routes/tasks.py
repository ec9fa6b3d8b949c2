"""Tasks sent to the server, workspaces made from them, and their grading on this host.

A pool host makes an item's workspace as the sandbox backend does on the harness's host
(`LocalWorkspace.create`: the starter files, or a dataset's files and its environment overlay at
the task's `workspace_path`) and runs its grader here, where the item's GPUs are. The task's
directory (its grader, hint and solution) is uploaded once per content into the server's root,
which the agent's commands cannot see; a dataset is read where the harness says it is, at the same
path on this host.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path

from fastapi import APIRouter, Request

from ..errors import ApiError
from ..models import TAR_BODY, Extracted, GradeBody, GradeInfo, Known
from .dependencies import WORKSPACE_PATH, RegistryDep, Ws
from .files import extract_request_body

router = APIRouter()
DIGEST = re.compile(r"[0-9a-f]{64}")


def task_dir(root: Path, digest: str) -> Path:
    if not DIGEST.fullmatch(digest):
        raise ApiError(400, "request", f"task digest {digest!r}: must be 64 hexadecimal digits (sha256)")
    return root / "tasks" / digest


@router.get("/v1/tasks/{digest}", response_model=Known)
def task_known(digest: str, registry: RegistryDep) -> Known:
    return Known(known=task_dir(registry.require_root(), digest).is_dir())


@router.put("/v1/tasks/{digest}", response_model=Extracted, openapi_extra=TAR_BODY)
async def upload_task(digest: str, request: Request, registry: RegistryDep) -> Extracted:
    """A task's directory as tar, kept under its digest; a second upload of the same digest is a no-op."""
    dest = task_dir(registry.require_root(), digest)
    if dest.is_dir():
        return Extracted(files=0, bytes=0)
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".incoming-", dir=dest.parent))
    try:
        extracted = await extract_request_body(request, staging)
        try:
            staging.rename(dest)
        except OSError:  # another upload of the same task was first: it is the same content
            pass
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return extracted


@router.post(WORKSPACE_PATH + "/grade", response_model=GradeInfo)
async def grade(body: GradeBody, item: Ws) -> GradeInfo:
    """Run the task's grader on the workspace as it is now (a workspace made from a task only)."""
    if item.task is None:
        raise ApiError(409, "request", "this workspace was not made from a task: the harness grades it itself")
    outcome, log = await asyncio.to_thread(item.grade, body.seed, body.index)
    return GradeInfo(**asdict(outcome), log=log)
