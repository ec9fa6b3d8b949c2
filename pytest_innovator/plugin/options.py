"""Every setting of the plugin, declared once and resolved in one place.

Each field of `Settings` is an option: its flag (``--innovator-time-scale``), environment variable
(``INNOVATOR_TIME_SCALE``) and ini key (``innovator_time_scale``) come from the field's name, its
help, default and conversion from the field's metadata. Order: command line, then environment
variable, then ini key, then the default. A bad value names where it came from:
``invalid --innovator-time-scale 'x' (from environment variable INNOVATOR_TIME_SCALE): must be a
positive number``.

An option declared `per_name` holds one value per NAME (a dict): its field is named in the plural
(``datasets``), its flag is singular and repeatable (``--innovator-dataset NAME=PATH``), each
environment variable holds one value (``INNOVATOR_DATASET_<NAME>``) and the ini key one
``NAME=VALUE`` a line (``innovator_datasets``). The same order holds for each NAME.

The plugin's stash keys live here too: every module of the plugin reads the settings and the run
id through them.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import pytest

from ..backends import BACKENDS, DEFAULT_DOCKER_IMAGE, BackendSettings, default_backend
from ..datasets import default_cache_dir
from ..errors import InnovatorError
from ..gpus import detect_gpus, gpu_memory
from ..hosts.inventory import host_name
from ..research_tools.providers import DEFAULT_BASE_URLS, KEY_ENVS, LITERATURE_PROVIDERS, SEARCH_PROVIDERS


class SettingsError(InnovatorError, pytest.UsageError):
    pass


@dataclass(frozen=True)
class Option:
    name: str  # e.g. "time_scale": --innovator-time-scale, INNOVATOR_TIME_SCALE, innovator_time_scale
    help: str
    default: str | None
    convert: Callable[[str], Any]
    for_agent: bool  # handed to the agent among its options
    per_name: bool = False  # NAME=VALUE, repeatable: a dict of converted values by NAME

    @property
    def one(self) -> str:
        """The name of one value: "dataset" for the per-name option "datasets"."""
        return self.name.removesuffix("s") if self.per_name else self.name

    @property
    def flag(self) -> str:
        return "--innovator-" + self.one.replace("_", "-")

    @property
    def env_var(self) -> str:
        return "INNOVATOR_" + self.one.upper() + ("_<NAME>" if self.per_name else "")

    @property
    def ini_key(self) -> str:
        return "innovator_" + self.name


def _positive_float(value: str) -> float:
    number = float(value)
    if not number > 0:
        raise ValueError("must be a positive number")
    return number


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


def _optional_choice(*choices: str) -> Callable[[str], str | None]:
    def convert(value: str) -> str | None:
        if value == "":
            return None
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return value

    return convert


def _url(value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise ValueError("must be an http:// or https:// URL")
    return value


def _gpus(value: str) -> tuple[str, ...]:
    return tuple(detect_gpus(value))


def _directory(value: str) -> Path:
    path = Path(value).expanduser()
    if not path.is_dir():
        raise ValueError("must be an existing directory")
    return path.resolve()


def _file(value: str) -> Path:
    path = Path(value).expanduser()
    if not path.is_file():
        raise ValueError("must be an existing file")
    return path.absolute()


def option(
    help: str,
    default: str | None = "",
    convert: Callable[[str], Any] = _text,
    *,
    for_agent: bool = False,
    per_name: bool = False,
) -> Any:
    """A Settings field that is also an option; `default` is the raw text (None: computed)."""
    return field(metadata={"option": (help, default, convert, for_agent, per_name)})


@dataclass(frozen=True)
class Settings:
    agent: str = option(
        "agent to run: a registered name (react, null, oracle, replay, ...) or module:Class; "
        "react with no endpoint and no key runs on the embedded model",
        "react",
    )
    results: Path = option("directory for run directories and the results log", ".innovator", Path)
    time_scale: float = option(
        "multiply every task's time limit by this factor (e.g. 0.1 for smoke runs)", "1", _positive_float
    )
    pass_score: float = option("an item passes when its final score is at least this", "1", float)
    progress: float | None = option(
        "seconds between the terminal's status lines, one per running item (step, working time, evaluations, "
        "best score, idle time); 0: none (the lines of starts, evaluations and ends stay)",
        "60",
        _optional_positive_float,
    )
    max_steps: int | None = option("override every task's step limit", "", _optional_positive_int)
    max_evals: int | None = option("override every task's evaluation budget", "", _optional_positive_int)
    hints: str = option(
        "off: no hint; tool: offer view_hint; prompt: put the hint in the instruction (both pay the penalty)",
        "off",
        _choice("off", "tool", "prompt"),
    )
    gpus: tuple[str, ...] = option(
        "GPU ids this host may lease, e.g. 0,1,2,3 (default: detected with NVML)", None, _gpus
    )
    gpu_lock_dir: Path = option(
        "directory of GPU lease locks shared by the workers of this host (default: one per --innovator-host "
        "in the temporary directory)",
        None,
        Path,
    )
    host: str = option(
        "name of this host: xdist workers with the same name share its GPUs and their leases "
        "(default: the machine's host name)",
        None,
    )
    scheduler: str = option(
        "how items go to xdist workers (-n): gpu (one at a time, each to a worker whose host has its GPUs free "
        "now; docs/scale.md), xdist (pytest-xdist's --dist), auto (gpu when every path given holds only task.toml "
        "suites)",
        "auto",
        _choice("auto", "gpu", "xdist"),
    )
    hosts: Path | None = option(
        "a pool of GPU hosts running the session server (hosts.toml: each host's url and token_file; "
        "docs/scale.md): each item leases GPUs on one of them and runs its workspace there (the remote backend)",
        None,
        _file,
    )
    datasets: dict[str, Path] = option(
        "where a dataset that tasks take files from is, as NAME=PATH; repeatable (e.g. innovatorbench=PATH: "
        "InnovatorBench's released dataset with its evaluations/ folder inside; docs/task-format.md)",
        None,
        _directory,
        per_name=True,
    )
    evaluation_pythons: dict[str, Path] = option(
        "the Python that runs a dataset's own evaluation, as NAME=PATH; repeatable (InnovatorBench's "
        "evaluations need their own environment; default: the harness's Python)",
        None,
        _file,
        per_name=True,
    )
    cache_dir: Path = option(
        "where datasets' environment archives are unpacked, once for every item and run "
        "(default: $XDG_CACHE_HOME/pytest-innovator, else ~/.cache/pytest-innovator)",
        None,
        Path,
    )
    task_api_url: str = option(
        "OpenAI-compatible endpoint a task's own code calls (tasks that require an API model); its commands "
        "and its evaluation get it as OPENAI_BASE_URL, the key named by --innovator-task-api-key-env as OPENAI_API_KEY"
    )
    task_api_key_env: str = option(
        "name of the environment variable holding the key of --innovator-task-api-url", "OPENAI_API_KEY"
    )
    backend: str = option(
        "workspace backend: sandbox (bubblewrap; the default where bwrap works), local, "
        "docker or remote (docs/backends.md)",
        None,
        _choice(*BACKENDS),
    )
    docker_image: str = option(
        "image of the docker backend's containers (needs bash and the C libraries the "
        "host's Python links to: scripts/docker-test-image.sh)",
        DEFAULT_DOCKER_IMAGE,
    )
    remote_url: str = option(
        "session server of the remote backend, e.g. https://gpu-host:8765 (started with "
        "pytest-innovator serve --root DIR)"
    )
    remote_token_file: str = option("file holding the remote session server's bearer token")
    replay: str = option("tool-call file (or directory of <task>.jsonl) for the replay agent", for_agent=True)
    timeout_grace: float = option(
        "seconds added to each item's pytest-timeout beyond its time limit and grading", "300", _positive_float
    )
    model: str = option(
        "model name for LLM agents (with a base URL and no name: the first model the server lists)", for_agent=True
    )
    base_url: str = option(
        "OpenAI-compatible endpoint for LLM agents, e.g. http://127.0.0.1:8000/v1 (default: OpenAI's)", for_agent=True
    )
    api_key_env: str = option(
        "name of the environment variable that holds the API key (the key is never written anywhere)",
        "OPENAI_API_KEY",
        for_agent=True,
    )
    judge_model: str = option(
        "the model that judges experiment tasks' phases (design, implementation, execution, conclusion); "
        "unset: experiment items are skipped"
    )
    judge_base_url: str = option(
        "OpenAI-compatible endpoint of the judge (default: OpenAI's); apart from the agent's --innovator-base-url"
    )
    judge_api_key_env: str = option("name of the environment variable that holds the judge's API key", "OPENAI_API_KEY")
    judge_samples: int = option("verdicts asked per phase; the majority decides", "1", _positive_int)
    max_tokens: int | None = option(
        "end an LLM agent's episode (end_reason cost_limit) once its tokens in + out reach this; 0: no limit",
        "",
        _optional_positive_int,
        for_agent=True,
    )
    max_cost: float | None = option(
        "end an LLM agent's episode (end_reason cost_limit) once its cost in USD reaches this; 0: no limit",
        "",
        _optional_positive_float,
        for_agent=True,
    )
    tool_protocol: str = option(
        "native: function calling; json_schema: one call per reply as JSON under the server's "
        "response_format; text: one fenced JSON action per reply; auto: what the endpoint is found to enforce, "
        "in that order",
        "auto",
        _choice("auto", "native", "json_schema", "text"),
        for_agent=True,
    )
    reply_tokens: int = option(
        "most tokens an LLM agent's model may write in one reply (each request's "
        "max_tokens); 0: the agent's default, 4096 (the embedded model: 160)",
        "0",
        _non_negative_int,
        for_agent=True,
    )
    context_tokens: int = option(
        "tokens of conversation an LLM agent keeps before it summarises the older turns",
        "64000",
        _positive_int,
        for_agent=True,
    )
    price_table: str = option(
        "JSON or TOML file of model prices (USD per million tokens) that extends the built-in table", for_agent=True
    )
    llm_timeout: float = option(
        "seconds an LLM request may take before it is retried", "600", _positive_float, for_agent=True
    )
    llm_retries: int = option(
        "retries of an LLM request after a 429, 5xx, timeout or dropped connection",
        "6",
        _non_negative_int,
        for_agent=True,
    )
    llm_backoff: float = option(
        "seconds before the first retry; doubled each time (with jitter), at most 60",
        "1",
        _positive_float,
        for_agent=True,
    )
    vllm_model: str = option("model path or name the vllm_server fixture serves with vLLM (unset: the fixture skips)")
    vllm_args: str = option(
        'extra vLLM server arguments, e.g. "--max-model-len 4096 --tensor-parallel-size 2" (tp x pp GPUs are leased)'
    )
    vllm_command: str = option(
        "command that starts the vLLM server (default: this python -m vllm.entrypoints.openai.api_server)"
    )
    search_provider: str | None = option(
        "the provider of web_search and open_page, for tasks that offer web tools: serper (key in $SERPER_API_KEY), "
        "bing (key in $BING_SEARCH_API_KEY) or offline (--innovator-offline-corpus); unset: such tasks are skipped",
        "",
        _optional_choice(*SEARCH_PROVIDERS),
    )
    literature_provider: str | None = option(
        "the provider of literature_search, for tasks that offer it: semantic_scholar (optional key in "
        "$SEMANTIC_SCHOLAR_API_KEY), arxiv or offline (--innovator-offline-corpus); unset: such tasks are skipped",
        "",
        _optional_choice(*LITERATURE_PROVIDERS),
    )
    offline_corpus: Path | None = option(
        "JSONL file of pages (url, title, text; authors and year for papers) that the offline providers search "
        "and open",
        "",
        lambda value: _file(value) if value else None,
    )
    api_base_urls: dict[str, str] = option(
        "base URL of a search or literature API, as NAME=URL (serper, bing, semantic_scholar, arxiv); "
        "repeatable (a proxy, or a local server that answers in the API's format)",
        None,
        _url,
        per_name=True,
    )
    memory_ranking: str = option(
        "how memory_read ranks an item's memory: embeddings (all-MiniLM-L6-v2, the memory extra), bm25 "
        "(lexical), or auto: embeddings where the memory extra is installed, else bm25",
        "auto",
        _choice("auto", "embeddings", "bm25"),
    )
    resume: str = option(
        "continue the items of an earlier run (RESULTS/runs/RUN_ID) from their last snapshots, "
        "or branch one item from a snapshot (RUN_DIR/ITEM@SNAPSHOT)"
    )
    snapshot_steps: int | None = option(
        "snapshot every N steps (default: the task's snapshot_steps; none)", "", _optional_positive_int
    )
    snapshot_minutes: float | None = option(
        "snapshot every T minutes of working time (default: the task's snapshot_minutes, else 30)",
        "",
        _optional_positive_float,
    )
    snapshot_keep: int = option(
        "snapshots kept per item (older ones are pruned; the latest is always kept)", "3", _positive_int
    )
    # Not an option: whether the user named the backend (then a backend that cannot run is an error).
    backend_named: bool = field(default=False, metadata={})
    # Not an option: each GPU's memory in bytes, as NVML reports it; None when --innovator-gpus
    # names the GPUs by hand (their memory is not known then).
    gpu_memory: dict[str, int] | None = field(default=None, metadata={})

    def agent_options(self) -> dict[str, Any]:
        return {o.name: getattr(self, o.name) for o in OPTIONS if o.for_agent}

    def backend_settings(self) -> BackendSettings:
        return BackendSettings(
            docker_image=self.docker_image,
            remote_url=self.remote_url,
            remote_token_file=self.remote_token_file,
            cache_dir=self.cache_dir,
            pool=self.hosts,
        )


OPTIONS = [Option(f.name, *f.metadata["option"]) for f in fields(Settings) if "option" in f.metadata]
assert all(o.name.endswith("s") for o in OPTIONS if o.per_name), "a per-name option's field is named in the plural"
OPTION_BY_NAME = {option.name: option for option in OPTIONS}


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("innovator", "research-agent benchmarks (pytest-innovator)")
    for option in OPTIONS:
        default = f" (default: {option.default})" if option.default else ""
        help = f"{option.help}{default}; env {option.env_var}, ini {option.ini_key}"
        dest = f"innovator_{option.name}"
        if option.per_name:
            group.addoption(option.flag, dest=dest, default=None, action="append", metavar="NAME=VALUE", help=help)
            parser.addini(option.ini_key, f"{option.help} (one NAME=VALUE a line)", type="linelist", default=[])
        else:
            group.addoption(option.flag, dest=dest, default=None, help=help)
            parser.addini(option.ini_key, option.help, default=None)


def default_gpu_lock_dir(host: str) -> Path:
    """Per host name, so that simulated hosts on one machine do not share their GPUs' locks."""
    return Path(tempfile.gettempdir()) / f"pytest-innovator-{os.getuid()}" / "gpu-locks" / host


def _raw_value(
    config: pytest.Config, option: Option, environ: Mapping[str, str] = os.environ
) -> tuple[str | None, str]:
    """The option's raw text and where it came from; `environ` is that of the process it is for
    (an xdist worker's may differ from this one's)."""
    value = config.getoption(f"innovator_{option.name}")
    if value is not None:
        return str(value), f"command line {option.flag}"
    if option.env_var in environ:
        return environ[option.env_var], f"environment variable {option.env_var}"
    ini = config.getini(option.ini_key)
    if ini not in (None, "", []):
        return str(ini), f"ini key {option.ini_key}"
    return option.default, "default"


_NAME = re.compile(r"[a-z0-9][a-z0-9_]*")


def _raw_values_per_name(config: pytest.Config, option: Option) -> dict[str, tuple[str, str]]:
    """NAME -> (raw value, where it came from), the command line over the environment over the ini file."""
    found: dict[str, tuple[str, str]] = {}

    def add(entry: str, source: str, name: str | None = None) -> None:
        if name is None:
            name, equals, entry = entry.partition("=")
            if not equals:
                raise SettingsError(f"invalid {option.flag} {name!r} (from {source}): must be NAME=VALUE")
        name = name.strip()
        if not _NAME.fullmatch(name):
            raise SettingsError(
                f"invalid {option.flag} name {name!r} (from {source}): must be lower case letters, digits and _"
            )
        found[name] = (entry, source)

    for line in config.getini(option.ini_key):
        add(line, f"ini key {option.ini_key}")
    prefix = option.env_var.removesuffix("<NAME>")
    for variable, value in sorted(os.environ.items()):
        if variable.startswith(prefix) and variable != prefix:
            add(value, f"environment variable {variable}", variable.removeprefix(prefix).lower())
    for entry in config.getoption(f"innovator_{option.name}") or []:
        add(entry, f"command line {option.flag}")
    return found


def _convert(option: Option, raw: str, source: str, shown: str) -> Any:
    try:
        return option.convert(raw.strip())
    except ValueError as exc:
        reason = str(exc) if "must" in str(exc) else f"not a valid value ({exc})"
        if option.name == "gpus":  # detect_gpus says what is wrong and what is expected
            raise SettingsError(f"{exc} (from {source})") from None
        raise SettingsError(f"invalid {option.flag} {shown!r} (from {source}): {reason}") from None


def worker_setting(config: pytest.Config, name: str, environ: Mapping[str, str]) -> Any:
    """Option `name` as an xdist worker whose environment is `environ` resolves it (the same
    command line and ini file); None where the worker computes it (the host's GPUs, its name)."""
    option = OPTION_BY_NAME[name]
    raw, source = _raw_value(config, option, environ)
    return None if raw is None else _convert(option, raw, source, raw)


def resolve_settings(config: pytest.Config) -> Settings:
    values: dict[str, Any] = {}
    for option in OPTIONS:
        if option.per_name:
            raw_values = _raw_values_per_name(config, option)
            values[option.name] = {
                name: _convert(option, raw, source, f"{name}={raw}") for name, (raw, source) in raw_values.items()
            }
            continue
        raw, source = _raw_value(config, option)
        values[option.name] = None if raw is None else _convert(option, raw, source, raw)
    # What is left unset is computed: the host's GPUs and their memory, a per-user lock directory,
    # the best backend.
    if values["gpus"] is None:
        values["gpus"] = tuple(detect_gpus(None))
        values["gpu_memory"] = gpu_memory(values["gpus"])
    if values["host"] is None:
        values["host"] = host_name()
    if values["gpu_lock_dir"] is None:
        values["gpu_lock_dir"] = default_gpu_lock_dir(values["host"])
    if values["cache_dir"] is None:
        values["cache_dir"] = default_cache_dir()
    if values["hosts"] is not None and values["backend"] not in (None, "remote"):
        raise SettingsError(
            f"--innovator-hosts runs every item on the pool's session servers (the remote backend): "
            f"drop --innovator-backend {values['backend']}"
        )
    values["backend_named"] = values["backend"] is not None or values["hosts"] is not None
    if values["hosts"] is not None:
        values["backend"] = "remote"
    if values["backend"] is None:
        values["backend"] = default_backend()
    _check_providers(values)
    if not values["results"].is_absolute():
        values["results"] = Path(config.invocation_params.dir) / values["results"]
    return Settings(**values)


def _check_providers(values: dict[str, Any]) -> None:
    """A provider has what it needs: the offline ones their corpus, Serper and Bing their key."""
    for option in ("search_provider", "literature_provider"):
        provider = values[option]
        flag = f"{OPTION_BY_NAME[option].flag} {provider}"
        if provider == "offline" and values["offline_corpus"] is None:
            raise SettingsError(f"{flag} searches a local corpus: name its JSONL file with --innovator-offline-corpus")
        if provider in ("serper", "bing") and not os.environ.get(KEY_ENVS[provider]):
            raise SettingsError(f"{flag} reads its key from ${KEY_ENVS[provider]}, which is not set")
    unknown = sorted(set(values["api_base_urls"]) - set(DEFAULT_BASE_URLS))
    if unknown:
        raise SettingsError(
            f"--innovator-api-base-url {unknown[0]}: unknown API; known: {', '.join(DEFAULT_BASE_URLS)}"
        )


def uses_embedded_model(settings: Settings) -> bool:
    """The react agent with no endpoint, no vLLM model and no key configured runs on the embedded model."""
    return (
        settings.agent == "react"
        and not settings.base_url
        and not settings.vllm_model
        and not settings.model
        and not os.environ.get(settings.api_key_env)
    )


def markdown_table() -> str:
    """The options as docs/options.md shows them."""
    rows = ["| option | environment variable | ini key | default | meaning |", "|---|---|---|---|---|"]
    for o in OPTIONS:
        default = f"`{o.default}`" if o.default else "—"
        rows.append(f"| `{o.flag}` | `{o.env_var}` | `{o.ini_key}` | {default} | {o.help} |")
    return "\n".join(rows)


# --- stash keys: the plugin's state on the config ---------------------------------------------

settings_key = pytest.StashKey[Settings]()
run_id_key = pytest.StashKey[str]()
