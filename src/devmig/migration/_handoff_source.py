"""The source side of a migration hand-off (see ``_handoff_tables`` for the theory).

The source agent drives a :class:`SourceHandoff` like this::

    handoff = SourceHandoff(migration_id, secret)
    send(handoff.hello())
    ...write the codec's stream straight to the connection...
    handoff.stream_sent()
    while True:
        event = handoff.next_event()
        if event is NEED_DATA:   handoff.receive_data(recv())   # b"" at EOF
        elif PersistCommitted:   journal COMMITTED; send(handoff.committed())
        elif ReleaseCopy:        destroy the source copy; done
        elif ResumeDevice:       resume the device; done
        elif QueryDestination:   ask with handoff.query(); handoff.receive_status(answer)

with ``timeout()``, ``connection_lost()`` and ``cancel()`` called when those
happen, and ``answer_query()`` when the destination agent asks.
"""

from __future__ import annotations

from types import MappingProxyType

from devmig.migration._handoff_events import (
    NEED_DATA,
    PAUSED,
    Failure,
    PersistCommitted,
    QueryDestination,
    ReleaseCopy,
    ResumeDevice,
    SourceEvent,
    Wait,
)
from devmig.migration._handoff_frames import (
    PREAMBLE,
    Abort,
    Ack,
    Go,
    HandoffError,
    Hello,
    Message,
    Outcome,
    Query,
    Ready,
    Refused,
    Role,
    encode,
)
from devmig.migration._handoff_side import HandoffSide
from devmig.migration._handoff_tables import (
    CANCELLED,
    CONNECTION_LOST,
    JOURNAL_FAILED,
    PEER_IN_DOUBT,
    SOURCE_ANSWERS,
    SOURCE_TRANSITIONS,
    TIMEOUT,
    SourcePhase,
    Trigger,
)

__all__ = ["SourceHandoff"]

_S = SourcePhase

#: The messages the source reads from the connection, by phase.
_READS: dict[SourcePhase, frozenset[Message]] = {
    _S.STREAMING: frozenset({Message.REFUSED}),
    _S.WAIT_READY: frozenset({Message.READY, Message.REFUSED}),
    _S.COMMITTED: frozenset({Message.ACK, Message.REFUSED}),
}
#: Phases in which received bytes are kept for later (read once COMMITTED).
_KEEPS = frozenset({_S.CONNECTING, _S.COMMITTING, *_READS})


class SourceHandoff(HandoffSide[SourcePhase, SourceEvent]):
    """The source side of one migration's hand-off: a pure protocol object.

    Args:
        migration_id: the migration's id, as the destination agent issued it.
        secret: the migration's single-use secret (16 to 64 bytes).

    Raises:
        HandoffError: ``FRAME_INVALID`` when the id or the secret is malformed.
    """

    __slots__ = ("_disconnected", "_hello")

    _id: str
    _ROLE = Role.SOURCE
    _PEER = Role.DESTINATION
    _TRANSITIONS = SOURCE_TRANSITIONS
    _ANSWERS = SOURCE_ANSWERS
    _ASKS_IN = _S.IN_DOUBT
    _ASKS_WHEN = "when in doubt"
    _PEER_OUTCOMES = (Outcome.STARTED, Outcome.ABORTED, Outcome.PENDING)
    #: The late answers that agree with an outcome already reached.
    _LATE_ANSWERS = MappingProxyType({
        _S.DONE: frozenset({Outcome.STARTED, Outcome.PENDING}),
        _S.ROLLED_BACK: frozenset({Outcome.ABORTED, Outcome.PENDING}),
    })

    def __init__(self, migration_id: str, secret: bytes) -> None:
        self._hello = PREAMBLE + encode(Hello(migration_id, secret))
        super().__init__(migration_id, _S.CONNECTING)
        self._disconnected: Failure | None = None

    @classmethod
    def restarted_in_doubt(cls, migration_id: str) -> SourceHandoff:
        """Rebuild the hand-off of a source agent restarted with COMMITTED in its journal.

        COMMITTED proves READY came and GO may have been sent; the connection
        died with the old process, and no ACK is journaled. The hand-off is
        therefore IN_DOUBT with a :class:`QueryDestination` queued: ask with
        :meth:`query` and feed the answer to :meth:`receive_status`, exactly
        as for a live one. The source's copy died with the old process, so a
        :class:`ReleaseCopy` has nothing to release and a
        :class:`ResumeDevice` nothing to resume (the device is lost).

        Raises:
            HandoffError: ``FRAME_INVALID`` when the id is malformed.
        """
        handoff = cls(migration_id, bytes(16))  # the secret was single use: spent
        handoff._hello = b""
        failure = Failure(CONNECTION_LOST, "the source agent restarted after it committed, before an ACK",
                          Role.SOURCE, _S.COMMITTED.name)
        handoff._phase = _S.IN_DOUBT
        handoff._failure = handoff._disconnected = failure
        handoff._events.append(QueryDestination(migration_id, failure))
        return handoff

    # -- state ----------------------------------------------------------------

    @property
    def migration_id(self) -> str:
        """The migration's id."""
        return self._id

    def _enter(self, phase: SourcePhase) -> None:
        if phase is _S.COMMITTING:
            self._events.append(PersistCommitted(self._id))
        elif phase is _S.DONE:
            self._events.append(ReleaseCopy(self._id))
        elif phase in (_S.ROLLED_BACK, _S.IN_DOUBT):
            assert self._failure is not None
            event = ResumeDevice if phase is _S.ROLLED_BACK else QueryDestination
            self._events.append(event(self._id, self._failure))
        if phase not in _KEEPS:
            self._reader.clear()

    def _lose(self, failure: Failure) -> None:
        """The connection is gone (lost, stalled, or broken by the peer)."""
        self._reader.clear()
        self._disconnected = self._disconnected or failure
        if self._phase is not _S.COMMITTING:
            # While COMMITTED is being journaled, the write's outcome decides
            # between rolling back and being in doubt (see committed()).
            self._fire(Trigger.CONNECTION_LOST, failure)

    # -- the connection -------------------------------------------------------

    def hello(self) -> bytes:
        """Start the hand-off: return the preamble and HELLO to send first.

        Afterwards write the stream straight to the connection, then call
        :meth:`stream_sent`.

        Raises:
            HandoffError: ``PHASE_INVALID`` unless CONNECTING.
        """
        self._fire(Trigger.HELLO_SENT)
        data, self._hello = self._hello, b""
        return data

    def stream_sent(self) -> None:
        """Record that the stream's last byte (its TRAILER) was written.

        A READY that arrived before this call (a quick destination) is read
        after it: call :meth:`next_event` again.

        Raises:
            HandoffError: ``PHASE_INVALID`` unless STREAMING.
        """
        self._fire(Trigger.STREAM_SENT)

    def receive_data(self, data: bytes) -> None:
        """Feed bytes received from the destination (``b""`` when it closed).

        Bytes that arrive once the connection no longer matters are dropped.
        """
        if self._phase not in _KEEPS or self._disconnected is not None:
            return
        if data:
            self._reader.feed(data)
        else:
            self._disconnected = self._here(
                CONNECTION_LOST, "the destination closed the connection"
            )

    def next_event(self) -> SourceEvent | Wait:
        """Return the next command for the agent, or why there is none.

        Returns:
            A command (:class:`PersistCommitted`, :class:`ReleaseCopy`,
            :class:`ResumeDevice`, :class:`QueryDestination`), else
            :data:`NEED_DATA` when the phase reads the connection and has no
            complete frame, else :data:`PAUSED` (also while a READY that came
            early waits for :meth:`stream_sent`). A frame the phase does not
            expect, or a malformed one, is handled as a broken connection
            (rolled back, or in doubt once committed); it is not raised.
        """
        while True:
            if self._events:
                return self._events.popleft()
            reads = _READS.get(self._phase)
            if reads is None:
                return PAUSED
            if self._phase is _S.STREAMING and self._reader.peek() is Message.READY:
                # The destination validated the trailer before the transport
                # returned from writing it: READY waits for stream_sent().
                return PAUSED
            try:
                frame = self._reader.next_frame(reads)
            except HandoffError as exc:
                self._lose(self._here(exc.code, f"the destination broke the protocol: {exc}"))
                continue
            if frame is None:
                if self._disconnected is None:
                    return NEED_DATA
                self._fire(Trigger.CONNECTION_LOST, self._disconnected)
                continue
            if isinstance(frame, Ready):
                self._fire(Trigger.READY)
            elif isinstance(frame, Ack):
                self._fire(Trigger.ACK)
            else:
                assert isinstance(frame, Refused)
                refused = Failure(frame.code, frame.text, Role.DESTINATION, frame.phase)
                self._fire(Trigger.REFUSED, refused)

    def committed(self) -> bytes:
        """Record that COMMITTED is durably in the journal; return GO to send.

        From now on the source never resumes by itself.

        Returns:
            The GO frame; empty when the connection was lost meanwhile (the
            hand-off is then IN_DOUBT and a :class:`QueryDestination` follows).

        Raises:
            HandoffError: ``PHASE_INVALID`` unless COMMITTING.
        """
        self._fire(Trigger.PERSISTED)
        if self._disconnected is not None:
            self._fire(Trigger.CONNECTION_LOST, self._disconnected)
            return b""
        return encode(Go())

    def commit_failed(self, message: str) -> bytes:
        """Record that COMMITTED could not be journaled: roll back.

        The journal write must be atomic: a failed write left no record.

        Returns:
            An ABORT frame to send (empty when the connection is gone).

        Raises:
            HandoffError: ``PHASE_INVALID`` unless COMMITTING.
        """
        failure = self._here(JOURNAL_FAILED, message)
        self._fire(Trigger.PERSIST_FAILED, failure)
        return self._abort_frame(failure)

    def _abort_frame(self, failure: Failure) -> bytes:
        if self._disconnected is not None:
            return b""
        return encode(Abort(failure.code, failure.message, failure.phase or ""))

    def connection_lost(self) -> None:
        """Record that the connection failed (reset, closed, unreachable)."""
        self._lose(self._here(CONNECTION_LOST, "the connection to the destination was lost"))

    def timeout(self) -> bytes:
        """Record that the transport's time limit expired; treat as a lost connection.

        Returns:
            An ABORT frame to send before closing, when one can help (the
            stream was sent and the source rolls back); else empty.
        """
        was = self._phase
        failure = self._here(TIMEOUT, f"the destination did not answer in time ({was.name})")
        self._lose(failure)
        if was is _S.WAIT_READY:
            return encode(Abort(failure.code, failure.message, was.name))
        return b""

    def cancel(self, message: str = "the migration was cancelled") -> bytes:
        """Cancel the migration and resume the device.

        Possible until READY arrives (CONNECTING, STREAMING, WAIT_READY).

        Returns:
            An ABORT frame to send in WAIT_READY; empty before (a stream
            cannot be interrupted by a frame: close the connection).

        Raises:
            HandoffError: ``TOO_LATE`` from COMMITTING on: the destination may
                be about to run the device; only its answer decides now.
        """
        self._check_cancel("after READY the outcome is the destination's to report")
        was = self._phase
        failure = self._here(CANCELLED, message)
        self._fire(Trigger.CANCEL, failure)
        return self._abort_frame(failure) if was is _S.WAIT_READY else b""

    # -- out of band (query() is HandoffSide's) -----------------------------

    def receive_status(self, data: bytes) -> None:
        """Apply the destination agent's answer (a STATUS frame) to a query.

        A late answer that agrees with the outcome already reached is ignored.

        Raises:
            HandoffError: ``FRAME_INVALID`` for a malformed answer;
                ``STATUS_INVALID`` for an answer about another migration or
                one only a source gives; ``PHASE_INVALID`` when no query can
                have been sent; ``STATUS_CONTRADICTS`` when it contradicts the
                outcome (a broken peer: nothing is changed).
        """
        self._apply_status(data)

    def answer_query(self, query: Query) -> bytes:
        """Answer the destination agent's QUERY, making the outcome final first.

        A source that has not committed rolls back (a :class:`ResumeDevice`
        follows) and answers ``ABORTED``; one committing answers ``PENDING``;
        one committed answers ``PROCEED`` (the destination starts).

        Returns:
            The STATUS frame to send back.

        Raises:
            HandoffError: ``QUERY_INVALID`` for a query that is not the
                destination's, or about another migration.
        """
        return self._answer(
            query, PEER_IN_DOUBT, "the destination asked for the outcome before the source committed"
        )
