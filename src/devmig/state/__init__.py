"""Device state and the migration stream (DESIGN §4): declarations, regions, codec.

Sans-IO: nothing here opens files or sockets, reads clocks or starts threads.

- Declare state with :class:`StateDeclaration` of :class:`SectionSpec` /
  :class:`FieldSpec` and :class:`RegionSpec`; resolve it for a configuration
  with :meth:`StateDeclaration.layout` into a :class:`StateLayout`.
- Device memory is a :class:`Region` (numpy buffer + dirty page bitmap).
- Produce a stream with :class:`StreamEncoder`, driven round by round by a
  :class:`PrecopySource`; load one with :class:`StreamDecoder` (events:
  :class:`Header`, :class:`Bulk`, :class:`Discarded`, :class:`Zero`,
  :class:`RoundEnd`, :class:`Section`, :class:`Trailer`, or :data:`NEED_DATA`).
- Compare states with :func:`state_digest`; look into a saved stream with
  :func:`inspect_stream`.

Every refusal is a :class:`devmig.StreamError` with a stable code.
"""

from devmig.state._declaration import (
    Condition,
    FieldKind,
    FieldLayout,
    FieldSpec,
    RegionLayout,
    RegionSpec,
    SectionLayout,
    SectionSpec,
    SizeExpr,
    StateDeclaration,
    StateLayout,
)
from devmig.state._decoder import StreamDecoder
from devmig.state._digest import state_digest
from devmig.state._encoder import Buffer, StreamEncoder
from devmig.state._events import (
    NEED_DATA,
    ROUND_END,
    Bulk,
    Discarded,
    Event,
    Header,
    NeedData,
    RoundEnd,
    RoundEndSignal,
    Section,
    Trailer,
    Zero,
)
from devmig.state._inspect import RegionSummary, SectionSummary, StreamSummary, inspect_stream
from devmig.state._precopy import PrecopySource
from devmig.state._problems import Config, ConfigValue, error_from_problems
from devmig.state._published import declaration_difference, published_layout
from devmig.state._records import VERSION_MAJOR, VERSION_MINOR, Codec, Phase, RecordType
from devmig.state._region import PAGE_SIZE, Region, RegionFill

__all__ = [
    "NEED_DATA",
    "PAGE_SIZE",
    "ROUND_END",
    "VERSION_MAJOR",
    "VERSION_MINOR",
    "Buffer",
    "Bulk",
    "Codec",
    "Condition",
    "Config",
    "ConfigValue",
    "Discarded",
    "Event",
    "FieldKind",
    "FieldLayout",
    "FieldSpec",
    "Header",
    "NeedData",
    "Phase",
    "PrecopySource",
    "RecordType",
    "Region",
    "RegionFill",
    "RegionLayout",
    "RegionSpec",
    "RegionSummary",
    "RoundEnd",
    "RoundEndSignal",
    "Section",
    "SectionLayout",
    "SectionSpec",
    "SectionSummary",
    "SizeExpr",
    "StateDeclaration",
    "StateLayout",
    "StreamDecoder",
    "StreamEncoder",
    "StreamSummary",
    "Trailer",
    "Zero",
    "declaration_difference",
    "error_from_problems",
    "inspect_stream",
    "published_layout",
    "state_digest",
]
