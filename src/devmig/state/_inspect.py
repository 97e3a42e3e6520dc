"""Inspecting a saved stream without the destination's declaration (``devmig inspect``).

:func:`inspect_stream` walks a whole stream held in memory: it checks the
framing, the record order and every record digest, decodes HEADER and the
SECTIONs (field names, not their meaning), merges the bulk ranges written per
region, and gives the TRAILER digest's verdict. A ``LIVE`` BULK with a wrong
digest is discarded as a destination discards it — counted, and its range
removed from the coverage — every other wrong digest is refused. Region sizes
are unknown here, so coverage is reported as merged intervals, not as
complete or not, and the discard limit (twice a region's size) is not judged.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Final

import xxhash

from devmig._errors import StreamError
from devmig.state._coverage import IntervalSet
from devmig.state._payloads import parse_header, parse_section
from devmig.state._problems import ConfigValue
from devmig.state._records import (
    BULK_HEAD,
    DIGEST,
    FLAG_LIVE,
    FLAG_SKIPPABLE,
    KNOWN_FLAGS,
    MAGIC,
    ORDER,
    PREAMBLE,
    PREAMBLE_SIZE,
    RECORD_HEAD,
    ROUND_END_PAYLOAD,
    TRAILER_PAYLOAD_SIZE,
    VERSION_MAJOR,
    ZERO_PAYLOAD,
    Codec,
    FramingHash,
    Phase,
    RecordType,
    decompress_chunk,
    expected_types,
)

__all__ = ["RegionSummary", "SectionSummary", "StreamSummary", "inspect_stream"]

DEFAULT_INSPECT_MAX_CHUNK: Final = 256 << 20


@dataclass(frozen=True)
class RegionSummary:
    """What a stream wrote to one region.

    Attributes:
        region: the region index.
        bulk_records, zero_records: record counts.
        bulk_bytes, zero_bytes: raw bytes carried (overlaps counted each time).
        compressed_records: BULK records with zstd data.
        covered: merged ``(start, end)`` byte ranges written (discarded ranges removed).
        live_records: BULK records flagged ``LIVE``, discarded ones included.
        discarded_records, discarded_bytes: ``LIVE`` records with a wrong
            digest, and their raw lengths.
    """

    region: int
    bulk_records: int
    zero_records: int
    bulk_bytes: int
    zero_bytes: int
    compressed_records: int
    covered: tuple[tuple[int, int], ...]
    live_records: int = 0
    discarded_records: int = 0
    discarded_bytes: int = 0

    @property
    def covered_bytes(self) -> int:
        """Distinct bytes written."""
        return sum(end - start for start, end in self.covered)

    @property
    def extent(self) -> int:
        """One past the highest byte written (a lower bound of the region size)."""
        return self.covered[-1][1] if self.covered else 0


@dataclass(frozen=True)
class SectionSummary:
    """One SECTION record: its name, optional flag, field names and size."""

    name: str
    optional: bool
    fields: tuple[str, ...]
    size: int
    record: int


@dataclass(frozen=True)
class StreamSummary:
    """What :func:`inspect_stream` found.

    Attributes:
        major, minor: the format version.
        model, config, producer: from HEADER.
        size: stream bytes.
        records: record count; ``record_counts`` per type name.
        rounds: ROUND_END records (pre-copy rounds).
        regions: per region written, by index.
        sections: every SECTION in stream order.
        trailer_present: whether a TRAILER ends the stream.
        digest_ok: the TRAILER's verdict (``None`` without a trailer).
        digest: the digest of the stream's framing computed here (hex).
        skipped_records: skippable records of unknown type.
    """

    major: int
    minor: int
    model: str
    config: dict[str, ConfigValue]
    producer: dict[str, Any]
    size: int
    records: int
    record_counts: dict[str, int]
    rounds: int
    regions: tuple[RegionSummary, ...]
    sections: tuple[SectionSummary, ...]
    trailer_present: bool
    digest_ok: bool | None
    digest: str
    skipped_records: int = 0
    notes: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        """Return the summary as JSON-able data (``devmig inspect --json``)."""
        return {
            "format": f"{self.major}.{self.minor}",
            "model": self.model,
            "config": dict(self.config),
            "producer": _jsonable(self.producer),
            "size": self.size,
            "records": self.records,
            "record_counts": dict(self.record_counts),
            "rounds": self.rounds,
            "regions": [
                {
                    "region": r.region,
                    "bulk_records": r.bulk_records,
                    "zero_records": r.zero_records,
                    "bulk_bytes": r.bulk_bytes,
                    "zero_bytes": r.zero_bytes,
                    "compressed_records": r.compressed_records,
                    "live_records": r.live_records,
                    "discarded_records": r.discarded_records,
                    "discarded_bytes": r.discarded_bytes,
                    "covered_bytes": r.covered_bytes,
                    "extent": r.extent,
                    "covered": [list(c) for c in r.covered],
                }
                for r in self.regions
            ],
            "sections": [
                {"name": s.name, "optional": s.optional, "fields": list(s.fields), "size": s.size}
                for s in self.sections
            ],
            "trailer": self.trailer_present,
            "digest_ok": self.digest_ok,
            "digest": self.digest,
            "skipped_records": self.skipped_records,
        }


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, bytes):
        return value.hex()
    return value


class _RegionStats:
    def __init__(self) -> None:
        self.bulk_records = 0
        self.zero_records = 0
        self.bulk_bytes = 0
        self.zero_bytes = 0
        self.compressed = 0
        self.live = 0
        self.discarded = 0
        self.discarded_bytes = 0
        self.covered = IntervalSet()


def inspect_stream(
    data: bytes | bytearray | memoryview, *, max_chunk: int = DEFAULT_INSPECT_MAX_CHUNK
) -> StreamSummary:
    """Decode a saved stream without a destination declaration.

    Args:
        data: the whole stream.
        max_chunk: the largest BULK raw length to decompress.

    Returns:
        A :class:`StreamSummary`; a wrong TRAILER digest is reported as
        ``digest_ok=False``, not raised.

    Raises:
        StreamError: ``BAD_MAGIC``, ``VERSION_UNSUPPORTED``, ``TRUNCATED``,
            ``RECORD_CORRUPT``, ``RECORD_UNKNOWN``, ``STREAM_ORDER``,
            ``TOO_LARGE`` — the stream cannot be walked.
    """
    view = memoryview(data).cast("B")
    if len(view) < PREAMBLE_SIZE or bytes(view[:4]) != MAGIC:
        if not MAGIC.startswith(bytes(view[:4])) or len(view) >= 4:
            raise StreamError("BAD_MAGIC", "not a devmig stream", offset=0, value=bytes(view[:4]))
        raise StreamError("TRUNCATED", "stream shorter than its preamble", offset=len(view))
    _, major, minor = PREAMBLE.unpack(view[:PREAMBLE_SIZE])
    if major != VERSION_MAJOR:
        raise StreamError(
            "VERSION_UNSUPPORTED",
            f"stream format {major}.{minor}; this reader reads major {VERSION_MAJOR} only",
            offset=4,
            value=major,
            allowed=VERSION_MAJOR,
        )
    trailer_hash = FramingHash()
    trailer_hash.update(view[:PREAMBLE_SIZE])
    pos = PREAMBLE_SIZE
    phase = Phase.HEADER
    index = -1
    rounds = 0
    counts: Counter[str] = Counter()
    regions: dict[int, _RegionStats] = {}
    sections: list[SectionSummary] = []
    header: tuple[str, dict[str, ConfigValue], dict[str, Any]] | None = None
    trailer_ok: bool | None = None
    skipped = 0
    while pos < len(view):
        index += 1
        start = pos
        if phase is Phase.DONE:
            raise StreamError("STREAM_ORDER", "data after the TRAILER", record=index, offset=start)
        if len(view) - pos < RECORD_HEAD.size:
            raise StreamError(
                "TRUNCATED", "stream ends inside a record head", record=index, offset=start
            )
        rtype, flags, length = RECORD_HEAD.unpack(view[pos : pos + RECORD_HEAD.size])
        if flags & ~KNOWN_FLAGS:
            raise StreamError(
                "RECORD_CORRUPT", "reserved flag bits set", record=index, offset=start, value=flags
            )
        end = pos + RECORD_HEAD.size + length + DIGEST.size
        if end > len(view):
            raise StreamError(
                "TRUNCATED", "stream ends inside a record", record=index, offset=start, value=length
            )
        body = view[pos + RECORD_HEAD.size : end - DIGEST.size]
        digest = view[end - DIGEST.size : end]
        intact = xxhash.xxh3_64_intdigest(body) == DIGEST.unpack(digest)[0]
        live = rtype == RecordType.BULK and flags == FLAG_LIVE
        if not intact and not live:
            raise StreamError(
                "RECORD_CORRUPT", "record digest mismatch", record=index, offset=start
            )
        if flags & FLAG_LIVE and not live:
            raise StreamError(
                "RECORD_CORRUPT", "only a BULK can be LIVE", record=index, offset=start
            )
        try:
            known: RecordType | None = RecordType(rtype)
        except ValueError:
            known = None
        if known is None:
            if not flags & FLAG_SKIPPABLE or phase not in (Phase.BULK, Phase.SECTIONS):
                raise StreamError(
                    "RECORD_UNKNOWN", f"unknown record type {rtype}", record=index, offset=start
                )
            skipped += 1
            trailer_hash.update(view[start : start + RECORD_HEAD.size])
            trailer_hash.update(digest)
            pos = end
            continue
        if flags & FLAG_SKIPPABLE:
            raise StreamError(
                "RECORD_CORRUPT", f"{known.name} cannot be skippable", record=index, offset=start
            )
        nxt = ORDER[phase].get(known)
        if nxt is None:
            raise StreamError(
                "STREAM_ORDER",
                f"{known.name} is not allowed in phase {phase.value}",
                record=index,
                offset=start,
                allowed=expected_types(phase),
            )
        counts[known.name] += 1
        if known is RecordType.TRAILER:
            if length != TRAILER_PAYLOAD_SIZE:
                raise StreamError(
                    "RECORD_CORRUPT", "TRAILER length must be 16", record=index, offset=start
                )
            trailer_ok = bytes(body) == trailer_hash.digest()
        else:
            bulk_fields = BULK_HEAD.size if known is RecordType.BULK else 0
            trailer_hash.update(view[start : start + RECORD_HEAD.size + min(bulk_fields, length)])
            trailer_hash.update(digest)
        if known is RecordType.HEADER:
            header = parse_header(body, record=index)
        elif known is RecordType.SECTION:
            name, optional, fields = parse_section(body, record=index)
            sections.append(SectionSummary(name, optional, tuple(map(str, fields)), length, index))
        elif known is RecordType.ROUND_END:
            if length != ROUND_END_PAYLOAD.size:
                raise StreamError(
                    "RECORD_CORRUPT", "ROUND_END length must be 4", record=index, offset=start
                )
            rounds += 1
        elif known is RecordType.ZERO:
            if length != ZERO_PAYLOAD.size:
                raise StreamError(
                    "RECORD_CORRUPT", "ZERO length must be 20", record=index, offset=start
                )
            region, offset, size = ZERO_PAYLOAD.unpack(body)
            stats = regions.setdefault(region, _RegionStats())
            stats.zero_records += 1
            stats.zero_bytes += size
            stats.covered.add(offset, offset + size)
        elif known is RecordType.BULK:
            _inspect_bulk(body, index, start, max_chunk, regions, live=live, intact=intact)
        phase = nxt
        pos = end
    if header is None:
        raise StreamError("TRUNCATED", "stream has no HEADER", record=0, offset=pos)
    model, config, producer = header
    return StreamSummary(
        major=major,
        minor=minor,
        model=model,
        config=config,
        producer=producer,
        size=len(view),
        records=index + 1,
        record_counts=dict(counts),
        rounds=rounds,
        regions=tuple(
            RegionSummary(
                i,
                s.bulk_records,
                s.zero_records,
                s.bulk_bytes,
                s.zero_bytes,
                s.compressed,
                tuple(s.covered.intervals()),
                s.live,
                s.discarded,
                s.discarded_bytes,
            )
            for i, s in sorted(regions.items())
        ),
        sections=tuple(sections),
        trailer_present=trailer_ok is not None,
        digest_ok=trailer_ok,
        digest=trailer_hash.hexdigest(),
        skipped_records=skipped,
    )


def _inspect_bulk(
    body: memoryview,
    index: int,
    start: int,
    max_chunk: int,
    regions: dict[int, _RegionStats],
    *,
    live: bool,
    intact: bool,
) -> None:
    if len(body) < BULK_HEAD.size:
        raise StreamError(
            "RECORD_CORRUPT", "BULK shorter than its fields", record=index, offset=start
        )
    region, offset, raw, codec = BULK_HEAD.unpack(body[: BULK_HEAD.size])
    payload = body[BULK_HEAD.size :]
    if live and codec != Codec.RAW:
        raise StreamError(
            "RECORD_CORRUPT", "a LIVE BULK must be raw", record=index, region=region, offset=offset
        )
    stats = regions.setdefault(region, _RegionStats())
    if codec == Codec.RAW and len(payload) != raw:
        raise StreamError(
            "RECORD_CORRUPT", "raw BULK length mismatch", record=index, region=region, offset=offset
        )
    stats.live += live
    if not intact:  # a LIVE record torn at the source: discarded, its range uncovered
        stats.discarded += 1
        stats.discarded_bytes += raw
        stats.covered.remove(offset, offset + raw)
        return
    if codec == Codec.ZSTD:
        if raw > max_chunk:
            raise StreamError(
                "TOO_LARGE",
                "BULK chunk too large",
                record=index,
                region=region,
                value=raw,
                allowed=max_chunk,
            )
        decompress_chunk(payload, raw, record=index, region=region, offset=offset)
        stats.compressed += 1
    elif codec != Codec.RAW:
        raise StreamError(
            "RECORD_UNKNOWN", f"unknown BULK codec {codec}", record=index, region=region
        )
    stats.bulk_records += 1
    stats.bulk_bytes += raw
    stats.covered.add(offset, offset + raw)
