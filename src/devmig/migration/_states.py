"""The VFIO migration uAPI v2 states, Linux's next-hop table, and the path walk.

Theory of operation
-------------------
A device that can migrate reports :class:`MigrationFlags`. ``STOP_COPY`` is
mandatory and gives ``STOP``, ``STOP_COPY`` and ``RESUMING`` (``RUNNING``
always exists); ``P2P`` adds ``RUNNING_P2P``; ``PRE_COPY`` adds ``PRE_COPY``;
both together add ``PRE_COPY_P2P``. :data:`REQUIRED_FLAGS` holds that rule as
data. ``ERROR`` is never *provided*: a device falls into it when an arc fails,
but it can never be requested, and no request is served from it (only a device
reset leaves it, back to ``RUNNING``).

:data:`NEXT_HOP` is the table of Linux's ``vfio_mig_get_next_state()``
(``drivers/vfio/vfio_main.c``) for a device with *every* optional feature:
``NEXT_HOP[current][target]`` is the first state to step to on the way from
``current`` to ``target``. ``ERROR`` as a value marks a refused request
(``STOP_COPY`` to either pre-copy state: the saving session cannot be
restarted).

For a device with fewer features the walk is the kernel's: take the table's
hop; while the hop is a state the device does not provide, look up the hop
*from that state* towards the target instead. That skips the optional states
the device lacks, so a driver only ever sees arcs between states it has. The
walk is repeated from each new state until the target is reached.

Two guards the kernel lacked for a while: the skip stops on ``ERROR`` (until
a 2026 fix the kernel looked ``ERROR`` up in its own row, and spun forever on
``STOP_COPY`` → ``PRE_COPY``), and a state met twice is reported as a loop
rather than walked again. With a correct table the loop guard never fires.

Everything here is pure data and pure functions: no I/O, no clock, no threads.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import IntEnum, IntFlag
from types import MappingProxyType
from typing import Any

from devmig._errors import Problem, TransitionError

__all__ = [
    "ARCS",
    "NEXT_HOP",
    "REQUIRED_FLAGS",
    "MigrationFlags",
    "State",
    "arcs",
    "next_state",
    "supported_states",
    "transition_path",
]


class State(IntEnum):
    """A device migration state, numbered as ``enum vfio_device_mig_state``."""

    ERROR = 0
    STOP = 1
    RUNNING = 2
    STOP_COPY = 3
    RESUMING = 4
    RUNNING_P2P = 5
    PRE_COPY = 6
    PRE_COPY_P2P = 7


class MigrationFlags(IntFlag):
    """The migration features a device reports (``VFIO_MIGRATION_*``).

    ``STOP_COPY`` is mandatory for a migratable device; the others are
    optional and each adds states (see :data:`REQUIRED_FLAGS`).
    """

    STOP_COPY = 1 << 0
    P2P = 1 << 1
    PRE_COPY = 1 << 2


_S = State
_F = MigrationFlags

#: The flags a device must report for a state to exist. ``ERROR`` is absent
#: on purpose: it is never provided (entered on failure, never requested).
REQUIRED_FLAGS: Mapping[State, MigrationFlags] = MappingProxyType(
    {
        _S.STOP: _F.STOP_COPY,
        _S.RUNNING: _F.STOP_COPY,
        _S.STOP_COPY: _F.STOP_COPY,
        _S.RESUMING: _F.STOP_COPY,
        _S.RUNNING_P2P: _F.STOP_COPY | _F.P2P,
        _S.PRE_COPY: _F.STOP_COPY | _F.PRE_COPY,
        _S.PRE_COPY_P2P: _F.STOP_COPY | _F.P2P | _F.PRE_COPY,
    }
)

#: The next hop from ``current`` (outer key) towards ``target`` (inner key)
#: for a device with every feature; ``ERROR`` means the request is refused.
#: Rows and columns cover every state but ``ERROR`` (refused before the table
#: is read); the diagonal is left out (nothing to do). Values are Linux's
#: ``vfio_from_fsm_table``.
NEXT_HOP: Mapping[State, Mapping[State, State]] = MappingProxyType(
    {
        _S.STOP: MappingProxyType(
            {
                _S.RUNNING: _S.RUNNING_P2P,
                _S.STOP_COPY: _S.STOP_COPY,
                _S.RESUMING: _S.RESUMING,
                _S.RUNNING_P2P: _S.RUNNING_P2P,
                _S.PRE_COPY: _S.RUNNING_P2P,
                _S.PRE_COPY_P2P: _S.RUNNING_P2P,
            }
        ),
        _S.RUNNING: MappingProxyType(
            {
                _S.STOP: _S.RUNNING_P2P,
                _S.STOP_COPY: _S.RUNNING_P2P,
                _S.RESUMING: _S.RUNNING_P2P,
                _S.RUNNING_P2P: _S.RUNNING_P2P,
                _S.PRE_COPY: _S.PRE_COPY,
                _S.PRE_COPY_P2P: _S.RUNNING_P2P,
            }
        ),
        _S.STOP_COPY: MappingProxyType(
            {
                _S.STOP: _S.STOP,
                _S.RUNNING: _S.STOP,
                _S.RESUMING: _S.STOP,
                _S.RUNNING_P2P: _S.STOP,
                _S.PRE_COPY: _S.ERROR,
                _S.PRE_COPY_P2P: _S.ERROR,
            }
        ),
        _S.RESUMING: MappingProxyType(
            {
                _S.STOP: _S.STOP,
                _S.RUNNING: _S.STOP,
                _S.STOP_COPY: _S.STOP,
                _S.RUNNING_P2P: _S.STOP,
                _S.PRE_COPY: _S.STOP,
                _S.PRE_COPY_P2P: _S.STOP,
            }
        ),
        _S.RUNNING_P2P: MappingProxyType(
            {
                _S.STOP: _S.STOP,
                _S.RUNNING: _S.RUNNING,
                _S.STOP_COPY: _S.STOP,
                _S.RESUMING: _S.STOP,
                _S.PRE_COPY: _S.RUNNING,
                _S.PRE_COPY_P2P: _S.PRE_COPY_P2P,
            }
        ),
        _S.PRE_COPY: MappingProxyType(
            {
                _S.STOP: _S.RUNNING,
                _S.RUNNING: _S.RUNNING,
                _S.STOP_COPY: _S.PRE_COPY_P2P,
                _S.RESUMING: _S.RUNNING,
                _S.RUNNING_P2P: _S.RUNNING,
                _S.PRE_COPY_P2P: _S.PRE_COPY_P2P,
            }
        ),
        _S.PRE_COPY_P2P: MappingProxyType(
            {
                _S.STOP: _S.RUNNING_P2P,
                _S.RUNNING: _S.RUNNING_P2P,
                _S.STOP_COPY: _S.STOP_COPY,
                _S.RESUMING: _S.RUNNING_P2P,
                _S.RUNNING_P2P: _S.RUNNING_P2P,
                _S.PRE_COPY: _S.PRE_COPY,
            }
        ),
    }
)

# Refusal codes (stable; see the docstrings of the functions that raise them).
STATE_UNKNOWN = "STATE_UNKNOWN"
STATE_NOT_SUPPORTED = "STATE_NOT_SUPPORTED"
TRANSITION_INVALID = "TRANSITION_INVALID"
TRANSITION_LOOP = "TRANSITION_LOOP"


def supported_states(flags: MigrationFlags | int) -> frozenset[State]:
    """Return the states a device with ``flags`` provides.

    These are the states that may be requested, and served from. ``ERROR`` is
    never among them. Without ``STOP_COPY`` (mandatory) the set is empty.

    Args:
        flags: the device's migration flags; unknown bits are ignored.

    Returns:
        The provided states.
    """
    have = MigrationFlags(flags)
    return frozenset(s for s, need in REQUIRED_FLAGS.items() if need & have == need)


def next_state(current: State | int, target: State | int, flags: MigrationFlags | int) -> State:
    """Return the one state to step to next on the way from ``current`` to ``target``.

    This is Linux's ``vfio_mig_get_next_state()``, with the loop guard.

    Args:
        current: the state the device is in.
        target: the state requested.
        flags: the device's migration flags.

    Returns:
        The next state: ``target`` itself when it is one arc away, and
        ``current`` when ``current == target``.

    Raises:
        TransitionError: ``STATE_UNKNOWN`` for a number that is no state;
            ``TRANSITION_INVALID`` when either state is ``ERROR`` or the
            target cannot be reached (``STOP_COPY`` → a pre-copy state);
            ``STATE_NOT_SUPPORTED`` when ``flags`` lack either state;
            ``TRANSITION_LOOP`` if the table would walk in a circle (a bug).
    """
    cur, tgt, have = _checked(current, target, flags)
    return _hop(cur, tgt, have)


def transition_path(
    current: State | int, target: State | int, flags: MigrationFlags | int
) -> list[State]:
    """Return the states stepped through from ``current`` to ``target``.

    The intermediate states are exactly those Linux chooses for a device with
    ``flags``; every step is an arc of :func:`arcs` for those flags.

    Args:
        current: the state the device is in.
        target: the state requested.
        flags: the device's migration flags.

    Returns:
        The states after ``current``, ending in ``target``; empty when
        ``current == target``.

    Raises:
        TransitionError: as :func:`next_state`, with the problem's ``loc``
            naming both states. Nothing is returned partially: a refused
            request is refused before any step.
    """
    cur, tgt, have = _checked(current, target, flags)
    path: list[State] = []
    seen = {cur}
    here = cur
    while here != tgt:
        here = _hop(here, tgt, have)
        if here in seen:
            raise _loop(cur, tgt, have, [*path, here])
        seen.add(here)
        path.append(here)
    return path


def arcs(flags: MigrationFlags | int) -> frozenset[tuple[State, State]]:
    """Return the single-step arcs a device with ``flags`` is ever asked to take.

    These are the arcs a driver must implement (the list in the comment of
    ``vfio_mig_get_next_state()``), derived from :data:`NEXT_HOP`.

    Args:
        flags: the device's migration flags.

    Returns:
        ``(from, to)`` pairs.
    """
    have = MigrationFlags(flags)
    states = supported_states(have)
    found: set[tuple[State, State]] = set()
    for a in states:
        for b in states - {a}:
            hop = _step(a, b, have)
            if hop != State.ERROR:
                found.add((a, hop))
    return frozenset(found)


def _hop(cur: State, tgt: State, have: MigrationFlags) -> State:
    """Return the next provided state from ``cur`` towards ``tgt`` (both checked)."""
    hop = _step(cur, tgt, have)
    if hop == State.ERROR:
        raise _unreachable(cur, tgt, have)
    return hop


def _step(cur: State, tgt: State, have: MigrationFlags) -> State:
    """Return the next provided state, or ``ERROR`` when the table refuses.

    This is the kernel's skip loop, which stops on ``ERROR`` and on a state
    skipped twice (raising ``TRANSITION_LOOP``).
    """
    if cur == tgt:
        return cur
    provided = supported_states(have)
    hop = NEXT_HOP[cur][tgt]
    skipped: list[State] = []
    while hop not in provided and hop != State.ERROR:
        if hop in skipped:
            raise _loop(cur, tgt, have, [*skipped, hop])
        skipped.append(hop)
        hop = NEXT_HOP[hop][tgt]
    return hop


def _checked(
    current: State | int, target: State | int, flags: MigrationFlags | int
) -> tuple[State, State, MigrationFlags]:
    """Coerce and validate a request the way the kernel does, before any walk."""
    have = MigrationFlags(flags)
    cur = _as_state(current, current, target, have)
    tgt = _as_state(target, current, target, have)
    if State.ERROR in (cur, tgt):
        raise _error_involved(cur, tgt, have)
    provided = supported_states(have)
    for state in (cur, tgt):
        if state not in provided:
            raise _not_supported(state, cur, tgt, have)
    return cur, tgt, have


def _as_state(
    value: State | int, current: State | int, target: State | int, have: MigrationFlags
) -> State:
    try:
        return State(value)
    except ValueError:
        raise _problem(
            STATE_UNKNOWN,
            current,
            target,
            have,
            f"{value!r} is not a migration state",
            value=value,
            allowed=[s.name for s in State],
            hint="states are numbered 0 (ERROR) to 7 (PRE_COPY_P2P)",
        ) from None


def _name(value: State | int) -> str:
    return value.name if isinstance(value, State) else str(value)


def _names(states: set[State] | frozenset[State]) -> list[str]:
    return [s.name for s in sorted(states)]


def _flag_names(have: MigrationFlags) -> list[str]:
    return [f.name for f in MigrationFlags if f in have and f.name is not None]


def _reachable(cur: State, have: MigrationFlags) -> list[str]:
    """Names of the targets a request from ``cur`` may name (for ``allowed``)."""
    if cur not in supported_states(have):
        return []
    out: set[State] = set()
    for tgt in supported_states(have) - {cur}:
        here, seen = cur, {cur}
        try:
            while here != tgt:
                here = _step(here, tgt, have)
                if here == State.ERROR or here in seen:
                    break
                seen.add(here)
            else:
                out.add(tgt)
        except TransitionError:
            continue
    return _names(out)


def _problem(
    code: str,
    current: State | int,
    target: State | int,
    have: MigrationFlags,
    message: str,
    *,
    value: Any,
    allowed: Any,
    hint: str | None,
    **context: Any,
) -> TransitionError:
    return TransitionError(
        [
            Problem(
                code,
                ("transition", _name(current), _name(target)),
                message,
                value=value,
                allowed=allowed,
                hint=hint,
                context={
                    "current": _name(current),
                    "target": _name(target),
                    "flags": _flag_names(have),
                    **context,
                },
            )
        ]
    )


def _error_involved(cur: State, tgt: State, have: MigrationFlags) -> TransitionError:
    if cur == State.ERROR:
        return _problem(
            TRANSITION_INVALID,
            cur,
            tgt,
            have,
            f"cannot leave ERROR for {tgt.name}: only a device reset leaves ERROR",
            value=[cur.name, tgt.name],
            allowed=[],
            hint="reset the device; it comes back in RUNNING",
        )
    return _problem(
        TRANSITION_INVALID,
        cur,
        tgt,
        have,
        f"ERROR cannot be requested (from {cur.name})",
        value=[cur.name, tgt.name],
        allowed=_reachable(cur, have),
        hint="a device enters ERROR only when an arc fails",
    )


def _not_supported(state: State, cur: State, tgt: State, have: MigrationFlags) -> TransitionError:
    need = REQUIRED_FLAGS[state]
    missing = [name for name in _flag_names(need) if name not in _flag_names(have)]
    role = "current" if state == cur else "target"
    return _problem(
        STATE_NOT_SUPPORTED,
        cur,
        tgt,
        have,
        f"{role} state {state.name} is not provided by a device with flags "
        f"{'|'.join(_flag_names(have)) or 'none'}",
        value=state.name,
        allowed=_names(supported_states(have)),
        hint=f"{state.name} needs migration flag(s) {'|'.join(missing)}",
        missing=missing,
    )


def _unreachable(cur: State, tgt: State, have: MigrationFlags) -> TransitionError:
    return _problem(
        TRANSITION_INVALID,
        cur,
        tgt,
        have,
        f"{tgt.name} cannot be reached from {cur.name}",
        value=[cur.name, tgt.name],
        allowed=_reachable(cur, have),
        hint="a saving session cannot go back to pre-copy; stop, then start a new one",
    )


def _loop(cur: State, tgt: State, have: MigrationFlags, walked: list[State]) -> TransitionError:
    return _problem(
        TRANSITION_LOOP,
        cur,
        tgt,
        have,
        f"the next-state table walks in a circle from {cur.name} to {tgt.name}",
        value=[cur.name, tgt.name],
        allowed=None,
        hint="this is a bug in the next-state table",
        walked=[s.name for s in walked],
    )


#: Every single-step arc of any device: the union of :func:`arcs` over the
#: meaningful flag combinations (``STOP_COPY`` with or without ``P2P`` and
#: ``PRE_COPY``).
ARCS: frozenset[tuple[State, State]] = frozenset().union(
    *(arcs(_F.STOP_COPY | extra) for extra in (_F(0), _F.P2P, _F.PRE_COPY, _F.P2P | _F.PRE_COPY))
)
