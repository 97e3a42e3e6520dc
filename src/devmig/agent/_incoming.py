"""The destination side of one migration: accept, load in place, hand off (see ``_migrations``).

:func:`accept` serves one connection until its HELLO is proved (or refused:
the connection is closed before a byte of state is read, and no device is
touched). The proved connection is then carried by the migration's
:class:`DestinationRun`, which drives a
:class:`~devmig.migration.DestinationHandoff` and carries out its commands:
``StreamStarted`` (route the connection into the device), ``PersistStarted``
(journal STARTED, run the device, ACK), ``DestroyCopy`` (delete the device),
``QuerySource`` (ask the source agent until the answer is final; the loaded
copy stays stopped).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING, Any

from devmig._errors import DevmigError, StreamError
from devmig.agent._client import AgentClient
from devmig.agent._handoff_io import QueryBackoff, receive_into
from devmig.agent._host import HostedDevice
from devmig.agent._snapshot import start_snapshot
from devmig.agent._transport import Channel
from devmig.migration import (
    NEED_DATA,
    PAUSED,
    ConnectionRejected,
    DestinationHandoff,
    DestinationPhase,
    DestroyCopy,
    PersistStarted,
    Query,
    QuerySource,
    State,
    StreamStarted,
    destination_journal_answer,
)

if TYPE_CHECKING:  # _migrations imports this module when it starts a run
    from devmig.agent._migrations import Migration, MigrationEngine

__all__ = ["DestinationRun", "accept"]

_LOSSES = frozenset({"PEER_LOST", "CONNECTION_LOST"})


async def accept(engine: MigrationEngine, channel: Channel) -> None:
    """Serve one accepted connection: read the HELLO under limits and one deadline (the stall
    timeout, for the whole HELLO), then hand it to its migration."""
    handoff = DestinationHandoff(engine.tickets)
    channel.limit_to(handoff)
    channel.phase = DestinationPhase.WAIT_HELLO.value
    # One deadline for the whole HELLO, not restarted by each byte (one byte every few seconds
    # would otherwise hold the connection for ever).
    deadline = time.monotonic() + engine.settings.stall_timeout_s
    while True:
        event = handoff.next_event()
        if event is NEED_DATA:
            try:
                data = await channel.recv(timeout=max(0.0, deadline - time.monotonic()))
            except DevmigError:
                reply = handoff.timeout()
                channel.write_nowait(reply)
                continue
            if data is not None:
                handoff.receive_data(data)
        elif isinstance(event, ConnectionRejected):
            channel.write_nowait(event.reply)
            channel.close()
            f = event.failure
            engine.rejected.append({"code": f.code, "message": f.message, "at": time.time()})
            del engine.rejected[:-50]
            return
        elif isinstance(event, StreamStarted):
            m = engine.migrations.get(event.migration_id)
            run = m.runner if m is not None else None
            if not isinstance(run, DestinationRun):  # revoked between redeem and here: cannot happen
                channel.close()
                return
            channel.admit()
            await run.carry(handoff, channel, event.data)
            return
        else:
            channel.close()
            return


class DestinationRun:
    """One incoming migration (the destination agent's side)."""

    def __init__(self, engine: MigrationEngine, migration: Migration) -> None:
        self.engine = engine
        self.m = migration
        self.handoff: DestinationHandoff | None = None
        self.channel: Channel | None = None
        self._digest: asyncio.Future[bytes | None] | None = None

    @property
    def hosted(self) -> HostedDevice | None:
        """The destination's device, or ``None`` once destroyed."""
        return self.engine.host.devices.get(self.m.device_id or "")

    def _sync(self) -> None:
        m = self.m
        if self.handoff is not None:
            phase = self.handoff.phase
            if phase is DestinationPhase.RUNNING and self._digest is not None and m.digest is None:
                # RUNNING is final: show it once the digest of the loaded state is known.
                phase = DestinationPhase.STARTING
            m.phase = phase.value
        if self.channel is not None:
            self.channel.phase = m.phase
            m.bytes_received = self.channel.bytes_received
            m.bytes_sent = self.channel.bytes_sent
        discards = getattr(getattr(self.hosted, "device", None), "load_discards", None)
        if isinstance(discards, tuple):  # an SDK device (a kernel device's data is the VMM's)
            m.discarded_records, m.discarded_bytes = discards
            elapsed = time.monotonic() - (m.t0 if m.t0 is not None else time.monotonic())
            if elapsed > 0 and m.stage == "receiving":
                m.rate = m.bytes_received / elapsed

    # -- before a connection ----------------------------------------------------------

    async def expire(self) -> None:
        """Destroy the copy when no connection proved the secret in time."""
        m = self.m
        while not m.hello:
            remaining = m.expires_at - time.monotonic()
            if remaining <= 0:
                break
            await asyncio.sleep(remaining)
        if not m.hello and m.phase == DestinationPhase.WAIT_HELLO.value:
            self._destroy_unconnected("SECRET_EXPIRED", "no connection proved the secret before it expired")

    def _destroy_unconnected(self, code: str, message: str) -> None:
        m = self.m
        self.engine.tickets.revoke(m.id)
        m.hello = True  # no connection may come any more
        m.fail(code, message, DestinationPhase.WAIT_HELLO.value)
        self._destroy()

    def _destroy(self) -> None:
        m = self.m
        if self.hosted is not None and m.device_id is not None:
            self.engine.host.delete_device(m.device_id, force=True)
        m.phase = DestinationPhase.DESTROYED.value
        m.stage = "ended"
        m.finished_at = time.time()
        with contextlib.suppress(DevmigError):
            self.engine.record(m, "DESTROYED")
        m.done.set()

    # -- the connection ---------------------------------------------------------------

    async def carry(self, handoff: DestinationHandoff, channel: Channel, data: bytes) -> None:
        """Load the stream in place, say READY, then follow the hand-off to its end."""
        m = self.m
        m.hello = True
        self.handoff, self.channel = handoff, channel
        m.stage = "receiving"
        m.t0 = time.monotonic()
        self._sync()
        hosted = self.hosted
        if hosted is None:
            self._write(handoff.refuse("the destination device is gone", "DEVICE_NOT_FOUND"))
        else:
            await self._load(handoff, channel, hosted.device, data)
        try:
            await self._events(handoff)
        finally:
            if m.refused_stream:  # let the source read why, not a reset
                await channel.linger(channel.stall_timeout)
            channel.close()
            self._sync()
            m.finished_at = m.finished_at or time.time()
            m.done.set()

    async def _load(self, handoff: DestinationHandoff, channel: Channel, device: Any, data: bytes) -> None:
        m = self.m
        progress = asyncio.get_running_loop().create_task(self._progress())
        try:
            channel.route_to(device, data)
            await channel.wait_stream()
            m.timings.update(stream_first_byte=channel.stream_first_at, trailer=channel.stream_done_at,
                             stream_cpu_s=round(channel.stream_cpu, 4), stream_reads=channel.stream_reads,
                             lowat_fallbacks=channel.lowat_fallbacks)
            handoff.stream_received(b"")
            device.set_state(State.STOP)  # commits the staged sections, or raises StreamError
        except StreamError as exc:
            if handoff.phase is DestinationPhase.RESUMING:
                p = exc.problems[0]
                self._write(handoff.refuse(p.message[:400], exc.code if exc.code.isupper() else "LOAD_FAILED"))
                m.refused_stream = True
            return
        except DevmigError as exc:
            if handoff.phase is DestinationPhase.RESUMING:
                m.fail(exc.code, exc.problems[0].message, handoff.phase.value)
                if exc.code == "PEER_STALLED":
                    self._write(handoff.timeout())
                else:
                    handoff.connection_lost()
            return
        finally:
            progress.cancel()
            self._sync()
        if handoff.phase is not DestinationPhase.RESUMING:
            return
        m.stage = "ready"
        self._write(handoff.ready())
        m.timings["ready_sent"] = time.time()
        self._sync()

    async def _progress(self) -> None:
        while True:
            self._sync()
            await asyncio.sleep(0.05)

    def _write(self, data: bytes) -> None:
        if data and self.channel is not None:
            self.channel.write_nowait(data)

    async def _events(self, handoff: DestinationHandoff) -> None:
        m = self.m
        backoff = QueryBackoff()
        while True:
            event = handoff.next_event()
            self._sync()
            if event is NEED_DATA:
                assert self.channel is not None
                await receive_into(handoff, self.channel,
                                   lambda exc: m.fail(exc.code, exc.problems[0].message, handoff.phase.value))
                continue
            if event is PAUSED:
                if handoff.phase is DestinationPhase.WAIT_DECISION:
                    # An unanswered query leaves the hand-off waiting (no new QuerySource): ask again.
                    await backoff.wait()
                    await self._ask(handoff)
                    continue
                return
            if isinstance(event, PersistStarted):
                self._start(handoff)
                if self._digest is not None:
                    digest = await self._digest
                    m.digest = digest.hex() if digest is not None else ""
            elif isinstance(event, DestroyCopy):
                f = event.failure
                m.fail(f.code, f.message, f.phase, f.side.value)
                if m.error is not None and m.error["code"] in _LOSSES:
                    await self._blame_source()
                self._destroy()
                return
            elif isinstance(event, QuerySource):
                f = event.failure
                m.fail(f.code, f.message, f.phase, f.side.value)
                m.stage = "in_doubt"
                await backoff.wait()
                await self._ask(handoff)

    async def _blame_source(self) -> None:
        """After a lost connection, name ``SOURCE_LOST`` when the source agent does not answer either.

        The copy is destroyed either way (no READY was given, or the source answered); this only
        tells the operator whether the device died with its source.
        """
        m = self.m
        url = m.source.get("url")
        if not url or m.error is None:
            return
        try:
            async with AgentClient(url, None, timeout=min(2.0, self.engine.settings.stall_timeout_s)) as client:
                await client.health()
        except DevmigError as exc:
            if exc.code == "AGENT_UNREACHABLE":
                m.error = {**m.error, "code": "SOURCE_LOST",
                           "message": f"{m.error['message']}; the source agent does not answer either: "
                                      "the device died with it"}

    def _start(self, handoff: DestinationHandoff) -> None:
        m = self.m
        m.timings["go_received"] = time.time()
        try:
            self.engine.record(m, "STARTED")
        except DevmigError as exc:
            self._write(handoff.start_failed(exc.problems[0].message))
            return
        hosted = self.hosted
        m.timings["start_journal_s"] = round(time.time() - (m.timings["go_received"] or 0.0), 6)
        if hosted is not None:
            hosted.device.set_state(State.RUNNING)
            hosted.busy = None
        m.timings["running"] = time.time()
        ack = handoff.started()
        self._write(ack)
        if hosted is not None:
            # The digest at switch-over, off the critical path: a copy-on-write snapshot taken now,
            # after RUNNING and the ACK but before the loop runs a single work step, holds exactly the
            # loaded state (the device was stopped from RESUMING -> STOP until here).
            self._digest = start_snapshot(hosted.device)
            m.timings["snapshot_fork_s"] = round(getattr(self._digest, "fork_seconds", 0.0), 6)
        self._sync()
        m.stage = "ended"
        m.finished_at = time.time()
        with contextlib.suppress(DevmigError):
            self.engine.record(m, "RUNNING")

    async def _ask(self, handoff: DestinationHandoff) -> None:
        m = self.m
        url = m.source.get("url")
        if not url:
            return
        try:
            async with AgentClient(url, None, timeout=5.0) as client:
                answer = await client.query(m.id, handoff.query(), token=m.callback_token)
            handoff.receive_status(answer)
        except DevmigError:
            handoff.connection_lost()  # still WAIT_DECISION: a QuerySource follows

    # -- from the outside -------------------------------------------------------------

    def cancel(self) -> None:
        """Cancel before READY.

        Raises:
            HandoffError: ``TOO_LATE`` once READY was sent.
        """
        handoff = self.handoff
        if handoff is None:
            self._destroy_unconnected("CANCELLED", "the migration was cancelled before a connection came")
            return
        reply = handoff.cancel("the migration was cancelled on the destination agent")
        self._write(reply)
        if self.channel is not None:
            self.channel.close()

    def answer_query(self, query: Query) -> bytes:
        """Answer the source agent's QUERY (the live hand-off decides; see the protocol)."""
        handoff = self.handoff
        if handoff is None:
            if self.m.phase == DestinationPhase.WAIT_HELLO.value:
                self._destroy_unconnected("UNEXPECTED_QUERY", "the source asked before it connected")
            kinds = [r.record for r in self.engine.journal.records(self.m.id)]
            return destination_journal_answer(query, started="STARTED" in kinds)
        answer = handoff.answer_query(query)
        if self.channel is not None:
            self.channel.wake()
        self._sync()
        return answer
