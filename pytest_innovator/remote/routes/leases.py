"""The host's GPUs and their leases: what is free, grant, renew, release (see remote/leases.py)."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter

from ...gpus import gpu_memory
from ..leases import Lease
from ..models import AskLease, Done, HostLeases, LeaseInfo
from .dependencies import RegistryDep

router = APIRouter()
LEASE_PATH = "/v1/leases/{lease_id}"


@router.get("/v1/leases", response_model=HostLeases)
def host_leases(registry: RegistryDep) -> HostLeases:
    table = registry.leases
    free = table.free()
    with table.lock:
        leases = [_info(lease) for lease in table.leases.values()]
    return HostLeases(gpus=list(table.devices), gpu_memory=gpu_memory(table.devices), free=free, leases=leases)


@router.post("/v1/leases", response_model=LeaseInfo, status_code=201)
def grant_lease(body: AskLease, registry: RegistryDep) -> LeaseInfo:
    return _info(registry.leases.grant(body.gpus, body.holder, body.ttl_s))


@router.post(LEASE_PATH + "/renew", response_model=LeaseInfo)
def renew_lease(lease_id: str, registry: RegistryDep) -> LeaseInfo:
    return _info(registry.leases.renew(lease_id))


@router.delete(LEASE_PATH, response_model=Done)
def release_lease(lease_id: str, registry: RegistryDep) -> Done:
    registry.leases.release(lease_id)
    return Done()


def _info(lease: Lease) -> LeaseInfo:
    return LeaseInfo(**{**asdict(lease), "devices": list(lease.devices)})
