"""What the routes take from the request: the server's registry and the workspace a path names."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from ...sessions import Session, SessionError
from ..errors import ApiError
from ..registry import Registry, Served

WORKSPACE_PATH = "/v1/workspaces/{workspace_id}"  # the routes of one workspace; Ws reads its id


def _registry(request: Request) -> Registry:
    registry: Registry = request.app.state.registry
    return registry


def _served(request: Request, workspace_id: str) -> Served:
    return _registry(request).get(workspace_id)


RegistryDep = Annotated[Registry, Depends(_registry)]
Ws = Annotated[Served, Depends(_served)]


def session_of(item: Served, name: str) -> Session:
    """The named session of a workspace; 404 when there is none.

    Called in the route's body rather than as a dependency, so a bad request body is still
    answered 422 before an unknown session 404."""
    try:
        return item.workspace.sessions.get(name)
    except SessionError as exc:
        raise ApiError(404, "session", str(exc)) from None
