"""A whole fleet on this machine: ``devmig up``/``down`` and the guided tour (``devmig tour``).

:class:`LocalFleet` starts a manager and four agents as child processes on ``127.0.0.1`` (the leader
holds a lock on its state directory, children die with it), and :func:`stop_running` stops the fleet
another process leads (``devmig down``), reading only its state file. :func:`run_tour` runs a real
scenario against a running fleet, each step followed by a self-:class:`Check`.

This package talks to the fleet over HTTP only: it imports nothing of :mod:`devmig.inventory`,
:mod:`devmig.orchestration` or :mod:`devmig.manager`. Its names are loaded on first use, so that
``devmig down`` stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from devmig._lazy import lazy_names

if TYPE_CHECKING:
    from devmig.local._local_fleet import (
        LocalFleet,
        default_state_dir,
        fleet_error,
        leader_alive,
        pid_alive,
        read_state,
        signals_raise,
        stop_running,
    )
    from devmig.local._tour import Check, SilentNarrator, StepResult, run_tour

__all__ = [
    "Check",
    "LocalFleet",
    "SilentNarrator",
    "StepResult",
    "default_state_dir",
    "fleet_error",
    "leader_alive",
    "pid_alive",
    "read_state",
    "run_tour",
    "signals_raise",
    "stop_running",
]

_WHERE = {
    "LocalFleet": "devmig.local._local_fleet",
    "default_state_dir": "devmig.local._local_fleet",
    "fleet_error": "devmig.local._local_fleet",
    "leader_alive": "devmig.local._local_fleet",
    "pid_alive": "devmig.local._local_fleet",
    "read_state": "devmig.local._local_fleet",
    "signals_raise": "devmig.local._local_fleet",
    "stop_running": "devmig.local._local_fleet",
    "Check": "devmig.local._tour",
    "SilentNarrator": "devmig.local._tour",
    "StepResult": "devmig.local._tour",
    "run_tour": "devmig.local._tour",
}


__getattr__, __dir__ = lazy_names(__name__, _WHERE, __all__)
