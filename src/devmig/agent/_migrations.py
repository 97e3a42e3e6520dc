"""The agent's migration engine: both sides of live migrations, carried by the agents.

Theory of operation
-------------------
A migration is started on the *source* agent (``POST /v1/migrations/outgoing``)
and then carried by the two agents alone: whoever started it only observes
(``GET /v1/migrations/{id}``), so a client that dies changes nothing
(DESIGN §6).

1. **Check first.** The source reads the destination's ``GET /v1/report`` and
   runs :func:`devmig.compat.check` with its own model definition and the
   device's canonical configuration. An incompatible destination is refused
   (409 ``INCOMPATIBLE``, every reason) before anything is created anywhere.
2. **Incoming.** The source calls the destination's
   ``POST /v1/migrations/incoming``; the destination creates the device from
   the canonical configuration *and the source device's host settings* (a
   block device's ``image`` path travels this way: both agents open the same
   shared image) in ``RESUMING`` and issues a single-use secret
   (:class:`~devmig.migration.Tickets`), valid ``secret_ttl_s``. A device
   nobody connects for in that time is destroyed. The two agents also swap
   per-migration tokens for asking each other the outcome: the source hands
   the destination a *callback token*, the destination answers with a *query
   token*. Each is accepted by the issuing agent's
   ``POST /v1/migrations/{id}/query`` (constant-time compare), is journaled
   beside the status (so it outlives a restart of either agent) and is never
   shown in a status; neither agent's bearer token is ever kept at rest.
3. **Stream** (:mod:`._outgoing` / :mod:`._incoming`, over :mod:`._transport`):
   HELLO proves the secret; pre-copy rounds run while the workload keeps
   stepping the device; the source leaves pre-copy when the first pass is
   done and the dirty bytes fit a quarter of ``downtime_target_ms`` at the
   rate measured re-sending dirty pages (so at least one re-send round when
   anything was dirtied), when dirty bytes stopped shrinking for ``stall_rounds`` rounds, or after
   ``max_rounds``; then ``STOP_COPY`` and the trailer.
4. **Hand-off**, driven by the sans-IO :class:`~devmig.migration.SourceHandoff`
   and :class:`~devmig.migration.DestinationHandoff`: READY → the source
   journals COMMITTED → GO → the destination journals STARTED, runs, ACKs →
   the source deletes its copy. Before COMMITTED every failure resumes the
   source and destroys the destination's copy; after it, without ACK, the
   source stays stopped (IN_DOUBT) and asks the destination agent
   (``POST /v1/migrations/{id}/query``, a QUERY frame in, a STATUS frame
   out) until the answer is final. An agent that holds no live hand-off for a
   migration (it restarted) answers from its :mod:`journal <._journal>`.
5. **Restart in doubt.** A source agent restarted with COMMITTED but no
   outcome in its journal replays the migration IN_DOUBT and, once started,
   keeps asking the destination by itself (:mod:`._in_doubt`, with the
   journaled destination URL and query token) until the answer is final:
   ``DONE`` when the device runs there; otherwise ``ROLLED_BACK`` with the
   destination's code -- its copy died with the old process, so the device
   runs nowhere. A journal written before query tokens existed leaves the
   migration IN_DOUBT, answered from the journal.

**Leases.** A controller (the fleet manager) may pass a *lease* -- an opaque
string naming it and the migration -- with ``outgoing``; the source hands it
to the destination with ``incoming``. Both remember it (journalled), and
refuse the same migration id under another lease, or none, with 409
``LEASE_HELD``: two controllers never drive one migration. A migration
started without a lease (the agent-only ``devmig migrate`` path) is only
ever repeated without one. ``cancel`` with a lease must name the same one;
``cancel`` without one is the operator's and always allowed. ``cancel`` of an
id the source never heard of, with a lease and a device id, *fences* it: the
id is journalled as rolled back, so an ``outgoing`` call that was in flight
when its controller crashed can never start it later (it gets the
rolled-back migration back).

The status of each migration is a :class:`Migration`: the protocol's phase
names (``CONNECTING``, ``STREAMING``, ``WAIT_READY``, ``COMMITTING``,
``COMMITTED``, ``IN_DOUBT``, ``DONE``, ``ROLLED_BACK`` on the source;
``WAIT_HELLO``, ``RESUMING``, ``WAIT_GO``, ``WAIT_DECISION``, ``STARTING``,
``RUNNING``, ``DESTROYED`` on the destination), plus a finer ``stage``
(``checking``, ``preparing``, ``precopy``, ``stopcopy``, ``handoff``, ...),
counters and the error. Everything runs on the agent's event loop; the engine
is not thread-safe and needs no locks.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeAlias

from devmig._errors import DevmigError
from devmig._tasks import stop_tasks
from devmig._tls import server_tls
from devmig.agent._host import Host, busy_error
from devmig.agent._journal import FileJournal, Journal, MemoryJournal
from devmig.agent._settings import AgentSettings
from devmig.agent._transport import Channel, StreamServer

if TYPE_CHECKING:  # the runners import this module (they drive a Migration for a MigrationEngine)
    from devmig.agent._in_doubt import InDoubtResolver
    from devmig.agent._incoming import DestinationRun
    from devmig.agent._outgoing import SourceRun
from devmig.migration import (
    HandoffError,
    Role,
    SourcePhase,
    State,
    Tickets,
    destination_journal_answer,
    read_query,
    source_journal_answer,
)

__all__ = ["Migration", "MigrationEngine", "new_migration_id"]

log = logging.getLogger("devmig.agent.migrations")

#: Outcomes shown in a status: how a migration ended (or ``None`` while it runs).
SOURCE_OUTCOMES = {"DONE": "migrated", "ROLLED_BACK": "rolled_back", "IN_DOUBT": "in_doubt"}
DESTINATION_OUTCOMES = {"RUNNING": "migrated", "DESTROYED": "destroyed", "REJECTED": "destroyed"}
_TERMINAL = {"DONE", "ROLLED_BACK", "RUNNING", "DESTROYED"}
#: Per-migration tokens kept in ``Migration.extra`` and journaled beside the status (never shown), by
#: role: a source keeps the callback token it issued and the query token it got; a destination the
#: query token it issued (a restarted destination never asks: it answers from its journal).
Runner: TypeAlias = "SourceRun | DestinationRun | InDoubtResolver"
"""What drives a migration in this process (none once it finished)."""

_JOURNALED_TOKENS = {Role.SOURCE: ("callback_token", "query_token"), Role.DESTINATION: ("query_token",)}


def _rss_kib() -> dict[str, float]:
    """This process's resident memory now (``rss_after_create_kib``), where ``/proc`` tells it."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return {"rss_after_create_kib": float(line.split()[1])}
    except OSError:
        pass
    return {}


def new_migration_id() -> str:
    """A fresh migration id (``mig-`` and 16 hex digits)."""
    return "mig-" + uuid.uuid4().hex[:16]


def problem(code: str, message: str, *, loc: tuple[str | int, ...] = (), value: object = None,
            hint: str | None = None) -> DevmigError:
    """One-problem :class:`DevmigError`."""
    return DevmigError.of(code, message, loc=loc, value=value, hint=hint)


@dataclass
class Migration:
    """One migration as this agent sees it (either side); what ``GET /v1/migrations/{id}`` shows."""

    id: str
    role: Role
    phase: str
    device_id: str | None = None
    """The device on this side (the source device, or the destination's new one)."""
    destination_device_id: str | None = None
    model: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict)
    destination: dict[str, Any] = field(default_factory=dict)
    stage: str = "created"
    round: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    discarded_records: int = 0
    """Destination: pre-copy (``LIVE``) records discarded for a wrong digest -- torn by a write at
    the source, whose pages came again (DESIGN §4)."""
    discarded_bytes: int = 0
    """Destination: the bytes of those records."""
    rate: float = 0.0
    expected_downtime_ms: float | None = None
    downtime_ms: float | None = None
    digest: str | None = None
    """The state digest at switch-over (source: after STOP_COPY; destination: after RESUMING → STOP)."""
    error: dict[str, Any] | None = None
    started_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    from_journal: bool = False
    precopy: list[dict[str, Any]] = field(default_factory=list)
    """One entry per pre-copy round: bytes, dirty bytes after it, seconds."""
    timings: dict[str, float | None] = field(default_factory=dict)
    """When milestones happened (epoch seconds): ``stream_first_byte``, ``stopped``, ``trailer``,
    ``running``, ...; and a few measurements (``*_s`` seconds, ``*_kib``)."""
    # runtime only (not shown)
    done: asyncio.Event = field(default_factory=asyncio.Event, repr=False)
    runner: Runner | None = field(default=None, repr=False)
    task: asyncio.Task[None] | None = field(default=None, repr=False)
    lease: str | None = field(default=None, repr=False)
    """The controller's lease (journaled)."""
    callback_token: str | None = field(default=None, repr=False)
    """Source: the token the destination asks back with (journaled)."""
    query_token: str | None = field(default=None, repr=False)
    """The token a QUERY carries to the destination (journaled on both sides)."""
    expires_at: float = field(default=0.0, repr=False)
    """Destination: when its secret expires (``time.monotonic()``) unless the HELLO came."""
    hello: bool = field(default=False, repr=False)
    """Destination: the HELLO came (no connection may come any more)."""
    t0: float | None = field(default=None, repr=False)
    refused_stream: bool = field(default=False, repr=False)
    last_query_error: str | None = field(default=None, repr=False)
    journal_error: str | None = field(default=None, repr=False)

    def token(self, key: str) -> str | None:
        """``callback_token`` or ``query_token`` (the journaled tokens, by their journal key)."""
        return self.callback_token if key == "callback_token" else self.query_token

    def set_token(self, key: str, value: str) -> None:
        """Set the journaled token named ``key`` (``callback_token`` or ``query_token``)."""
        if key == "callback_token":
            self.callback_token = value
        else:
            self.query_token = value

    @property
    def finished(self) -> bool:
        """Whether the migration reached a final phase on this side."""
        return self.phase in _TERMINAL or (self.role is Role.DESTINATION and self.phase == "REJECTED")

    @property
    def outcome(self) -> str | None:
        """``migrated``, ``rolled_back``, ``in_doubt``, ``destroyed``; ``None`` while running."""
        table = SOURCE_OUTCOMES if self.role is Role.SOURCE else DESTINATION_OUTCOMES
        return table.get(self.phase)

    def fail(self, code: str, message: str, phase: str | None, side: str | None = None) -> None:
        """Record the first error (later ones are consequences)."""
        if self.error is None:
            self.error = {"code": code, "message": message, "phase": phase, "side": side or self.role.value}

    def to_dict(self) -> dict[str, Any]:
        """The status as JSON."""
        return {
            "migration_id": self.id,
            "role": self.role.value,
            "phase": self.phase,
            "stage": self.stage,
            "outcome": self.outcome,
            "finished": self.finished,
            "round": self.round,
            "bytes_sent": self.bytes_sent,
            "bytes_received": self.bytes_received,
            "discarded_records": self.discarded_records,
            "discarded_bytes": self.discarded_bytes,
            "rate": round(self.rate, 1),
            "expected_downtime_ms": self.expected_downtime_ms,
            "downtime_ms": self.downtime_ms,
            "device_id": self.device_id,
            "destination_device_id": self.destination_device_id,
            "model": self.model,
            "config": self.config,
            "source": {k: v for k, v in self.source.items() if k != "callback_token"},
            "destination": {k: v for k, v in self.destination.items() if k != "token"},
            "digest": self.digest,
            "error": self.error,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "from_journal": self.from_journal,
            "precopy": self.precopy,
            "timings": self.timings,
            "secret_outstanding": self.secret_outstanding,
        }

    @property
    def secret_outstanding(self) -> bool:
        """Whether a destination's secret could still admit a connection (never once the migration ended)."""
        return (self.role is Role.DESTINATION and not self.finished and not self.hello
                and time.monotonic() < self.expires_at)


class MigrationEngine:
    """Both sides of this agent's migrations: registry, stream server, journal.

    Args:
        host: the agent's devices.
        settings: the agent's settings.
        journal: where durable records go (default: a :class:`FileJournal` in
            ``settings.state_dir``, or a :class:`MemoryJournal` without one).

    Run-state: created → :meth:`start` (listening) → :meth:`close` (closed).
    """

    def __init__(self, host: Host, settings: AgentSettings, journal: Journal | None = None) -> None:
        self.host = host
        self.settings = settings
        if journal is None:
            journal = FileJournal(settings.state_dir) if settings.state_dir is not None else MemoryJournal()
        self.journal = journal
        self.tickets = Tickets(time.monotonic)
        self.migrations: dict[str, Migration] = {}
        self.rejected: list[dict[str, Any]] = []
        """Connections refused before they carried any state (code, message), newest last."""
        tls = server_tls(settings.tls) if settings.tls is not None and settings.tls.serving else None
        self.server = StreamServer(
            settings.stream_listen, self._on_channel, stall_timeout=settings.stall_timeout_s, tls=tls,
            max_pending=settings.max_pending_streams,
        )
        self.stream_address: str | None = None
        self.on_record: Callable[[Migration], None] | None = None
        """Called after each journal record (the agent's metrics)."""
        self.state = "created"
        self._tasks: set[asyncio.Task[Any]] = set()
        self._replay()

    # -- lifecycle -----------------------------------------------------------------

    async def start(self) -> None:
        """Listen for migration streams; start resolving the migrations replayed in doubt."""
        self.stream_address = await self.server.start()
        self.state = "running"
        from devmig.agent._in_doubt import InDoubtResolver

        for m in self.migrations.values():
            if isinstance(m.runner, InDoubtResolver) and m.task is None:
                m.task = self.spawn(m.runner.run(), f"devmig-in-doubt-{m.id}")

    async def close(self) -> None:
        """Stop listening and stop every migration task (their devices are closed by the host)."""
        self.state = "closing"
        await self.server.close()
        await stop_tasks([*(m.task for m in self.migrations.values() if m.task is not None), *self._tasks])
        self.journal.close()
        self.state = "closed"

    def spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        """Run a background task owned by the engine."""
        task: asyncio.Task[Any] = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- journal -------------------------------------------------------------------

    def _replay(self) -> None:
        """Rebuild the status of journaled migrations (after a restart).

        A source migration replayed IN_DOUBT whose journal holds the
        destination's URL and query token gets an
        :class:`~devmig.agent._in_doubt.InDoubtResolver` as its runner;
        :meth:`start` runs it.
        """
        from devmig.agent._in_doubt import InDoubtResolver

        for mid in self.journal.migrations():
            records = self.journal.records(mid)
            if not records:
                continue
            first = records[0]
            role = Role(first.role)
            kinds = [r.record for r in records]
            if role is Role.SOURCE:
                if "DONE" in kinds:
                    phase = "DONE"
                elif "ROLLED_BACK" in kinds:
                    phase = "ROLLED_BACK"
                elif "COMMITTED" in kinds:
                    phase = "IN_DOUBT"
                else:
                    phase = "ROLLED_BACK"
            else:
                phase = "RUNNING" if "STARTED" in kinds else "DESTROYED"
            m = Migration(mid, role, phase, from_journal=True)
            for r in records:
                if isinstance(r.data.get("lease"), str):
                    m.lease = r.data["lease"]
                for key in _JOURNALED_TOKENS[role]:
                    if isinstance(r.data.get(key), str):
                        m.set_token(key, r.data[key])
                status = r.data.get("status")
                if isinstance(status, Mapping):
                    for key in ("device_id", "destination_device_id", "model", "digest", "round",
                                "bytes_sent", "bytes_received", "downtime_ms", "error", "source", "destination"):
                        if key in status and status[key] is not None:
                            setattr(m, key, status[key])
            if phase == "ROLLED_BACK" and "ROLLED_BACK" not in kinds:
                m.fail("SOURCE_LOST", "the source agent restarted before it committed", None)
            if phase == "DESTROYED" and "DESTROYED" not in kinds and "RUNNING" not in kinds:
                m.fail("DESTINATION_LOST", "the destination agent restarted holding an unstarted copy", None)
            m.finished_at = records[-1].at
            m.stage = "journal"
            if (phase == "IN_DOUBT" and isinstance(m.destination.get("url"), str) and m.destination["url"]
                    and m.query_token):
                try:
                    m.runner = InDoubtResolver(self, m)
                except DevmigError:
                    pass  # a malformed journaled id: answered from the journal, as before
                else:
                    m.finished_at = None
                    m.stage = "in_doubt"
            self.migrations[mid] = m

    def device_is(self, m: Migration) -> str | None:
        """Where a finished migration's device is, as this agent knows it (``MigrationView.device_is``).

        ``here`` when this side has it (a source that rolled back, a destination that runs it),
        ``peer`` when the other side has it, ``nowhere`` when this side should have it and does not
        (its agent restarted: the device died with the process), ``unknown`` in doubt; ``None``
        while the migration runs.
        """
        if not m.finished:
            return None
        kernel = self.host.kernel
        has = m.device_id is not None and (
            m.device_id in self.host.devices or (kernel is not None and m.device_id in kernel.devices)
        )
        if m.role is Role.SOURCE:
            if m.phase == "DONE":
                return "peer"
            if m.phase == "ROLLED_BACK":
                return "here" if has else "nowhere"
            return "unknown"
        if m.phase == "RUNNING":
            return "here" if has else "nowhere"
        return "peer"

    def record(self, m: Migration, kind: str) -> None:
        """Append a journal record carrying the migration's status (and its lease and tokens).

        The per-migration tokens (the callback token a source issued, the
        query token a destination issued or a source received) are journaled
        beside the status, never in it: a restarted agent must still accept
        its peer's queries, and a restarted source must still ask.

        Raises:
            DevmigError: ``JOURNAL_FAILED``.
        """
        data: dict[str, Any] = {"status": m.to_dict()}
        if m.lease is not None:
            data["lease"] = m.lease
        for key in _JOURNALED_TOKENS[m.role]:
            token = m.token(key)
            if token is not None:
                data[key] = token
        self.journal.append(m.id, m.role.value, kind, data)
        log.info("migration %s %s: %s", m.id, m.role.value, kind,
                 extra={"migration_id": m.id, "device_id": m.device_id, "role": m.role.value, "phase": kind,
                        "outcome": m.outcome, "code": (m.error or {}).get("code")})
        if self.on_record is not None:
            self.on_record(m)

    @staticmethod
    def check_lease(m: Migration, lease: str | None) -> None:
        """Refuse a call about ``m`` under another lease than the one it was started with.

        Raises:
            DevmigError: ``LEASE_HELD`` (409).
        """
        held = m.lease
        if held != lease:
            raise problem("LEASE_HELD",
                          f"migration {m.id} is driven by "
                          + ("another controller" if held is not None else "a caller without a lease"),
                          loc=("lease",), value=lease,
                          hint="one controller per migration id; use a new migration id")

    # -- queries -------------------------------------------------------------------

    def get(self, migration_id: str) -> Migration:
        """Return a migration.

        Raises:
            DevmigError: ``MIGRATION_NOT_FOUND`` (HTTP 404).
        """
        m = self.migrations.get(migration_id)
        if m is None:
            raise problem("MIGRATION_NOT_FOUND", f"no migration {migration_id!r} on this agent",
                          loc=("migrations", migration_id), value=migration_id)
        return m

    def answer_query(self, migration_id: str, body: bytes) -> bytes:
        """Answer a peer agent's QUERY frame with a STATUS frame.

        A live hand-off answers itself (making its outcome final first, as the
        protocol says); otherwise the journal answers.

        Raises:
            HandoffError: a malformed query, or one about another migration.
            DevmigError: ``MIGRATION_NOT_FOUND`` is never raised: an unknown
                migration is answered from the (empty) journal.
        """
        query = read_query(body)
        if query.migration != migration_id:
            raise HandoffError("QUERY_INVALID", "the query is about another migration", value=query.migration)
        m = self.migrations.get(migration_id)
        runner = m.runner if m is not None else None
        if runner is not None and (runner.handoff is not None or (m is not None and m.role is Role.DESTINATION)):
            answer: bytes = runner.answer_query(query)
            return answer
        kinds = [r.record for r in self.journal.records(migration_id)]
        if query.asker is Role.SOURCE:
            return destination_journal_answer(query, started="STARTED" in kinds)
        return source_journal_answer(query, committed="COMMITTED" in kinds)

    def check_callback(self, migration_id: str, token: str) -> bool:
        """Whether ``token`` is the per-migration token this agent issued to the migration's peer.

        A source accepts the callback token it handed the destination; a
        destination the query token it handed the source (in its ``incoming``
        answer). Both survive a restart (journaled). Compared in constant time.
        """
        m = self.migrations.get(migration_id)
        if m is None:
            return False
        expected = m.callback_token if m.role is Role.SOURCE else m.query_token
        return isinstance(expected, str) and secrets.compare_digest(expected.encode(), token.encode())

    # -- the destination side ------------------------------------------------------

    def incoming(self, migration_id: str, model: str, config: Mapping[str, Any], source: Mapping[str, Any],
                 host_settings: Mapping[str, Any], callback_token: str | None,
                 lease: str | None = None, *, owns_image: bool = False) -> tuple[Migration, bytes]:
        """Prepare the destination's copy and issue a single-use secret (and a query token).

        The migration's *query token* (``m.query_token``, journaled,
        the same for every repeat) lets the source agent ask this agent for
        the outcome without the agent's bearer token, also after either
        agent restarted; it is never shown in a status.

        Idempotent by migration id: repeating it returns the same device and
        a fresh secret, as long as no connection has used the old one (the
        old secret is revoked); once one did, it is refused with
        ``MIGRATION_CONFLICT`` (409). ``lease``: see the module docstring.
        ``owns_image``: the source made the block device's image; once the
        device lives here, deleting it here removes the image.

        Raises:
            ConfigError: this release refuses the configuration (422, every problem).
            DevmigError: ``INSUFFICIENT_RESOURCES`` (507), ``MODEL_UNKNOWN`` (404),
                ``MIGRATION_CONFLICT`` / ``LEASE_HELD`` (409).
        """
        from devmig.agent._incoming import DestinationRun

        m = self.migrations.get(migration_id)
        if m is not None:
            if m.role is not Role.DESTINATION or m.model != model:
                raise problem("MIGRATION_CONFLICT", f"migration {migration_id} exists here with another role or model",
                              loc=("migration_id",), value=migration_id)
            self.check_lease(m, lease)
            if m.hello or m.phase != "WAIT_HELLO":
                raise problem("MIGRATION_CONFLICT",
                              f"migration {migration_id} already carried a connection (phase {m.phase})",
                              loc=("migration_id",), value=migration_id,
                              hint="a secret admits one connection; start a new migration")
            self.tickets.revoke(migration_id)
        else:
            created = time.monotonic()
            hosted = self.host.create_device(model, dict(config), host_settings, canonical=True, origin=migration_id,
                                           owns_image=owns_image)
            created = time.monotonic() - created
            hosted.busy = migration_id
            try:
                hosted.device.set_state(State.RESUMING)
            except DevmigError:
                self.host.delete_device(hosted.id, force=True)
                raise
            m = Migration(migration_id, Role.DESTINATION, "WAIT_HELLO", device_id=hosted.id,
                          destination_device_id=hosted.id, model=model, config=dict(config), source=dict(source))
            m.stage = "waiting"
            m.timings.update(create_s=round(created, 4), **_rss_kib())
            m.callback_token = callback_token
            m.query_token = secrets.token_urlsafe(24)
            if lease is not None:
                m.lease = lease
            self.migrations[migration_id] = m
            try:
                self.record(m, "INCOMING")
            except DevmigError:
                self.host.delete_device(hosted.id, force=True)
                del self.migrations[migration_id]
                raise
            m.runner = DestinationRun(self, m)
            m.task = self.spawn(m.runner.expire(), f"devmig-expire-{migration_id}")
        secret = secrets.token_bytes(32)
        self.tickets.issue(migration_id, secret, expires_at=time.monotonic() + self.settings.secret_ttl_s)
        m.expires_at = time.monotonic() + self.settings.secret_ttl_s
        return m, secret

    async def _on_channel(self, channel: Channel) -> None:
        from devmig.agent._incoming import accept

        await accept(self, channel)

    # -- the source side -----------------------------------------------------------

    async def outgoing(self, migration_id: str | None, device_id: str, destination_url: str,
                       destination_token: str | None, source_url: str = "", lease: str | None = None) -> Migration:
        """Check the destination, then start a migration in the background.

        Idempotent by migration id: the same id for the same device (and the
        same lease) returns the existing migration -- also one that ended, or
        one a fence recorded as rolled back. ``lease``: see the module docstring.

        Raises:
            DevmigError: ``DEVICE_NOT_FOUND`` (404), ``DEVICE_BUSY`` (409),
                ``MIGRATION_CONFLICT`` / ``LEASE_HELD`` (409), ``INCOMPATIBLE`` (409, every reason),
                ``AGENT_UNREACHABLE`` / ``AUTH_FAILED`` (502) from the destination.
        """
        from devmig.agent._outgoing import SourceRun

        if migration_id is not None and migration_id in self.migrations:
            m = self.migrations[migration_id]
            if m.role is Role.SOURCE and m.device_id == device_id:
                self.check_lease(m, lease)
                return m
            raise problem("MIGRATION_CONFLICT", f"migration {migration_id} exists here for another device or role",
                          loc=("migration_id",), value=migration_id)
        if self.host.kernel is not None:
            self.host.kernel.refuse_migration(device_id)  # KERNEL_DEVICE_DATA_BY_VMM: the VMM moves it
        hosted = self.host.get(device_id)
        if hosted.busy:
            raise busy_error(hosted)
        if hosted.origin is not None and hosted.device.state_name.name != "RUNNING":
            raise problem("DEVICE_BUSY", f"device {device_id} is not running ({hosted.device.state_name.name})",
                          loc=("devices", device_id))
        mid = migration_id or new_migration_id()
        hosted.busy = mid  # reserve before the first await: a concurrent migrate or delete gets 409
        m = Migration(mid, Role.SOURCE, SourcePhase.CONNECTING.value, device_id=device_id,
                      model=hosted.device.config.model, config=dict(hosted.device.config.values),
                      source={"host": self.settings.host_name, "url": source_url},
                      destination={"url": destination_url, "token": destination_token})
        if lease is not None:
            m.lease = lease
        self.migrations[mid] = m
        run = SourceRun(self, m, hosted)
        m.runner = run
        try:
            await run.check()
        except BaseException:
            hosted.busy = None
            del self.migrations[mid]
            raise
        try:
            self.record(m, "OUTGOING")
        except DevmigError:
            hosted.busy = None
            del self.migrations[mid]
            raise
        m.task = self.spawn(run.run(), f"devmig-source-{mid}")
        return m

    # -- both ------------------------------------------------------------------------

    def cancel(self, migration_id: str, *, lease: str | None = None, device_id: str | None = None) -> Migration:
        """Cancel a migration before COMMITTED (source) or before READY (destination).

        Args:
            lease: the controller's lease (``None``: the operator, always allowed).
            device_id: with ``lease``, for an id this agent never heard of:
                *fence* it -- journal it as a rolled-back outgoing migration of
                that device, so that a late ``outgoing`` call with this id
                gets that back instead of starting.

        Raises:
            DevmigError: ``MIGRATION_NOT_FOUND`` (404); ``LEASE_HELD`` (409);
                ``TOO_LATE`` (409) once the outcome is no longer this side's
                to choose, or it ended; ``JOURNAL_FAILED`` when a fence cannot be written.
        """
        if migration_id not in self.migrations and lease is not None and device_id is not None:
            return self._fence(migration_id, lease, device_id)
        m = self.get(migration_id)
        if lease is not None:
            self.check_lease(m, lease)
        if m.finished or m.runner is None:
            raise problem("TOO_LATE", f"migration {migration_id} already ended ({m.phase})",
                          loc=("phase", m.phase), value=m.phase)
        m.runner.cancel()
        return m

    def _fence(self, migration_id: str, lease: str, device_id: str) -> Migration:
        """Journal an id this source never started as rolled back (see :meth:`cancel`)."""
        m = Migration(migration_id, Role.SOURCE, SourcePhase.ROLLED_BACK.value, device_id=device_id, stage="ended",
                      source={"host": self.settings.host_name})
        m.lease = lease
        m.fail("FENCED", "the controller cancelled the migration before it reached this agent", None)
        m.finished_at = time.time()
        self.record(m, "ROLLED_BACK")
        self.migrations[migration_id] = m
        return m

