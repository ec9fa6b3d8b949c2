"""What an xdist worker's machine has, asked of it before the worker starts.

The controller runs `probe` in each worker's interpreter (execnet's `remote_exec`, on the
worker's own gateway: a local process, an ssh host or a Slurm allocation alike) and reads back
the worker's environment (`INNOVATOR_HOST`, `INNOVATOR_GPUS`: `--tx popen//env:INNOVATOR_GPUS=0,1`
simulates a host), its host name and the GPUs detected there with their memory: those NVML sees,
or inside a Slurm job those Slurm allocated (gpus.detect_gpus). The plugin then resolves the
worker's host name and GPUs as the worker itself will (command line over its environment over the
ini file over detection), so both agree on what the host holds. A worker started by
`pytest-innovator slurm-tx` has its allocation as its host name in its environment
(hosts/slurm.py).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from typing import Any

PROBE_TIMEOUT_S = 60.0


def host_name(environ: Mapping[str, str] = os.environ) -> str:
    """The name a host goes by when none is given: the machine's, or inside a Slurm allocation
    `<node>/<job>.<step>` (two allocations on one node hold different GPUs: two hosts)."""
    node = environ.get("SLURMD_NODENAME") or socket.gethostname()
    if "SLURM_JOB_ID" in environ:
        return f"{node}/{environ['SLURM_JOB_ID']}.{environ.get('SLURM_STEP_ID', 'batch')}"
    return node


def probe(channel):  # type: ignore[no-untyped-def]  # sent by source: no annotations, imports inside
    """Runs in the worker's interpreter."""
    import os
    import socket

    from pytest_innovator.gpus import detect_gpus, gpu_memory
    from pytest_innovator.hosts.inventory import host_name

    detected = detect_gpus(None)
    environ = {}  # a loop: execnet takes a comprehension's names for globals
    for variable in os.environ:
        if variable.startswith("INNOVATOR_"):
            environ[variable] = os.environ[variable]
    channel.send(
        {
            "environ": environ,
            "hostname": host_name(os.environ),
            "machine": socket.gethostname(),  # with "pid": where the worker's process is, to end it
            "pid": os.getpid(),
            "gpus": detected,
            "gpu_memory": gpu_memory(detected),
        }
    )


def ask_worker(gateway: Any) -> dict[str, Any]:
    """Run `probe` on an execnet gateway and return what it reports."""
    channel = gateway.remote_exec(probe)
    try:
        return channel.receive(timeout=PROBE_TIMEOUT_S)
    finally:
        channel.close()
