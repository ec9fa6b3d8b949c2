"""Session fixtures that serve models to LLM agents over OpenAI-compatible HTTP on 127.0.0.1.

``vllm_server``: a vLLM server for ``--innovator-vllm-model`` (a path or a hub name), started as
``python -m vllm.entrypoints.openai.api_server --model M --host 127.0.0.1 --port P`` plus
``--innovator-vllm-args`` (``--innovator-vllm-command`` replaces the command before ``--model``).
It holds a lease on tensor-parallel x pipeline-parallel GPUs (1 by default; none on a host without
GPUs) for as long as it runs.

``embedded_llm_server``: the embedded model (pytest_innovator.llm.embedded) on the CPU.

Both yield an `LLMEndpoint` (``base_url`` ending in /v1, ``model``). All pytest-xdist workers
of a host, and other pytest runs on it, share one server per configuration (`SharedServer`):
its state lives in ``<gpu lock dir>/llm-servers/``, beside its log. A server that does not answer
``/v1/models`` in time is stopped and the test errors with the end of its log.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shlex
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from ..errors import InnovatorError, pip_hint
from ..llm.server_process import (
    LLMEndpoint,
    ServerSpec,
    ServerStartError,
    SharedServer,
    hold_gpus_command,
)
from .options import settings_key

VLLM_MODULE = "vllm.entrypoints.openai.api_server"
VLLM_START_TIMEOUT_S = 1800.0  # a first start may download weights and compile kernels
EMBEDDED_START_TIMEOUT_S = 600.0
_FIXTURE_SET_ARGUMENTS = ("--port", "--host", "--model")

__all__ = ["LLMEndpoint", "embedded_llm_server", "vllm_server"]


class ServerSetupError(InnovatorError):
    """A server setting the user must change; the message says how."""


class NotEnoughGpus(ServerSetupError):
    """The server needs more GPUs than the host has: a requirement the host cannot meet."""


def server_state_dir(gpu_lock_dir: Path) -> Path:
    """Host-wide: the GPU lock directory is what every worker on a host already agrees on."""
    return Path(gpu_lock_dir) / "llm-servers"


def vllm_gpu_count(vllm_args: Sequence[str], host_gpus: int) -> int:
    """GPUs the server needs: tensor-parallel x pipeline-parallel size, or 0 on a host without GPUs."""
    if host_gpus == 0:
        return 0
    return _int_argument(vllm_args, ("--tensor-parallel-size", "-tp")) * _int_argument(
        vllm_args, ("--pipeline-parallel-size", "-pp")
    )


def _int_argument(arguments: Sequence[str], names: tuple[str, ...]) -> int:
    for index, argument in enumerate(arguments):
        name, _, inline_value = argument.partition("=")
        if name not in names:
            continue
        value = inline_value or (arguments[index + 1] if index + 1 < len(arguments) else "")
        try:
            number = int(value)
        except ValueError:
            raise ServerSetupError(f"{name} in --innovator-vllm-args needs a whole number, got {value!r}") from None
        if number < 1:
            raise ServerSetupError(f"{name} in --innovator-vllm-args must be at least 1, got {number}")
        return number
    return 1


def vllm_command(command_option: str) -> list[str]:
    if command_option.strip():
        return shlex.split(command_option)
    return [sys.executable, "-m", VLLM_MODULE]


def vllm_server_spec(
    model: str,
    args_option: str,
    command_option: str,
    gpus: Sequence[str],
    gpu_lock_dir: Path,
    start_timeout_s: float = VLLM_START_TIMEOUT_S,
) -> ServerSpec:
    """How to start vLLM for these settings; raises ServerSetupError for settings to change."""
    extra_args = shlex.split(args_option)
    for argument in extra_args:
        if argument.partition("=")[0] in _FIXTURE_SET_ARGUMENTS:
            raise ServerSetupError(
                f"remove {argument.partition('=')[0]} from --innovator-vllm-args: the fixture sets "
                "--model (from --innovator-vllm-model), --host 127.0.0.1 and a free --port"
            )
    gpu_count = vllm_gpu_count(extra_args, len(gpus))
    if gpu_count > len(gpus):
        raise NotEnoughGpus(
            f"the vLLM server needs {gpu_count} GPUs (tensor x pipeline parallel size in "
            f"--innovator-vllm-args), this host has {len(gpus)} ({','.join(gpus)})"
        )
    command = [*vllm_command(command_option), "--model", model, "--host", "127.0.0.1", *extra_args]
    key = "vllm-" + hashlib.sha256(json.dumps([command, gpu_count]).encode()).hexdigest()[:16]
    if gpu_count:
        command = hold_gpus_command(gpu_count, gpu_lock_dir, gpus, f"vLLM server for {model}", command, start_timeout_s)
    return ServerSpec(
        key=key, command=tuple(command), start_timeout_s=start_timeout_s, description=f"the vLLM server for {model}"
    )


def _settings(request: pytest.FixtureRequest) -> Any:
    return request.config.stash[settings_key]


def _serve(request: pytest.FixtureRequest, spec: ServerSpec) -> Iterator[LLMEndpoint]:
    shared = SharedServer(server_state_dir(_settings(request).gpu_lock_dir), spec)
    try:
        endpoint = shared.acquire()
    except ServerStartError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield endpoint
    finally:
        shared.release()


@pytest.fixture(scope="session")
def vllm_server(request: pytest.FixtureRequest) -> Iterator[LLMEndpoint]:
    """A vLLM server for --innovator-vllm-model, shared by the workers of this host."""
    settings = _settings(request)
    if not settings.vllm_model:
        pytest.skip("no vLLM model configured: pass --innovator-vllm-model PATH_OR_NAME (docs/llm-servers.md)")
    if not settings.vllm_command and importlib.util.find_spec("vllm") is None:
        pytest.skip(
            f"vLLM is not installed in {sys.executable}: install it (docs/llm-servers.md, "
            "scripts/start-vllm-cpu.sh) or point --innovator-vllm-command at a python that has it"
        )
    try:
        spec = vllm_server_spec(
            settings.vllm_model, settings.vllm_args, settings.vllm_command, settings.gpus, settings.gpu_lock_dir
        )
    except NotEnoughGpus as exc:
        pytest.skip(str(exc))
    except ServerSetupError as exc:
        pytest.fail(str(exc), pytrace=False)
    yield from _serve(request, spec)


@pytest.fixture(scope="session")
def embedded_llm_server(request: pytest.FixtureRequest) -> Iterator[LLMEndpoint]:
    """The embedded model (SmolLM2-135M-Instruct on the CPU), shared by the workers of this host."""
    from ..llm.embedded import EmbeddedModelError, default_model_file, server_command

    try:
        model_file = default_model_file()
    except EmbeddedModelError as exc:
        pytest.skip(str(exc))
    missing = [
        module
        for module in ("fastapi", "uvicorn", "transformers", "torch", "gguf", "llguidance")
        if importlib.util.find_spec(module) is None
    ]
    if missing:
        pytest.skip(f"the embedded model server needs {', '.join(missing)}: {pip_hint('embedded')}")
    command = server_command(model_file=model_file)
    key = "embedded-" + hashlib.sha256(json.dumps(command).encode()).hexdigest()[:16]
    spec = ServerSpec(
        key=key,
        command=tuple(command),
        env=_embedded_env(),
        start_timeout_s=EMBEDDED_START_TIMEOUT_S,
        description="the embedded model server",
    )
    yield from _serve(request, spec)


def _embedded_env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
