"""The manager's migrations: checked, journalled ahead of every call, observed, resumed after a crash.

Theory of operation
-------------------
:meth:`Orchestrator.start` checks first — the device runs on a known,
reachable source; the destination is named (and must accept the device:
cordon, reachability and the compatibility check of placement) or is the best
host placement finds, arriving migrations counted in each host's load — and
refuses with codes before anything moves. It then commits ``planned`` to the
journal (the inventory's ``migration_journal`` table) and returns; a
background task drives the migration, at most ``concurrency`` at a time.

The driver commits ``destination_created`` *before* it calls the source
agent's ``POST /v1/migrations/outgoing`` (the source creates the
destination's copy), passing a *lease* (this manager's instance id and the
migration id, kept in the journal) so that no other controller can drive the
same id. From then on the agents carry the migration alone; the driver asks
both for ``GET /v1/migrations/{id}`` every ``interval`` seconds, stores their
progress in the journal entry's payload, and lets the pure
:func:`~devmig.orchestration._journal_phases.decide` say which phase the journal moves
to (each phase committed on its own, in order) and whether to cancel a stale
destination copy or fence an id the source never got. A migration ends
``done`` (the source released its copy after the destination ran) or
``rolled_back`` (the source kept running, no destination copy left).

:meth:`Orchestrator.resume` runs at start-up (and every ``sweep_interval``):
every unfinished journal entry gets a driver again, which asks both agents
before anything else — the same rules decide. An agent that cannot be asked
puts the migration in ``resolving``; the driver retries with a growing
backoff and never guesses.

Test hook: ``crash_at`` (``ManagerSettings.crash_at``, from the environment
variable ``DEVMIG_TEST_CRASH_AT``) names a journal phase; right after
committing that phase the process exits at once (``os._exit(CRASH_EXIT)``) —
how the tests SIGKILL the manager at every phase. Never set it in production.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import secrets
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

from devmig._errors import DevmigError, Problem
from devmig._json import JsonObject, JsonValue
from devmig._tasks import stop_tasks
from devmig.agent import AgentClient
from devmig.inventory import (
    Clock,
    Inventory,
    InventorySnapshot,
    JournalStore,
    Poller,
    PollStatus,
    SystemClock,
    newest_first,
)
from devmig.orchestration._journal_phases import (
    FINISHED,
    MIGRATIONS,
    Action,
    AgentView,
    Decision,
    check_transition,
    decide,
)
from devmig.orchestration._migration_records import (
    MigrationPayload,
    MigrationRecord,
    Route,
    copy_progress,
    enter_phase,
    iso,
    new_payload,
    payload_of,
    record_of,
)
from devmig.orchestration._queries import PlaceRequest, RunningRef, answer_place
from devmig.orchestration._run_state import Lifecycle, RunState
from devmig.orchestration._sweep import sweep_forever

__all__ = ["CRASH_EXIT", "Orchestrator", "orchestrator_error"]

log = logging.getLogger("devmig.manager.orchestrator")

CRASH_EXIT = 70
"""Exit status of the ``crash_at`` test hook."""

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
_HOST_CODES = frozenset({"HOST_CORDONED", "HOST_UNREACHABLE", "HOST_NOT_REPORTED", "SAME_HOST"})
_NOT_OURS = frozenset({"LEASE_HELD", "MIGRATION_CONFLICT"})
_MAX_BACKOFF = 5.0


def orchestrator_error(code: str, loc: tuple[str | int, ...], message: str, *, value: object = None,
                       allowed: object = None, hint: str | None = None) -> DevmigError:
    """One-problem :class:`DevmigError` of the orchestrator.

    Codes: ``MIGRATION_UNKNOWN`` (404), ``MIGRATION_CONFLICT``, ``DEVICE_BUSY``,
    ``NO_HOST``, ``SAME_HOST``, ``HOST_UNREACHABLE`` (409), ``REQUEST_INVALID`` (422).
    """
    return DevmigError.of(code, message, loc=loc, value=value, allowed=allowed, hint=hint)


Records = list[MigrationRecord]
"""Migration records (:func:`~devmig.orchestration._migration_records.record_of`)."""


@dataclass
class _Run:
    """A migration's driver in this process."""

    task: asyncio.Task[None]
    finished: asyncio.Event = field(default_factory=asyncio.Event)


def _error_code(error: JsonValue) -> JsonValue:
    return error.get("code") if isinstance(error, Mapping) else None


class Orchestrator:
    """Start, drive, observe and resume the fleet's migrations (journalled).

    Args:
        inventory: the open inventory (hosts, devices, and the journal).
        poller: refreshes a host's report and devices before a check and after
            a migration (``None``: only what the inventory holds).
        token_for: the bearer token to send to a host's agent (by host name).
        clock: wall time for the journal (default: the system clock).
        interval: seconds between two looks at a running migration.
        concurrency: new migrations driven at once (more wait in ``planned``; resumed
            ones are only observed and are not counted).
        instance_id: this manager's id in leases (default: a fresh one).
        crash_at: the test hook (see the module docstring).
        agent_timeout: seconds per agent request.
        sweep_interval: seconds between two :meth:`resume` sweeps (``None``: none).

    Run-state: created → :meth:`open` (``async with``) → :meth:`aclose`.
    """

    def __init__(self, inventory: Inventory, poller: Poller | None = None, *,
                 token_for: Callable[[str], str | None] | None = None, clock: Clock | None = None,
                 interval: float = 0.2, concurrency: int = 8, instance_id: str | None = None,
                 crash_at: str | None = None, agent_timeout: float = 5.0,
                 sweep_interval: float | None = 5.0) -> None:
        self.inventory = inventory
        self.journal: JournalStore = inventory.journal(MIGRATIONS)
        self.poller = poller
        self._token_for = token_for or (lambda _host: None)
        self.clock: Clock = clock or SystemClock()
        self.interval = interval
        self.instance_id = instance_id or "mgr-" + secrets.token_hex(6)
        self.crash_at = crash_at
        self.agent_timeout = agent_timeout
        self.sweep_interval = sweep_interval
        self._slots = asyncio.Semaphore(concurrency)
        self._lock = asyncio.Lock()
        self._runs: dict[str, _Run] = {}
        self._clients: dict[tuple[str, str | None], AgentClient] = {}
        self._sweeper: asyncio.Task[None] | None = None
        self._life = Lifecycle("orchestrator")

    # -- lifecycle -------------------------------------------------------------------

    @property
    def state(self) -> RunState:
        """Where the orchestrator is in its life (:class:`RunState`; reads work in every state)."""
        return self._life.state

    async def open(self) -> None:
        """Resume every unfinished migration and start the periodic sweep.

        Raises:
            DevmigError: ``RUN_STATE`` unless the orchestrator is ``idle`` (it opens once).
        """
        self._life.move(RunState.RUNNING)
        await self.resume()
        if self.sweep_interval is not None:
            self._sweeper = asyncio.get_running_loop().create_task(
                sweep_forever(self.sweep_interval, self.resume, log, "resume sweep"), name="devmig-orchestrator-sweep")

    async def __aenter__(self) -> Orchestrator:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop every driver (the journal keeps where each migration was; the next start resumes).

        Does nothing when the orchestrator is already closing or closed.
        """
        if self._life.stopping:
            return
        self._life.move(RunState.CLOSING)
        sweeper = [self._sweeper] if self._sweeper is not None else []
        await stop_tasks([*(r.task for r in self._runs.values()), *sweeper])
        clients, self._clients = self._clients, {}
        for client in clients.values():
            await client.aclose()
        self._life.move(RunState.CLOSED)

    # -- reads -----------------------------------------------------------------------

    def get(self, migration_id: str) -> MigrationRecord:
        """Return a migration's record.

        Raises:
            DevmigError: ``MIGRATION_UNKNOWN`` (404); the database's errors.
        """
        try:
            entry = self.journal.get(migration_id)
        except DevmigError as exc:
            if exc.code == "JOURNAL_UNKNOWN":
                raise orchestrator_error("MIGRATION_UNKNOWN", ("migrations", migration_id),
                                         f"no migration {migration_id!r}", value=migration_id) from exc
            raise
        return record_of(entry)

    def list(self, *, active: bool = False) -> list[MigrationRecord]:
        """Every migration's record, newest first (:func:`~devmig.inventory.newest_first`; ``active``:
        only unfinished ones)."""
        entries = sorted(self.journal.list(), key=newest_first, reverse=True)
        return [record_of(e) for e in entries if not active or e.phase not in FINISHED]

    def newest(self, limit: int) -> tuple[Records, int, int]:
        """The ``limit`` newest migrations' records (``list()[:limit]``), how many migrations the journal holds,
        and how many of them are not ``finished`` — without reading the others
        (:meth:`~devmig.inventory.JournalStore.newest`: two statements on SQL, however long the journal).

        Raises:
            ValueError: ``limit`` is negative.
            DevmigError: the database's errors.
        """
        page = self.journal.newest(limit)
        return [record_of(e) for e in page.entries], page.total, page.unfinished

    def arriving(self) -> dict[str, int]:
        """Unfinished migrations per destination host (they count in its load)."""
        counts: dict[str, int] = {}
        for entry in self.journal.list():
            if entry.phase not in FINISHED and isinstance(entry.payload.get("destination"), str):
                host = str(entry.payload["destination"])
                counts[host] = counts.get(host, 0) + 1
        return counts

    def snapshot(self) -> InventorySnapshot:
        """The inventory's snapshot with each host's load raised by its arriving migrations."""
        snap = self.inventory.snapshot()
        arriving = self.arriving()
        if not arriving:
            return snap
        hosts = tuple(replace(h, load=h.load + arriving.get(h.name, 0)) for h in snap.hosts)
        return InventorySnapshot(hosts, snap.profiles)

    async def wait(self, migration_id: str, timeout: float | None = None) -> MigrationRecord:
        """Return the record once the migration finished.

        Raises:
            DevmigError: ``MIGRATION_UNKNOWN``; ``TIMEOUT`` when ``timeout`` seconds passed first.
        """
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            record = self.get(migration_id)
            if record.get("finished"):
                return record
            run = self._runs.get(migration_id)
            left = None if deadline is None else deadline - loop.time()
            if left is not None and left <= 0:
                raise orchestrator_error("TIMEOUT", ("migrations", migration_id),
                                         f"migration {migration_id} did not finish in {timeout} s",
                                         value=record["phase"])
            step = 0.5 if left is None else min(0.5, left)
            if run is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(run.finished.wait(), step)
            else:
                await asyncio.sleep(min(step, self.interval))

    # -- checks ------------------------------------------------------------------------

    async def _refresh(self, host: str) -> bool:
        """Poll one host now (report, devices); return whether it answered."""
        if self.poller is None:
            return self.inventory.get_host(host).reachable
        outcome = await self.poller.poll_host(self.inventory.get_host(host))
        return outcome.status is not PollStatus.FAILED

    def place_device(self, device: str, *, snapshot: InventorySnapshot | None = None,
                     destination: str | None = None) -> str:
        """Choose (or check) the destination of a running device ``HOST/ID`` from a snapshot.

        Args:
            device: ``HOST/ID``.
            snapshot: the fleet to place in (default: :meth:`snapshot`, arriving
                migrations counted in loads); a drain passes its own, with the
                loads of what it already assigned.
            destination: check this host instead of choosing one.

        Returns:
            The destination host: the best one by placement's ranking, or ``destination``.

        Raises:
            DevmigError: ``NO_HOST`` then every rejected host's reasons (409);
                for a named destination, its own codes (``HOST_CORDONED``,
                ``HOST_UNREACHABLE``, ``SAME_HOST``, ``HOST_NOT_REPORTED``) or
                ``INCOMPATIBLE`` then every reason; ``HOST_UNKNOWN`` /
                ``DEVICE_NOT_FOUND`` (404).
        """
        snap = snapshot if snapshot is not None else self.snapshot()
        answer = answer_place(self.inventory, snap, PlaceRequest(vm=[RunningRef(device=device)]))
        rejected: dict[str, list[JsonObject]] = answer["rejected"]
        if destination is not None:
            self.inventory.get_host(destination)  # HOST_UNKNOWN
            reasons = [_problem(raw) for raw in rejected.get(destination, [])]
            if not reasons:
                return destination
            if reasons[0].code in _HOST_CODES:
                raise DevmigError(reasons)
            head = Problem("INCOMPATIBLE", ("destination", destination),
                           f"{destination} cannot run {device} ({len(reasons)} reasons)", value=device)
            raise DevmigError([head, *reasons])
        accepted = [a["host"] for a in answer["accepted"]]
        if accepted:
            return str(accepted[0])
        problems = [Problem("NO_HOST", ("device",), f"no host can take {device}", value=device,
                            hint="every rejected host and its reasons follow")]
        for host, raws in rejected.items():
            problems += [_problem({**raw, "loc": ["hosts", host, *_list(raw.get("loc"))]}) for raw in raws]
        raise DevmigError(problems)

    # -- start -----------------------------------------------------------------------------

    async def start(self, device: str, destination: str | None = None, *, migration_id: str | None = None,
                    drain: str | None = None) -> MigrationRecord:
        """Check, journal ``planned`` and start migrating ``device`` (``HOST/ID``) in the background.

        Args:
            device: the running device, ``HOST/ID``.
            destination: the host to move it to (default: the best by placement).
            migration_id: the id (default: a new one). The same id again returns
                the existing record (idempotent).
            drain: the drain this migration belongs to, if any.

        Returns:
            The record (phase ``planned``, or wherever an existing one is).

        Raises:
            DevmigError: refusals before anything moved: ``REQUEST_INVALID``
                (422); ``HOST_UNKNOWN``, ``DEVICE_NOT_FOUND`` (404);
                ``DEVICE_BUSY``, ``MIGRATION_CONFLICT``, ``NO_HOST``,
                ``HOST_UNREACHABLE``, ``HOST_CORDONED``, ``SAME_HOST``,
                ``INCOMPATIBLE`` (409); the database's errors.
        """
        record, _created = await self.submit(device, destination, migration_id=migration_id, drain=drain)
        return record

    async def submit(self, device: str, destination: str | None = None, *, migration_id: str | None = None,
                     drain: str | None = None) -> tuple[MigrationRecord, bool]:
        """:meth:`start`, also saying whether the migration is new (``False``: the id existed)."""
        host, _, device_id = device.partition("/")
        if not host or not device_id or "/" in device_id:
            raise orchestrator_error("REQUEST_INVALID", ("device",), f"a device is HOST/ID, not {device!r}",
                                     value=device)
        if migration_id is not None and not _ID.match(migration_id):
            raise orchestrator_error("REQUEST_INVALID", ("migration_id",), f"bad migration id {migration_id!r}",
                                     value=migration_id, allowed=_ID.pattern)
        async with self._lock:
            if migration_id is not None:
                existing = self._existing(migration_id, device, destination)
                if existing is not None:
                    return existing, False
            for entry in self.journal.list():
                if entry.phase not in FINISHED and entry.payload.get("device") == device:
                    raise orchestrator_error("DEVICE_BUSY", ("device",),
                                             f"{device} is being migrated ({entry.id}, {entry.phase})",
                                             value=entry.id, hint="wait for it, or see GET /v1/migrations")
            source = self.inventory.get_host(host)  # HOST_UNKNOWN
            if not await self._refresh(host):
                raise orchestrator_error("HOST_UNREACHABLE", ("device",), f"the source host {host} does not answer",
                                         value=host)
            records = {d.id: d for d in self.inventory.list_devices(host)}
            found = records.get(device_id)
            if found is None:
                raise orchestrator_error("DEVICE_NOT_FOUND", ("device",), f"host {host} lists no device {device_id}",
                                         value=device, allowed=sorted(records))
            if not found.running:
                raise orchestrator_error("DEVICE_BUSY", ("device",),
                                         f"{device} is not running ({found.state})", value=found.state)
            if destination is not None:
                self.inventory.get_host(destination)  # HOST_UNKNOWN before anything else
                if destination == host:
                    raise orchestrator_error("SAME_HOST", ("destination",), f"{device} already runs on {host}",
                                             value=destination)
                if not await self._refresh(destination):
                    raise orchestrator_error("HOST_UNREACHABLE", ("destination",),
                                             f"the destination host {destination} does not answer", value=destination)
                target = self.place_device(device, destination=destination)
            else:
                target = await self._choose(device)
            dest = self.inventory.get_host(target)
            mid = migration_id or "mig-" + uuid.uuid4().hex[:16]
            payload = new_payload(device=device, device_id=device_id, model=found.model, source=host,
                                  destination=target, source_url=source.url, destination_url=dest.url,
                                  lease=f"{self.instance_id}/{mid}", drain=drain, now=self.clock.now())
            self._commit(mid, "planned", payload)
            self._spawn(mid, fresh=True)
            return self.get(mid), True

    def _existing(self, migration_id: str, device: str, destination: str | None) -> MigrationRecord | None:
        try:
            record = self.get(migration_id)
        except DevmigError as exc:
            if exc.code == "MIGRATION_UNKNOWN":
                return None
            raise
        if record.get("device") != device or (destination is not None and record.get("destination") != destination):
            raise orchestrator_error("MIGRATION_CONFLICT", ("migration_id",),
                                     f"migration {migration_id} exists for {record.get('device')} "
                                     f"to {record.get('destination')}", value=migration_id)
        return record

    async def _choose(self, device: str) -> str:
        """The best destination by placement that answers a poll now."""
        tried: set[str] = set()
        while True:
            snap = self.snapshot()
            if tried:
                snap = InventorySnapshot(
                    tuple(replace(h, reachable=False) if h.name in tried else h for h in snap.hosts), snap.profiles)
            target = self.place_device(device, snapshot=snap)  # NO_HOST when none is left
            if await self._refresh(target):
                return target
            tried.add(target)

    # -- the journal -----------------------------------------------------------------------

    def _commit(self, mid: str, phase: str, payload: MigrationPayload) -> None:
        """Commit a phase (write-ahead: before the call that enters it); the crash hook fires here."""
        self.journal.put(mid, phase, payload, self.clock.now())
        log.info("migration %s: %s", mid, phase,
                 extra={"migration_id": mid, "phase": phase, "device_id": payload.get("device_id"),
                        "outcome": payload.get("outcome"), "drain_id": payload.get("drain"),
                        "code": _error_code(payload.get("error"))})
        if self.crash_at is not None and phase == self.crash_at:
            log.error("test hook: crashing right after committing %s of %s", phase, mid)
            os._exit(CRASH_EXIT)

    def _save(self, mid: str, phase: str, payload: MigrationPayload) -> None:
        """Store progress (same phase; never the crash hook)."""
        self.journal.put(mid, phase, payload, self.clock.now())

    def _move(self, mid: str, phase: str, payload: MigrationPayload, new: str) -> str:
        """Journal ``new`` after ``phase`` (checked against the transition table); return it."""
        check_transition(phase, new)
        enter_phase(payload, new, self.clock.now())
        self._commit(mid, new, payload)
        return new

    # -- driving -------------------------------------------------------------------------------

    async def resume(self) -> None:
        """Give every unfinished journal entry a driver (at start-up, and on each sweep).

        Each driver asks both agents before doing anything; see the module docstring.
        """
        for entry in self.journal.list():
            if entry.phase not in FINISHED and entry.id not in self._runs:
                self._spawn(entry.id)

    def _spawn(self, mid: str, *, fresh: bool = False) -> None:
        """Start a driver; ``fresh``: just planned by this process (else resumed: ask the agents first)."""
        if self._life.stopping:
            return
        task = asyncio.get_running_loop().create_task(self._drive(mid, fresh), name=f"devmig-migration-{mid}")
        run = _Run(task)
        self._runs[mid] = run

        def done(_t: asyncio.Task[None]) -> None:
            run.finished.set()
            if self._runs.get(mid) is run:
                del self._runs[mid]

        task.add_done_callback(done)

    def _client(self, url: str, host: str) -> AgentClient:
        """The (kept) client of a host's agent."""
        token = self._token_for(host)
        client = self._clients.get((url, token))
        if client is None:
            client = self._clients[(url, token)] = AgentClient(url, token, timeout=self.agent_timeout)
        return client

    async def _drive(self, mid: str, fresh: bool) -> None:
        try:
            if fresh:  # a new migration waits for a slot (in `planned`) before anything moves
                async with self._slots:
                    await self._drive_one(mid, fresh)
            else:  # a resumed one only finds out where the agents are: never queued behind new ones
                await self._drive_one(mid, fresh)
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug or the database: the sweep gives it a new driver later
            log.exception("driving migration %s failed; it will be resumed", mid)

    async def _drive_one(self, mid: str, fresh: bool) -> None:
        entry = self.journal.get(mid)
        phase, payload = entry.phase, payload_of(entry)
        if phase in FINISHED:
            return
        if phase == "planned" and fresh:
            # planned by this process a moment ago: go on. A resumed one goes through decide(): its
            # check is stale, so it is rolled back (fenced on the source) like any unstarted one.
            phase = self._move(mid, phase, payload, "destination_created")
            phase = await self._call_outgoing(mid, phase, payload)
            if phase in FINISHED:
                return
        failures = 0
        saved = repr(payload)
        while True:
            route = Route.of(payload)
            (source, s_status), (dest, d_status) = await asyncio.gather(
                self._ask(route.source_url, route.source, mid),
                self._ask(route.destination_url, route.destination, mid))
            copy_progress(payload, s_status, d_status)
            decision = decide(phase, Route.of(payload).last_forward, source, dest)
            if decision.target == "resolving":
                failures += 1
                if phase != "resolving" and failures < 3 and decision.code == "AGENT_UNREACHABLE":
                    await asyncio.sleep(self.interval)  # a blip: ask again before saying so
                    continue
            else:
                failures = 0
            if decision.target in FINISHED:
                # the inventory lists the device where it runs before the journal says it ended, so
                # "done" means the manager's answers about the new device (rollback set...) are there
                for host in (payload["destination"], payload["source"]):
                    with contextlib.suppress(DevmigError):
                        await self._refresh(host)
            phase = await self._apply(mid, phase, payload, decision)
            if phase in FINISHED:
                await self._after(payload)
                return
            if repr(payload) != saved:
                self._save(mid, phase, payload)
                saved = repr(payload)
            await asyncio.sleep(self._delay(phase, payload))

    def _delay(self, phase: str, payload: MigrationPayload) -> float:
        if phase != "resolving":
            return self.interval
        info = payload.get("resolving")
        attempts = info["attempts"] if info is not None else 1
        return float(min(_MAX_BACKOFF, self.interval * (2 ** min(attempts, 8))))

    async def _call_outgoing(self, mid: str, phase: str, payload: MigrationPayload) -> str:
        """Ask the source agent to start (``destination_created`` is committed)."""
        route = Route.of(payload)
        try:
            agent = self._client(route.source_url, route.source)
            await agent.outgoing(mid, payload["device_id"], route.destination_url,
                                 self._token_for(route.destination), lease=route.lease,
                                 source_url=route.source_url)
        except DevmigError as exc:
            payload["error"] = {"code": exc.code, "message": str(exc), "phase": phase,
                                "problems": [p for p in exc.to_dicts()]}
            if exc.code in _NOT_OURS:
                # another controller holds this id on the agent: nothing of ours moved, and
                # what it does is not ours to follow
                phase = self._move(mid, phase, payload, "rolling_back")
                return self._move(mid, phase, payload, "rolled_back")
            # refused or unreachable: the observer asks the source (and fences an id it never got)
            self._save(mid, phase, payload)
        return phase

    async def _ask(self, url: str, host: str, mid: str) -> tuple[AgentView, dict[str, JsonValue] | None]:
        try:
            agent = self._client(url, host)
            status = await agent.migration(mid)
        except DevmigError as exc:
            if exc.code == "MIGRATION_NOT_FOUND":
                return AgentView.unknown(), None
            return AgentView.unreachable(), None
        return AgentView.of(status), status

    async def _apply(self, mid: str, phase: str, payload: MigrationPayload, decision: Decision) -> str:
        """Journal the decision's phases in order, then carry out its action; return the phase."""
        for step in decision.steps(phase, Route.of(payload).last_forward):
            if step == "resolving":
                payload["resolving"] = {"code": decision.code, "reason": decision.reason,
                                        "since": iso(self.clock.now()), "attempts": 0}
            phase = self._move(mid, phase, payload, step)
        resolving = payload.get("resolving")
        if phase == "resolving" and resolving:
            payload["resolving"] = {**resolving, "code": decision.code, "reason": decision.reason,
                                    "attempts": resolving["attempts"] + 1}
        route = Route.of(payload)
        if decision.action is Action.CANCEL_DESTINATION:
            with contextlib.suppress(DevmigError):
                agent = self._client(route.destination_url, route.destination)
                await agent.cancel(mid, lease=route.lease)
        elif decision.action is Action.FENCE_SOURCE:
            with contextlib.suppress(DevmigError):
                agent = self._client(route.source_url, route.source)
                await agent.cancel(mid, lease=route.lease, device_id=payload["device_id"])
        return phase

    async def _after(self, payload: MigrationPayload) -> None:
        """A migration ended (both hosts were refreshed just before): drop a stale copy that provably
        does not run, and refresh its host again when one was dropped."""
        route = Route.of(payload)
        stale_id: JsonValue
        if payload.get("outcome") == "migrated":
            stale_host, stale_url, stale_id = route.source, route.source_url, payload["device_id"]
        else:
            stale_host, stale_url = route.destination, route.destination_url
            stale_id = payload.get("destination_device_id")
        if isinstance(stale_id, str) and stale_id:
            with contextlib.suppress(DevmigError):
                agent = self._client(stale_url, stale_host)
                device = await agent.get_device(stale_id)
                if not device.get("running") and not device.get("busy"):
                    await agent.delete_device(stale_id)
                    await self._refresh(stale_host)


def _list(value: JsonValue) -> list[JsonValue]:
    return value if isinstance(value, list) else []


def _problem(raw: Mapping[str, JsonValue]) -> Problem:
    """A problem from its JSON shape (placement's answers)."""
    hint, context = raw.get("hint"), raw.get("context")
    return Problem(str(raw.get("code")), tuple(p for p in _list(raw.get("loc")) if isinstance(p, (str, int))),
                   str(raw.get("message", "")), raw.get("value"), raw.get("allowed"),
                   hint if isinstance(hint, str) else None, dict(context) if isinstance(context, dict) else {})
