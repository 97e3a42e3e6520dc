"""The migration hand-off protocol (sans-IO): its theory, and its phases, triggers and tables.

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

Where it lives: the phases, triggers and tables here; the commands and the
``NEED_DATA``/``PAUSED`` sentinels in ``_handoff_events``; the wire format in
``_handoff_frames``; the secrets in ``_handoff_tickets``; the two sides in
``_handoff_source`` and ``_handoff_destination`` over ``_handoff_side``; the
answers from a journal alone in ``_handoff_answers``.

Pure objects and data only: no sockets, clocks, threads or files.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from types import MappingProxyType
from typing import TypeVar

from devmig.migration._handoff_frames import HandoffError, Outcome

__all__ = [
    "DESTINATION_ANSWERS",
    "DESTINATION_TRANSITIONS",
    "SOURCE_ANSWERS",
    "SOURCE_TRANSITIONS",
    "TERMINAL",
    "DestinationPhase",
    "SourcePhase",
    "Trigger",
    "step",
]

# Failure codes raised or reported by the protocol objects (HELLO's are in
# _handoff_tickets and _handoff_frames).
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
