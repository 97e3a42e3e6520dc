"""The VFIO migration uAPI v2 state machine (sans-IO).

:class:`State` and :class:`MigrationFlags` carry the kernel's numbers.
:data:`NEXT_HOP` is Linux's next-hop table as data; :func:`transition_path`
walks it exactly as ``vfio_mig_get_next_state()`` does, refusing what the
kernel refuses with a :class:`~devmig.TransitionError`. :class:`StateMachine`
holds one device's state and walks it, arc by arc.
"""

from devmig.migration._machine import ArcCallback, StateMachine
from devmig.migration._states import (
    ARCS,
    NEXT_HOP,
    REQUIRED_FLAGS,
    MigrationFlags,
    State,
    arcs,
    next_state,
    supported_states,
    transition_path,
)

__all__ = [
    "ARCS",
    "NEXT_HOP",
    "REQUIRED_FLAGS",
    "ArcCallback",
    "MigrationFlags",
    "State",
    "StateMachine",
    "arcs",
    "next_state",
    "supported_states",
    "transition_path",
]
