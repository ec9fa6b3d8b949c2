"""Commands in a workspace: one-shot (exec) and in named shell sessions (create, run, wait, read
output, send input, interrupt, kill, close), and waiting for any of them to finish."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from ...sessions import SESSION_NAME, CommandResult, SessionError, SessionStatus
from ..errors import ApiError
from ..models import (
    DEFAULT_OUTPUT_BYTES,
    MAX_OUTPUT_BYTES,
    CreateSessionBody,
    Done,
    ExecBody,
    ExecResultModel,
    Finished,
    Idle,
    InputBody,
    Output,
    RunBody,
    TimeoutBody,
)
from .dependencies import WORKSPACE_PATH, Ws, session_of

router = APIRouter(prefix=WORKSPACE_PATH)
OutputLimit = Annotated[int, Query(ge=1, le=MAX_OUTPUT_BYTES)]


@router.post("/exec", response_model=ExecResultModel)
def run_once(item: Ws, body: ExecBody) -> ExecResultModel:
    result = item.workspace.exec(body.command, body.timeout)
    return ExecResultModel(exit_code=result.exit_code, output=result.output)


@router.post("/sessions", response_model=SessionStatus, status_code=201)
def create_session(item: Ws, body: CreateSessionBody) -> SessionStatus:
    try:
        session = item.workspace.sessions.create(body.name)
    except SessionError as exc:
        bad_name = body.name is not None and not SESSION_NAME.fullmatch(body.name)
        raise ApiError(400 if bad_name else 409, "session", str(exc)) from None
    return session.status()


@router.get("/sessions", response_model=list[SessionStatus])
def list_sessions(item: Ws) -> list[SessionStatus]:
    return item.workspace.sessions.list()


@router.get("/sessions/{name}", response_model=SessionStatus)
def session_status(item: Ws, name: str) -> SessionStatus:
    return session_of(item, name).status()


@router.delete("/sessions/{name}", response_model=Done)
def close_session(item: Ws, name: str) -> Done:
    session_of(item, name)
    item.workspace.sessions.close(name)
    return Done()


@router.post("/sessions/{name}/run", response_model=CommandResult)
def run(item: Ws, name: str, body: RunBody) -> CommandResult:
    return session_of(item, name).run(body.command, body.wait, body.max_output)


@router.post("/sessions/{name}/wait", response_model=Idle)
def wait(item: Ws, name: str, body: TimeoutBody) -> Idle:
    return Idle(idle=session_of(item, name).wait(body.timeout))


@router.get("/sessions/{name}/result", response_model=CommandResult)
def result(item: Ws, name: str, max_output: OutputLimit = DEFAULT_OUTPUT_BYTES) -> CommandResult:
    return session_of(item, name).result(max_output)


@router.get("/sessions/{name}/output", response_model=Output)
def read(
    item: Ws, name: str, since: Annotated[int, Query(ge=0)] = 0, max_bytes: OutputLimit = DEFAULT_OUTPUT_BYTES
) -> Output:
    text, next_offset = session_of(item, name).read(since, max_bytes)
    return Output(output=text, next_offset=next_offset)


@router.post("/sessions/{name}/input", response_model=Done)
def send_input(item: Ws, name: str, body: InputBody) -> Done:
    session_of(item, name).send_input(body.text)
    return Done()


@router.post("/sessions/{name}/interrupt", response_model=Done)
def interrupt(item: Ws, name: str) -> Done:
    session_of(item, name).interrupt()
    return Done()


@router.post("/sessions/{name}/kill", response_model=Done)
def kill(item: Ws, name: str) -> Done:
    session_of(item, name).kill()
    return Done()


@router.post("/watch", response_model=Finished)
def watch_any(item: Ws, body: TimeoutBody) -> Finished:
    """Wait until a command running now finishes; false on timeout or when none runs."""
    return Finished(finished=item.workspace.sessions.watch_any(body.timeout))
