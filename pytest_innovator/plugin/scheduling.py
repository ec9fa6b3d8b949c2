"""The GPU-aware xdist scheduler (`--innovator-scheduler gpu`, the default for task suites under -n).

pytest-xdist hands items to workers blindly, in chunks: an 8-GPU item can land on a worker whose
host has 2 GPUs and be skipped, and two 48-hour items can queue on one worker while another idles.
Here each worker's host is known before it starts (hosts/inventory.py), every item's GPUs come
from its task.toml, and hosts/planner.py decides: an item goes to an idle worker whose host has
its GPUs free now, one item per worker at a time; it waits while a host that could hold it is
busy; the longest-waiting item holds a reservation. An item no host could ever hold goes to any
worker, whose `innovator_task` fixture skips it with what it needs.

One item at a time needs a change on the worker: xdist's worker starts an item only once it knows
the next one (`nextitem`, which says which fixtures to keep), so `WorkerLoop` runs each item as it
arrives, with the session as its `nextitem`: the fixtures of the item, its module and package are
torn down after it, the session's (an LLM server that took minutes to load) stay until the worker
ends. It reads the internals of xdist's WorkerInteractor (`torun`, `handle_command`, `sendevent`,
`Marker`; pytest-xdist 3.6 to 3.8), and says so when they are missing.

A worker that holds an item long past the item's limit is hung in a way pytest-timeout could not
end (pytest-xdist issue 57): the controller's `Watchdog` kills its process, and xdist reports the
item crashed, with the reason, and goes on (docs/scale.md, "Hung workers").
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ..hosts.inventory import ask_worker
from ..hosts.planner import Host, ItemNeed, Planner
from ..task import TaskError, find_tasks, load_task
from .fixtures import GPU_MEMORY_SHARE
from .items import item_timeout
from .options import Settings, settings_key, worker_setting

WORKER_FLAG = "innovator_gpu_scheduler"


def uses_gpu_scheduler(config: pytest.Config, settings: Settings) -> bool:
    """`gpu` by name; with `auto`, under xdist when every path given holds task.toml files and no
    test modules (a project's own tests keep xdist's scheduling)."""
    if settings.scheduler != "auto":
        return settings.scheduler == "gpu"
    if not getattr(config.option, "numprocesses", None) and not getattr(config.option, "tx", None):
        return False
    paths = [Path(config.invocation_params.dir, arg.split("::")[0]) for arg in config.args]
    return bool(paths) and all(_is_task_suite(path) for path in paths)


def _is_task_suite(path: Path) -> bool:
    if path.is_file():
        return path.name == "task.toml"
    return path.is_dir() and bool(find_tasks(path)) and not any(path.rglob("test_*.py"))


def worker_host(config: pytest.Config, inventory: dict[str, Any]) -> tuple[str, tuple[str, ...], int | None]:
    """A worker's host name, its GPUs and their memory (the smallest; None where not known), as the
    worker itself resolves them from the same command line and ini file and its own environment."""
    environ = inventory["environ"]
    name = worker_setting(config, "host", environ) or inventory["hostname"]
    named = worker_setting(config, "gpus", environ)
    gpus = tuple(named) if named is not None else tuple(inventory["gpus"])
    memory = inventory["gpu_memory"] if named is None else {}
    known = [memory[d] for d in gpus if d in memory]
    return name, gpus, min(known) if gpus and len(known) == len(gpus) else None


def pool_as_host(hosts_file: Path) -> tuple[str, tuple[str, ...], int | None]:
    """With a pool of hosts (--innovator-hosts), the workers only hold items while they wait for
    and use a pool host's GPUs: to the planner they share one host with every GPU of the pool, so
    items go one at a time to idle workers and no more are sent than the pool's GPUs can hold."""
    from ..hosts.pool import ask_hosts, load_pool

    answers, _ = ask_hosts(load_pool(hosts_file))
    gpus = [f"{host.name}:{device}" for host, answer in answers.items() for device in answer["gpus"]]
    return "pool", tuple(gpus), None


def item_task(config: pytest.Config, nodeid: str, tasks: dict[Path, Any]) -> Any:
    """An item's Task, loaded once into `tasks` (None for items of other kinds and broken task files)."""
    path = Path(config.rootpath, nodeid.split("::")[0])
    if path.name != "task.toml":
        return None
    if path not in tasks:
        try:
            tasks[path] = load_task(path)
        except TaskError:
            tasks[path] = None  # the worker reports it as a collection error
    return tasks[path]


def item_need(config: pytest.Config, nodeid: str, tasks: dict[Path, Any]) -> ItemNeed:
    """What an item needs, from its task.toml (items of other kinds need no GPU)."""
    task = item_task(config, nodeid, tasks)
    if task is None:
        return ItemNeed(nodeid)
    resources = task.spec.resources
    memory = int(resources.gpu_memory * GPU_MEMORY_SHARE) if resources.gpu_memory else None
    settings: Settings = config.stash[settings_key]
    duration = task.spec.time_limit * settings.time_scale
    return ItemNeed(nodeid, gpus=resources.gpus, hosts=resources.hosts, gpu_memory=memory, duration=duration)


def item_limit(config: pytest.Config, nodeid: str, tasks: dict[Path, Any]) -> tuple[float, float] | None:
    """How long a worker may hold an item before the watchdog ends it: the item's pytest-timeout
    limit (for a task, `item_timeout`; for other items, pytest-timeout's own `--timeout`) and a
    margin (for a task, the final evaluation pytest-timeout's failure still runs, up to its grader's
    timeout, plus `--innovator-timeout-grace`; for other items, that grace). None: not watched."""
    settings: Settings = config.stash[settings_key]
    task = item_task(config, nodeid, tasks)
    if task is not None:
        return item_timeout(task, settings), task.spec.grader.timeout + settings.timeout_grace
    try:
        from pytest_timeout import get_env_settings

        limit = get_env_settings(config).timeout
    except (ImportError, ValueError):  # pytest-timeout not installed, or not loaded (-p no:timeout)
        return None
    return (limit, settings.timeout_grace) if limit else None


def kill_pid(channel, pid):  # type: ignore[no-untyped-def]  # sent by source to an interpreter on the worker's host
    import os
    import signal

    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def end_process(spec: Any, pid: int) -> None:
    """Kill a worker's process: here when it runs on this machine, else from a new interpreter on
    its host, through a gateway of the same spec (for ssh: the same host, user and python)."""
    import execnet

    if spec.popen:
        kill_pid(None, pid)
        return
    group = execnet.Group()
    try:
        parts = [part for part in str(spec).split("//") if not part.startswith(("id=", "env:", "chdir="))]
        channel = group.makegateway("//".join(parts)).remote_exec(kill_pid, pid=pid)
        channel.waitclose(timeout=60)
    finally:
        group.terminate(timeout=10)


@dataclass
class Held:
    """An item a worker was sent and has not finished."""

    worker: str
    node: Any  # its WorkerController
    item: str
    since: float  # time.monotonic() when it was sent
    limit: float
    margin: float


class Watchdog:
    """A controller thread that ends a worker holding an item past its limit and margin: it kills the
    worker's process and nothing else; xdist's IO thread sees the worker's channel close and its
    crash path (DSession.worker_errordown, then our `remove_node`) fails the item and goes on."""

    def __init__(self, processes: dict[str, tuple[int, str]], poll: float = 1.0):
        self.processes = processes  # worker id -> (its pid, its host name), as the worker reported them
        self.poll = poll
        self.held: dict[str, Held] = {}  # worker id -> the item it holds
        self.ended: dict[str, str] = {}  # item -> why its worker was ended
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.thread: threading.Thread | None = None

    def hold(self, held: Held) -> None:
        with self.lock:
            self.held[held.worker] = held
        if self.thread is None:
            self.thread = threading.Thread(target=self.run, name="innovator-hung-worker-watchdog", daemon=True)
            self.thread.start()

    def release(self, worker: str) -> None:
        with self.lock:
            self.held.pop(worker, None)

    def stop(self) -> None:
        self.stopped.set()

    def run(self) -> None:
        while not self.stopped.wait(self.poll):
            now = time.monotonic()
            with self.lock:
                overdue = [h for h in self.held.values() if now - h.since > h.limit + h.margin]
                for held in overdue:
                    del self.held[held.worker]
            for held in overdue:
                self.end(held, now - held.since)

    def end(self, held: Held, seconds: float) -> None:
        reason = (
            f"worker {held.worker} held item {held.item} for {seconds:.0f} s, past its limit of {held.limit:g} s "
            f"(and a margin of {held.margin:g} s): ended it"
        )
        with self.lock:
            if held.worker in self.held:  # it finished the item just now and was sent another
                return
            self.ended[held.item] = reason  # before the kill: xdist's IO thread may report the death at once
        gateway = held.node.gateway
        pid, hostname = self.processes.get(held.worker, (None, None))
        try:
            if pid is not None and (not gateway.spec.popen or hostname == socket.gethostname()):
                end_process(gateway.spec, pid)
        except Exception as exc:  # the local end below still frees the controller
            self.ended[held.item] = f"{reason} (its process {pid} on {hostname} may be left: {exc!r})"
        # The local end of its connection (the worker's python, ssh or srun), killed as execnet's own
        # Group.terminate does: the channel closes and xdist reports the worker down.
        io = getattr(gateway, "_io", None)
        if io is not None and hasattr(io, "kill"):
            io.kill()


class GpuScheduling:
    """xdist's Scheduling protocol over a Planner (see xdist/scheduler/protocol.py)."""

    def __init__(
        self,
        config: pytest.Config,
        log: Any,
        hosts: dict[str, tuple[str, tuple[str, ...], int | None]],
        processes: dict[str, tuple[int, str]] | None = None,
    ):
        from xdist.workermanage import parse_tx_spec_config

        self.config = config
        self.log = log
        # Every worker's host is known before anything is placed (or found to fit no host).
        self.expected_workers = len(parse_tx_spec_config(config))
        self.hosts = hosts  # worker id -> its host (worker_host)
        self.planner = Planner()
        self.node_of: dict[str, Any] = {}  # worker id -> its WorkerController
        self.collections: dict[str, list[str]] = {}
        self.collection: list[str] | None = None
        self.index_of: dict[str, int] = {}
        self.running: dict[str, str] = {}  # item -> worker id, for the items the planner placed
        self.unplaceable: dict[str, str] = {}  # item -> worker id, items no host can hold (skipped there)
        self.done: set[str] = set()
        self.tasks: dict[Path, Any] = {}  # task.toml -> its Task (None when it does not load)
        self.shut_down = False
        self.watchdog = Watchdog(processes if processes is not None else {})

    @property
    def nodes(self) -> list[Any]:
        return list(self.node_of.values())

    @property
    def collection_is_completed(self) -> bool:
        return len(self.collections) >= self.expected_workers

    @property
    def tests_finished(self) -> bool:
        return self.collection is not None and len(self.done) >= len(self.collection)

    @property
    def has_pending(self) -> bool:
        return bool(self.planner.waiting or self.running or self.unplaceable)

    def add_node(self, node: Any) -> None:
        worker = node.gateway.id
        name, gpus, memory = self.hosts[worker]
        if name not in self.planner.hosts:
            self.planner.add_host(Host(name, len(gpus), memory))
        self.planner.add_worker(worker, name)
        self.node_of[worker] = node

    def add_node_collection(self, node: Any, collection: Sequence[str]) -> None:
        self.collections[node.gateway.id] = list(collection)
        if self.shut_down:  # a worker xdist restarted after everything was placed
            node.shutdown()

    def mark_test_complete(self, node: Any, item_index: int, duration: float = 0) -> None:
        assert self.collection is not None
        item = self.collection[item_index]
        self.watchdog.release(node.gateway.id)
        if self.running.pop(item, None) is not None:
            self.planner.finished(item)
        self.unplaceable.pop(item, None)
        self.done.add(item)
        self.schedule()

    def mark_test_pending(self, item: str) -> None:
        self.done.discard(item)
        self.planner.add_items([item_need(self.config, item, self.tasks)])
        self.schedule()

    def remove_pending_tests_from_node(self, node: Any, indices: Sequence[int]) -> None:
        pass  # a worker holds only the item it runs

    def remove_node(self, node: Any) -> str | None:
        """A worker went down: the item it was running, if any (xdist reports it as crashed)."""
        worker = node.gateway.id
        self.watchdog.release(worker)
        self.node_of.pop(worker, None)
        lost = [need.key for need in self.planner.remove_worker(worker)]
        lost += [item for item, on in self.unplaceable.items() if on == worker]
        for item in lost:
            self.running.pop(item, None)
            self.unplaceable.pop(item, None)
            self.done.add(item)
        self.schedule()
        return lost[0] if lost else None

    def schedule(self) -> None:
        if not self.collection_is_completed or self.shut_down:
            return
        if self.collection is None:
            if not self._same_collections():
                self._shut_down()
                return
            self.collection = next(iter(self.collections.values()))
            self.index_of = {item: index for index, item in enumerate(self.collection)}
            self.planner.add_items(item_need(self.config, item, self.tasks) for item in self.collection)
        plan = self.planner.place()
        for placement in plan.placements:
            self._send(placement.item.key, placement.worker)
            self.running[placement.item.key] = placement.worker
        for impossible in plan.impossible:
            worker = min(self.node_of, key=lambda w: list(self.unplaceable.values()).count(w))
            self.unplaceable[impossible.item.key] = worker
            self._send(impossible.item.key, worker)
        if not self.planner.waiting:
            self._shut_down()  # each worker finishes what it was sent first

    def _send(self, item: str, worker: str) -> None:
        node = self.node_of[worker]
        limit = item_limit(self.config, item, self.tasks)
        if limit is not None:
            self.watchdog.hold(Held(worker, node, item, time.monotonic(), *limit))
        node.send_runtest_some([self.index_of[item]])

    def _shut_down(self) -> None:
        self.shut_down = True
        for node in self.nodes:
            node.shutdown()

    def _same_collections(self) -> bool:
        from xdist.scheduler.load import report_collection_diff

        (first, expected), *others = self.collections.items()
        same = True
        for worker, collection in others:
            message = report_collection_diff(expected, collection, first, worker)
            if message:
                same = False
                self.config.hook.pytest_collectreport(
                    report=pytest.CollectReport(nodeid=worker, outcome="failed", longrepr=message, result=[])
                )
        return same


class ControllerHooks:
    """On the controller: ask each worker's host before it starts, then schedule with them."""

    def __init__(self, config: pytest.Config):
        self.config = config
        self.hosts: dict[str, tuple[str, tuple[str, ...], int | None]] = {}
        self.pool: tuple[str, tuple[str, ...], int | None] | None = None
        self.processes: dict[str, tuple[int, str]] = {}  # worker id -> its pid and host name
        self.scheduler: GpuScheduling | None = None

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        node.workerinput[WORKER_FLAG] = True
        inventory = ask_worker(node.gateway)
        self.processes[node.gateway.id] = (inventory["pid"], inventory["machine"])
        settings: Settings = self.config.stash[settings_key]
        if settings.hosts is not None:
            self.hosts[node.gateway.id] = self.pool = self.pool or pool_as_host(settings.hosts)
        else:
            self.hosts[node.gateway.id] = worker_host(self.config, inventory)

    @pytest.hookimpl(optionalhook=True, tryfirst=True)
    def pytest_xdist_make_scheduler(self, config: pytest.Config, log: Any) -> GpuScheduling:
        self.scheduler = GpuScheduling(config, log, self.hosts, self.processes)
        return self.scheduler

    @pytest.hookimpl(optionalhook=True, trylast=True)
    def pytest_handlecrashitem(self, crashitem: str, report: pytest.TestReport, sched: Any) -> None:
        """An item whose worker the watchdog ended: xdist's report says it crashed, ours says why,
        and its end_reason (set by report.describe_crashed_item before this runs) is worker_hung."""
        reason = sched.watchdog.ended.get(crashitem) if isinstance(sched, GpuScheduling) else None
        if reason:
            report.longrepr = f"{reason}\n{report.longrepr}"
            report.user_properties = [
                (name, "worker_hung" if name == "end_reason" else value) for name, value in report.user_properties
            ]

    def pytest_sessionfinish(self) -> None:
        if self.scheduler is not None:
            self.scheduler.watchdog.stop()


class WorkerLoop:
    """On a worker: run each item as soon as it arrives (see the module's docstring)."""

    def __init__(self, config: pytest.Config):
        self.config = config

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> bool:
        interactor = next(
            (p for p in self.config.pluginmanager.get_plugins() if type(p).__name__ == "WorkerInteractor"), None
        )
        needed = ("torun", "handle_command", "sendevent", "channel")
        if (
            interactor is None
            or not all(hasattr(interactor, a) for a in needed)
            or "Marker" not in (type(interactor).handle_command.__globals__)
        ):
            raise pytest.UsageError(
                "--innovator-scheduler gpu needs pytest-xdist 3.6 to 3.8 (its worker internals changed): "
                "install one of those, or use --innovator-scheduler xdist"
            )
        # The worker's xdist.remote runs as a module of its own (execnet's remote_exec): its Marker
        # is not the one `import xdist.remote` gives.
        shutdown = type(interactor).handle_command.__globals__["Marker"].SHUTDOWN
        interactor.channel.setcallback(interactor.handle_command, endmarker=shutdown)
        while isinstance(index := interactor.torun.get(), int):
            interactor.item_index = index
            started = time.perf_counter()
            # The next item shares only the session with this one (pytest's SetupState keeps the
            # collectors in nextitem.listchain(), here the session alone).
            self.config.hook.pytest_runtest_protocol(item=session.items[index], nextitem=session)
            interactor.sendevent("runtest_protocol_complete", item_index=index, duration=time.perf_counter() - started)
            if session.shouldfail or session.shouldstop:
                break
        return True
