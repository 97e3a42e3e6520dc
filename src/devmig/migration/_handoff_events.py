"""The commands a hand-off side emits, why it failed, and what it returns when it has none.

``next_event()`` returns a command for the agent to carry out (a frozen
dataclass below), or a :data:`Wait`: :data:`NEED_DATA` -- the same object as
:data:`devmig.state.NEED_DATA` -- or :data:`PAUSED`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Final, TypeAlias

from devmig._sentinels import NEED_DATA, NeedData
from devmig.migration._handoff_frames import Role

__all__ = [
    "NEED_DATA",
    "PAUSED",
    "ConnectionRejected",
    "DestinationEvent",
    "DestroyCopy",
    "Failure",
    "Paused",
    "PersistCommitted",
    "PersistStarted",
    "QueryDestination",
    "QuerySource",
    "ReleaseCopy",
    "ResumeDevice",
    "SourceEvent",
    "StreamStarted",
    "Wait",
]


class Paused(Enum):
    """Type of the :data:`PAUSED` sentinel."""

    PAUSED = "PAUSED"

    def __repr__(self) -> str:
        return "PAUSED"


PAUSED: Final = Paused.PAUSED
"""Returned by ``next_event()`` when the protocol waits for a call (a journal write, an answer)."""

#: What ``next_event()`` returns when there is no command to carry out: :data:`NEED_DATA`
#: (feed more received bytes with ``receive_data``; the state codec's sentinel, one object)
#: or :data:`PAUSED`.
Wait: TypeAlias = NeedData | Paused


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
