"""The session server's request and response bodies, and the limits their fields are checked against.

Session statuses, command results and directory entries are answered as the dataclasses of
:mod:`pytest_innovator.sessions` and :mod:`pytest_innovator.workspace`, not as copies here.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..protected import ProtectedChange

API_VERSION = 1
MAX_WAIT_S = 600.0  # the longest a single request waits; clients wait longer by asking again
MAX_EXEC_S = 3600.0
MAX_OUTPUT_BYTES = 16 << 20
DEFAULT_OUTPUT_BYTES = 64 * 1024


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


Seconds = Annotated[float, Field(ge=0, le=MAX_WAIT_S, allow_inf_nan=False)]
OutputBytes = Annotated[int, Field(ge=1, le=MAX_OUTPUT_BYTES)]


class Resources(Body):
    memory: int = Field(gt=0, description="Bytes of memory, swap off.")
    cpus: float = Field(gt=0)
    processes: int = Field(ge=16)


class CreateWorkspace(Body):
    env: dict[str, str] = Field(default_factory=dict, description="Extra environment for the workspace's commands.")
    network: bool = Field(False, description="Let commands use the network (when the server sandboxes them).")
    label: str = Field("", max_length=200, description="What the workspace is for (e.g. the task id).")
    lease: str | None = Field(
        None, description="A GPU lease of this server: the workspace's commands see its GPUs, and end when it expires."
    )
    task: str | None = Field(
        None, description="The digest of a task uploaded with PUT /v1/tasks/{digest}: the workspace is made from it."
    )
    dataset: str | None = Field(None, description="Where the task's dataset is on this host (tasks with [dataset]).")
    dataset_python: str | None = Field(None, description="The interpreter that runs the dataset's evaluation here.")
    limits: Resources | None = Field(
        None,
        description="Memory, CPUs and processes of its commands (a task's; a task's own workspace takes the task's).",
    )


class WorkspaceInfo(BaseModel):
    id: str
    root: str
    backend: str
    protects: str
    label: str
    limits: str = ""  # what bounds its processes (the item's `limits` property)


class LimitEvents(BaseModel):
    said: list[str]  # what the workspace's limits did since the last request, in plain words


class Health(BaseModel):
    ok: bool
    api_version: int
    workspaces: int
    can_create: bool


class Known(BaseModel):
    known: bool


class GradeBody(Body):
    seed: int = 0
    index: int = Field(ge=0, description="The evaluation's number, for its log's name.")


class GradeInfo(BaseModel):
    status: Literal["scored", "invalid", "grader_failed"]
    metric: float | None
    message: str
    seconds: float
    metrics: dict[str, float]
    log: str


class AskLease(Body):
    gpus: int = Field(ge=0, le=1024, description="How many GPUs.")
    holder: str = Field(
        "", max_length=500, description="Who holds it (e.g. the item and its harness), for the records."
    )
    ttl_s: float = Field(
        60.0, ge=5.0, le=3600.0, description="The lease expires unless renewed within this many seconds."
    )


class LeaseInfo(BaseModel):
    id: str
    devices: list[str]
    holder: str
    ttl_s: float
    granted_at: float
    expires_at: float


class HostLeases(BaseModel):
    gpus: list[str]
    gpu_memory: dict[str, int]
    free: list[str]
    leases: list[LeaseInfo]


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

    @classmethod
    def of(cls, change: ProtectedChange) -> ProtectedChangeModel:
        return cls(
            path=change.path,
            what=change.what,
            before=FileStateModel(**dataclasses.asdict(change.before)),
            after=FileStateModel(**dataclasses.asdict(change.after)),
        )


class CreateSessionBody(Body):
    name: str | None = Field(None, max_length=200)


class RunBody(Body):
    command: str
    wait: Seconds = 0.0
    max_output: OutputBytes = DEFAULT_OUTPUT_BYTES


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


# Raw bodies, described for the OpenAPI schema (the routes read them from the request themselves).
_BINARY = {"schema": {"type": "string", "format": "binary"}}
TAR_BODY = {"requestBody": {"required": True, "content": {"application/x-tar": _BINARY}}}
BYTES_BODY = {"requestBody": {"required": True, "content": {"application/octet-stream": _BINARY}}}
BYTES_RESPONSE: dict[int | str, dict[str, Any]] = {200: {"content": {"application/octet-stream": _BINARY}}}
ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorBody} for code in (400, 401, 404, 409)}
