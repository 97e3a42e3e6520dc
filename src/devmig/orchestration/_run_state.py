"""The run-state of the long-lived orchestration objects (the orchestrator, the drainer).

Like qemu.qmp's ``Runstate``: an enum, a table of the moves allowed between
its members, and a guard that refuses any other move with an error naming the
state the object was in and the state(s) the call needed (``RUN_STATE``).

    IDLE ──open──▶ RUNNING ──aclose──▶ CLOSING ──▶ CLOSED
      └────────────aclose─────────────▶ CLOSING

An object is built ``IDLE`` (its reads work: they touch only the journal); it
spawns no task once ``CLOSING``. It opens once, and closes once: ``aclose`` on
an object already closing or closed does nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from typing import Final

from devmig._errors import DevmigError

__all__ = ["RUN_STATE_MOVES", "Lifecycle", "RunState"]


class RunState(Enum):
    """Where a long-lived orchestration object is in its life."""

    IDLE = "idle"
    RUNNING = "running"
    CLOSING = "closing"
    CLOSED = "closed"


RUN_STATE_MOVES: Final[Mapping[RunState, frozenset[RunState]]] = {
    RunState.IDLE: frozenset({RunState.RUNNING, RunState.CLOSING}),
    RunState.RUNNING: frozenset({RunState.CLOSING}),
    RunState.CLOSING: frozenset({RunState.CLOSED}),
    RunState.CLOSED: frozenset(),
}
"""Allowed moves: ``RUN_STATE_MOVES[a]`` holds every state that may follow ``a``."""


class Lifecycle:
    """The run-state of one object, moved only along :data:`RUN_STATE_MOVES`.

    Args:
        what: the object's name in errors (``orchestrator``, ``drainer``).
    """

    def __init__(self, what: str) -> None:
        self.what = what
        self.state = RunState.IDLE

    def require(self, *needed: RunState) -> None:
        """Raise ``RUN_STATE`` unless the state is one of ``needed``.

        Raises:
            DevmigError: ``RUN_STATE``, naming the state it was in (``value``) and the
                ones the call needed (``allowed``).
        """
        if self.state not in needed:
            wanted = " or ".join(s.value for s in needed)
            raise DevmigError.of(
                "RUN_STATE", f"the {self.what} is {self.state.value}; this needs it {wanted}",
                loc=(self.what,), value=self.state.value, allowed=[s.value for s in needed],
            )

    def move(self, new: RunState) -> None:
        """Go to ``new``; raise ``RUN_STATE`` (naming both) when the table does not allow it."""
        self.require(*(s for s in RunState if new in RUN_STATE_MOVES[s]))
        self.state = new

    @property
    def stopping(self) -> bool:
        """Whether the object is closing or closed (it spawns nothing new)."""
        return self.state in (RunState.CLOSING, RunState.CLOSED)
