"""The server's health and its workspaces: create, list, describe, close, remove."""

from __future__ import annotations

from fastapi import APIRouter

from ...limits import LimitSpec
from ..models import API_VERSION, CreateWorkspace, Done, Health, LimitEvents, WorkspaceInfo
from ..registry import Served
from .dependencies import WORKSPACE_PATH, RegistryDep, Ws
from .tasks import task_dir

router = APIRouter()


@router.get("/v1/health", response_model=Health)
def health(registry: RegistryDep) -> Health:
    return Health(
        ok=True, api_version=API_VERSION, workspaces=len(registry.served), can_create=registry.root is not None
    )


@router.post("/v1/workspaces", response_model=WorkspaceInfo, status_code=201)
def create_workspace(body: CreateWorkspace, registry: RegistryDep) -> WorkspaceInfo:
    devices = registry.leases.get(body.lease).devices if body.lease else ()
    if body.task is not None:
        task = task_dir(registry.require_root(), body.task)
        return _info(registry.provision_task(task, body.dataset, body.dataset_python, body.env, devices, body.lease))
    limits = LimitSpec(body.limits.memory, body.limits.cpus, body.limits.processes) if body.limits else None
    return _info(registry.provision(body.env, body.network, body.label, devices, body.lease, limits))


@router.get("/v1/workspaces", response_model=list[WorkspaceInfo])
def list_workspaces(registry: RegistryDep) -> list[WorkspaceInfo]:
    with registry.lock:
        items = list(registry.served.values())
    return [_info(item) for item in items]


@router.get(WORKSPACE_PATH, response_model=WorkspaceInfo)
def workspace_info(item: Ws) -> WorkspaceInfo:
    return _info(item)


@router.delete(WORKSPACE_PATH, response_model=Done)
def delete_workspace(workspace_id: str, registry: RegistryDep) -> Done:
    registry.remove(workspace_id)
    return Done()


@router.get(WORKSPACE_PATH + "/limit-events", response_model=LimitEvents)
def limit_events(item: Ws) -> LimitEvents:
    """What the workspace's limits did since the last request (an out-of-memory kill, refused forks,
    CPU throttling, a full disk): each is told once."""
    return LimitEvents(said=item.workspace.limit_events())


@router.post(WORKSPACE_PATH + "/close", response_model=Done)
def close_workspace(item: Ws) -> Done:
    """End every session of the workspace (its files stay)."""
    item.workspace.close()
    return Done()


def _info(item: Served) -> WorkspaceInfo:
    workspace = item.workspace
    return WorkspaceInfo(
        id=item.id,
        root=workspace.root,
        backend=workspace.backend,
        protects=workspace.protects,
        label=item.label,
        limits=workspace.limits_text,
    )
