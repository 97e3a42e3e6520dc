"""The VFIO migration uAPI v2 state machine (sans-IO).

:class:`State` and :class:`MigrationFlags` carry the kernel's numbers.
:data:`NEXT_HOP` is Linux's next-hop table as data; :func:`transition_path`
walks it exactly as ``vfio_mig_get_next_state()`` does, refusing what the
kernel refuses with a :class:`~devmig.TransitionError`. :class:`StateMachine`
holds one device's state and walks it, arc by arc.

:class:`SourceHandoff` and :class:`DestinationHandoff` are the two sides of
one migration's session protocol (HELLO, the stream, READY, GO, ACK, and the
QUERY/STATUS exchange when in doubt), as pure objects driven by
:data:`SOURCE_TRANSITIONS` and :data:`DESTINATION_TRANSITIONS`;
``spec/handoff.pml`` is their model, checked by spin (``docs/handoff.md``).
"""

from devmig.migration._handoff_answers import (
    destination_journal_answer,
    source_journal_answer,
)
from devmig.migration._handoff_data import (
    END_FRAME,
    ROUND_END_FRAME,
    DataChunk,
    DataEnd,
    DataFrameReader,
    DataMessage,
    RoundEnd,
    data_header,
)
from devmig.migration._handoff_destination import DestinationHandoff
from devmig.migration._handoff_events import (
    NEED_DATA,
    PAUSED,
    ConnectionRejected,
    DestinationEvent,
    DestroyCopy,
    Failure,
    PersistCommitted,
    PersistStarted,
    QueryDestination,
    QuerySource,
    ReleaseCopy,
    ResumeDevice,
    SourceEvent,
    StreamStarted,
    Wait,
)
from devmig.migration._handoff_frames import (
    HandoffError,
    Message,
    Outcome,
    Query,
    Role,
    read_query,
)
from devmig.migration._handoff_source import SourceHandoff
from devmig.migration._handoff_tables import (
    DESTINATION_ANSWERS,
    DESTINATION_TRANSITIONS,
    SOURCE_ANSWERS,
    SOURCE_TRANSITIONS,
    TERMINAL,
    DestinationPhase,
    SourcePhase,
    Trigger,
)
from devmig.migration._handoff_tickets import Tickets
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
    "ArcCallback",
    "ConnectionRejected",
    "DESTINATION_ANSWERS",
    "DESTINATION_TRANSITIONS",
    "DataChunk",
    "DataEnd",
    "DataFrameReader",
    "DataMessage",
    "DestinationEvent",
    "DestinationHandoff",
    "DestinationPhase",
    "DestroyCopy",
    "END_FRAME",
    "Failure",
    "HandoffError",
    "Message",
    "MigrationFlags",
    "NEED_DATA",
    "NEXT_HOP",
    "Outcome",
    "PAUSED",
    "PersistCommitted",
    "PersistStarted",
    "Query",
    "QueryDestination",
    "QuerySource",
    "REQUIRED_FLAGS",
    "ROUND_END_FRAME",
    "ReleaseCopy",
    "ResumeDevice",
    "Role",
    "RoundEnd",
    "SOURCE_ANSWERS",
    "SOURCE_TRANSITIONS",
    "SourceEvent",
    "SourceHandoff",
    "SourcePhase",
    "State",
    "StateMachine",
    "StreamStarted",
    "TERMINAL",
    "Tickets",
    "Trigger",
    "Wait",
    "arcs",
    "data_header",
    "destination_journal_answer",
    "next_state",
    "read_query",
    "source_journal_answer",
    "supported_states",
    "transition_path",
]
