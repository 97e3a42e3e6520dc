"""What the two sides of a hand-off share (see ``_handoff_tables`` for the theory).

:class:`~devmig.migration.SourceHandoff` and
:class:`~devmig.migration.DestinationHandoff` mirror each other: each holds a
phase moved along its side's transition table, the failure that took it off
its happy path, the commands waiting for the agent, and a frame reader. Out of
band, each asks its peer agent (QUERY) in one phase, applies the peer's answer
(STATUS) -- a late answer must agree with the outcome already reached -- and
answers the peer's QUERY from its answer table. :class:`HandoffSide` does all
of that once; a side names what differs as class attributes (its role, its
tables, the phase it asks in) and says in ``_enter`` which command entering a
phase emits.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import Generic, TypeVar

from devmig.migration._handoff_answers import (
    _check_asker,
    status_bytes,
)
from devmig.migration._handoff_events import (
    DestinationEvent,
    Failure,
    SourceEvent,
)
from devmig.migration._handoff_frames import (
    FrameReader,
    HandoffError,
    Message,
    Outcome,
    Query,
    Role,
    Status,
    encode,
    read_single,
)
from devmig.migration._handoff_tables import (
    PHASE_INVALID,
    STATUS_CONTRADICTS,
    STATUS_INVALID,
    TOO_LATE,
    DestinationPhase,
    SourcePhase,
    Trigger,
    step,
)

__all__ = ["HandoffSide"]

P = TypeVar("P", SourcePhase, DestinationPhase)
E = TypeVar("E", SourceEvent, DestinationEvent)


class HandoffSide(Generic[P, E]):
    """One side of a hand-off: its phase, failure, commands and the out-of-band exchange.

    Not used directly: see :class:`~devmig.migration.SourceHandoff` and
    :class:`~devmig.migration.DestinationHandoff`.
    """

    __slots__ = ("_events", "_failure", "_id", "_phase", "_reader")

    # What a side sets (class attributes):
    _ROLE: Role  #: this side
    _PEER: Role  #: the other side, which asks this one and answers it
    _TRANSITIONS: Mapping[tuple[P, Trigger], P]  #: ``(phase, trigger) -> next phase``
    _ANSWERS: Mapping[P, Outcome]  #: the answer to a peer's QUERY, by the phase it leaves
    _ASKS_IN: P  #: the phase in which this side QUERYs its peer agent
    _ASKS_WHEN: str  #: how a refused :meth:`query` words that phase
    _PEER_OUTCOMES: tuple[Outcome, ...]  #: the outcomes the peer's STATUS may carry
    _LATE_ANSWERS: Mapping[P, frozenset[Outcome]]  #: answers agreeing with a reached outcome

    def __init__(self, migration_id: str | None, phase: P) -> None:
        self._id = migration_id
        self._phase: P = phase
        self._failure: Failure | None = None
        self._events: deque[E] = deque()
        self._reader = FrameReader()

    # -- state ----------------------------------------------------------------

    @property
    def phase(self) -> P:
        """The current phase."""
        return self._phase

    @property
    def failure(self) -> Failure | None:
        """Why the hand-off left its happy path (rolled back, in doubt, destroyed, ...), if it did."""
        return self._failure

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._id!r} {self._phase.name}>"

    def _fire(self, trigger: Trigger, failure: Failure | None = None) -> None:
        old = self._phase
        new = step(self._TRANSITIONS, old, trigger)
        self._phase = new
        if new is not old or trigger is Trigger.PENDING:
            if failure is not None:
                self._failure = failure
            self._enter(new)

    def _enter(self, phase: P) -> None:
        """Emit the command entering ``phase`` asks of the agent (each side's own)."""
        raise NotImplementedError

    def _here(self, code: str, message: str) -> Failure:
        return Failure(code, message, self._ROLE, self._phase.name)

    def _check_cancel(self, hint: str) -> None:
        """Refuse a cancel (``TOO_LATE``) in a phase the table does not let one leave."""
        table = self._TRANSITIONS
        if (self._phase, Trigger.CANCEL) not in table:
            raise HandoffError(
                TOO_LATE,
                f"a migration cannot be cancelled in {self._phase.name}",
                phase=self._phase.name,
                allowed=[p.name for p in type(self._phase) if (p, Trigger.CANCEL) in table],
                hint=hint,
            )

    # -- out of band ----------------------------------------------------------

    def query(self) -> bytes:
        """Return a QUERY to send to the peer agent.

        Only in the phase a side asks in: IN_DOUBT for the source,
        WAIT_DECISION for the destination.

        Raises:
            HandoffError: ``PHASE_INVALID`` in any other phase.
        """
        if self._phase is not self._ASKS_IN or self._id is None:
            raise HandoffError(
                PHASE_INVALID,
                f"the {self._ROLE.value} queries only {self._ASKS_WHEN}, not in {self._phase.name}",
                phase=self._phase.name,
                allowed=[self._ASKS_IN.name],
            )
        return encode(Query(self._id, self._ROLE))

    def _apply_status(self, data: bytes) -> None:
        """Apply the peer's STATUS (see each side's ``receive_status``)."""
        status = read_single(data, Message.STATUS)
        assert isinstance(status, Status)
        phase, peer = self._phase, self._PEER
        if status.migration != self._id or status.outcome not in self._PEER_OUTCOMES:
            raise HandoffError(
                STATUS_INVALID,
                f"the answer is about another migration, or not a {peer.value}'s",
                phase=phase.name,
                value=[status.migration, status.outcome.name],
                allowed=[self._id, [o.name for o in self._PEER_OUTCOMES]],
            )
        if phase is self._ASKS_IN:
            failure = None
            if status.outcome is Outcome.ABORTED:
                failure = Failure(status.code or "ABORTED", status.text, peer, status.phase)
            self._fire(Trigger[status.outcome.name], failure)
            return
        agrees = self._LATE_ANSWERS.get(phase)
        if agrees is None:
            raise HandoffError(
                PHASE_INVALID,
                f"no query was sent in {phase.name}",
                phase=phase.name,
                allowed=[self._ASKS_IN.name],
            )
        if status.outcome not in agrees:
            raise HandoffError(
                STATUS_CONTRADICTS,
                f"the {peer.value} answers {status.outcome.name} "
                f"but the {self._ROLE.value} is {phase.name}",
                phase=phase.name,
                value=status.outcome.name,
            )

    def _answer(self, query: Query, code: str, message: str) -> bytes:
        """Answer the peer's QUERY (see each side's ``answer_query``).

        The query first moves the phase (``code`` and ``message`` make the
        failure recorded when it does); the answer is the one the side's
        answer table gives for the phase it is then in.
        """
        _check_asker(query, self._PEER, self._id, self._phase.name)
        self._fire(Trigger.QUERY, self._here(code, message))
        outcome = self._ANSWERS[self._phase]
        assert self._id is not None
        return status_bytes(self._id, outcome, self._failure, self._phase.name)
