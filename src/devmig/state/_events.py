"""The events a :class:`~devmig.state.StreamDecoder` yields, and the sentinels.

Events are frozen data, one per record (the magic produces none).
``NEED_DATA`` means "feed me more bytes"; ``ROUND_END`` is what
:meth:`~devmig.state.PrecopySource.next_records` returns at a temporary end of
pre-copy data (the kernel's ``ENOMSG``).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from devmig._sentinels import NEED_DATA, NeedData  # one object with devmig.migration's
from devmig.state._problems import ConfigValue

__all__ = [
    "Bulk",
    "Discarded",
    "Event",
    "Header",
    "NEED_DATA",
    "NeedData",
    "ROUND_END",
    "RoundEnd",
    "RoundEndSignal",
    "Section",
    "Trailer",
    "Zero",
]


class RoundEndSignal(enum.Enum):
    """Type of the :data:`ROUND_END` sentinel."""

    ROUND_END = "ROUND_END"

    def __repr__(self) -> str:
        return "ROUND_END"


ROUND_END: Final = RoundEndSignal.ROUND_END
"""Returned by ``PrecopySource.next_records()`` when a pre-copy round has no more data."""


@dataclass(frozen=True, slots=True)
class Header:
    """The HEADER record: who produced the stream, for which model and configuration.

    Attributes:
        major, minor: the stream format version read from the preamble.
        model: the model id.
        config: the canonical configuration (typed values).
        producer: informational data about the producer (implementation, release).
    """

    major: int
    minor: int
    model: str
    config: Mapping[str, ConfigValue]
    producer: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Bulk:
    """A BULK record landed: ``length`` bytes of region ``region`` at ``offset``.

    Attributes:
        round: pre-copy rounds completed before this record.
        compressed: whether its data was zstd-compressed on the wire.
        live: whether it was flagged ``LIVE`` (read while the source ran).
    """

    region: int
    offset: int
    length: int
    round: int
    compressed: bool = False
    live: bool = False


@dataclass(frozen=True, slots=True)
class Discarded:
    """A ``LIVE`` BULK record arrived with a wrong digest and was discarded (DESIGN §4).

    Its bytes ``[offset, offset + length)`` of region ``region`` are no longer
    covered, even where earlier records had covered them: a later record must
    cover them again before the TRAILER.
    """

    region: int
    offset: int
    length: int
    round: int


@dataclass(frozen=True, slots=True)
class Zero:
    """A ZERO record: ``length`` bytes of region ``region`` at ``offset`` are zero."""

    region: int
    offset: int
    length: int
    round: int


@dataclass(frozen=True, slots=True)
class RoundEnd:
    """A ROUND_END record: pre-copy round ``round`` (0-based) ended."""

    round: int


@dataclass(frozen=True, slots=True)
class Section:
    """A SECTION record.

    Attributes:
        name: the section name.
        optional: the section's optional flag on the wire.
        fields: the validated, normalised fields (staged, not yet applied);
            for a skipped section, the fields as decoded, unvalidated.
        skipped: an optional section this reader does not know (or that is
            not active in its configuration): read, checked, then ignored.
    """

    name: str
    optional: bool
    fields: Mapping[str, Any]
    skipped: bool = False


@dataclass(frozen=True, slots=True)
class Trailer:
    """The TRAILER record verified: the stream is complete and intact.

    Attributes:
        digest: the xxh3-128 of the stream's framing before the trailer (16 bytes).
    """

    digest: bytes


Event = Header | Bulk | Discarded | Zero | RoundEnd | Section | Trailer
"""Any decoder event."""

NextEvent = Event | Literal[NeedData.NEED_DATA]
