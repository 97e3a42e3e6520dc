"""The source side of one migration: check, prepare, stream, hand off (see ``_migrations``).

:class:`SourceRun` drives a :class:`~devmig.migration.SourceHandoff` over a
:class:`~devmig.agent._transport.Channel` and carries out its commands:
``PersistCommitted`` (journal COMMITTED, send GO), ``ReleaseCopy`` (delete the
source device), ``ResumeDevice`` (back to RUNNING), ``QueryDestination`` (ask
the destination agent until the answer is final; the device stays stopped).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from typing import TYPE_CHECKING, Any

from devmig._errors import DevmigError, Problem
from devmig._json import JsonObject, str_at
from devmig._tls import client_tls
from devmig.agent._client import AgentClient
from devmig.agent._handoff_io import QueryBackoff, receive_into
from devmig.agent._host import HostedDevice
from devmig.agent._transport import Channel, connect
from devmig.compat import check
from devmig.migration import (
    NEED_DATA,
    PAUSED,
    PersistCommitted,
    Query,
    QueryDestination,
    ReleaseCopy,
    ResumeDevice,
    SourceHandoff,
    SourcePhase,
    State,
)
from devmig.model import load_host_report

if TYPE_CHECKING:  # _migrations imports this module when it starts a run
    from devmig.agent._migrations import Migration, MigrationEngine

__all__ = ["SourceRun"]

_CHUNK = (2 << 20) + 64  # one whole default chunk (StreamEncoder's 2 MiB) and its framing per read
_STOP_CHUNK = 4 << 20
_HOLD_MAX = 64  # the largest tail kept back to go with the next record's head (see SourceRun._send)
_STOP_COPY_SHARE = 0.25
"""The share of the target downtime that stop-copy's data may take (pre-copy goes on until it fits)."""


class _Left(Exception):
    """The hand-off left STREAMING (cancelled, refused, queried): stop writing."""


def _nbytes(buffers: list[Any]) -> int:
    return sum(b.nbytes if isinstance(b, memoryview) else len(b) for b in buffers)


class SourceRun:
    """One outgoing migration (the source agent's side).

    Args:
        engine: the agent's :class:`~devmig.agent._migrations.MigrationEngine`.
        migration: its status record.
        hosted: the device to migrate (already marked busy).
    """

    def __init__(self, engine: MigrationEngine, migration: Migration, hosted: HostedDevice) -> None:
        self.engine = engine
        self.m = migration
        self.hosted = hosted
        self.device = hosted.device
        self.settings = engine.settings
        self.handoff: SourceHandoff | None = None
        self.channel: Channel | None = None
        self._cancelled = False
        self._stop_at: float | None = None
        self._pending: list[Any] = []
        self._held: list[Any] = []  # a small tail kept back for the next send (see _send)
        self._sent = 0
        self._t0 = time.monotonic()
        self.callback_token = secrets.token_urlsafe(24)
        migration.callback_token = self.callback_token

    def _client(self) -> AgentClient:
        d = self.m.destination
        return AgentClient(d["url"], d.get("token"), timeout=max(5.0, self.settings.stall_timeout_s))

    # -- step 1: check -------------------------------------------------------------

    async def check(self) -> None:
        """Check the device against the destination's report (nothing is created).

        Raises:
            DevmigError: ``INCOMPATIBLE`` then every reason (HTTP 409);
                ``DESTINATION_UNREACHABLE`` / ``DESTINATION_AUTH_FAILED`` /
                ``DESTINATION_REPORT_INVALID`` (502).
        """
        self.m.stage = "checking"
        try:
            async with self._client() as client:
                raw, _ = await client.report()
                await client.health()
        except DevmigError as exc:
            raise _remote(exc, self.m.destination["url"]) from exc
        try:
            report = load_host_report(raw or {})
        except DevmigError as exc:
            raise DevmigError(
                [Problem("DESTINATION_REPORT_INVALID", ("destination", "report"),
                         f"the destination's report is invalid: {exc}")]
            ) from exc
        verdict = check(self.device.model(), self.device.config, report)
        self.m.destination["host"] = report.host
        if not verdict.compatible:
            head = Problem("INCOMPATIBLE", ("destination", report.host),
                           f"{report.host} cannot run this device ({len(verdict.reasons)} reasons)",
                           value=self.device.config.string)
            raise DevmigError([head, *verdict.reasons])

    # -- the run -----------------------------------------------------------------------

    async def run(self) -> None:
        """Carry the migration to its end (DONE, ROLLED_BACK, or IN_DOUBT until resolved)."""
        m = self.m
        try:
            try:
                await self._prepare()
                assert self.handoff is not None and self.channel is not None
                await self._stream()
            except _Left:
                pass
            except DevmigError as exc:
                phase = self.handoff.phase.value if self.handoff else SourcePhase.CONNECTING.value
                m.fail(exc.code, _message(exc), phase)
                if self.handoff is None:
                    await self._rolled_back_early()
                    return
                if self.handoff.phase in (SourcePhase.CONNECTING, SourcePhase.STREAMING, SourcePhase.WAIT_READY):
                    if exc.code == "PEER_STALLED":
                        self._write_now(self.handoff.timeout())
                    else:
                        self.handoff.connection_lost()
                if self.channel is not None:
                    self.channel.close()
            await self._events()
        finally:
            if self.channel is not None:
                self.channel.close()
            m.finished_at = m.finished_at or time.time()
            m.runner = None if m.finished else m.runner
            m.done.set()

    async def _prepare(self) -> None:
        m = self.m
        m.stage = "preparing"
        host: JsonObject = {k: v for k, v in self.hosted.host_settings.items() if isinstance(v, (str, int, bool))}
        image = self.engine.host.image_name(self.hosted)
        if image is not None:  # relative to the image directory: the destination's is the same shared store
            host["image"] = image
        body: JsonObject = {
            "migration_id": m.id,
            "model": m.model,
            "config": m.config,
            "host": host,
            "owns_image": self.engine.host.image_owned(self.hosted),
            "source": {"url": m.source.get("url", ""), "host": self.settings.host_name,
                       "callback_token": self.callback_token},
            "lease": m.lease,
        }
        try:
            async with self._client() as client:
                answer = await client.incoming(body)
        except DevmigError as exc:
            raise _remote(exc, m.destination["url"]) from exc
        m.destination_device_id = str_at(answer, "device_id")
        m.destination["stream"] = str_at(answer, "stream")
        query_token = answer.get("query_token")
        if isinstance(query_token, str):
            # journaled with COMMITTED (never shown): a restarted source asks with it (see _in_doubt)
            m.query_token = query_token
        self.handoff = SourceHandoff(m.id, bytes.fromhex(str_at(answer, "secret")))
        if self._cancelled:
            self.handoff.cancel()
            raise _Left
        m.stage = "connecting"
        # an https destination streams over TLS too (its stream port takes the same certificates)
        tls = client_tls(self.settings.tls) if str(m.destination["url"]).startswith("https:") else None
        self.channel = await connect(str_at(answer, "stream"), stall_timeout=self.settings.stall_timeout_s, tls=tls)
        if self._cancelled:
            self.handoff.cancel()
            raise _Left
        self.channel.phase = SourcePhase.CONNECTING.value
        hello = self.handoff.hello()
        self._sync_phase()
        await self.channel.send([hello])

    async def _rolled_back_early(self) -> None:
        """Nothing was streamed: the device never stopped; make the destination drop its copy."""
        m = self.m
        self.hosted.busy = None
        m.phase = SourcePhase.ROLLED_BACK.value
        m.stage = "ended"
        if m.destination_device_id is not None:
            with contextlib.suppress(DevmigError):
                async with self._client() as client:
                    await client.cancel(m.id)
        with contextlib.suppress(DevmigError):
            self.engine.record(m, "ROLLED_BACK")
        m.finished_at = time.time()

    # -- streaming ---------------------------------------------------------------------

    def _sync_phase(self) -> None:
        assert self.handoff is not None
        self.m.phase = self.handoff.phase.value
        if self.channel is not None:
            self.channel.phase = self.m.phase
            self.m.bytes_sent = self.channel.bytes_sent
            self.m.bytes_received = self.channel.bytes_received

    def _poll(self) -> None:
        """Feed what the destination sent; stop writing when the hand-off left STREAMING."""
        handoff, channel = self.handoff, self.channel
        assert handoff is not None and channel is not None
        data = channel.take()
        if data:
            handoff.receive_data(data)
        elif channel.at_eof:
            handoff.receive_data(b"")
        if handoff.phase is SourcePhase.STREAMING and (data or channel.at_eof):
            event = handoff.next_event()
            if event is not NEED_DATA and event is not PAUSED:
                self._pending.append(event)
        if handoff.phase is not SourcePhase.STREAMING:
            raise _Left

    async def _send(self, buffers: list[Any], *, poll: bool = True, hold: bool = False) -> int:
        """Write buffers (paced if configured); with ``poll``, look at what the destination said.

        With ``hold``, a small last buffer (a record's digest, a ROUND_END record) is kept back
        and sent in front of the next buffers: the destination then reads it together with the
        next record's head, in one receive instead of two (it waits for a record's head before
        it can hand out the payload's region memory). :meth:`_send` without ``hold`` sends it.
        """
        assert self.channel is not None
        if self._held:
            buffers = [*self._held, *buffers]
            self._held = []
        if hold and len(buffers) > 1 and _nbytes(buffers[-1:]) <= _HOLD_MAX:
            self._held = [buffers[-1]]
            buffers = buffers[:-1]
        if not buffers:  # nothing kept back, nothing given: the end-of-stream flush with nothing held
            return 0
        n = _nbytes(buffers)
        await self.channel.send(buffers)
        self._sent += n
        limit = self.settings.max_stream_rate
        if limit:
            ahead = self._sent / limit - (time.monotonic() - self._t0)
            if ahead > 0:
                await asyncio.sleep(ahead)
        self._sync_phase()
        if poll:
            self._poll()
        return n

    async def _stream(self) -> None:
        m, device = self.m, self.device
        policy = self.settings.precopy
        self._sent = 0
        self._t0 = time.monotonic()
        m.stage = "precopy"
        device.set_state(State.PRE_COPY)
        m.timings["stream_first_byte"] = time.time()
        cpu = time.process_time()
        send_time = 0.0
        best_dirty: int | None = None
        stalled = 0
        rounds = 0
        resending = False  # the first pass is done: rounds now re-send dirty pages
        resend_bytes, resend_time = 0, 0.0
        while True:
            t = time.monotonic()
            sent = 0
            while True:
                data = device.read_data(_CHUNK)
                if not isinstance(data, list):  # ROUND_END
                    break
                if not data:
                    break
                sent += await self._send(data, hold=True)
            round_time = time.monotonic() - t
            send_time += round_time
            if resending:
                resend_bytes, resend_time = resend_bytes + sent, resend_time + round_time
            rounds += 1
            m.round = rounds
            m.rate = self._sent / send_time if send_time > 0 else 0.0
            info = device.precopy_info()
            rest = device.stop_copy_size()
            # Stop-copy re-sends scattered dirty pages, which go slower than the first pass's long runs
            # (measured: about half the rate): estimate at the re-send rounds' rate once there is one.
            rate = resend_bytes / resend_time if resend_bytes and resend_time > 0 else m.rate
            m.expected_downtime_ms = round(rest / rate * 1000, 2) if rate else None
            m.precopy.append({"round": rounds, "bytes": sent, "initial_bytes": info.initial_bytes,
                              "dirty_bytes": info.dirty_bytes, "seconds": round(round_time, 4)})
            if info.initial_bytes == 0:
                # Leave when the rest fits the stop-copy share of the target downtime at the measured
                # rate: the rest of the target is for the destination to finish loading and the hand-off.
                # Only the re-send rate predicts stop-copy, so after the first pass alone leave only when
                # nothing is dirty.
                budget_ms = policy.downtime_target_ms * _STOP_COPY_SHARE
                measured = resend_bytes > 0 or rest == 0
                if measured and m.expected_downtime_ms is not None and m.expected_downtime_ms <= budget_ms:
                    break
                resending = True
                if best_dirty is None or info.dirty_bytes < best_dirty:
                    best_dirty, stalled = info.dirty_bytes, 0
                else:
                    stalled += 1
                    if stalled >= policy.stall_rounds:
                        break
            if rounds >= max(1, policy.max_rounds):
                break
            await asyncio.sleep(0)  # let the workload run between rounds
        # stop and copy
        m.stage = "stopcopy"
        self._stop_at = time.monotonic()
        m.timings["stopped"] = time.time()
        device.set_state(State.STOP_COPY)
        # Stop-copy data ends with the trailer, after which a quick destination
        # may say READY before stream_sent(): look at its bytes only afterwards.
        while True:
            data = device.read_data(_STOP_CHUNK)
            if not isinstance(data, list) or not data:
                break
            await self._send(data, poll=False, hold=True)
        await self._send([], poll=False)  # what was kept back: the stream ends here
        assert self.handoff is not None
        self.handoff.stream_sent()
        m.timings["trailer_sent"] = time.time()
        m.timings["stream_cpu_s"] = round(time.process_time() - cpu, 4)  # the workload's steps included
        self._sync_phase()
        m.stage = "handoff"

    # -- the hand-off --------------------------------------------------------------------

    def _write_now(self, data: bytes) -> None:
        channel = self.channel
        if data and channel is not None:
            channel.write_nowait(data)

    async def _events(self) -> None:
        handoff, m = self.handoff, self.m
        if handoff is None:
            return
        backoff = QueryBackoff()
        while True:
            event = self._pending.pop(0) if self._pending else handoff.next_event()
            self._sync_phase()
            if event is NEED_DATA:
                assert self.channel is not None
                await receive_into(handoff, self.channel,
                                   lambda exc: m.fail(exc.code, _message(exc), handoff.phase.value))
                continue
            if event is PAUSED:
                if handoff.phase is SourcePhase.IN_DOUBT:
                    # An unanswered query leaves the hand-off waiting for the next answer (no new
                    # QueryDestination): keep asking until the answer is final.
                    await backoff.wait()
                    await self._ask(handoff)
                    continue
                if self.channel is not None and handoff.phase in (SourcePhase.DONE, SourcePhase.ROLLED_BACK):
                    self.channel.close()
                return
            if isinstance(event, PersistCommitted):
                await self._commit()
            elif isinstance(event, ReleaseCopy):
                self._release()
                return
            elif isinstance(event, ResumeDevice):
                failure = event.failure
                m.fail(failure.code, failure.message, failure.phase, failure.side.value)
                self._resume()
                return
            elif isinstance(event, QueryDestination):
                failure = event.failure
                m.fail(failure.code, failure.message, failure.phase, failure.side.value)
                self._sync_phase()
                m.stage = "in_doubt"
                if self.channel is not None:
                    self.channel.close()
                await backoff.wait()
                await self._ask(handoff)

    async def _commit(self) -> None:
        handoff, m = self.handoff, self.m
        assert handoff is not None
        self._sync_phase()
        m.timings["ready_received"] = time.time()
        try:
            self.engine.record(m, "COMMITTED")
        except DevmigError as exc:
            m.fail(exc.code, _message(exc), handoff.phase.value)
            self._write_now(handoff.commit_failed(_message(exc)))
            return
        go = handoff.committed()
        self._sync_phase()
        self._write_now(go)
        m.timings["go_sent"] = go_sent = time.time()
        m.timings["commit_journal_s"] = round(go_sent - (m.timings["ready_received"] or 0.0), 6)
        # The digest at switch-over is taken once the outcome is known (_release, _resume): hashing
        # now would take the CPU the destination needs to start (the device stays stopped till then).

    async def _ask(self, handoff: SourceHandoff) -> None:
        """Send one QUERY; apply the answer (an unanswered query is retried by the caller)."""
        m = self.m
        try:
            async with self._client() as client:
                answer = await client.query(m.id, handoff.query(), token=m.query_token)
            handoff.receive_status(answer)
        except DevmigError:
            # unreachable, or a broken answer: still in doubt; QueryDestination again
            handoff.connection_lost()

    def _switch_over_digest(self) -> None:
        if self.m.digest is None and self.m.timings.get("go_sent") is not None:
            with contextlib.suppress(DevmigError):
                self.m.digest = self.device.digest().hex()

    def _release(self) -> None:
        m = self.m
        if self._stop_at is not None:  # the device runs on the destination: the downtime ended
            m.downtime_ms = round((time.monotonic() - self._stop_at) * 1000, 2)
        self._switch_over_digest()
        self._sync_phase()
        with contextlib.suppress(DevmigError):
            self.engine.host.delete_device(self.hosted.id, force=True)
        m.stage = "ended"
        m.finished_at = time.time()
        with contextlib.suppress(DevmigError):
            self.engine.record(m, "DONE")

    def _resume(self) -> None:
        m = self.m
        self._switch_over_digest()
        self._sync_phase()
        with contextlib.suppress(DevmigError):
            self.device.set_state(State.RUNNING)
        self.hosted.busy = None
        if self._stop_at is not None:
            m.downtime_ms = round((time.monotonic() - self._stop_at) * 1000, 2)
        m.stage = "ended"
        m.finished_at = time.time()
        with contextlib.suppress(DevmigError):
            self.engine.record(m, "ROLLED_BACK")
        if m.destination_device_id is not None:
            # The destination may still hold a copy waiting for a connection that never came (a
            # HELLO refused, a connection lost before it was proved): drop it now, not at its
            # secret's expiry. Safe: the source resumed, so the destination never got GO.
            self.engine.spawn(self._cancel_destination(), f"devmig-cancel-{m.id}")

    async def _cancel_destination(self) -> None:
        with contextlib.suppress(DevmigError):
            async with self._client() as client:
                await client.cancel(self.m.id)

    # -- from the outside ----------------------------------------------------------------

    def cancel(self) -> None:
        """Cancel (possible until READY arrives).

        Raises:
            HandoffError: ``TOO_LATE`` from COMMITTING on.
        """
        self._cancelled = True
        handoff = self.handoff
        if handoff is None:
            return
        abort = handoff.cancel("the migration was cancelled on the source agent")
        self._write_now(abort)
        if self.channel is not None:
            self.channel.close()
        self._sync_phase()

    def answer_query(self, query: Query) -> bytes:
        """Answer the destination agent's QUERY with the live hand-off."""
        assert self.handoff is not None
        answer = self.handoff.answer_query(query)
        if self.channel is not None:
            self.channel.wake()
        self._sync_phase()
        return answer


def _message(exc: DevmigError) -> str:
    return exc.problems[0].message if exc.problems else str(exc)


def _remote(exc: DevmigError, url: str) -> DevmigError:
    """Re-code the destination's transport and auth errors so they are not read as ours."""
    recode = {"AGENT_UNREACHABLE": "DESTINATION_UNREACHABLE", "AUTH_FAILED": "DESTINATION_AUTH_FAILED",
              "AUTH_REQUIRED": "DESTINATION_AUTH_FAILED", "AGENT_ERROR": "DESTINATION_ERROR"}
    if exc.code in recode:
        p = exc.problems[0]
        return DevmigError([Problem(recode[exc.code], ("destination", url), p.message, p.value, p.allowed, p.hint)])
    return exc
