"""A device's current migration state, moved along the kernel's paths.

:class:`StateMachine` holds one device's state and walks it with
:func:`~devmig.migration.transition_path`. The walk is decided in full before
the first step, so a refused request changes nothing. Each step is reported to
an optional ``on_arc(from, to)`` callback (where a device does the work of the
arc). If the callback raises, the device's state is unknown, so the machine
goes to ``ERROR`` and the exception propagates unchanged.

From ``ERROR`` no request is served, as in the kernel: only :meth:`reset`
(``VFIO_DEVICE_RESET``) leaves it, back to ``RUNNING``.
"""

from __future__ import annotations

from collections.abc import Callable

from devmig._errors import Problem, TransitionError
from devmig.migration._states import (
    MigrationFlags,
    State,
    transition_path,
)

__all__ = ["ArcCallback", "StateMachine"]

#: Called once per arc, as ``on_arc(from_state, to_state)``, before the
#: machine records the new state.
ArcCallback = Callable[[State, State], None]

FLAGS_INVALID = "FLAGS_INVALID"
TRANSITION_IN_PROGRESS = "TRANSITION_IN_PROGRESS"


class StateMachine:
    """The migration state of one device with the given features.

    Args:
        flags: the device's migration flags; ``STOP_COPY`` is mandatory.
        initial: the state to start in: a state the flags provide, or
            ``ERROR``. Defaults to ``RUNNING``.
        on_arc: called as ``on_arc(from_state, to_state)`` for every arc
            walked by :meth:`set_state`, before the state changes.

    Raises:
        TransitionError: ``FLAGS_INVALID`` when ``flags`` lack ``STOP_COPY``;
            ``STATE_NOT_SUPPORTED`` when ``initial`` is not provided.
    """

    __slots__ = ("_busy", "_flags", "_on_arc", "_state")

    def __init__(
        self,
        flags: MigrationFlags | int,
        initial: State = State.RUNNING,
        *,
        on_arc: ArcCallback | None = None,
    ) -> None:
        have = MigrationFlags(flags)
        if MigrationFlags.STOP_COPY not in have:
            raise TransitionError(
                [
                    Problem(
                        FLAGS_INVALID,
                        ("flags",),
                        "a migratable device must report STOP_COPY",
                        value=[f.name for f in MigrationFlags if f in have],
                        allowed=["STOP_COPY", "P2P", "PRE_COPY"],
                        hint="VFIO_MIGRATION_STOP_COPY is mandatory",
                    )
                ]
            )
        if initial != State.ERROR:
            # An empty walk refuses an unknown or unprovided state, worded as
            # every other refusal is.
            transition_path(initial, initial, have)
        self._flags = have
        self._state = State(initial)
        self._on_arc = on_arc
        self._busy = False

    @property
    def state(self) -> State:
        """The state the device is in."""
        return self._state

    @property
    def flags(self) -> MigrationFlags:
        """The device's migration flags."""
        return self._flags

    def set_state(self, target: State) -> list[State]:
        """Walk the device to ``target``, one arc at a time.

        Args:
            target: the state requested.

        Returns:
            The states stepped through, ending in ``target`` (empty when the
            device is already there).

        Raises:
            TransitionError: as :func:`~devmig.migration.transition_path`
                (the state is unchanged), or ``TRANSITION_IN_PROGRESS`` when
                called from inside ``on_arc``.
            Exception: whatever ``on_arc`` raised; the machine is then in
                ``ERROR``.
        """
        if self._busy:
            raise TransitionError(
                [
                    Problem(
                        TRANSITION_IN_PROGRESS,
                        ("transition", self._state.name, _name(target)),
                        "a transition is already being walked",
                        value=_name(target),
                        hint="do not request a state from inside on_arc",
                    )
                ]
            )
        path = transition_path(self._state, target, self._flags)
        self._busy = True
        try:
            for step in path:
                here = self._state
                if self._on_arc is not None:
                    try:
                        self._on_arc(here, step)
                    except BaseException as exc:
                        self._state = State.ERROR
                        exc.add_note(
                            f"devmig: arc {here.name} -> {step.name} failed; "
                            "the state machine is now in ERROR"
                        )
                        raise
                self._state = step
        finally:
            self._busy = False
        return path

    def error(self) -> None:
        """Put the machine in ``ERROR`` (the device failed and could not recover)."""
        self._state = State.ERROR

    def reset(self) -> None:
        """Reset the device: from any state, back to ``RUNNING``.

        This is ``VFIO_DEVICE_RESET``, the only way out of ``ERROR``. It is not
        an arc: ``on_arc`` is not called.
        """
        self._state = State.RUNNING

    def __repr__(self) -> str:
        flags = "|".join(f.name for f in MigrationFlags if f in self._flags and f.name)
        return f"<StateMachine state={self._state.name} flags={flags}>"


def _name(value: State | int) -> str:
    return value.name if isinstance(value, State) else str(value)
