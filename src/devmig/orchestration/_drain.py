"""Drains: empty a host by migrating every device it runs elsewhere, journalled and resumable.

Theory of operation
-------------------
:func:`plan_drain` is pure: given the host's running devices, a fleet
snapshot and a ``place`` function (a device and a snapshot in, a destination
out, or a :class:`~devmig.DevmigError` with the reasons), it places every
device in turn and raises the chosen host's load in the snapshot before the
next one, so a drain spreads its devices instead of piling them on the host
that was least loaded at the start. A device no host accepts is *stranded*,
with every rejected host's reasons.

:class:`Drainer` does the I/O around it. :meth:`Drainer.start` cordons the
host (not for a dry run), plans, and then:

- a dry run is recorded (phase ``planned``, nothing moved, the host not cordoned);
- a stranded device without ``partial`` refuses the drain: nothing moves, the
  host stays cordoned, ``STRANDED`` names each device and its reasons;
- otherwise the drain is journalled (``running``) and a background task
  migrates the planned devices through the
  :class:`~devmig.orchestration._orchestrator.Orchestrator`, at most ``parallel`` at
  a time. Each migration's id is derived from the drain's (``DRAIN-N``) and
  is written into the drain's journal row *before* the orchestrator is asked,
  so that after a manager restart :meth:`Drainer.resume` finds every migration
  again (the orchestrator is idempotent by id) and starts only the ones that
  never began. A destination that no longer accepts when its turn comes is
  replaced by the best host placement finds then.

A drain ends ``done`` (every device moved), ``partial`` (``partial`` was
asked and some device stayed: stranded or rolled back) or ``failed``.

The drains live in the inventory's :data:`DRAINS` journal (the ``drain_journal`` table of its
database, or memory for the in-memory twin), through the same
:class:`~devmig.inventory.JournalStore` interface as the migrations. The dashboard polls the newest
few every second: :meth:`~devmig.inventory.JournalStore.newest` reads only those rows and the two
counts (``ORDER BY ... LIMIT`` and one ``COUNT``), however long the journal grows.

HTTP (``POST /v1/drains``, ``GET /v1/drains``, ``GET /v1/drains/{id}``) is the manager's
(:mod:`devmig.manager`), whose lifespan opens the drainer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypedDict, cast

from devmig._errors import DevmigError, Problem
from devmig._json import JsonObject, JsonValue
from devmig._tasks import stop_tasks
from devmig.inventory import (
    Clock,
    DeviceRecord,
    Inventory,
    InventorySnapshot,
    Journal,
    JournalEntry,
    JournalStore,
    Poller,
    SystemClock,
    newest_first,
)
from devmig.model import HostReport
from devmig.orchestration._orchestrator import Orchestrator
from devmig.orchestration._run_state import Lifecycle, RunState
from devmig.orchestration._sweep import sweep_forever

__all__ = [
    "DRAINS",
    "DrainPlan",
    "Drainer",
    "PlannedMove",
    "Stranded",
    "plan_drain",
]

log = logging.getLogger("devmig.manager.drain")

PHASES = ("planned", "running", "done", "failed", "partial")
"""A drain's phases; the last three are final."""

_FINAL = frozenset({"done", "failed", "partial"})

DRAINS = Journal(table="drain_journal", unknown="DRAIN_UNKNOWN", loc="drains", noun="drain",
                 final_phases=_FINAL, finished_flags=("dry_run",))
"""The drains' journal: a drain is finished in a final phase, or when it was a dry run."""

# refusals of a planned destination that a new placement may get around
_REPLACE = frozenset({"HOST_CORDONED", "HOST_UNREACHABLE", "HOST_NOT_REPORTED", "INCOMPATIBLE", "NO_HOST"})


# -- the plan (pure) ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PlannedMove:
    """A device of the drained host and where it goes."""

    device: str
    model: str
    destination: str

    def to_dict(self) -> MoveJson:
        """The JSON shape of the drain record's ``plan`` items."""
        return {"device": self.device, "model": self.model, "destination": self.destination}


@dataclass(frozen=True, slots=True)
class Stranded:
    """A device no host accepts, and why (every rejected host's reasons)."""

    device: str
    model: str
    errors: tuple[Problem, ...]

    def to_dict(self) -> JsonObject:
        """The JSON shape of the drain record's ``stranded`` items."""
        return {"device": self.device, "model": self.model, "errors": [p.to_dict() for p in self.errors]}


@dataclass(frozen=True, slots=True)
class DrainPlan:
    """Where every running device of a host goes; ``snapshot`` has the loads after the moves."""

    host: str
    moves: tuple[PlannedMove, ...]
    stranded: tuple[Stranded, ...]
    snapshot: InventorySnapshot = field(repr=False)

    @property
    def complete(self) -> bool:
        """Whether every device has a destination."""
        return not self.stranded


def plan_drain(host: str, devices: Sequence[DeviceRecord], snapshot: InventorySnapshot,
               place: Callable[[str, InventorySnapshot], str], *, source: HostReport | None = None) -> DrainPlan:
    """Place every running device of ``host`` (pure: no I/O but what ``place`` does).

    Args:
        host: the host to drain (treated as cordoned in the snapshot).
        devices: its devices (those not running are left out).
        snapshot: the fleet; each assignment raises the destination's load by one
            before the next device is placed.
        place: ``(HOST/ID, snapshot) -> destination``, raising
            :class:`~devmig.DevmigError` with the reasons when no host accepts.
        source: the drained host's report: a device whose implementation there
            is VMM-carried (its ``carriers``, DESIGN §9) is stranded with
            ``KERNEL_DEVICE_DATA_BY_VMM``, the move the agent would refuse;
            ``None``: every implementation is taken as agent-carried.

    Returns:
        The plan: moves in device id order, and the stranded devices with their reasons.
    """
    snap = InventorySnapshot(tuple(replace(h, cordoned=True) if h.name == host else h for h in snapshot.hosts),
                             snapshot.profiles)
    moves: list[PlannedMove] = []
    stranded: list[Stranded] = []
    for device in sorted((d for d in devices if d.running), key=lambda d: d.id):
        ref = f"{host}/{device.id}"
        by_vmm = _vmm_carried(source, device.model)
        if by_vmm is not None:
            stranded.append(Stranded(ref, device.model, (by_vmm,)))
            continue
        try:
            destination = place(ref, snap)
        except DevmigError as exc:
            stranded.append(Stranded(ref, device.model, tuple(exc.problems)))
            continue
        snap = InventorySnapshot(
            tuple(replace(h, load=h.load + 1) if h.name == destination else h for h in snap.hosts), snap.profiles)
        moves.append(PlannedMove(ref, device.model, destination))
    return DrainPlan(host, tuple(moves), tuple(stranded), snap)


def _vmm_carried(source: HostReport | None, model: str) -> Problem | None:
    """The reason a device of ``model`` cannot be moved by the agents, or ``None``."""
    if source is None:
        return None
    impls = [impl for impl, _ in source.candidates(model)]
    if not impls or any(source.carrier(impl) == "agent" for impl in impls):
        return None
    names = ", ".join(impl.render() for impl in impls)
    return Problem("KERNEL_DEVICE_DATA_BY_VMM", ("model",),
                   f"the VMM, not the agent, carries the migration data of {model} ({names})",
                   value=model, hint="migrate it with its VM (the VMM can still be told where to go), then drain")


def drain_error(code: str, loc: tuple[str | int, ...], message: str, *, value: object = None,
                hint: str | None = None, context: Mapping[str, Any] | None = None) -> DevmigError:
    """One-problem error of the drains (``DRAIN_UNKNOWN``, ``DRAIN_BUSY``, ``REQUEST_INVALID``)."""
    return DevmigError.of(code, message, loc=loc, value=value, hint=hint, context=context)


def stranded_error(drain_id: str, host: str, stranded: Sequence[Stranded]) -> DevmigError:
    """``STRANDED``, then each stranded device's reasons (located under ``devices.HOST/ID``)."""
    names = ", ".join(s.device for s in stranded)
    problems = [Problem("STRANDED", ("host",), f"draining {host} would strand {len(stranded)} device(s): {names}",
                        value=[s.device for s in stranded],
                        hint="nothing moved and the host stays cordoned; make room or upgrade a host, "
                             "or drain with partial to move the others",
                        context={"drain": drain_id})]
    for s in stranded:
        problems += [Problem(p.code, ("devices", s.device, *p.loc), p.message, p.value, p.allowed, p.hint,
                             dict(p.context)) for p in s.errors]
    return DevmigError(problems)


# -- the payload (checked where it leaves the journal) ------------------------------------------------------------


class MoveJson(TypedDict):
    """A drain record's ``plan`` item (:meth:`PlannedMove.to_dict`)."""

    device: str
    model: str
    destination: str


class DrainResult(TypedDict):
    """What became of one planned move (a drain record's ``results`` value)."""

    migration: str
    outcome: JsonValue
    destination: JsonValue
    error: JsonValue


class DrainPhaseEntry(TypedDict):
    """One item of a drain's ``history``."""

    phase: str
    at: str


class DrainPayload(TypedDict, total=False):
    """A ``drain_journal`` row's payload (its JSON keys, in the order the drainer writes them all;
    the store itself keeps whatever subset it is given)."""

    host: str
    partial: bool
    parallel: int
    dry_run: bool
    plan: list[MoveJson]
    stranded: list[JsonObject]
    migrations: list[str]
    results: dict[str, DrainResult]
    error: JsonObject | None
    created_at: str
    history: list[DrainPhaseEntry]


_PAYLOAD_TYPES: dict[str, type | tuple[type, ...]] = {
    "host": str, "partial": bool, "parallel": int, "dry_run": bool, "plan": list, "stranded": list,
    "migrations": list, "results": dict, "created_at": str, "history": list,
}


def drain_payload(drain_id: str, raw: Mapping[str, JsonValue]) -> DrainPayload:
    """A stored drain payload, checked at the border (the database), as a new dict.

    Raises:
        ValueError: a key the drainer reads is of another type.
    """
    payload = dict(raw)
    for key, kind in _PAYLOAD_TYPES.items():
        if key in payload and not isinstance(payload[key], kind):
            raise ValueError(f"drain {drain_id}: journal payload key {key!r} is not a {kind}")
    return cast(DrainPayload, payload)


# -- the drainer (I/O) -------------------------------------------------------------------------------


Records = list[JsonObject]
"""Drain records (:func:`record_of`)."""


def record_of(row: JournalEntry) -> JsonObject:
    """The public drain record of a journal entry."""
    stored = cast(JsonObject, row.payload)  # a DrainPayload holds JSON values only
    record: JsonObject = {k: v for k, v in stored.items() if not k.startswith("_")}
    record.update(id=row.id, phase=row.phase, finished=DRAINS.finished(row.phase, row.payload),
                  updated_at=row.updated_at.isoformat())
    return record


class Drainer:
    """Plan, start, run, observe and resume drains.

    Args:
        inventory: the open inventory.
        orchestrator: migrates the devices (journalled, idempotent by id).
        store: where drains are journalled (default: the inventory's :data:`DRAINS` journal).
        poller: refreshes the drained host's devices before planning (``None``: the inventory's view).
        clock: wall time of the journal.
        migration_timeout: seconds one migration may take before the drain stops waiting for it.
        sweep_interval: seconds between two :meth:`resume` sweeps once :meth:`open` (``None``: none),
            so a drain whose task died (the database failed under it) goes on without a restart.

    Run-state: created → :meth:`open` (resumes, then sweeps) → :meth:`aclose`.
    """

    def __init__(self, inventory: Inventory, orchestrator: Orchestrator, store: JournalStore | None = None, *,
                 poller: Poller | None = None, clock: Clock | None = None,
                 migration_timeout: float = 600.0, sweep_interval: float | None = 5.0) -> None:
        self.inventory = inventory
        self.orchestrator = orchestrator
        self.store = store if store is not None else inventory.journal(DRAINS)
        self.poller = poller
        self.clock: Clock = clock or SystemClock()
        self.migration_timeout = migration_timeout
        self.sweep_interval = sweep_interval
        self._sweeper: asyncio.Task[None] | None = None
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._lock = asyncio.Lock()
        self._life = Lifecycle("drainer")

    # -- reads ---------------------------------------------------------------------

    def get(self, drain_id: str) -> JsonObject:
        """A drain's record (``DRAIN_UNKNOWN``)."""
        return record_of(self.store.get(drain_id))

    def list(self) -> list[dict[str, Any]]:
        """Every drain's record, newest first (:func:`newest_first`)."""
        return [record_of(r) for r in sorted(self.store.list(), key=newest_first, reverse=True)]

    def newest(self, limit: int) -> tuple[Records, int, int]:
        """The ``limit`` newest drains' records (``list()[:limit]``), how many drains there are, and how
        many run (are not ``finished``) — without reading the other drains (:meth:`JournalStore.newest`).

        Raises:
            ValueError: ``limit`` is negative.
        """
        page = self.store.newest(limit)
        return [record_of(r) for r in page.entries], page.total, page.unfinished

    async def wait(self, drain_id: str, timeout: float | None = None) -> JsonObject:
        """The record once the drain finished (``TIMEOUT`` when ``timeout`` passed first)."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            record = self.get(drain_id)
            if record["finished"]:
                return record
            if deadline is not None and loop.time() > deadline:
                raise drain_error("TIMEOUT", ("drains", drain_id), f"drain {drain_id} did not finish in {timeout} s",
                                  value=record["phase"])
            task = self._tasks.get(drain_id)
            if task is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(task), 0.2)
            else:
                await asyncio.sleep(0.2)

    # -- start -----------------------------------------------------------------------

    async def start(self, host: str, *, partial: bool = False, dry_run: bool = False,
                    parallel: int = 1) -> JsonObject:
        """Cordon ``host``, plan its drain and start it in the background.

        Returns:
            The drain record: ``planned`` (dry run: nothing moved, not cordoned), or
            ``running`` (``done`` at once when the host runs nothing).

        Raises:
            DevmigError: ``HOST_UNKNOWN`` (404); ``DRAIN_BUSY`` (409, a drain of the host
                runs); ``STRANDED`` (409) then each stranded device's reasons, when
                some device has no destination and not ``partial`` — nothing moved,
                the host stays cordoned; ``REQUEST_INVALID`` (422).
        """
        if parallel < 1:
            raise drain_error("REQUEST_INVALID", ("parallel",), "parallel is at least 1", value=parallel)
        async with self._lock:
            self.inventory.get_host(host)  # HOST_UNKNOWN
            if not dry_run:
                for row in self.store.list("running"):
                    if row.payload.get("host") == host:
                        raise drain_error("DRAIN_BUSY", ("host",), f"{host} is being drained ({row.id})",
                                          value=row.id, hint="see GET /v1/drains/" + row.id)
            if self.poller is not None:
                await self.poller.poll_host(self.inventory.get_host(host))
            if not dry_run:
                self.inventory.cordon(host)
            plan = plan_drain(host, self.inventory.list_devices(host), self.orchestrator.snapshot(),
                              lambda device, snap: self.orchestrator.place_device(device, snapshot=snap))
            drain_id = "drain-" + uuid.uuid4().hex[:12]
            now = self.clock.now()
            payload: DrainPayload = {
                "host": host, "partial": partial, "parallel": parallel, "dry_run": dry_run,
                "plan": [m.to_dict() for m in plan.moves], "stranded": [s.to_dict() for s in plan.stranded],
                "migrations": [], "results": {}, "error": None, "created_at": now.isoformat(),
                "history": [{"phase": "planned", "at": now.isoformat()}],
            }
            if dry_run:
                self.store.put(drain_id, "planned", payload, now)
                return self.get(drain_id)
            if plan.stranded and not partial:
                error = stranded_error(drain_id, host, plan.stranded)
                payload["error"] = {"code": "STRANDED", "message": str(error.problems[0].message)}
                self._enter(payload, "failed")
                self.store.put(drain_id, "failed", payload, now)
                raise error
            self._enter(payload, "running")
            self.store.put(drain_id, "running", payload, now)
            self._spawn(drain_id)
            return self.get(drain_id)

    def _enter(self, payload: DrainPayload, phase: str) -> None:
        payload["history"] = [*payload.get("history", []), {"phase": phase, "at": self.clock.now().isoformat()}]

    # -- running ---------------------------------------------------------------------

    @property
    def state(self) -> RunState:
        """Where the drainer is in its life (:class:`RunState`)."""
        return self._life.state

    async def open(self) -> None:
        """Resume the journal's running drains and start the periodic sweep.

        Raises:
            DevmigError: ``RUN_STATE`` unless the drainer is ``idle`` (it opens once).
        """
        self._life.move(RunState.RUNNING)
        await self.resume()
        if self.sweep_interval is not None and self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().create_task(
                sweep_forever(self.sweep_interval, self.resume, log, "drain resume sweep"), name="devmig-drain-sweep")

    async def resume(self) -> None:
        """Run again every drain the journal has as ``running`` and no task runs (after a restart, or a
        task that died)."""
        for row in self.store.list("running"):
            if row.id not in self._tasks:
                log.info("resuming drain %s of %s", row.id, row.payload.get("host"))
                self._spawn(row.id)

    def _spawn(self, drain_id: str) -> None:
        if self._life.stopping:
            return
        task = asyncio.get_running_loop().create_task(self._run(drain_id), name=f"devmig-drain-{drain_id}")
        self._tasks[drain_id] = task
        task.add_done_callback(lambda t: self._tasks.pop(drain_id) if self._tasks.get(drain_id) is t else None)

    async def aclose(self) -> None:
        """Stop the drains' tasks (the journal keeps them; the next start resumes them).

        Does nothing when the drainer is already closing or closed.
        """
        if self._life.stopping:
            return
        self._life.move(RunState.CLOSING)
        sweeper = [self._sweeper] if self._sweeper is not None else []
        await stop_tasks([*self._tasks.values(), *sweeper])
        self._life.move(RunState.CLOSED)

    def _save(self, drain_id: str, phase: str, payload: DrainPayload) -> None:
        self.store.put(drain_id, phase, payload, self.clock.now())

    async def _run(self, drain_id: str) -> None:
        try:
            row = self.store.get(drain_id)
            payload = drain_payload(drain_id, row.payload)  # checked where it leaves the journal
            slots = asyncio.Semaphore(max(1, int(payload.get("parallel", 1))))

            async def one(index: int, move: MoveJson) -> None:
                async with slots:
                    result = await self._move(drain_id, payload, index, move)
                payload["results"][move["device"]] = result
                self._save(drain_id, "running", payload)

            await asyncio.gather(*(one(i, m) for i, m in enumerate(payload["plan"])))
            moved = [r for r in payload["results"].values() if r.get("outcome") == "migrated"]
            if len(moved) == len(payload["plan"]):
                phase = "partial" if payload["stranded"] else "done"
            else:
                phase = "partial" if payload.get("partial") and moved else "failed"
                if payload.get("error") is None:
                    payload["error"] = {"code": "DRAIN_FAILED",
                                        "message": f"{len(payload['plan']) - len(moved)} of "
                                                   f"{len(payload['plan'])} migrations did not move their device"}
            self._enter(payload, phase)
            self._save(drain_id, phase, payload)
            log.info("drain %s ended %s", drain_id, phase)
        except asyncio.CancelledError:
            raise
        except Exception:  # the database or a bug: a later start resumes it
            log.exception("drain %s failed; it will be resumed at the next start", drain_id)

    async def _move(self, drain_id: str, payload: DrainPayload, index: int,
                    move: MoveJson) -> DrainResult:
        """Migrate one planned device (or find its migration again); return its result."""
        mid = f"{drain_id}-{index}"
        done = payload["results"].get(move["device"])
        if done is not None:
            return done.copy()
        if mid not in payload["migrations"]:
            payload["migrations"] = [*payload["migrations"], mid]
            self._save(drain_id, "running", payload)  # write-ahead: the id is known before it is asked
        try:
            self.orchestrator.get(mid)
        except DevmigError as exc:
            if exc.code != "MIGRATION_UNKNOWN":
                raise
            try:
                await self.orchestrator.start(move["device"], move["destination"], migration_id=mid, drain=drain_id)
            except DevmigError as refused:
                if refused.code not in _REPLACE:
                    return {"migration": mid, "outcome": "refused", "destination": move["destination"],
                            "error": refused.to_dicts()[0]}
                try:  # the planned destination no longer accepts: the best host now
                    await self.orchestrator.start(move["device"], None, migration_id=mid, drain=drain_id)
                except DevmigError as again:
                    return {"migration": mid, "outcome": "refused", "destination": None,
                            "error": again.to_dicts()[0]}
        try:
            record = await self.orchestrator.wait(mid, self.migration_timeout)
        except DevmigError as exc:
            return {"migration": mid, "outcome": None, "destination": move["destination"],
                    "error": exc.to_dicts()[0]}
        return {"migration": mid, "outcome": record.get("outcome"), "destination": record.get("destination"),
                "error": record.get("error")}
