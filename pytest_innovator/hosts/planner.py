"""Where each item runs: the placement policy of the GPU-aware xdist scheduler, in plain Python.

Hosts have GPUs and xdist workers; items need GPUs on one host, or the same number on each of
several hosts at once. The policy, applied by `Planner.place` to the waiting items in arrival order:

* An item starts only on an idle worker whose host has enough free GPUs (with enough memory)
  now. A worker runs one item at a time, so two long items never queue on one worker while
  another idles; the workers of a host share its GPUs. A multi-host item takes an idle worker and
  its GPUs on each of its hosts at once, or nothing (all-or-nothing).
* Among the hosts that fit, the tightest (fewest free GPUs) is taken, to keep whole hosts for
  the items that need them.
* An item no host could hold even when every host is empty is reported once as impossible,
  with the reason; an item that a busy host could hold waits.
* The longest-waiting item that cannot start gets a reservation: the hosts that will free enough
  GPUs soonest by the expected durations (the hosts with the most free GPUs when durations are
  not known). Later items may still start on other hosts, and on a reserved host only when they
  do not delay the reserved item: they end before it is expected to start, or they use GPUs and
  workers it will not need. This is EASY backfilling (Lifka, "The ANL/IBM SP scheduling system",
  JSSPP 1995; Mu'alem and Feitelson, IEEE TPDS 2001), the standard technique of batch
  schedulers: without the reservation a stream of small items would keep a big one waiting
  forever, and without backfilling GPUs would idle behind it.

The planner only decides; the xdist scheduler in `plugin/` tells it what happened (workers up and
down, items finished) and sends the items it places to their workers.
"""

from __future__ import annotations

import heapq
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from pytest_innovator.errors import InnovatorError

_NAMES_SHOWN = 5

Shape = tuple[int, int, "int | None"]  # gpus, hosts, gpu_memory: what decides where an item fits


class HostInventoryError(InnovatorError):
    """The hosts or workers given to the planner contradict each other (a name twice, a worker on
    a host that was never named)."""


@dataclass(frozen=True)
class Host:
    name: str
    gpus: int
    gpu_memory: int | None = None  # bytes per GPU (the smallest on the host); None: not known, any need is met

    def __post_init__(self) -> None:
        if self.gpus < 0:
            raise HostInventoryError(f"host {self.name!r} has {self.gpus} GPUs; give 0 or more")

    def can_hold(self, need: ItemNeed) -> bool:
        """Whether this host, empty, has the GPUs `need` asks of each of its hosts."""
        return self.gpus >= need.gpus and (need.gpus == 0 or self.has_memory_for(need))

    def has_memory_for(self, need: ItemNeed) -> bool:
        return need.gpu_memory is None or self.gpu_memory is None or self.gpu_memory >= need.gpu_memory


@dataclass(frozen=True)
class ItemNeed:
    key: str  # the item's node id
    gpus: int = 0  # on each of its hosts
    hosts: int = 1
    gpu_memory: int | None = None  # bytes per GPU; None: any GPU will do
    duration: float | None = None  # expected seconds; None: not known

    def __post_init__(self) -> None:
        if self.gpus < 0 or self.hosts < 1:
            raise ValueError(f"{self.key}: needs 0 or more GPUs on 1 or more hosts, got {self.gpus} on {self.hosts}")

    @property
    def shape(self) -> Shape:
        return self.gpus, self.hosts, self.gpu_memory


@dataclass(frozen=True)
class Placement:
    item: ItemNeed
    hosts: tuple[str, ...]
    workers: tuple[str, ...]  # one on each host, in the same order; the first runs the item
    gpus: int  # leased on each host
    started_at: float

    @property
    def worker(self) -> str:
        return self.workers[0]


@dataclass(frozen=True)
class Impossible:
    item: ItemNeed
    reason: str  # e.g. "needs 16 GPUs on one host; the largest host has 8 (a, b)"


@dataclass
class Plan:
    """What `Planner.place` decided: the items to start now, and the items to skip."""

    placements: list[Placement] = field(default_factory=list)
    impossible: list[Impossible] = field(default_factory=list)


@dataclass
class _Reservation:
    item: ItemNeed
    hosts: tuple[str, ...]
    # Items started on the reserved hosts after the reservation was made: an unknown-duration one
    # may run past any time, so the forecast never counts its GPUs as coming back.
    backfilled: set[str] = field(default_factory=set)


@dataclass
class _Room:
    """On the reserved hosts, during one `place`: the time the reserved item is expected to start
    and what each host can lend without delaying it."""

    shadow_time: float
    spare_gpus: dict[str, int]
    spare_workers: dict[str, int]


class Planner:
    """Hosts, their workers and free GPUs, the waiting items in arrival order and the running ones.

    `clock` gives the time that expected durations are counted from (seconds).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.hosts: dict[str, Host] = {}
        self.free_gpus: dict[str, int] = {}
        self.workers: dict[str, list[str]] = {}  # host -> its workers, in the order they came
        self._host_of_worker: dict[str, str] = {}
        self._idle: dict[str, dict[str, None]] = {}  # host -> its idle workers (an ordered set)
        self._waiting: list[ItemNeed] = []
        self.running: dict[str, Placement] = {}
        self._running_on_host: dict[str, dict[str, Placement]] = {}
        self._reservation: _Reservation | None = None
        self._inventory_changed = True  # whether an item may have become impossible since the last place()

    # -- the inventory --------------------------------------------------------------------------

    def add_host(self, host: Host) -> None:
        if host.name in self.hosts:
            raise HostInventoryError(f"host {host.name!r} is named twice; give each host one name")
        self.hosts[host.name] = host
        self.free_gpus[host.name] = host.gpus
        self.workers[host.name] = []
        self._idle[host.name] = {}
        self._running_on_host[host.name] = {}

    def add_worker(self, worker: str, host: str) -> None:
        if host not in self.hosts:
            raise HostInventoryError(f"worker {worker!r} is on host {host!r}, which is not in the inventory")
        if worker in self._host_of_worker:
            raise HostInventoryError(f"worker {worker!r} is already on host {self._host_of_worker[worker]!r}")
        self.workers[host].append(worker)
        self._host_of_worker[worker] = host
        self._idle[host][worker] = None

    def remove_worker(self, worker: str) -> list[ItemNeed]:
        """Forget a worker (it died or shut down); return the item it was running, if any, whose
        GPUs and other workers are freed: the caller fails it."""
        host = self._host_of_worker.pop(worker)
        lost = [p.item for p in self._running_on_host[host].values() if worker in p.workers]
        for item in lost:
            self.finished(item.key)
        self.workers[host].remove(worker)
        self._idle[host].pop(worker, None)
        if not self.workers[host]:
            self._inventory_changed = True
            if self._reservation and host in self._reservation.hosts:
                self._reservation = None
        return lost

    def remove_host(self, name: str) -> list[ItemNeed]:
        """Forget a host and its workers; return the items that were running on it."""
        lost = [item for worker in list(self.workers[name]) for item in self.remove_worker(worker)]
        for table in (self.hosts, self.free_gpus, self.workers, self._idle, self._running_on_host):
            del table[name]
        return lost

    # -- the items ------------------------------------------------------------------------------

    def add_items(self, needs: Iterable[ItemNeed]) -> None:
        """Queue items, after those already waiting."""
        known = {need.key for need in self._waiting} | self.running.keys()
        for need in needs:
            if need.key in known:
                raise ValueError(f"item {need.key} is queued twice")
            known.add(need.key)
            self._waiting.append(need)
        self._inventory_changed = True

    @property
    def waiting(self) -> tuple[ItemNeed, ...]:
        return tuple(self._waiting)

    @property
    def reserved(self) -> tuple[str | None, tuple[str, ...]]:
        """The item holding the reservation and its hosts, or (None, ())."""
        if self._reservation is None:
            return None, ()
        return self._reservation.item.key, self._reservation.hosts

    def idle_workers(self, host: str) -> list[str]:
        return list(self._idle[host])

    def finished(self, key: str) -> None:
        """An item ended (passed, failed or was skipped): its GPUs and workers are free again."""
        placement = self.running.pop(key)
        for host, worker in zip(placement.hosts, placement.workers, strict=True):
            self.free_gpus[host] += placement.gpus
            del self._running_on_host[host][key]
            if worker in self._host_of_worker:  # a worker being removed is not idle
                self._idle[host][worker] = None
        if self._reservation:
            self._reservation.backfilled.discard(key)

    # -- the decision ---------------------------------------------------------------------------

    def place(self) -> Plan:
        """Decide which waiting items start now and where, and which can never run here."""
        now = self._clock()
        plan = Plan()
        check_possible = self._inventory_changed
        self._inventory_changed = False
        idle_workers = sum(map(len, self._idle.values()))
        possible: dict[Shape, bool] = {}
        # Within one call room only shrinks, so a shape that found no room will not find it later,
        # nor will an item held back by the reservation find it with a longer duration.
        no_room: set[Shape] = set()
        held_back_from: dict[Shape, float] = {}  # the shortest expected duration held back
        room: _Room | None = None
        still_waiting: list[ItemNeed] = []
        for index, need in enumerate(self._waiting):
            if not idle_workers and not check_possible:
                still_waiting += self._waiting[index:]
                break
            if check_possible and not possible.setdefault(need.shape, self._possible(need)):
                plan.impossible.append(Impossible(need, self.impossible_reason(need)))
                if self._reservation and self._reservation.item.key == need.key:
                    self._reservation = None
                continue
            duration = math.inf if need.duration is None else need.duration
            held_back = need.shape in held_back_from and duration >= held_back_from[need.shape]
            if need.shape not in no_room and not held_back:
                hosts = self._hosts_for(need, room, now)
                if hosts is None:
                    no_room.add(need.shape)
                elif not hosts:
                    held_back_from[need.shape] = duration
                else:
                    plan.placements.append(self._start(need, hosts, room, now))
                    idle_workers -= need.hosts
                    continue
            still_waiting.append(need)
            if self._reservation is None:
                self._reservation = _Reservation(need, self._soonest_hosts(need, now))
            if room is None and self._reservation.item.key == need.key:
                room = self._room(self._reservation, now)
        self._waiting = still_waiting
        return plan

    def _possible(self, need: ItemNeed) -> bool:
        return len(self._hosts_that_can_hold(need)) >= need.hosts

    def _hosts_that_can_hold(self, need: ItemNeed) -> list[str]:
        return [name for name, host in self.hosts.items() if self.workers[name] and host.can_hold(need)]

    def _hosts_for(self, need: ItemNeed, room: _Room | None, now: float) -> list[str] | None:
        """The tightest hosts `need` may start on now; None when too few fit even ignoring the
        reservation, [] when the reservation holds them back."""
        fitting = [
            name
            for name, idle in self._idle.items()
            if idle and self.free_gpus[name] >= need.gpus and self.hosts[name].can_hold(need)
        ]
        if len(fitting) < need.hosts:
            return None
        allowed = [name for name in fitting if room is None or self._may_backfill(need, name, room, now)]
        if len(allowed) < need.hosts:
            return []
        return heapq.nsmallest(need.hosts, allowed, key=lambda name: self.free_gpus[name])

    def _may_backfill(self, need: ItemNeed, host: str, room: _Room, now: float) -> bool:
        if host not in room.spare_gpus:
            return True
        return _ends_in_time(need, room, now) or (need.gpus <= room.spare_gpus[host] and room.spare_workers[host] >= 1)

    def _start(self, need: ItemNeed, hosts: list[str], room: _Room | None, now: float) -> Placement:
        workers = tuple(next(iter(self._idle[host])) for host in hosts)
        placement = Placement(need, tuple(hosts), workers, need.gpus, now)
        self.running[need.key] = placement
        for host, worker in zip(hosts, workers, strict=True):
            self.free_gpus[host] -= need.gpus
            del self._idle[host][worker]
            self._running_on_host[host][need.key] = placement
        reservation = self._reservation
        if reservation and reservation.item.key == need.key:
            self._reservation = None
        elif reservation and room and set(hosts) & set(reservation.hosts):
            reservation.backfilled.add(need.key)
            for host in set(hosts) & set(reservation.hosts):
                if not _ends_in_time(need, room, now):
                    room.spare_gpus[host] -= need.gpus
                    room.spare_workers[host] -= 1
        return placement

    # -- the forecast behind a reservation --------------------------------------------------------

    def _releases(self, host: str, reservation: _Reservation | None, now: float) -> list[tuple[float, int]]:
        """(expected end, GPUs) of the items running on `host`, soonest first. An item of unknown
        duration ends at infinity, or never when it was backfilled under `reservation`."""
        releases = []
        for key, placement in self._running_on_host[host].items():
            duration = placement.item.duration
            if duration is None and reservation and key in reservation.backfilled:
                continue
            end = math.inf if duration is None else max(placement.started_at + duration, now)
            releases.append((end, placement.gpus))
        return sorted(releases)

    def _state_at(self, host: str, moment: float, releases: list[tuple[float, int]]) -> tuple[int, int]:
        """Free GPUs and idle workers expected on `host` at `moment`."""
        ended = [gpus for end, gpus in releases if end <= moment]
        return self.free_gpus[host] + sum(ended), len(self._idle[host]) + len(ended)

    def _start_time(self, need: ItemNeed, host: str, reservation: _Reservation | None, now: float) -> float:
        """When `host` is expected to have `need`'s GPUs and a worker free."""
        releases = self._releases(host, reservation, now)
        for moment in [now] + [end for end, _ in releases]:
            free, idle = self._state_at(host, moment, releases)
            if free >= need.gpus and idle >= 1:
                return moment
        return math.inf

    def _soonest_hosts(self, need: ItemNeed, now: float) -> tuple[str, ...]:
        candidates = self._hosts_that_can_hold(need)
        return tuple(
            heapq.nsmallest(
                need.hosts,
                candidates,
                key=lambda name: (self._start_time(need, name, None, now), -self.free_gpus[name]),
            )
        )

    def _room(self, reservation: _Reservation, now: float) -> _Room:
        need = reservation.item
        shadow_time = max(self._start_time(need, host, reservation, now) for host in reservation.hosts)
        room = _Room(shadow_time, {}, {})
        for host in reservation.hosts:
            free, idle = self._state_at(host, shadow_time, self._releases(host, reservation, now))
            room.spare_gpus[host] = free - need.gpus
            room.spare_workers[host] = idle - 1
        return room

    # -- the words ------------------------------------------------------------------------------

    def impossible_reason(self, need: ItemNeed) -> str:
        """Why no hosts here could ever hold `need`, e.g. "needs 16 GPUs on one host; the largest
        host has 8 (a, b)"."""
        memory = "" if need.gpu_memory is None else f" with {need.gpu_memory / 2**30:.1f}".removesuffix(".0")
        memory += "" if need.gpu_memory is None else " GiB each"
        where = "on one host" if need.hosts == 1 else f"on each of {need.hosts} hosts"
        wanted = f"needs {need.gpus} GPU{'s' * (need.gpus != 1)}{memory} {where}"
        staffed = {name: host for name, host in self.hosts.items() if self.workers[name]}
        if not staffed:
            return f"{wanted}; no host has a worker"
        enough_memory = {name: host.gpus for name, host in staffed.items() if host.has_memory_for(need)}
        if need.gpus and not enough_memory:
            return f"{wanted}; no host has GPUs with that much memory"
        fitting = [name for name in enough_memory if enough_memory[name] >= need.gpus]
        if need.hosts > 1 and fitting:
            hosts = "1 host has" if len(fitting) == 1 else f"{len(fitting)} hosts have"
            return f"{wanted}; only {hosts} {need.gpus} or more ({_names(dict.fromkeys(fitting, 0), 0)})"
        largest = max(enough_memory.values(), default=0)
        such = "" if need.gpu_memory is None else " with such GPUs"
        return f"{wanted}; the largest host{such} has {largest} ({_names(enough_memory, largest)})"


def _ends_in_time(need: ItemNeed, room: _Room, now: float) -> bool:
    """Whether `need` is expected to end before the reserved item is expected to start. When that
    start is not known (infinity), it may come at any moment, and nothing ends in time."""
    return need.duration is not None and now + need.duration <= room.shadow_time < math.inf


def _names(gpus_by_host: dict[str, int], count: int) -> str:
    names = [name for name, gpus in gpus_by_host.items() if gpus == count]
    shown = ", ".join(names[:_NAMES_SHOWN])
    return shown if len(names) <= _NAMES_SHOWN else f"{shown} and {len(names) - _NAMES_SHOWN} more"
