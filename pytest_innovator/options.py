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

from .gpus import detect_gpus


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
    Option("agent", "agent to run: a registered name (null, oracle, replay, ...) or module:Class", "null", _text),
    Option("results", "directory for run directories and the results log", ".innovator", _text),
    Option("time_scale", "multiply every task's time limit by this factor (e.g. 0.1 for smoke runs)", "1", _positive_float),
    Option("pass_score", "an item passes when its final score is at least this", "1", _float),
    Option("max_steps", "override every task's step limit", "", _optional_positive_int),
    Option("max_evals", "override every task's evaluation budget", "", _optional_positive_int),
    Option("hints", "off: no hint; tool: offer view_hint; prompt: put the hint in the instruction (both pay the penalty)", "off", _choice("off", "tool", "prompt")),
    Option("gpus", "GPU ids this host may lease, e.g. 0,1,2,3 (default: detected with NVML)", None, _text),
    Option("gpu_lock_dir", "host-wide directory of GPU lease locks", None, _text),
    Option("backend", "workspace backend: sandbox (bubblewrap; the default where bwrap works) or local", None, _choice("local", "sandbox")),
    Option("replay", "tool-call file (or directory of <task>.jsonl) for the replay agent", "", _text),
    Option("timeout_grace", "seconds added to each item's pytest-timeout beyond its time limit and grading", "300", _positive_float),
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

    def agent_options(self) -> dict[str, Any]:
        return {"replay": self.replay}


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
    from .sandbox import bwrap_path

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
    )
