"""Size limits of a decoder, judged from a record's 6-byte head and its BULK fields.

Nothing is buffered before these checks pass, so a hostile length (up to
``0xFFFFFFFF``) costs nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, NoReturn

from devmig.state._declaration import StateLayout
from devmig.state._records import (
    BULK_HEAD,
    ROUND_END_PAYLOAD,
    TRAILER_PAYLOAD_SIZE,
    ZERO_PAYLOAD,
    Codec,
    RecordType,
    zstd_bound,
)

__all__ = ["DEFAULT_MAX_CHUNK", "DEFAULT_MAX_SECTION", "Limits"]

DEFAULT_MAX_CHUNK: Final = 16 << 20
DEFAULT_MAX_SECTION: Final = 1 << 20

_FIXED_LENGTH: Final[Mapping[RecordType, int]] = {
    RecordType.ZERO: ZERO_PAYLOAD.size,
    RecordType.ROUND_END: ROUND_END_PAYLOAD.size,
    RecordType.TRAILER: TRAILER_PAYLOAD_SIZE,
}

Fail = Callable[..., NoReturn]


@dataclass(frozen=True, slots=True)
class Limits:
    """The largest record payload, HEADER/SECTION payload and BULK raw length accepted."""

    max_record: int
    max_section: int
    max_chunk: int

    @classmethod
    def for_layout(
        cls,
        layout: StateLayout,
        *,
        max_record: int | None = None,
        max_section: int | None = None,
        max_chunk: int = DEFAULT_MAX_CHUNK,
    ) -> Limits:
        """Fill the defaults: sections at least 1 MiB (more if the layout needs it),
        records as large as a ``max_chunk`` BULK may need."""
        section = (
            max_section
            if max_section is not None
            else max(DEFAULT_MAX_SECTION, layout.max_section_size)
        )
        bulk = BULK_HEAD.size + zstd_bound(max_chunk)
        record = max_record if max_record is not None else max(bulk, section)
        return cls(record, section, max_chunk)

    def check_length(
        self, rtype: RecordType | None, length: int, *, fail: Fail, offset: int
    ) -> None:
        """Judge a record head: ``TOO_LARGE`` or ``RECORD_CORRUPT`` through ``fail``."""
        if length > self.max_record:
            fail(
                "TOO_LARGE",
                "record longer than allowed",
                offset=offset,
                value=length,
                allowed=self.max_record,
            )
        if rtype is None:
            return
        fixed = _FIXED_LENGTH.get(rtype)
        if fixed is not None and length != fixed:
            fail(
                "RECORD_CORRUPT",
                f"{rtype.name} length must be {fixed}",
                offset=offset,
                value=length,
                allowed=fixed,
            )
        if rtype in (RecordType.HEADER, RecordType.SECTION) and length > self.max_section:
            fail(
                "TOO_LARGE",
                f"{rtype.name} longer than allowed",
                offset=offset,
                value=length,
                allowed=self.max_section,
            )
        if rtype is RecordType.BULK:
            if length < BULK_HEAD.size:
                fail("RECORD_CORRUPT", "BULK shorter than its fields", offset=offset, value=length)
            largest = BULK_HEAD.size + zstd_bound(self.max_chunk)
            if length > largest:
                fail(
                    "TOO_LARGE",
                    "BULK longer than the chunk limit allows",
                    offset=offset,
                    value=length,
                    allowed=largest,
                )

    def check_bulk(
        self, raw_length: int, data_length: int, codec: int, *, fail: Fail, **where: Any
    ) -> int:
        """Judge BULK fields (before any data is read); return the data length to expect."""
        if raw_length > self.max_chunk:
            fail(
                "TOO_LARGE",
                "BULK chunk larger than allowed",
                value=raw_length,
                allowed=self.max_chunk,
                **where,
            )
        if codec == Codec.RAW:
            if data_length != raw_length:
                fail(
                    "RECORD_CORRUPT",
                    "raw BULK data length differs from its stated length",
                    value=data_length,
                    allowed=raw_length,
                    **where,
                )
        elif codec == Codec.ZSTD:
            if data_length > zstd_bound(raw_length):
                fail(
                    "RECORD_CORRUPT",
                    "zstd BULK data larger than zstd could produce for its raw length",
                    value=data_length,
                    allowed=zstd_bound(raw_length),
                    **where,
                )
        else:
            fail("RECORD_UNKNOWN", f"unknown BULK codec {codec}", value=codec, **where)
        return data_length
