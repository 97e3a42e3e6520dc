"""Shared fixtures for the state tests: a small NIC-like declaration and stream helpers."""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import xxhash

from devmig.state import (
    NEED_DATA,
    ROUND_END,
    Event,
    FieldSpec,
    PrecopySource,
    Region,
    RegionSpec,
    SectionSpec,
    StateDeclaration,
    StateLayout,
    StreamDecoder,
    StreamEncoder,
)
from devmig.state._records import (
    BULK_HEAD,
    DIGEST,
    MAGIC,
    PREAMBLE,
    RECORD_HEAD,
    VERSION_MAJOR,
    VERSION_MINOR,
    RecordType,
    encode_cbor,
    encode_record,
)

MODEL = "example.org/devices/nic"

SECTIONS_DECL = [
    SectionSpec(
        "regs",
        [
            FieldSpec("ctrl", "u8"),
            FieldSpec("status", "u16"),
            FieldSpec("head", "u32"),
            FieldSpec("counter", "u64"),
            FieldSpec("delta", "i64"),
            FieldSpec("link", "bool"),
            FieldSpec("name", "str", max=16),
            FieldSpec("mac", "bytes", max=6),
        ],
    ),
    SectionSpec(
        "rss",
        [FieldSpec("key", "bytes", max=40), FieldSpec("table", "u32[]", max="rx-table-size")],
        when={"rss": True},
    ),
    SectionSpec(
        "queues",
        [FieldSpec("heads", "u16[]", max=lambda c: int(c["rx-queues"]))],
    ),
]
OPTIONAL_STATS = SectionSpec("stats", [FieldSpec("rx_packets", "u64")], optional=True)

REGIONS_DECL = [
    RegionSpec("mem", 5 * 4096 + 100),
    RegionSpec("ring", lambda c: 4096 * int(c["rx-queues"])),
]

DECL = StateDeclaration(sections=SECTIONS_DECL, regions=REGIONS_DECL)
"""Release N: no optional section."""
DECL_WITH_STATS = StateDeclaration(sections=[*SECTIONS_DECL, OPTIONAL_STATS], regions=REGIONS_DECL)
"""Release N+1: adds an optional ``stats`` section."""

FULL = {"rss": True, "rx-queues": 4, "rx-table-size": 8, "link-speed": "1G"}
CANON = {"rss": True, "rx-queues": 4, "rx-table-size": 8}
FULL_OFF = {"rss": False, "rx-queues": 1, "rx-table-size": 0, "link-speed": "1G"}
CANON_OFF: dict[str, bool | int | str] = {}


def sections_for(layout: StateLayout, *, stats: bool = False) -> dict[str, dict[str, Any]]:
    """Return valid section values for ``layout``."""
    out: dict[str, dict[str, Any]] = {
        "regs": {
            "ctrl": 0xAB,
            "status": 0x1234,
            "head": 77,
            "counter": (1 << 64) - 1,
            "delta": -(1 << 63),
            "link": True,
            "name": "eth0-é",
            "mac": b"\x02\x00\x00\x00\x00\x01",
        },
        "queues": {"heads": list(range(int(layout.config["rx-queues"])))},
    }
    if layout.section("rss") is not None:
        out["rss"] = {
            "key": bytes(range(40)),
            "table": list(range(int(layout.config["rx-table-size"]))),
        }
    if stats and layout.section("stats") is not None:
        out["stats"] = {"rx_packets": 123456}
    return out


def make_regions(layout: StateLayout, seed: int = 1, *, zero_pages: bool = True) -> list[Region]:
    """Regions with seeded random contents; some pages left zero."""
    rng = np.random.default_rng(seed)
    regions = [Region.for_layout(r) for r in layout.regions]
    for region in regions:
        region.data[:] = rng.integers(0, 256, region.size, dtype=np.uint8)
        if zero_pages and region.size > 8192:
            region.data[4096:8192] = 0
    return regions


def blank_regions(layout: StateLayout) -> list[Region]:
    """Fresh destination regions, as created (a recognisable fill)."""
    return [Region.for_layout(r, fill=lambda a: a.fill(0x5A)) for r in layout.regions]


def encode_stream(
    layout: StateLayout,
    regions: Sequence[Region],
    sections: Mapping[str, Mapping[str, Any]],
    *,
    config: Mapping[str, bool | int | str] = CANON,
    compress: bool = False,
    chunk_size: int = 8192,
    rounds: int = 2,
    seed: int = 0,
    budget: int = 10_000,
) -> bytes:
    """Encode a full stream with pre-copy rounds, dirtying a few pages between calls."""
    rng = random.Random(seed)
    encoder = StreamEncoder(
        MODEL, config, layout, {"implementation": "test"}, compress=compress, chunk_size=chunk_size
    )
    out: list[bytes] = [encoder.header()]
    source = PrecopySource(regions, encoder)
    done_rounds = 0
    while done_rounds < rounds:
        records = source.next_records(budget)
        if records is ROUND_END:
            done_rounds += 1
            continue
        out += [bytes(b) for b in records]
        for _ in range(rng.randrange(1, 3)):
            region = rng.choice(list(regions))
            if region.size:
                offset = rng.randrange(region.size)
                data = rng.randbytes(min(rng.randrange(1, 300), region.size - offset))
                region.write(offset, data)
    while records := source.next_records(budget, stopped=True):
        assert isinstance(records, list)
        out += [bytes(b) for b in records]
    out.append(source.finish(sections))
    return b"".join(out)


def decode_all(
    decoder: StreamDecoder, data: bytes, *, splits: Iterable[int] | None = None
) -> list[Event]:
    """Feed ``data`` (optionally in pieces) with ``receive_data``; return every event."""
    events: list[Event] = []
    pieces = [data] if splits is None else _split(data, splits)
    for piece in pieces:
        decoder.receive_data(piece)
        _take_events(decoder, events)
    decoder.end_of_input()
    _take_events(decoder, events)
    return events


RECEIVE_SIZES = (1, 2, 3, 7, 8, 23, 100, 4096, 1 << 20)
"""The receive sizes :func:`decode_zero_copy` picks from (each at most what the buffer offers)."""


def decode_zero_copy(
    decoder: StreamDecoder,
    data: bytes,
    rng: random.Random | None = None,
    *,
    sizes: Sequence[int] = RECEIVE_SIZES,
) -> list[Event]:
    """Feed ``data`` through ``get_buffer``/``buffer_updated``; return every event.

    Without ``rng`` each receive fills the buffer the decoder offers; with it, each receive is at
    most a size ``rng`` picks from ``sizes``.
    """
    events: list[Event] = []
    view = memoryview(data)
    pos = 0
    while pos < len(view):
        target = decoder.get_buffer(-1)
        n = min(len(target), len(view) - pos)
        if rng is not None:
            n = min(n, rng.choice(sizes))
        target[:n] = view[pos : pos + n]
        decoder.buffer_updated(n)
        pos += n
        _take_events(decoder, events)
    decoder.end_of_input()
    _take_events(decoder, events)
    return events


def decode(decoder: StreamDecoder, data: bytes, *, zero_copy: bool) -> list[Event]:
    """:func:`decode_zero_copy` (the transport's path) or :func:`decode_all` (``receive_data``), whole."""
    return decode_zero_copy(decoder, data) if zero_copy else decode_all(decoder, data)


def _take_events(decoder: StreamDecoder, events: list[Event]) -> None:
    """Append the decoder's events to ``events`` until it needs data."""
    while (event := decoder.next_event()) is not NEED_DATA:
        events.append(event)


def _split(data: bytes, splits: Iterable[int]) -> list[bytes]:
    out = []
    pos = 0
    for size in splits:
        if pos >= len(data):
            break
        out.append(data[pos : pos + max(1, size)])
        pos += max(1, size)
    if pos < len(data):
        out.append(data[pos:])
    return out


def decoder_for(
    layout: StateLayout,
    regions: Sequence[Region],
    *,
    config: Mapping[str, bool | int | str] = CANON,
    model: str = MODEL,
    **limits: int,
) -> StreamDecoder:
    return StreamDecoder(model, config, layout, regions, **limits)


# -- crafting raw streams -------------------------------------------------------


def preamble(major: int = VERSION_MAJOR, minor: int = VERSION_MINOR, magic: bytes = MAGIC) -> bytes:
    return PREAMBLE.pack(magic, major, minor)


def header_record(model: str = MODEL, config: Mapping[str, Any] = CANON, **extra: Any) -> bytes:
    return encode_record(
        RecordType.HEADER,
        encode_cbor({"model": model, "config": dict(config), "producer": {}, **extra}),
    )


def bulk_record(
    region: int,
    offset: int,
    data: bytes,
    *,
    codec: int = 0,
    raw: int | None = None,
    flags: int = 0,
) -> bytes:
    head = BULK_HEAD.pack(region, offset, len(data) if raw is None else raw, codec)
    return encode_record(RecordType.BULK, head + data, flags=flags)


def section_record(name: str, fields: Mapping[str, Any], *, optional: bool = False) -> bytes:
    return encode_record(
        RecordType.SECTION,
        encode_cbor({"name": name, "optional": optional, "fields": dict(fields)}),
    )


def framing_digest(stream: bytes) -> bytes:
    """The TRAILER's digest of ``stream`` (DESIGN §4), computed here independently of the codec.

    xxh3-128 over the 8 bytes of magic and version, then per record its 6-byte head, a BULK's
    17 bytes of BULK fields, and its 8-byte digest.
    """
    hasher = xxhash.xxh3_128(stream[: PREAMBLE.size])
    pos = PREAMBLE.size
    while pos < len(stream):
        rtype, _, length = RECORD_HEAD.unpack_from(stream, pos)
        fields = BULK_HEAD.size if rtype == RecordType.BULK else 0
        end = pos + RECORD_HEAD.size + length + DIGEST.size
        hasher.update(stream[pos : pos + RECORD_HEAD.size + fields])
        hasher.update(stream[end - DIGEST.size : end])
        pos = end
    return hasher.digest()


def trailer_record(stream_so_far: bytes) -> bytes:
    return encode_record(RecordType.TRAILER, framing_digest(stream_so_far))


def craft(*records: bytes, trailer: bool = True, start: bytes | None = None) -> bytes:
    """Preamble + records (+ a TRAILER with the right digest)."""
    body = (preamble() if start is None else start) + b"".join(records)
    return body + trailer_record(body) if trailer else body


def full_bulk_records(regions: Sequence[Region]) -> list[bytes]:
    """One raw BULK record per region with its whole contents."""
    return [bulk_record(i, 0, r.data.tobytes()) for i, r in enumerate(regions)]


def section_records(layout: StateLayout, sections: Mapping[str, Mapping[str, Any]]) -> list[bytes]:
    out = []
    for spec in layout.sections:
        if spec.name in sections:
            fields = layout.validate_section(spec.name, sections[spec.name])
            out.append(section_record(spec.name, fields, optional=spec.optional))
    return out


class StreamParts(NamedTuple):
    """The pieces of a hand-built stream of the FULL layout, for tests that splice records."""

    layout: StateLayout
    src: list[Region]
    sections: dict[str, dict[str, Any]]
    header: bytes
    bulk: list[bytes]
    """One raw BULK record per region, with its whole contents."""
    section_records: list[bytes]
    """Every section present, in declaration order."""


def stream_parts(seed: int) -> StreamParts:
    """The FULL layout with seeded region contents, and its HEADER, BULK and SECTION records."""
    layout = DECL.layout(FULL)
    src = make_regions(layout, seed=seed)
    sections = sections_for(layout)
    return StreamParts(
        layout,
        src,
        sections,
        header_record(),
        full_bulk_records(src),
        section_records(layout, sections),
    )
