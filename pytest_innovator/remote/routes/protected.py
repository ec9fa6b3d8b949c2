"""The state of a workspace's protected files, and what changed in them since a given state."""

from __future__ import annotations

from fastapi import APIRouter

from ...protected import from_json, to_json
from ..models import ChangesBody, FileStateModel, PatternsBody, ProtectedChangeModel, ProtectedStates
from .dependencies import WORKSPACE_PATH, Ws

router = APIRouter(prefix=WORKSPACE_PATH + "/protected")


@router.post("/state", response_model=ProtectedStates)
def protected_state(item: Ws, body: PatternsBody) -> ProtectedStates:
    states = to_json(item.workspace.protected_state(body.patterns))
    return ProtectedStates(states={p: FileStateModel(**s) for p, s in states.items()})


@router.post("/changes", response_model=list[ProtectedChangeModel])
def protected_changes(item: Ws, body: ChangesBody) -> list[ProtectedChangeModel]:
    before = from_json({p: s.model_dump() for p, s in body.before.items()})
    return [ProtectedChangeModel.of(c) for c in item.workspace.protected_changes(before, body.patterns)]
