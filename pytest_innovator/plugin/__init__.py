"""The pytest plugin (entry point ``pytest_innovator.plugin``): its hooks.

Every task.toml (and every MLGym task config, mlgym.py) becomes a test item (items.py) whose
fixtures (fixtures.py) provision the workspace and whose body runs the agent; options.py resolves
the settings, report.py writes the results log and the terminal summary, progress.py the live
lines while items run, llm_servers.py serves models to LLM agents.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from ..backends import BACKENDS, BackendUnavailable
from ..rundir import RunDir
from ..task import KNOWN_DOMAINS
from . import report as report_module
from .items import TaskFile, broken_task_files_key, resume_target_key
from .options import add_options, resolve_settings, run_id_key, settings_key
from .progress import LiveProgress

# Fixtures live in modules of their own; pytest registers them with this plugin.
pytest_plugins = ["pytest_innovator.plugin.fixtures", "pytest_innovator.plugin.llm_servers"]

BUILTIN_MARKERS = {
    "innovator": "innovator(task, domain, ...): metadata of a benchmark task item",
    "innovator_task(path)": "run this test with the fixtures of the task at path "
    "(suite/task, relative to task_suites/ or the rootdir)",
    "gpu(n)": "the item needs n GPUs (leased exclusively for it)",
}


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    for marker, text in BUILTIN_MARKERS.items():
        config.addinivalue_line("markers", f"{marker}: {text}")
    for domain in KNOWN_DOMAINS:
        config.addinivalue_line("markers", f"{domain}: tasks of the {domain} domain")
    settings = resolve_settings(config)
    config.stash[settings_key] = settings
    if "expbench" in settings.datasets:  # EXP-Bench's records are collected from the dataset itself
        from ..experiments.expbench import records_root

        collect_also(config, records_root(settings.datasets["expbench"]))
    if settings.resume:
        from ..snapshots.resume import ResumeError, parse_resume_option

        try:
            config.stash[resume_target_key] = parse_resume_option(settings.resume)
        except ResumeError as exc:
            raise pytest.UsageError(f"--innovator-resume: {exc}") from None
    workerinput = getattr(config, "workerinput", None)
    if settings.backend_named and workerinput is None:
        # Asked for by name: a backend that cannot run here ends the run before anything starts.
        try:
            BACKENDS[settings.backend].check(settings.backend_settings())
        except BackendUnavailable as exc:
            raise pytest.UsageError(f"--innovator-backend {settings.backend}: {exc}") from None
    config.stash[run_id_key] = workerinput["innovator_run_id"] if workerinput else new_run_id()
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(XdistHooks(config), "innovator-xdist")
        from .scheduling import WORKER_FLAG, ControllerHooks, WorkerLoop, uses_gpu_scheduler

        if workerinput is None and uses_gpu_scheduler(config, settings):
            config.pluginmanager.register(ControllerHooks(config), "innovator-gpu-scheduler")
        elif workerinput is not None and workerinput.get(WORKER_FLAG):
            config.pluginmanager.register(WorkerLoop(config), "innovator-worker-loop")
    if workerinput is None:
        progress = LiveProgress(config, settings, config.stash[run_id_key])
        config.pluginmanager.register(progress, "innovator-progress")
        reporter = report_module.ResultsReporter(config, settings, config.stash[run_id_key], progress)
        config.pluginmanager.register(reporter, "innovator-reporter")


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]


class XdistHooks:
    def __init__(self, config: pytest.Config):
        self.config = config

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        node.workerinput["innovator_run_id"] = node.config.stash[run_id_key]

    @pytest.hookimpl(optionalhook=True)
    def pytest_handlecrashitem(self, crashitem: str, report: pytest.TestReport, sched: Any) -> None:
        """A worker died running an item: what it had done is in the item's run directory."""
        config = self.config
        run_dir = RunDir.of(config.stash[settings_key].results, config.stash[run_id_key], crashitem.rsplit("::", 1)[-1])
        report_module.describe_crashed_item(report, run_dir)


# --- collection ----------------------------------------------------------------------------


def collect_also(config: pytest.Config, path: Path) -> None:
    """Collect path too; instead of the default paths when the user named none (on the controller
    and on each xdist worker alike, which parse the same command line)."""
    if config.args_source != pytest.Config.ArgsSource.ARGS:
        config.args[:] = [str(path)]
    elif str(path) not in config.args:
        config.args.append(str(path))


@pytest.hookimpl(tryfirst=True)
def pytest_runtestloop(session: pytest.Session) -> None:
    """A broken task file is reported as a collection error, but never stops the other tasks."""
    broken = session.config.stash.get(broken_task_files_key, 0)
    if broken and session.testsfailed == broken:
        session.config.option.continue_on_collection_errors = True


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path.name == "task.toml":
        return TaskFile.from_parent(parent, path=file_path)
    if file_path.suffix in (".yaml", ".yml"):
        from ..mlgym import is_task_config

        if is_task_config(file_path):  # an MLGym checkout's configs/tasks/<task>.yaml
            return TaskFile.from_parent(parent, path=file_path)
    if file_path.suffix == ".json":
        from ..experiments.expbench import is_task_record

        if is_task_record(file_path):  # EXP-Bench's <conference>/<paper>/<...>complete_final<...>.json
            return TaskFile.from_parent(parent, path=file_path)
    return None
