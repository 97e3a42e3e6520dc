"""Every refusal of the decoder, with crafted streams; recovery after each failure."""

from __future__ import annotations

import datetime
import tracemalloc
from collections.abc import Callable
from typing import Any

import cbor2
import pytest
import zstandard
from state_helpers import (
    CANON,
    CANON_OFF,
    DECL,
    FULL,
    FULL_OFF,
    MODEL,
    OPTIONAL_STATS,
    REGIONS_DECL,
    SECTIONS_DECL,
    blank_regions,
    bulk_record,
    craft,
    decode_all,
    decode_zero_copy,
    decoder_for,
    encode_stream,
    header_record,
    make_regions,
    preamble,
    section_record,
    sections_for,
    stream_parts,
    trailer_record,
)

from devmig import DevmigError, StreamError
from devmig.state import NEED_DATA, Header, StateDeclaration, StreamDecoder, state_digest
from devmig.state._records import (
    BULK_HEAD,
    RECORD_HEAD,
    ROUND_END_PAYLOAD,
    ZERO_PAYLOAD,
    RecordType,
    encode_cbor,
    encode_record,
)

LAYOUT, SRC, SECTIONS, H, B, S = stream_parts(seed=42)
REGS, RSS, QUEUES = S
VALID = craft(H, *B, *S)
REGS_FIELDS = LAYOUT.validate_section("regs", SECTIONS["regs"])
assert len(REGS) > len(H)
DECL_STATS_SECOND = StateDeclaration(
    sections=[SECTIONS_DECL[0], OPTIONAL_STATS, *SECTIONS_DECL[1:]], regions=REGIONS_DECL
)


def _with_digest_fixed(record: bytes) -> bytes:
    """Re-frame a record whose payload was edited so its record digest is right again."""
    rtype, flags, _ = RECORD_HEAD.unpack(record[:6])
    return encode_record(rtype, record[6:-8], flags=flags)


def _flip(data: bytes, index: int, bit: int = 0) -> bytes:
    out = bytearray(data)
    out[index] ^= 1 << bit
    return bytes(out)


def _zstd(data: bytes, **kw: Any) -> bytes:
    return zstandard.ZstdCompressor(**kw).compress(data)


def _regs(**changes: Any) -> dict[str, Any]:
    return {**REGS_FIELDS, **changes}


def _bulk_zstd(region: int, offset: int, raw: int, frame: bytes) -> bytes:
    return encode_record(RecordType.BULK, BULK_HEAD.pack(region, offset, raw, 1) + frame)


MEM = LAYOUT.regions[0].size
RING = LAYOUT.regions[1].size
MEM_BYTES = SRC[0].data.tobytes()

# id -> (stream, expected code, expected attributes, decoder options)
Case = tuple[bytes, str, dict[str, Any], dict[str, Any]]
CASES: dict[str, Case] = {
    # framing
    "bad-magic": (craft(H, *B, *S, start=preamble(magic=b"QEVM")), "BAD_MAGIC", {"offset": 0}, {}),
    "bad-magic-early": (b"DVX", "BAD_MAGIC", {"offset": 0}, {}),
    "major-1": (craft(H, *B, *S, start=preamble(major=1)), "VERSION_UNSUPPORTED", {}, {}),
    "major-3": (craft(H, *B, *S, start=preamble(major=3)), "VERSION_UNSUPPORTED", {}, {}),
    "major-0": (craft(H, *B, *S, start=preamble(major=0)), "VERSION_UNSUPPORTED", {}, {}),
    "unknown-type": (
        craft(H, encode_record(99, b"x"), *B, *S),
        "RECORD_UNKNOWN",
        {"record": 1},
        {},
    ),
    "unknown-type-before-header": (
        craft(encode_record(99, b"x", flags=0x80), H),
        "RECORD_UNKNOWN",
        {"record": 0},
        {},
    ),
    "unknown-codec": (
        craft(H, encode_record(RecordType.BULK, BULK_HEAD.pack(0, 0, 4, 7) + b"abcd"), *B, *S),
        "RECORD_UNKNOWN",
        {"record": 1, "region": 0},
        {},
    ),
    "reserved-flags": (
        craft(H, encode_record(RecordType.ZERO, ZERO_PAYLOAD.pack(0, 0, 1), flags=2)),
        "RECORD_CORRUPT",
        {"record": 1},
        {},
    ),
    "live-flag-on-zero": (
        craft(H, encode_record(RecordType.ZERO, ZERO_PAYLOAD.pack(0, 0, 1), flags=1)),
        "RECORD_CORRUPT",
        {"record": 1},
        {},
    ),
    "live-flag-on-section": (
        craft(H, *B, encode_record(RecordType.SECTION, REGS[6:-8], flags=1)),
        "RECORD_CORRUPT",
        {"record": 3},
        {},
    ),
    # order
    "bulk-before-header": (craft(B[0], H), "STREAM_ORDER", {"record": 0}, {}),
    "trailer-first": (craft(), "STREAM_ORDER", {"record": 0}, {}),
    "header-twice": (craft(H, H, *B, *S), "STREAM_ORDER", {"record": 1}, {}),
    "bulk-after-section": (
        craft(H, *B, REGS, B[0], RSS, QUEUES),
        "STREAM_ORDER",
        {"record": 4},
        {},
    ),
    "round-end-wrong-number": (
        craft(H, encode_record(RecordType.ROUND_END, ROUND_END_PAYLOAD.pack(3)), *B, *S),
        "STREAM_ORDER",
        {"record": 1, "round": 0},
        {},
    ),
    "sections-skip-required": (
        craft(H, *B, REGS, QUEUES, RSS),
        "SECTION_MISSING",
        {"section": "rss"},
        {},
    ),
    "sections-out-of-order": (
        craft(H, *B, *S, section_record("stats", {"rx_packets": 1}, optional=True)),
        "STREAM_ORDER",
        {"section": "stats", "record": 6},
        {"decl": DECL_STATS_SECOND},
    ),
    "data-after-trailer": (craft(H, *B, *S) + H, "STREAM_ORDER", {"record": 7}, {}),
    # configuration
    "model-mismatch": (
        craft(header_record(model="example.org/devices/blk"), *B, *S),
        "CONFIG_MISMATCH",
        {"record": 0},
        {},
    ),
    "bool-vs-int": (
        craft(header_record(config={**CANON, "rss": 1}), *B, *S),
        "CONFIG_MISMATCH",
        {"record": 0},
        {},
    ),
    "int-vs-str": (
        craft(header_record(config={**CANON, "rx-queues": "4"}), *B, *S),
        "CONFIG_MISMATCH",
        {"record": 0},
        {},
    ),
    "param-missing": (
        craft(header_record(config={"rss": True, "rx-queues": 4}), *B, *S),
        "CONFIG_MISMATCH",
        {"record": 0},
        {},
    ),
    "param-extra": (
        craft(header_record(config={**CANON, "link-speed": "25G"}), *B, *S),
        "CONFIG_MISMATCH",
        {"record": 0},
        {},
    ),
    "mismatch-then-garbage": (
        preamble() + header_record(config=CANON_OFF) + b"\xff" * 64,
        "CONFIG_MISMATCH",
        {"record": 0},
        {},
    ),
    # corruption
    "header-bit-flip": (craft(_flip(H, 20), *B, *S), "RECORD_CORRUPT", {"record": 0}, {}),
    "bulk-bit-flip": (
        craft(H, _flip(B[0], 5000), B[1], *S),
        "RECORD_CORRUPT",
        {"record": 1, "region": 0, "offset": 0},
        {},
    ),
    "bulk-digest-bit-flip": (
        craft(H, _flip(B[0], len(B[0]) - 1), B[1], *S),
        "RECORD_CORRUPT",
        {"record": 1},
        {},
    ),
    "section-bit-flip": (
        craft(H, *B, _flip(REGS, 12), RSS, QUEUES),
        "RECORD_CORRUPT",
        {"record": 3},
        {},
    ),
    "trailer-bit-flip": (_flip(VALID, len(VALID) - 12), "RECORD_CORRUPT", {"record": 6}, {}),
    "zero-wrong-length": (
        craft(H, encode_record(RecordType.ZERO, b"\x00" * 21)),
        "RECORD_CORRUPT",
        {"record": 1},
        {},
    ),
    "raw-bulk-length-mismatch": (
        craft(H, bulk_record(0, 0, b"abc", raw=4)),
        "RECORD_CORRUPT",
        {"record": 1},
        {},
    ),
    "header-not-cbor": (
        craft(encode_record(RecordType.HEADER, b"\xff\xfe")),
        "RECORD_CORRUPT",
        {"record": 0},
        {},
    ),
    "header-not-a-map": (
        craft(encode_record(RecordType.HEADER, encode_cbor([1, 2]))),
        "RECORD_CORRUPT",
        {"record": 0},
        {},
    ),
    "header-trailing-bytes": (
        craft(
            encode_record(
                RecordType.HEADER, encode_cbor({"model": MODEL, "config": CANON}) + b"\x00"
            )
        ),
        "RECORD_CORRUPT",
        {"record": 0},
        {},
    ),
    "section-with-cbor-tag": (
        craft(
            H,
            *B,
            encode_record(
                RecordType.SECTION,
                cbor2.dumps(
                    {
                        "name": "regs",
                        "optional": False,
                        "fields": {"t": datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)},
                    }
                ),
            ),
        ),
        "RECORD_CORRUPT",
        {"record": 3},
        {},
    ),
    "section-fields-not-map": (
        craft(
            H,
            *B,
            encode_record(
                RecordType.SECTION, encode_cbor({"name": "regs", "optional": False, "fields": [1]})
            ),
        ),
        "RECORD_CORRUPT",
        {"record": 3},
        {},
    ),
    "zstd-garbage": (
        craft(H, _bulk_zstd(0, 0, 100, b"not zstd at all")),
        "RECORD_CORRUPT",
        {"record": 1, "region": 0},
        {},
    ),
    "zstd-declares-other-size": (
        craft(H, _bulk_zstd(0, 0, 100, _zstd(b"a" * 99))),
        "RECORD_CORRUPT",
        {"record": 1, "region": 0},
        {},
    ),
    "zstd-expands-beyond-raw": (
        craft(H, _bulk_zstd(0, 0, 100, _zstd(b"a" * 5000, write_content_size=False))),
        "RECORD_CORRUPT",
        {"record": 1, "region": 0},
        {},
    ),
    "zstd-bomb-declared": (
        craft(H, _bulk_zstd(0, 0, 100, _zstd(bytes(1 << 22)))),
        "RECORD_CORRUPT",
        {"record": 1},
        {},
    ),
    "digest-mismatch": (
        craft(H, *B, *S, trailer=False) + trailer_record(b"other"),
        "DIGEST_MISMATCH",
        {"record": 6},
        {},
    ),
    "digest-mismatch-edited-record": (
        # a record edited *with* a fresh record digest: only the trailer digest catches it
        preamble()
        + H
        + _with_digest_fixed(_flip(B[0], 3000))
        + B[1]
        + b"".join(S)
        + trailer_record(preamble() + H + B[0] + B[1] + b"".join(S)),
        "DIGEST_MISMATCH",
        {"record": 6},
        {},
    ),
    "skippable-flag-on-core-record": (
        craft(H, B[0][:1] + b"\x80" + B[0][2:], B[1], *S),
        "RECORD_CORRUPT",
        {"record": 1},
        {},
    ),
    # sections
    "section-unknown-required": (
        craft(H, *B, *S, section_record("bogus", {})),
        "SECTION_UNKNOWN",
        {"section": "bogus"},
        {},
    ),
    "section-inactive-required": (
        craft(
            header_record(config=CANON_OFF),
            bulk_record(0, 0, MEM_BYTES),
            bulk_record(1, 0, bytes(4096)),
            section_record("rss", {"key": b"", "table": []}),
        ),
        "SECTION_UNKNOWN",
        {"section": "rss"},
        {"layout": FULL_OFF},
    ),
    "section-invalid": (
        craft(
            H, *B, section_record("regs", _regs(ctrl=256, name="x" * 17, mac=[1], extra=1, link=1))
        ),
        "SECTION_INVALID",
        {"section": "regs", "record": 3},
        {},
    ),
    "section-missing-field": (
        craft(H, *B, section_record("regs", {k: v for k, v in REGS_FIELDS.items() if k != "head"})),
        "SECTION_INVALID",
        {"section": "regs"},
        {},
    ),
    "section-optional-flag-mismatch": (
        craft(H, *B, section_record("regs", REGS_FIELDS, optional=True)),
        "SECTION_INVALID",
        {"section": "regs"},
        {},
    ),
    "section-array-too-long": (
        craft(H, *B, REGS, section_record("rss", {"key": b"", "table": list(range(9))})),
        "SECTION_INVALID",
        {"section": "rss"},
        {},
    ),
    "section-duplicate": (
        craft(H, *B, REGS, REGS, RSS, QUEUES),
        "SECTION_DUPLICATE",
        {"section": "regs", "record": 4},
        {},
    ),
    "section-missing-skipped": (
        craft(H, *B, REGS, QUEUES),
        "SECTION_MISSING",
        {"section": "rss"},
        {},
    ),
    "section-missing-at-trailer": (
        craft(H, *B, REGS, RSS),
        "SECTION_MISSING",
        {"section": "queues"},
        {},
    ),
    # bulk
    "bulk-incomplete": (
        craft(
            H, bulk_record(0, 0, MEM_BYTES[:4106]), bulk_record(0, 4116, MEM_BYTES[4116:]), B[1], *S
        ),
        "BULK_INCOMPLETE",
        {"region": 0, "offset": 4106},
        {},
    ),
    "bulk-incomplete-region": (
        craft(H, B[0], *S),
        "BULK_INCOMPLETE",
        {"region": 1, "offset": 0},
        {},
    ),
    "bulk-incomplete-tail": (
        craft(H, bulk_record(0, 0, MEM_BYTES[:-1]), B[1], *S),
        "BULK_INCOMPLETE",
        {"region": 0, "offset": MEM - 1},
        {},
    ),
    "bulk-no-region": (
        craft(H, bulk_record(5, 0, b"abc")),
        "BULK_OUT_OF_RANGE",
        {"region": 5, "record": 1},
        {},
    ),
    "bulk-past-end": (
        craft(H, bulk_record(1, RING - 2, b"abc")),
        "BULK_OUT_OF_RANGE",
        {"region": 1, "offset": RING - 2},
        {},
    ),
    "bulk-huge-offset": (
        craft(H, bulk_record(0, (1 << 64) - 1, b"a")),
        "BULK_OUT_OF_RANGE",
        {"region": 0},
        {},
    ),
    "zero-past-end": (
        craft(H, encode_record(RecordType.ZERO, ZERO_PAYLOAD.pack(0, 10, MEM))),
        "BULK_OUT_OF_RANGE",
        {"region": 0, "offset": 10},
        {},
    ),
    # sizes
    "hostile-bulk-length": (
        preamble() + H + RECORD_HEAD.pack(RecordType.BULK, 0, 0xFFFFFFFF),
        "TOO_LARGE",
        {"record": 1},
        {},
    ),
    "hostile-section-length": (
        preamble() + H + RECORD_HEAD.pack(RecordType.SECTION, 0, 0xFFFFFFFF),
        "TOO_LARGE",
        {"record": 1},
        {},
    ),
    "hostile-header-length": (
        preamble() + RECORD_HEAD.pack(RecordType.HEADER, 0, 0xFFFFFFFF),
        "TOO_LARGE",
        {"record": 0},
        {},
    ),
    "hostile-unknown-length": (
        preamble() + H + RECORD_HEAD.pack(200, 0x80, 0xFFFFFFFF),
        "TOO_LARGE",
        {"record": 1},
        {},
    ),
    "section-over-limit": (
        craft(H, *B, REGS),
        "TOO_LARGE",
        {"record": 3},
        {"max_section": len(H) - 14},
    ),
    "chunk-over-limit": (craft(H, *B), "TOO_LARGE", {"record": 1}, {"max_chunk": 4096}),
    "raw-length-over-limit": (
        preamble()
        + H
        + RECORD_HEAD.pack(RecordType.BULK, 0, 17 + 100)
        + BULK_HEAD.pack(0, 0, 1 << 31, 1),
        "TOO_LARGE",
        {"record": 1},
        {},
    ),
    # truncation
    "empty": (b"", "TRUNCATED", {}, {}),
    "only-magic": (b"DVMG", "TRUNCATED", {}, {}),
    "no-trailer": (craft(H, *B, *S, trailer=False), "TRUNCATED", {"record": 6}, {}),
    "inside-bulk": (VALID[: len(H) + 8 + 3000], "TRUNCATED", {"record": 1}, {}),
}


def _load(data: bytes, options: dict[str, Any], dst, *, zero_copy: bool = False):
    opts = dict(options)
    layout = opts.pop("decl", DECL).layout(opts.pop("layout", FULL))
    config = CANON if layout.config == LAYOUT.config else CANON_OFF
    decoder = decoder_for(layout, dst, config=config, **opts)
    if zero_copy:
        return decoder, decode_zero_copy(decoder, data)
    return decoder, decode_all(decoder, data)


@pytest.mark.parametrize("zero_copy", [False, True], ids=["receive_data", "get_buffer"])
@pytest.mark.parametrize(
    ("data", "code", "where", "options"), list(CASES.values()), ids=list(CASES)
)
def test_refusal(data, code, where, options, zero_copy):
    layout = options.get("decl", DECL).layout(options.get("layout", FULL))
    dst = blank_regions(layout)
    created = [r.data.tobytes() for r in dst]
    with pytest.raises(StreamError) as info:
        _load(data, options, dst, zero_copy=zero_copy)
    err = info.value
    assert err.code == code, err
    for key, value in where.items():
        assert getattr(err, key) == value, (key, err)
    assert err.problems and all(p.message for p in err.problems)
    # A failed load leaves the destination as created once aborted, and a valid
    # stream then loads into the same regions.
    config = CANON if layout.config == LAYOUT.config else CANON_OFF
    opts = {k: v for k, v in options.items() if k not in ("decl", "layout")}
    failed = decoder_for(layout, dst, config=config, **opts)
    with pytest.raises(StreamError):
        decode_all(failed, data) if not zero_copy else decode_zero_copy(failed, data)
    failed.abort()
    assert [r.data.tobytes() for r in dst] == created
    src = make_regions(layout, seed=7)
    sections = sections_for(layout)
    good = encode_stream(layout, src, sections, config=config)
    reloaded = decoder_for(layout, dst, config=config)
    decode_all(reloaded, good)
    assert state_digest(layout, reloaded.staged_sections(), dst) == state_digest(
        layout, sections, src
    )


def test_error_is_terminal_and_repeated():
    decoder = decoder_for(LAYOUT, blank_regions(LAYOUT))
    decoder.receive_data(CASES["bool-vs-int"][0])
    with pytest.raises(StreamError) as first:
        while decoder.next_event() is not NEED_DATA:
            pass
    calls: list[Callable[[], object]] = [
        decoder.next_event,
        lambda: decoder.receive_data(VALID),
        lambda: decoder.get_buffer(10),
        lambda: decoder.buffer_updated(0),
        decoder.end_of_input,
        decoder.staged_sections,
    ]
    for call in calls:
        with pytest.raises(StreamError) as again:
            call()
        assert again.value is first.value
    assert decoder.error is first.value and decoder.phase.value == "error"


def test_config_mismatch_refused_before_any_other_record():
    decoder = decoder_for(LAYOUT, blank_regions(LAYOUT))
    decoder.receive_data(CASES["mismatch-then-garbage"][0])
    with pytest.raises(StreamError) as info:
        decoder.next_event()
    assert info.value.code == "CONFIG_MISMATCH"
    assert decoder.header is None


def test_bool_and_int_are_different_configurations():
    err = CASES["bool-vs-int"]
    decoder = decoder_for(LAYOUT, blank_regions(LAYOUT))
    with pytest.raises(StreamError) as info:
        decode_all(decoder, err[0])
    assert "rss" in info.value.problems[0].message
    assert info.value.problems[0].value == {**CANON, "rss": 1}


def test_section_invalid_collects_every_field():
    decoder = decoder_for(LAYOUT, blank_regions(LAYOUT))
    with pytest.raises(StreamError) as info:
        decode_all(decoder, CASES["section-invalid"][0])
    fields = {p.loc[p.loc.index("field") + 1] for p in info.value.problems}
    assert fields == {"ctrl", "name", "mac", "extra", "link"}
    assert all(p.code == "SECTION_INVALID" for p in info.value.problems)
    assert all(p.loc[:2] == ("record", 3) for p in info.value.problems)


@pytest.mark.parametrize("rtype", [RecordType.BULK, RecordType.SECTION, RecordType.HEADER, 250])
def test_hostile_length_refused_from_the_head_without_allocating(rtype):
    decoder = decoder_for(LAYOUT, blank_regions(LAYOUT))
    prefix = preamble() + (H if rtype != RecordType.HEADER else b"")
    tracemalloc.start()
    try:
        decoder.receive_data(
            prefix + RECORD_HEAD.pack(rtype, 0x80 if rtype == 250 else 0, 0xFFFFFFFF)
        )
        with pytest.raises(StreamError) as info:
            while decoder.next_event() is not NEED_DATA:
                pass
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.value.code == "TOO_LARGE"
    assert peak < 1 << 20


def test_zero_copy_refuses_hostile_length_without_handing_a_big_buffer():
    decoder = decoder_for(LAYOUT, blank_regions(LAYOUT))
    data = preamble() + H + RECORD_HEAD.pack(RecordType.BULK, 0, 0xFFFFFFFF)
    pos = 0
    with pytest.raises(StreamError) as info:
        while True:
            buf = decoder.get_buffer(-1)
            assert len(buf) < 1 << 16
            n = min(len(buf), len(data) - pos)
            buf[:n] = data[pos : pos + n]
            decoder.buffer_updated(n)
            pos += n
            while decoder.next_event() is not NEED_DATA:
                pass
    assert info.value.code == "TOO_LARGE"


def _record_bounds(data: bytes) -> list[int]:
    """Every interesting cut: each byte of the preamble and of each record's framing."""
    cuts = set(range(0, 9))
    pos = 8
    while pos < len(data):
        _, _, length = RECORD_HEAD.unpack(data[pos : pos + 6])
        end = pos + 6 + length + 8
        cuts.update(range(pos, min(pos + 6 + 17 + 1, end)))
        cuts.update(range(max(pos, end - 9), end))
        cuts.add((pos + end) // 2)
        pos = end
    return sorted(c for c in cuts if c < len(data))


@pytest.mark.parametrize("zero_copy", [False, True], ids=["receive_data", "get_buffer"])
def test_truncated_at_every_boundary(zero_copy):
    for cut in _record_bounds(VALID):
        decoder = decoder_for(LAYOUT, blank_regions(LAYOUT))
        with pytest.raises(StreamError) as info:
            if zero_copy:
                decode_zero_copy(decoder, VALID[:cut])
            else:
                decode_all(decoder, VALID[:cut])
        assert info.value.code == "TRUNCATED", (cut, info.value)
        assert info.value.offset == cut


def test_bit_flips_in_every_region_of_the_stream_are_refused():
    positions = sorted(
        set(_record_bounds(VALID))
        | set(range(len(VALID) - 40, len(VALID)))
        | set(range(8, len(H) + 8))
    )
    for pos in positions:
        for bit in (0, 7):
            decoder = decoder_for(LAYOUT, blank_regions(LAYOUT))
            with pytest.raises(DevmigError):
                decode_all(decoder, _flip(VALID, pos, bit))


def test_header_event_precedes_everything_and_error_names_round():
    data = encode_stream(LAYOUT, make_regions(LAYOUT, seed=3), SECTIONS, rounds=2)
    corrupt = bytearray(data)
    corrupt[-200] ^= 0xFF  # inside the sections: after both rounds
    decoder = decoder_for(LAYOUT, blank_regions(LAYOUT))
    with pytest.raises(StreamError) as info:
        decode_all(decoder, bytes(corrupt))
    assert info.value.round == 2


def test_staged_sections_unavailable_before_trailer():
    decoder = decoder_for(LAYOUT, blank_regions(LAYOUT))
    decoder.receive_data(VALID[:-30])
    events = []
    while (e := decoder.next_event()) is not NEED_DATA:
        events.append(e)
    assert isinstance(events[0], Header)
    with pytest.raises(StreamError) as info:
        decoder.staged_sections()
    assert info.value.code == "STREAM_ORDER"


def test_decoder_requires_matching_regions():
    with pytest.raises(StreamError) as info:
        StreamDecoder(MODEL, CANON, LAYOUT, blank_regions(DECL.layout(FULL_OFF)))
    assert info.value.code == "LAYOUT_INVALID"


def test_foreign_errors_are_mapped_and_chained():
    decoder = decoder_for(LAYOUT, blank_regions(LAYOUT))
    with pytest.raises(StreamError) as info:
        decode_all(decoder, CASES["header-not-cbor"][0])
    assert info.value.code == "RECORD_CORRUPT"
    assert isinstance(info.value.__cause__, cbor2.CBORError)
    assert (info.value.record, info.value.round) == (0, 0)
    decoder = decoder_for(LAYOUT, blank_regions(LAYOUT))
    with pytest.raises(StreamError) as info:
        decode_all(decoder, CASES["zstd-garbage"][0])
    assert isinstance(info.value.__cause__, zstandard.ZstdError)
    assert info.value.round == 0 and info.value.problems[0].loc[:2] == ("record", 1)
