"""Every setting of the plugin, resolved in one place.

Order: command line, then the ``INNOVATOR_*`` environment variable, then the ini key
(``innovator_*`` in pytest.ini / pyproject.toml), then the default. A bad value names where it
came from: ``invalid --innovator-time-scale 'x' (from environment variable INNOVATOR_TIME_SCALE):
must be a positive number``.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ..gpus import detect_gpus


class SettingsError(pytest.UsageError):
    pass


@dataclass(frozen=True)
class Option:
    name: str  # e.g. "time_scale": --innovator-time-scale, INNOVATOR_TIME_SCALE, innovator_time_scale
    help: str
    default: str | None
    convert: Callable[[str], Any]

    @property
    def flag(self) -> str:
        return "--innovator-" + self.name.replace("_", "-")

    @property
    def env_var(self) -> str:
        return "INNOVATOR_" + self.name.upper()

    @property
    def ini_key(self) -> str:
        return "innovator_" + self.name


def _positive_float(value: str) -> float:
    number = float(value)
    if not number > 0:
        raise ValueError("must be a positive number")
    return number


def _float(value: str) -> float:
    return float(value)


def _optional_positive_int(value: str) -> int | None:
    if value == "":
        return None
    number = int(value)
    if number < 0:
        raise ValueError("must be a whole number >= 0")
    return number


def _optional_positive_float(value: str) -> float | None:
    if value == "":
        return None
    number = float(value)
    if number < 0:
        raise ValueError("must be a number >= 0")
    return number


def _positive_int(value: str) -> int:
    number = int(value)
    if number <= 0:
        raise ValueError("must be a whole number > 0")
    return number


def _non_negative_int(value: str) -> int:
    number = int(value)
    if number < 0:
        raise ValueError("must be a whole number >= 0")
    return number


def _choice(*choices: str) -> Callable[[str], str]:
    def convert(value: str) -> str:
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return value

    return convert


def _text(value: str) -> str:
    return value


def _default_lock_dir() -> str:
    return str(Path(tempfile.gettempdir()) / f"pytest-innovator-{os.getuid()}" / "gpu-locks")


OPTIONS = [
    Option("agent", "agent to run: a registered name (react, null, oracle, replay, ...) or module:Class; react with no endpoint and no key runs on the embedded model", "react", _text),
    Option("results", "directory for run directories and the results log", ".innovator", _text),
    Option("time_scale", "multiply every task's time limit by this factor (e.g. 0.1 for smoke runs)", "1", _positive_float),
    Option("pass_score", "an item passes when its final score is at least this", "1", _float),
    Option("max_steps", "override every task's step limit", "", _optional_positive_int),
    Option("max_evals", "override every task's evaluation budget", "", _optional_positive_int),
    Option("hints", "off: no hint; tool: offer view_hint; prompt: put the hint in the instruction (both pay the penalty)", "off", _choice("off", "tool", "prompt")),
    Option("gpus", "GPU ids this host may lease, e.g. 0,1,2,3 (default: detected with NVML)", None, _text),
    Option("gpu_lock_dir", "host-wide directory of GPU lease locks", None, _text),
    Option("backend", "workspace backend: sandbox (bubblewrap; the default where bwrap works), local, docker or remote", None, _choice("local", "sandbox", "docker", "remote")),
    Option("docker_image", "image of the docker backend's containers (needs bash and the C libraries the host's Python links to: scripts/docker-test-image.sh)", "innovator-test:bookworm", _text),
    Option("remote_url", "session server of the remote backend, e.g. https://gpu-host:8765 (started with pytest-innovator serve --root DIR)", "", _text),
    Option("remote_token_file", "file holding the remote session server's bearer token", "", _text),
    Option("replay", "tool-call file (or directory of <task>.jsonl) for the replay agent", "", _text),
    Option("timeout_grace", "seconds added to each item's pytest-timeout beyond its time limit and grading", "300", _positive_float),
    Option("model", "model name for LLM agents (with a base URL and no name: the first model the server lists)", "", _text),
    Option("base_url", "OpenAI-compatible endpoint for LLM agents, e.g. http://127.0.0.1:8000/v1 (default: OpenAI's)", "", _text),
    Option("api_key_env", "name of the environment variable that holds the API key (the key is never written anywhere)", "OPENAI_API_KEY", _text),
    Option("max_tokens", "end an LLM agent's episode (end_reason cost_limit) once its tokens in + out reach this; 0: no limit", "", _optional_positive_int),
    Option("max_cost", "end an LLM agent's episode (end_reason cost_limit) once its cost in USD reaches this; 0: no limit", "", _optional_positive_float),
    Option("tool_protocol", "native: function calling; text: one fenced JSON action per reply; auto: native, text if the server rejects tools", "auto", _choice("auto", "native", "text")),
    Option("reply_tokens", "most tokens an LLM agent's model may write in one reply (each request's max_tokens); 0: the endpoint's default", "0", _non_negative_int),
    Option("context_tokens", "tokens of conversation an LLM agent keeps before it summarises the older turns", "64000", _positive_int),
    Option("price_table", "JSON or TOML file of model prices (USD per million tokens) that extends the built-in table", "", _text),
    Option("llm_timeout", "seconds an LLM request may take before it is retried", "600", _positive_float),
    Option("llm_retries", "retries of an LLM request after a 429, 5xx, timeout or dropped connection", "6", _non_negative_int),
    Option("llm_backoff", "seconds before the first retry; doubled each time (with jitter), at most 60", "1", _positive_float),
    Option("vllm_model", "model path or name the vllm_server fixture serves with vLLM (unset: the fixture skips)", "", _text),
    Option("vllm_args", "extra vLLM server arguments, e.g. \"--max-model-len 4096 --tensor-parallel-size 2\" (tp x pp GPUs are leased)", "", _text),
    Option("vllm_command", "command that starts the vLLM server (default: this python -m vllm.entrypoints.openai.api_server)", "", _text),
    Option("resume", "continue the items of an earlier run (RESULTS/runs/RUN_ID) from their last snapshots, or branch one item from a snapshot (RUN_DIR/ITEM@SNAPSHOT)", "", _text),
    Option("snapshot_steps", "snapshot every N steps (default: the task's snapshot_steps; none)", "", _optional_positive_int),
    Option("snapshot_minutes", "snapshot every T minutes of working time (default: the task's snapshot_minutes, else 30)", "", _optional_positive_float),
    Option("snapshot_keep", "snapshots kept per item (older ones are pruned; the latest is always kept)", "3", _positive_int),
]

OPTION_BY_NAME = {option.name: option for option in OPTIONS}


@dataclass(frozen=True)
class Settings:
    agent: str
    results: Path
    time_scale: float
    pass_score: float
    max_steps: int | None
    max_evals: int | None
    hints: str
    gpus: tuple[str, ...]
    gpu_lock_dir: Path
    backend: str
    replay: str
    timeout_grace: float
    model: str
    base_url: str
    api_key_env: str
    max_tokens: int | None
    max_cost: float | None
    tool_protocol: str
    context_tokens: int
    price_table: str
    llm_timeout: float
    llm_retries: int
    llm_backoff: float
    vllm_model: str = ""
    vllm_args: str = ""
    vllm_command: str = ""

    docker_image: str = "innovator-test:bookworm"
    remote_url: str = ""
    remote_token_file: str = ""
    resume: str = ""
    snapshot_steps: int | None = None
    snapshot_minutes: float | None = None
    snapshot_keep: int = 3
    reply_tokens: int = 0

    def agent_options(self) -> dict[str, Any]:
        return {"replay": self.replay, "model": self.model, "base_url": self.base_url,
                "api_key_env": self.api_key_env, "max_tokens": self.max_tokens, "max_cost": self.max_cost,
                "tool_protocol": self.tool_protocol, "context_tokens": self.context_tokens,
                "reply_tokens": self.reply_tokens,
                "price_table": self.price_table, "llm_timeout": self.llm_timeout,
                "llm_retries": self.llm_retries, "llm_backoff": self.llm_backoff}


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("innovator", "research-agent benchmarks (pytest-innovator)")
    for option in OPTIONS:
        default = f" (default: {option.default})" if option.default else ""
        group.addoption(option.flag, dest=f"innovator_{option.name}", default=None,
                        help=f"{option.help}{default}; env {option.env_var}, ini {option.ini_key}")
        parser.addini(option.ini_key, option.help, default=None)


def _raw_value(config: pytest.Config, option: Option) -> tuple[str | None, str]:
    value = config.getoption(f"innovator_{option.name}")
    if value is not None:
        return str(value), f"command line {option.flag}"
    if option.env_var in os.environ:
        return os.environ[option.env_var], f"environment variable {option.env_var}"
    ini = config.getini(option.ini_key)
    if ini not in (None, "", []):
        return str(ini), f"ini key {option.ini_key}"
    return option.default, "default"


def default_backend() -> str:
    from ..sandbox import bwrap_path

    return "sandbox" if bwrap_path() else "local"


def resolve_settings(config: pytest.Config) -> Settings:
    values: dict[str, Any] = {}
    for option in OPTIONS:
        raw, source = _raw_value(config, option)
        if raw is None:
            values[option.name] = None
            continue
        try:
            values[option.name] = option.convert(raw.strip())
        except ValueError as exc:
            reason = str(exc) if "must" in str(exc) else f"not a valid value ({exc})"
            raise SettingsError(f"invalid {option.flag} {raw!r} (from {source}): {reason}") from None
    try:
        gpus = tuple(detect_gpus(values["gpus"]))
    except ValueError as exc:
        raise SettingsError(f"{exc} (from {_raw_value(config, OPTION_BY_NAME['gpus'])[1]})") from None
    results = Path(values["results"])
    if not results.is_absolute():
        results = Path(config.invocation_params.dir) / results
    return Settings(
        agent=values["agent"],
        results=results,
        time_scale=values["time_scale"],
        pass_score=values["pass_score"],
        max_steps=values["max_steps"],
        max_evals=values["max_evals"],
        hints=values["hints"],
        gpus=gpus,
        gpu_lock_dir=Path(values["gpu_lock_dir"] or _default_lock_dir()),
        backend=values["backend"] or default_backend(),
        replay=values["replay"],
        timeout_grace=values["timeout_grace"],
        model=values["model"],
        base_url=values["base_url"],
        api_key_env=values["api_key_env"],
        max_tokens=values["max_tokens"],
        max_cost=values["max_cost"],
        tool_protocol=values["tool_protocol"],
        context_tokens=values["context_tokens"],
        reply_tokens=values["reply_tokens"],
        price_table=values["price_table"],
        llm_timeout=values["llm_timeout"],
        llm_retries=values["llm_retries"],
        llm_backoff=values["llm_backoff"],
        vllm_model=values["vllm_model"],
        vllm_args=values["vllm_args"],
        vllm_command=values["vllm_command"],
        docker_image=values["docker_image"],
        remote_url=values["remote_url"],
        remote_token_file=values["remote_token_file"],
        resume=values["resume"],
        snapshot_steps=values["snapshot_steps"],
        snapshot_minutes=values["snapshot_minutes"],
        snapshot_keep=values["snapshot_keep"],
    )
