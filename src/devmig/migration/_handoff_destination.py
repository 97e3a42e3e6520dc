"""The destination side of a migration hand-off (see ``_handoff_tables`` for the theory).

The destination agent drives a :class:`DestinationHandoff` per accepted
connection::

    handoff = DestinationHandoff(tickets)
    while True:
        event = handoff.next_event()
        if event is NEED_DATA:      handoff.receive_data(recv())
        elif ConnectionRejected:    send(event.reply); close; done (nothing destroyed)
        elif StreamStarted:         feed event.data, then the connection, to the
                                    codec until its TRAILER; handoff.stream_received(rest);
                                    RESUMING -> STOP; send(handoff.ready())
                                    -- or send(handoff.refuse(code, message))
        elif PersistStarted:        journal STARTED; device RUNNING; send(handoff.started())
        elif DestroyCopy:           destroy the device; done
        elif QuerySource:           ask with handoff.query(); handoff.receive_status(answer)

with ``timeout()`` and ``connection_lost()`` called when those happen, and
``answer_query()`` when the source agent asks.
"""

from __future__ import annotations

from types import MappingProxyType

from devmig.migration._handoff_events import (
    NEED_DATA,
    PAUSED,
    ConnectionRejected,
    DestinationEvent,
    DestroyCopy,
    Failure,
    PersistStarted,
    QuerySource,
    StreamStarted,
    Wait,
)
from devmig.migration._handoff_frames import (
    _CODE,
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
    DESTINATION_ANSWERS,
    DESTINATION_TRANSITIONS,
    JOURNAL_FAILED,
    LOAD_FAILED,
    PHASE_INVALID,
    TIMEOUT,
    UNEXPECTED_QUERY,
    DestinationPhase,
    Trigger,
)
from devmig.migration._handoff_tickets import Tickets

__all__ = ["DestinationHandoff"]

_D = DestinationPhase
_WAIT_GO_READS = frozenset({Message.GO, Message.ABORT})
_HELLO_READS = frozenset({Message.HELLO})
_HELLO_PROBLEMS = {"FRAME_INVALID", "FRAME_TOO_LARGE", "UNEXPECTED_MESSAGE"}


class DestinationHandoff(HandoffSide[DestinationPhase, DestinationEvent]):
    """The destination side of one connection's hand-off: a pure protocol object.

    The connection is bound to a migration only once its HELLO proves that
    migration's secret; until then a failure rejects the connection and
    touches no device.

    Args:
        tickets: the secrets this agent issued; a proved secret is spent.
    """

    __slots__ = ("_connected", "_eof", "_preamble", "_stream_done", "_tickets")

    _ROLE = Role.DESTINATION
    _PEER = Role.SOURCE
    _TRANSITIONS = DESTINATION_TRANSITIONS
    _ANSWERS = DESTINATION_ANSWERS
    _ASKS_IN = _D.WAIT_DECISION
    _ASKS_WHEN = "in WAIT_DECISION"
    _PEER_OUTCOMES = (Outcome.PROCEED, Outcome.ABORTED, Outcome.PENDING)
    #: The late answers that do not contradict an outcome already reached.
    _LATE_ANSWERS = MappingProxyType({
        _D.STARTING: frozenset({Outcome.PROCEED, Outcome.PENDING}),
        _D.RUNNING: frozenset({Outcome.PROCEED, Outcome.PENDING}),
        _D.DESTROYED: frozenset({Outcome.PROCEED, Outcome.ABORTED, Outcome.PENDING}),
    })

    def __init__(self, tickets: Tickets) -> None:
        super().__init__(None, _D.WAIT_HELLO)
        self._tickets = tickets
        self._preamble = False
        self._stream_done = False
        self._eof = False
        self._connected = True

    # -- state ----------------------------------------------------------------

    @property
    def migration_id(self) -> str | None:
        """The migration the connection carries; ``None`` before a valid HELLO."""
        return self._id

    def _enter(self, phase: DestinationPhase) -> None:
        migration = self._id or ""
        if phase is _D.STARTING:
            self._events.append(PersistStarted(migration))
        elif phase is _D.DESTROYED:
            assert self._failure is not None
            self._events.append(DestroyCopy(migration, self._failure))
        elif phase is _D.WAIT_DECISION:
            assert self._failure is not None
            self._connected = False
            self._events.append(QuerySource(migration, self._failure))
        if phase not in (_D.WAIT_HELLO, _D.RESUMING, _D.WAIT_GO):
            self._reader.clear()

    def _lose(self, failure: Failure) -> None:
        self._connected = False
        self._reader.clear()
        self._fire(Trigger.CONNECTION_LOST, failure)

    def _refusal(self, failure: Failure) -> bytes:
        if not self._connected:
            return b""
        return encode(Refused(failure.code, failure.message, failure.phase or ""))

    # -- the connection -------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Feed control bytes received from the source (``b""`` when it closed).

        While RESUMING, the stream's bytes go to the codec, not here: only
        after :meth:`stream_received` may more bytes be fed. Bytes that arrive
        once the connection no longer matters are dropped.

        Raises:
            HandoffError: ``PHASE_INVALID`` when fed during the stream.
        """
        if self._phase is _D.RESUMING and not self._stream_done:
            raise HandoffError(
                PHASE_INVALID,
                "the stream's bytes go to the codec until stream_received()",
                phase=self._phase.name,
            )
        if self._phase not in (_D.WAIT_HELLO, _D.RESUMING, _D.WAIT_GO) or self._eof:
            return
        if data:
            self._reader.feed(data)
        else:
            self._eof = True

    def bytes_needed(self) -> int | None:
        """How many more bytes the connection may give before they are fed, and no more.

        In WAIT_HELLO, what completes the preamble and the HELLO frame (its
        payload capped at the HELLO's largest): a connection that cannot
        prove the secret never has a byte of state read. ``None`` in any
        other phase (no limit).
        """
        if self._phase is not _D.WAIT_HELLO:
            return None
        return self._reader.bytes_needed(_HELLO_READS, preamble=not self._preamble)

    def next_event(self) -> DestinationEvent | Wait:
        """Return the next command for the agent, or why there is none.

        Returns:
            A command (:class:`ConnectionRejected`, :class:`StreamStarted`,
            :class:`PersistStarted`, :class:`DestroyCopy`,
            :class:`QuerySource`), else :data:`NEED_DATA` when the phase reads
            the connection and has no complete frame, else :data:`PAUSED`.
            A bad HELLO rejects the connection; a frame WAIT_GO does not
            expect is handled as a lost connection. Neither is raised.
        """
        while True:
            if self._events:
                return self._events.popleft()
            if self._phase is _D.WAIT_HELLO:
                waiting = self._read_hello()
            elif self._phase is _D.WAIT_GO:
                waiting = self._read_wait_go()
            else:
                return PAUSED
            if waiting:
                return NEED_DATA

    def _read_hello(self) -> bool:
        """Read the preamble and HELLO; return True when more bytes are needed."""
        try:
            if not self._preamble:
                self._preamble = self._reader.preamble()
            frame = self._reader.next_frame(_HELLO_READS) if self._preamble else None
        except HandoffError as exc:
            code = "HELLO_INVALID" if exc.code in _HELLO_PROBLEMS else exc.code
            self._reject(Trigger.HELLO_REFUSED, code, f"no valid HELLO: {exc.problems[0].message}")
            return False
        if frame is None:
            if not self._eof:
                return True
            self._reject(Trigger.CONNECTION_LOST, CONNECTION_LOST, "the source closed before HELLO")
            return False
        assert isinstance(frame, Hello)
        try:
            self._tickets.redeem(frame.migration, frame.secret)
        except HandoffError as exc:
            self._reject(Trigger.HELLO_REFUSED, exc.code, exc.problems[0].message)
            return False
        self._id = frame.migration
        self._fire(Trigger.HELLO)
        self._events.append(StreamStarted(frame.migration, self._reader.take()))
        return False

    def _reject(self, trigger: Trigger, code: str, message: str, *, by_call: bool = False) -> bytes:
        """Reject the connection; the REFUSED reply goes in the event, or back to a caller."""
        if trigger is Trigger.CONNECTION_LOST:
            self._connected = False
        failure = self._here(code, message)
        reply = self._refusal(failure)
        self._connected = False
        self._reader.clear()
        self._fire(trigger, failure)
        self._events.append(ConnectionRejected(failure, b"" if by_call else reply))
        return reply

    def _read_wait_go(self) -> bool:
        try:
            frame = self._reader.next_frame(_WAIT_GO_READS)
        except HandoffError as exc:
            self._lose(self._here(exc.code, f"the source broke the protocol: {exc}"))
            return False
        if frame is None:
            if not self._eof:
                return True
            self._lose(self._here(CONNECTION_LOST, "the source closed the connection"))
            return False
        if isinstance(frame, Go):
            self._fire(Trigger.GO)
        else:
            assert isinstance(frame, Abort)
            self._connected = False
            self._fire(Trigger.ABORT, Failure(frame.code, frame.text, Role.SOURCE, frame.phase))
        return False

    def stream_received(self, trailing: bytes = b"") -> None:
        """Record that the codec consumed the stream's TRAILER.

        Args:
            trailing: bytes received after the TRAILER (control frames).

        Raises:
            HandoffError: ``PHASE_INVALID`` unless RESUMING with the stream open.
        """
        if self._phase is not _D.RESUMING or self._stream_done:
            raise HandoffError(
                PHASE_INVALID,
                "stream_received() is for the end of the stream, once, while RESUMING",
                phase=self._phase.name,
            )
        self._stream_done = True
        if trailing:
            self._reader.feed(trailing)

    def ready(self) -> bytes:
        """Record that the state loaded and validated (``RESUMING → STOP``).

        Validation may race with the connection: if the hand-off left
        RESUMING meanwhile (the connection was lost, the transport timed out),
        a :class:`DestroyCopy` is pending and neither this nor :meth:`refuse`
        may be called -- check :attr:`phase` first.

        Returns:
            The READY frame to send. The device stays stopped until GO.

        Raises:
            HandoffError: ``PHASE_INVALID`` unless RESUMING after
                :meth:`stream_received`.
        """
        if not self._stream_done:
            raise HandoffError(
                PHASE_INVALID,
                "READY needs the whole stream: call stream_received() first",
                phase=self._phase.name,
            )
        self._fire(Trigger.LOADED)
        return encode(Ready())

    def refuse(self, message: str, code: str = LOAD_FAILED) -> bytes:
        """Refuse the migration: the state did not load or validate.

        Args:
            message: what went wrong (the codec's or device's error).
            code: a stable upper-case code, ``LOAD_FAILED`` by default (the
                codec's own code, e.g. ``CONFIG_MISMATCH``, is better).

        Returns:
            The REFUSED frame to send; a :class:`DestroyCopy` follows.

        Raises:
            HandoffError: ``PHASE_INVALID`` unless RESUMING.
        """
        if not _CODE.fullmatch(code):
            raise HandoffError("FRAME_INVALID", "a code is an upper-case word", value=code)
        failure = self._here(code, message)
        self._fire(Trigger.LOAD_FAILED, failure)
        return self._refusal(failure)

    def started(self) -> bytes:
        """Record that STARTED is journaled and the device runs.

        Returns:
            The ACK frame to send; empty when the connection is gone (the
            source then learns by asking).

        Raises:
            HandoffError: ``PHASE_INVALID`` unless STARTING.
        """
        self._fire(Trigger.PERSISTED)
        return encode(Ack()) if self._connected else b""

    def start_failed(self, message: str) -> bytes:
        """Record that STARTED could not be journaled: the copy must not run.

        The journal write must be atomic: a failed write left no record.

        Returns:
            A REFUSED frame to send (empty when the connection is gone); a
            :class:`DestroyCopy` follows.

        Raises:
            HandoffError: ``PHASE_INVALID`` unless STARTING.
        """
        failure = self._here(JOURNAL_FAILED, message)
        self._fire(Trigger.PERSIST_FAILED, failure)
        return self._refusal(failure)

    def connection_lost(self) -> None:
        """Record that the connection failed (reset, closed)."""
        self._lose(self._here(CONNECTION_LOST, "the connection to the source was lost"))

    def timeout(self) -> bytes:
        """Record that the transport's time limit expired; treat as a lost connection.

        Returns:
            A REFUSED frame to send before closing in WAIT_HELLO and RESUMING;
            else empty.
        """
        was = self._phase
        message = f"the source did not send in time ({was.name})"
        if was is _D.WAIT_HELLO:
            return self._reject(Trigger.HELLO_REFUSED, TIMEOUT, message, by_call=True)
        failure = self._here(TIMEOUT, message)
        reply = self._refusal(failure) if was is _D.RESUMING else b""
        self._lose(failure)
        return reply

    def cancel(self, message: str = "the migration was cancelled") -> bytes:
        """Cancel before READY (WAIT_HELLO or RESUMING).

        Returns:
            The REFUSED frame to send.

        Raises:
            HandoffError: ``TOO_LATE`` once READY was sent: the source may
                have committed, and this copy may be the device's only one.
        """
        self._check_cancel("after READY only the source's decision ends the migration")
        if self._phase is _D.WAIT_HELLO:
            return self._reject(Trigger.CANCEL, CANCELLED, message, by_call=True)
        failure = self._here(CANCELLED, message)
        reply = self._refusal(failure)
        self._connected = False
        self._fire(Trigger.CANCEL, failure)
        return reply

    # -- out of band (query() is HandoffSide's) -----------------------------

    def receive_status(self, data: bytes) -> None:
        """Apply the source agent's answer (a STATUS frame) to a query.

        A late answer that does not contradict the outcome is ignored.

        Raises:
            HandoffError: ``FRAME_INVALID`` for a malformed answer;
                ``STATUS_INVALID`` for an answer about another migration or
                one only a destination gives; ``PHASE_INVALID`` when no query
                can have been sent; ``STATUS_CONTRADICTS`` for ``ABORTED``
                after the device was started here (a broken peer: nothing is
                changed).
        """
        self._apply_status(data)

    def answer_query(self, query: Query) -> bytes:
        """Answer the source agent's QUERY, making the outcome final first.

        A source asks only once it has committed, so a destination that holds
        its loaded copy (WAIT_GO, WAIT_DECISION) takes the query as the GO it
        missed: it goes STARTING (a :class:`PersistStarted` follows) and
        answers ``PENDING`` until STARTED is journaled, then ``STARTED``. A
        destination without a copy answers ``ABORTED``, and never starts.

        Returns:
            The STATUS frame to send back.

        Raises:
            HandoffError: ``QUERY_INVALID`` for a query that is not the
                source's, or about another migration; ``PHASE_INVALID``
                before a valid HELLO bound the connection to a migration.
        """
        return self._answer(query, UNEXPECTED_QUERY, "the source asked before READY was sent")
