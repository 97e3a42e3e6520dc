"""The migration session protocol: one migration's hand-off, sans-IO.

Theory of operation
-------------------
A source agent and a destination agent carry one migration over one
connection, which the source opens (DESIGN §6)::

    source                                   destination
      | -- preamble, HELLO(id, secret) ------> |  WAIT_HELLO: the secret is proved
      | == the stream (DVMG ... TRAILER) ====> |  RESUMING: bytes go to the codec
      | <-------------------- READY ---------- |  RESUMING -> STOP validated
      |  journal COMMITTED                     |
      | -- GO -------------------------------> |  journal STARTED, device RUNNING
      | <-------------------- ACK ------------ |
      |  release the copy                      |

Each side is a pure object (:class:`~devmig.migration.SourceHandoff`,
:class:`~devmig.migration.DestinationHandoff`), in the style of h11: bytes in
(``receive_data``), commands out (``next_event``, or :data:`NEED_DATA` /
:data:`PAUSED`), and methods that return the bytes to send. Each side has an
explicit phase; :data:`SOURCE_TRANSITIONS` and
:data:`DESTINATION_TRANSITIONS` map ``(phase, trigger)`` to the next phase, and
entering a phase emits the command the agent must carry out
(``PersistCommitted``, ``ReleaseCopy``, ``ResumeDevice``, ...). A trigger a
phase does not accept is refused with a :class:`HandoffError` that names the
phase and what it accepts. ``spec/handoff.pml`` models the same phases and
messages, and spin checks it.

**Who holds the device.** Before the destination journals STARTED, the
source's copy is *the* device; afterwards the destination's is. Everything
else follows from never letting both sides believe they hold it:

* Before COMMITTED, any failure -- the connection lost or stalled, a refused
  load, a cancel, a failed journal write -- resumes the source (ROLLED_BACK).
  The destination never runs without GO (or an equivalent answer, below),
  which a source that rolled back has never sent.
* The source journals COMMITTED *before* it sends GO; after that it never
  resumes by itself. Without an ACK it is IN_DOUBT: it stays stopped and
  QUERYs the destination agent (out of band) until the answer is final:
  ``STARTED`` (release) or ``ABORTED`` (resume). A QUERY from a source means
  "I committed", so a destination that still holds its loaded copy treats it
  as the GO it missed: it starts, answering ``PENDING`` until STARTED is in
  its journal. It answers ``ABORTED`` only when it holds no copy (destroyed,
  or lost in a crash) -- and then it can never start, because it has nothing
  to start. So a query that is delayed, or outlives the source that sent it,
  cannot make anyone lose the device.
* The destination journals STARTED before it runs the device, so that an
  agent restarted after a crash answers from its journal alone: STARTED if
  the device was started there (the source must not resume, even though the
  copy died), ABORTED otherwise.
* A destination that said READY but gets no GO (WAIT_GO) never runs on its
  own. It waits for GO, an ABORT, or a source's QUERY; if the connection is
  lost first it is WAIT_DECISION and QUERYs the source agent. A live source
  that has not committed makes that final by rolling back (``ABORTED``); one
  that is committing answers ``PENDING``; a committed one answers
  ``PROCEED``. A source agent restarted after a crash answers from its
  journal: ``PROCEED`` if COMMITTED is there, else ``ABORTED`` with code
  ``SOURCE_LOST`` -- the source's copy, which was the device, died with it,
  so the destination destroys its own.

Hence DESIGN §6's guarantee: **at most one side ever runs the device, and it
is lost only if the process holding its only copy dies.** A journal write
that fails counts as a failure of its agent: the source rolls back, the
destination destroys its copy.

**The stream.** After a valid HELLO the destination emits ``StreamStarted``
with any bytes it already received past the HELLO; from then on the transport
hands the connection's bytes straight to the state codec (no copy through this
object) until the codec has consumed the TRAILER, then gives back whatever
followed it with ``stream_received()``. The source's transport writes the
codec's output straight to the connection between ``hello()`` and
``stream_sent()``, and keeps feeding what it receives to ``receive_data`` (the
destination may refuse early; a READY that overtakes ``stream_sent()`` is held
until that call).

**Bounds.** The destination reads at most the 8-byte preamble plus a 256-byte
HELLO payload before deciding, and nothing of the stream before the secret is
proved; every frame type has a maximum size checked from its header. Time
limits are the transport's: it calls ``timeout()``.

Pure objects and data only: no sockets, clocks, threads or files.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from types import MappingProxyType
from typing import TypeAlias, TypeVar

from devmig.migration._session_frames import (
    HandoffError,
    Outcome,
    Query,
    Role,
    Status,
    encode,
)

__all__ = [
    "DESTINATION_ANSWERS",
    "DESTINATION_TRANSITIONS",
    "NEED_DATA",
    "PAUSED",
    "SOURCE_ANSWERS",
    "SOURCE_TRANSITIONS",
    "TERMINAL",
    "ConnectionRejected",
    "DestinationEvent",
    "DestinationPhase",
    "DestroyCopy",
    "Failure",
    "PersistCommitted",
    "PersistStarted",
    "QueryDestination",
    "QuerySource",
    "ReleaseCopy",
    "ResumeDevice",
    "SourceEvent",
    "SourcePhase",
    "StreamStarted",
    "Trigger",
    "Wait",
    "destination_journal_answer",
    "source_journal_answer",
]

# Failure codes raised or reported by the protocol objects (HELLO's are in
# _session_tickets and _session_frames).
CANCELLED = "CANCELLED"
CONNECTION_LOST = "CONNECTION_LOST"
DESTINATION_LOST = "DESTINATION_LOST"
JOURNAL_FAILED = "JOURNAL_FAILED"
LOAD_FAILED = "LOAD_FAILED"
PEER_IN_DOUBT = "PEER_IN_DOUBT"
PHASE_INVALID = "PHASE_INVALID"
QUERY_INVALID = "QUERY_INVALID"
SOURCE_LOST = "SOURCE_LOST"
STATUS_CONTRADICTS = "STATUS_CONTRADICTS"
STATUS_INVALID = "STATUS_INVALID"
TIMEOUT = "TIMEOUT"
TOO_LATE = "TOO_LATE"
UNEXPECTED_QUERY = "UNEXPECTED_QUERY"


class SourcePhase(Enum):
    """The phases of the source side of a hand-off."""

    CONNECTING = "CONNECTING"  #: before HELLO; the device runs
    STREAMING = "STREAMING"  #: HELLO sent; the stream is being written
    WAIT_READY = "WAIT_READY"  #: the stream is sent; the device is stopped
    COMMITTING = "COMMITTING"  #: READY came; COMMITTED is being journaled
    COMMITTED = "COMMITTED"  #: GO sent; waiting for ACK
    IN_DOUBT = "IN_DOUBT"  #: committed, no ACK: asking the destination
    DONE = "DONE"  #: the device runs on the destination; the copy is released
    ROLLED_BACK = "ROLLED_BACK"  #: the device resumed on the source


class DestinationPhase(Enum):
    """The phases of the destination side of a hand-off."""

    WAIT_HELLO = "WAIT_HELLO"  #: a connection came; its HELLO is awaited
    REJECTED = "REJECTED"  #: the connection was refused before any state was read
    RESUMING = "RESUMING"  #: the stream goes to the codec, then RESUMING -> STOP
    WAIT_GO = "WAIT_GO"  #: READY sent; waiting for GO
    WAIT_DECISION = "WAIT_DECISION"  #: READY sent, connection lost: asking the source
    STARTING = "STARTING"  #: GO came; STARTED is being journaled
    RUNNING = "RUNNING"  #: the device runs here
    DESTROYED = "DESTROYED"  #: this copy was destroyed; it never runs


class Trigger(Enum):
    """What moves a hand-off: a local action, a message, or an answer."""

    # local actions and observations
    HELLO_SENT = "HELLO_SENT"
    STREAM_SENT = "STREAM_SENT"
    LOADED = "LOADED"
    LOAD_FAILED = "LOAD_FAILED"
    PERSISTED = "PERSISTED"
    PERSIST_FAILED = "PERSIST_FAILED"
    CANCEL = "CANCEL"
    CONNECTION_LOST = "CONNECTION_LOST"  #: also a timeout, or a peer breaking the protocol
    # messages received
    HELLO = "HELLO"
    HELLO_REFUSED = "HELLO_REFUSED"  #: a HELLO that failed its checks
    READY = "READY"
    REFUSED = "REFUSED"
    GO = "GO"
    ABORT = "ABORT"
    ACK = "ACK"
    QUERY = "QUERY"  #: the peer agent asked, out of band
    # answers (STATUS) received
    STARTED = "STARTED"
    PROCEED = "PROCEED"
    ABORTED = "ABORTED"
    PENDING = "PENDING"


_S = SourcePhase
_D = DestinationPhase
_T = Trigger

#: The source's transitions: ``(phase, trigger) -> next phase``.
SOURCE_TRANSITIONS: Mapping[tuple[SourcePhase, Trigger], SourcePhase] = MappingProxyType(
    {
        (_S.CONNECTING, _T.HELLO_SENT): _S.STREAMING,
        (_S.CONNECTING, _T.CONNECTION_LOST): _S.ROLLED_BACK,
        (_S.CONNECTING, _T.CANCEL): _S.ROLLED_BACK,
        (_S.CONNECTING, _T.QUERY): _S.ROLLED_BACK,
        (_S.STREAMING, _T.STREAM_SENT): _S.WAIT_READY,
        (_S.STREAMING, _T.REFUSED): _S.ROLLED_BACK,
        (_S.STREAMING, _T.CONNECTION_LOST): _S.ROLLED_BACK,
        (_S.STREAMING, _T.CANCEL): _S.ROLLED_BACK,
        (_S.STREAMING, _T.QUERY): _S.ROLLED_BACK,
        (_S.WAIT_READY, _T.READY): _S.COMMITTING,
        (_S.WAIT_READY, _T.REFUSED): _S.ROLLED_BACK,
        (_S.WAIT_READY, _T.CONNECTION_LOST): _S.ROLLED_BACK,
        (_S.WAIT_READY, _T.CANCEL): _S.ROLLED_BACK,
        (_S.WAIT_READY, _T.QUERY): _S.ROLLED_BACK,
        (_S.COMMITTING, _T.PERSISTED): _S.COMMITTED,
        (_S.COMMITTING, _T.PERSIST_FAILED): _S.ROLLED_BACK,
        (_S.COMMITTING, _T.CONNECTION_LOST): _S.COMMITTING,  # applied once persisted
        (_S.COMMITTING, _T.QUERY): _S.COMMITTING,
        (_S.COMMITTED, _T.ACK): _S.DONE,
        (_S.COMMITTED, _T.REFUSED): _S.ROLLED_BACK,
        (_S.COMMITTED, _T.CONNECTION_LOST): _S.IN_DOUBT,
        (_S.COMMITTED, _T.QUERY): _S.COMMITTED,
        (_S.IN_DOUBT, _T.STARTED): _S.DONE,
        (_S.IN_DOUBT, _T.ABORTED): _S.ROLLED_BACK,
        (_S.IN_DOUBT, _T.PENDING): _S.IN_DOUBT,
        (_S.IN_DOUBT, _T.CONNECTION_LOST): _S.IN_DOUBT,
        (_S.IN_DOUBT, _T.QUERY): _S.IN_DOUBT,
        (_S.DONE, _T.CONNECTION_LOST): _S.DONE,
        (_S.DONE, _T.QUERY): _S.DONE,
        (_S.ROLLED_BACK, _T.CONNECTION_LOST): _S.ROLLED_BACK,
        (_S.ROLLED_BACK, _T.QUERY): _S.ROLLED_BACK,
    }
)

#: The destination's transitions: ``(phase, trigger) -> next phase``.
DESTINATION_TRANSITIONS: Mapping[tuple[DestinationPhase, Trigger], DestinationPhase] = (
    MappingProxyType(
        {
            (_D.WAIT_HELLO, _T.HELLO): _D.RESUMING,
            (_D.WAIT_HELLO, _T.HELLO_REFUSED): _D.REJECTED,
            (_D.WAIT_HELLO, _T.CONNECTION_LOST): _D.REJECTED,
            (_D.WAIT_HELLO, _T.CANCEL): _D.REJECTED,
            (_D.REJECTED, _T.CONNECTION_LOST): _D.REJECTED,
            (_D.RESUMING, _T.LOADED): _D.WAIT_GO,
            (_D.RESUMING, _T.LOAD_FAILED): _D.DESTROYED,
            (_D.RESUMING, _T.CONNECTION_LOST): _D.DESTROYED,
            (_D.RESUMING, _T.CANCEL): _D.DESTROYED,
            (_D.RESUMING, _T.QUERY): _D.DESTROYED,
            (_D.WAIT_GO, _T.GO): _D.STARTING,
            (_D.WAIT_GO, _T.ABORT): _D.DESTROYED,
            (_D.WAIT_GO, _T.CONNECTION_LOST): _D.WAIT_DECISION,
            (_D.WAIT_GO, _T.QUERY): _D.STARTING,
            (_D.WAIT_DECISION, _T.PROCEED): _D.STARTING,
            (_D.WAIT_DECISION, _T.ABORTED): _D.DESTROYED,
            (_D.WAIT_DECISION, _T.PENDING): _D.WAIT_DECISION,
            (_D.WAIT_DECISION, _T.CONNECTION_LOST): _D.WAIT_DECISION,
            (_D.WAIT_DECISION, _T.QUERY): _D.STARTING,
            (_D.STARTING, _T.PERSISTED): _D.RUNNING,
            (_D.STARTING, _T.PERSIST_FAILED): _D.DESTROYED,
            (_D.STARTING, _T.CONNECTION_LOST): _D.STARTING,
            (_D.STARTING, _T.QUERY): _D.STARTING,
            (_D.RUNNING, _T.CONNECTION_LOST): _D.RUNNING,
            (_D.RUNNING, _T.QUERY): _D.RUNNING,
            (_D.DESTROYED, _T.CONNECTION_LOST): _D.DESTROYED,
            (_D.DESTROYED, _T.QUERY): _D.DESTROYED,
        }
    )
)

#: A live source's answer to a destination's QUERY, by the phase the query
#: leaves it in (a source that had not committed rolls back first).
SOURCE_ANSWERS: Mapping[SourcePhase, Outcome] = MappingProxyType(
    {
        _S.ROLLED_BACK: Outcome.ABORTED,
        _S.COMMITTING: Outcome.PENDING,
        _S.COMMITTED: Outcome.PROCEED,
        _S.IN_DOUBT: Outcome.PROCEED,
        _S.DONE: Outcome.PROCEED,
    }
)

#: A live destination's answer to a source's QUERY, by the phase the query
#: leaves it in (a destination holding a loaded copy starts first).
DESTINATION_ANSWERS: Mapping[DestinationPhase, Outcome] = MappingProxyType(
    {
        _D.STARTING: Outcome.PENDING,
        _D.RUNNING: Outcome.STARTED,
        _D.DESTROYED: Outcome.ABORTED,
    }
)

#: The terminal phases: nothing moves a hand-off out of them.
TERMINAL: frozenset[SourcePhase | DestinationPhase] = frozenset(
    {_S.DONE, _S.ROLLED_BACK, _D.REJECTED, _D.RUNNING, _D.DESTROYED}
)


# -- commands (events) --------------------------------------------------------


class Wait(Enum):
    """What ``next_event()`` returns when there is no command to carry out."""

    NEED_DATA = "NEED_DATA"  #: feed more received bytes with ``receive_data``
    PAUSED = "PAUSED"  #: the protocol waits for a call (a journal write, an answer, ...)


NEED_DATA = Wait.NEED_DATA
PAUSED = Wait.PAUSED


@dataclass(frozen=True, slots=True)
class Failure:
    """Why a hand-off left its happy path.

    Attributes:
        code: a stable upper-case code (``CONNECTION_LOST``, ``AUTH_FAILED``, ...).
        message: one sentence for a person.
        side: the side where it happened.
        phase: that side's phase when it happened, or ``None`` when the side
            answered from its journal after a restart.
    """

    code: str
    message: str
    side: Role
    phase: str | None

    def render(self) -> str:
        """Return ``[CODE] side in PHASE: message``."""
        where = f"{self.side.value} in {self.phase}" if self.phase else self.side.value
        return f"[{self.code}] {where}: {self.message}"


@dataclass(frozen=True, slots=True)
class PersistCommitted:
    """READY came: append COMMITTED to the source journal, then call ``committed()``."""

    migration_id: str


@dataclass(frozen=True, slots=True)
class ReleaseCopy:
    """The device runs on the destination: release (destroy) the source's copy."""

    migration_id: str


@dataclass(frozen=True, slots=True)
class ResumeDevice:
    """The migration is rolled back: resume the device on the source."""

    migration_id: str
    failure: Failure


@dataclass(frozen=True, slots=True)
class QueryDestination:
    """In doubt: keep the device stopped; send ``query()`` to the destination agent.

    Emitted on entering IN_DOUBT and again after each ``PENDING`` answer. When
    a query gets no answer (unreachable, timed out), send ``query()`` again
    after a delay; the source stays in doubt until an answer is final.
    """

    migration_id: str
    failure: Failure


@dataclass(frozen=True, slots=True)
class StreamStarted:
    """The HELLO is proved: route the connection's bytes to the state codec.

    Attributes:
        migration_id: the migration the connection carries.
        data: bytes already received after the HELLO -- the stream's start;
            feed them to the codec first.
    """

    migration_id: str
    data: bytes


@dataclass(frozen=True, slots=True)
class PersistStarted:
    """GO (or its equivalent) came: append STARTED to the destination journal,
    set the device RUNNING, then call ``started()``."""

    migration_id: str


@dataclass(frozen=True, slots=True)
class DestroyCopy:
    """This copy will never run: destroy the destination's device."""

    migration_id: str
    failure: Failure


@dataclass(frozen=True, slots=True)
class QuerySource:
    """No decision: keep the loaded copy stopped; send ``query()`` to the source agent.

    Emitted on entering WAIT_DECISION and again after each ``PENDING`` answer;
    retry unanswered queries after a delay.
    """

    migration_id: str
    failure: Failure


@dataclass(frozen=True, slots=True)
class ConnectionRejected:
    """The connection was refused before it carried any state.

    Nothing is destroyed: the connection was never bound to a migration (a
    stranger, or a reused secret, cannot disturb one). Send ``reply`` (a
    REFUSED frame, empty when the peer is gone) and close.
    """

    failure: Failure
    reply: bytes


SourceEvent: TypeAlias = PersistCommitted | ReleaseCopy | ResumeDevice | QueryDestination
DestinationEvent: TypeAlias = (
    StreamStarted | PersistStarted | DestroyCopy | QuerySource | ConnectionRejected
)


# -- shared machinery ---------------------------------------------------------

P = TypeVar("P", SourcePhase, DestinationPhase)


def step(table: Mapping[tuple[P, Trigger], P], phase: P, trigger: Trigger) -> P:
    """Return the phase ``trigger`` moves ``phase`` to.

    Raises:
        HandoffError: ``PHASE_INVALID`` when the table has no such transition;
            it names the phase and the triggers the phase accepts.
    """
    try:
        return table[phase, trigger]
    except KeyError:
        accepted = sorted(t.name for (p, t) in table if p is phase)
        raise HandoffError(
            PHASE_INVALID,
            f"{trigger.name} is not accepted in {phase.name}",
            phase=phase.name,
            value=trigger.name,
            allowed=accepted,
        ) from None


def status_bytes(
    migration_id: str, outcome: Outcome, failure: Failure | None, phase: str | None
) -> bytes:
    """Encode the STATUS answering a query (the failure only for ``ABORTED``)."""
    if outcome is Outcome.ABORTED and failure is not None:
        return encode(Status(migration_id, outcome, failure.code, failure.message, phase))
    return encode(Status(migration_id, outcome, None, "", phase))


def _check_asker(query: Query, asker: Role, migration_id: str | None, phase: str | None) -> None:
    if query.asker is not asker:
        raise HandoffError(
            QUERY_INVALID,
            f"a {query.asker.value} cannot ask this side",
            phase=phase,
            value=query.asker.value,
            allowed=asker.value,
        )
    if migration_id is not None and query.migration != migration_id:
        raise HandoffError(
            QUERY_INVALID,
            "the query is about another migration",
            phase=phase,
            value=query.migration,
            allowed=migration_id,
        )


def source_journal_answer(query: Query, *, committed: bool) -> bytes:
    """Answer a destination's QUERY from the source agent's journal alone.

    For a source agent that holds no live
    :class:`~devmig.migration.SourceHandoff` for the migration: it restarted
    after a crash, so the copy it held died with it.

    Args:
        query: the destination's query (see :func:`~devmig.migration.read_query`).
        committed: whether the journal holds COMMITTED for the migration.

    Returns:
        The STATUS frame: ``PROCEED`` when committed (the destination holds
        the device now), else ``ABORTED`` with code ``SOURCE_LOST``.

    Raises:
        HandoffError: ``QUERY_INVALID`` when the query is not a destination's.
    """
    _check_asker(query, Role.DESTINATION, None, None)
    if committed:
        return status_bytes(query.migration, Outcome.PROCEED, None, None)
    lost = Failure(
        SOURCE_LOST,
        "the source agent restarted before it committed; the device died with its copy",
        Role.SOURCE,
        None,
    )
    return status_bytes(query.migration, Outcome.ABORTED, lost, None)


def destination_journal_answer(query: Query, *, started: bool) -> bytes:
    """Answer a source's QUERY from the destination agent's journal alone.

    For a destination agent that holds no live
    :class:`~devmig.migration.DestinationHandoff` for the migration (it
    restarted after a crash, or never got a valid HELLO for it): it holds no
    copy, so it can never start the device later.

    Args:
        query: the source's query.
        started: whether the journal holds STARTED for the migration.

    Returns:
        The STATUS frame: ``STARTED`` when the journal says so (the device
        was started here, even if it died in the crash: the source must not
        resume it), else ``ABORTED`` with code ``DESTINATION_LOST``.

    Raises:
        HandoffError: ``QUERY_INVALID`` when the query is not a source's.
    """
    _check_asker(query, Role.SOURCE, None, None)
    if started:
        return status_bytes(query.migration, Outcome.STARTED, None, None)
    lost = Failure(
        DESTINATION_LOST,
        "the destination agent holds no copy of this migration and never started it",
        Role.DESTINATION,
        None,
    )
    return status_bytes(query.migration, Outcome.ABORTED, lost, None)
