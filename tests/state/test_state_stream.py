"""Round trips through StreamEncoder/PrecopySource → StreamDecoder, and the inspector."""

from __future__ import annotations

import pytest
from state_helpers import (
    CANON,
    CANON_OFF,
    DECL,
    DECL_WITH_STATS,
    FULL,
    FULL_OFF,
    MODEL,
    blank_regions,
    bulk_record,
    craft,
    decode_all,
    decoder_for,
    encode_stream,
    header_record,
    make_regions,
    section_records,
    sections_for,
)

from devmig.state import (
    Bulk,
    Header,
    Region,
    RoundEnd,
    Section,
    StreamEncoder,
    Trailer,
    Zero,
    inspect_stream,
    state_digest,
)
from devmig.state._records import ZERO_PAYLOAD, RecordType, encode_record

ROUND_TRIPS = [
    # id, full config, canonical config, compress, chunk, rounds
    ("raw", FULL, CANON, False, 8192, 2),
    ("zstd", FULL, CANON, True, 8192, 2),
    ("raw-small-chunks", FULL, CANON, False, 4096, 4),
    ("zstd-one-round", FULL, CANON, True, 65536, 1),
    ("no-precopy", FULL, CANON, False, 8192, 0),
    ("off-config", FULL_OFF, CANON_OFF, False, 8192, 2),
    ("off-config-zstd", FULL_OFF, CANON_OFF, True, 4096, 3),
]


@pytest.mark.parametrize(
    ("full", "canon", "compress", "chunk", "rounds"),
    [case[1:] for case in ROUND_TRIPS],
    ids=[case[0] for case in ROUND_TRIPS],
)
def test_round_trip(full, canon, compress, chunk, rounds):
    layout = DECL.layout(full)
    src = make_regions(layout, seed=chunk + rounds)
    sections = sections_for(layout)
    data = encode_stream(
        layout, src, sections, config=canon, compress=compress, chunk_size=chunk, rounds=rounds
    )
    dst = blank_regions(layout)
    decoder = decoder_for(layout, dst, config=canon)
    events = decode_all(decoder, data)
    assert isinstance(events[0], Header)
    assert events[0].config == canon and events[0].model == MODEL
    assert isinstance(events[-1], Trailer)
    assert sum(isinstance(e, RoundEnd) for e in events) == rounds
    assert decoder.done
    staged = decoder.staged_sections()
    assert staged == {k: layout.validate_section(k, v) for k, v in sections.items()}
    assert state_digest(layout, staged, dst) == state_digest(layout, sections, src)
    for s, d in zip(src, dst, strict=True):
        assert bytes(s.view) == bytes(d.view)
    if compress:
        assert any(isinstance(e, Bulk) and e.compressed for e in events)
    summary = inspect_stream(data)
    assert summary.digest_ok is True
    assert summary.rounds == rounds
    assert [s.name for s in summary.sections] == [s.name for s in layout.sections]
    assert [r.covered for r in summary.regions] == [((0, r.size),) for r in layout.regions]


def test_conditional_section_absent_when_condition_false():
    on, off = DECL.layout(FULL), DECL.layout(FULL_OFF)
    assert on.section("rss") is not None
    assert off.section("rss") is None and "rss" in off.inactive


def test_overlapping_and_repeated_bulk_last_write_wins():
    layout = DECL.layout(FULL)
    src = make_regions(layout, seed=3)
    sections = sections_for(layout)
    size0 = layout.regions[0].size
    expected = bytearray(src[0].data.tobytes())
    records = [header_record()]
    records += [bulk_record(0, 0, bytes(expected)), bulk_record(1, 0, src[1].data.tobytes())]
    # Overlapping writes, partial pages, then a ZERO over part of them, then data again.
    for offset, payload in [(10, b"A" * 5000), (4000, b"B" * 300), (4090, b"C" * 10)]:
        records.append(bulk_record(0, offset, payload))
        expected[offset : offset + len(payload)] = payload
    records.append(encode_record(RecordType.ZERO, ZERO_PAYLOAD.pack(0, 4095, 3)))
    expected[4095:4098] = bytes(3)
    records.append(bulk_record(0, size0 - 7, b"tailend"))
    expected[size0 - 7 :] = b"tailend"
    records += section_records(layout, sections)
    dst = blank_regions(layout)
    decode_all(decoder_for(layout, dst), craft(*records))
    assert dst[0].data.tobytes() == bytes(expected)
    assert dst[1].data.tobytes() == src[1].data.tobytes()


def test_zero_records_clear_and_cover():
    layout = DECL.layout(FULL)
    dst = blank_regions(layout)
    records = [header_record()]
    for i, r in enumerate(layout.regions):
        records.append(encode_record(RecordType.ZERO, ZERO_PAYLOAD.pack(i, 0, r.size)))
    records += section_records(layout, sections_for(layout))
    events = decode_all(decoder_for(layout, dst), craft(*records))
    assert [e for e in events if isinstance(e, Zero)] == [
        Zero(i, 0, r.size, 0) for i, r in enumerate(layout.regions)
    ]
    assert all(not r.data.any() for r in dst)


def test_precopy_sends_zero_chunks_as_zero_records():
    layout = DECL.layout(FULL)
    src = make_regions(layout, seed=5)  # page 1 of "mem" is zero
    data = encode_stream(layout, src, sections_for(layout), rounds=1, chunk_size=4096)
    events = decode_all(decoder_for(layout, blank_regions(layout)), data)
    assert Zero(0, 4096, 4096, 0) in events


def test_optional_section_skipped_by_reader_without_it():
    writer = DECL_WITH_STATS.layout(FULL)
    reader = DECL.layout(FULL)
    src = make_regions(writer, seed=9)
    sections = sections_for(writer, stats=True)
    assert "stats" in sections
    data = encode_stream(writer, src, sections)
    dst = blank_regions(reader)
    decoder = decoder_for(reader, dst)
    events = decode_all(decoder, data)
    skipped = [e for e in events if isinstance(e, Section) and e.skipped]
    assert [e.name for e in skipped] == ["stats"]
    staged = decoder.staged_sections()
    assert "stats" not in staged
    # The optional section is left out of the digest: both sides agree.
    assert state_digest(reader, staged, dst) == state_digest(writer, sections, src)


def test_optional_section_may_be_absent_and_is_staged_when_present():
    layout = DECL_WITH_STATS.layout(FULL)
    for stats in (False, True):
        src = make_regions(layout, seed=11)
        sections = sections_for(layout, stats=stats)
        decoder = decoder_for(layout, blank_regions(layout))
        decode_all(decoder, encode_stream(layout, src, sections))
        assert ("stats" in decoder.staged_sections()) is stats


def test_newer_minor_version_is_accepted():
    layout = DECL.layout(FULL)
    src = make_regions(layout)
    data = bytearray(encode_stream(layout, src, sections_for(layout), rounds=0))
    data[6:8] = (7).to_bytes(2, "big")  # minor 7: covered by the trailer digest, so re-craft
    from state_helpers import preamble, trailer_record

    body = preamble(minor=7) + bytes(data[8 : len(data) - 30])
    decoder = decoder_for(layout, blank_regions(layout))
    decode_all(decoder, body + trailer_record(body))
    assert decoder.minor == 7 and decoder.done


def test_skippable_unknown_record_is_skipped():
    layout = DECL.layout(FULL)
    src = make_regions(layout)
    records = [header_record(), encode_record(200, b"future", flags=0x80)]
    records += [bulk_record(i, 0, r.data.tobytes()) for i, r in enumerate(src)]
    records += section_records(layout, sections_for(layout))
    decoder = decoder_for(layout, blank_regions(layout))
    events = decode_all(decoder, craft(*records))
    assert decoder.done and isinstance(events[-1], Trailer)


def test_encoder_refuses_out_of_order_and_incomplete():
    layout = DECL.layout(FULL)
    enc = StreamEncoder(MODEL, CANON, layout, {})
    with pytest.raises(Exception) as info:
        enc.bulk(0, 0, b"x")
    assert info.value.code == "STREAM_ORDER"
    enc.header()
    with pytest.raises(Exception) as info:
        enc.header()
    assert info.value.code == "STREAM_ORDER"
    enc.section("regs", sections_for(layout)["regs"])
    with pytest.raises(Exception) as info:
        enc.bulk(0, 0, b"x")
    assert info.value.code == "STREAM_ORDER"
    with pytest.raises(Exception) as info:
        enc.section("regs", sections_for(layout)["regs"])
    assert info.value.code == "SECTION_DUPLICATE"
    with pytest.raises(Exception) as info:
        enc.section("queues", sections_for(layout)["queues"])
    assert info.value.code == "SECTION_MISSING" and info.value.section == "rss"
    enc.section("rss", sections_for(layout)["rss"])
    enc.section("queues", sections_for(layout)["queues"])
    with pytest.raises(Exception) as info:
        enc.trailer()
    assert info.value.code == "BULK_INCOMPLETE"
    assert info.value.region == 0 and info.value.offset == 0


def test_encoder_bulk_returns_the_callers_buffer_uncopied():
    layout = DECL.layout(FULL)
    src = make_regions(layout)
    enc = StreamEncoder(MODEL, CANON, layout, {}, chunk_size=4096)
    enc.header()
    buffers = enc.bulk(0, 0, src[0].view[:8192])
    assert len(buffers) == 6
    payload = buffers[1]
    assert isinstance(payload, memoryview) and payload.obj is src[0].data


def test_inspect_reports_trailer_verdict():
    layout = DECL.layout(FULL)
    src = make_regions(layout)
    records = [header_record(), *[bulk_record(i, 0, r.data.tobytes()) for i, r in enumerate(src)]]
    records += section_records(layout, sections_for(layout))
    good = craft(*records)
    bad = craft(*records, trailer=False)
    from state_helpers import trailer_record

    bad += trailer_record(b"something else")
    assert inspect_stream(good).digest_ok is True
    summary = inspect_stream(bad)
    assert summary.digest_ok is False
    assert summary.to_dict()["digest_ok"] is False
    assert summary.record_counts == {"HEADER": 1, "BULK": 2, "SECTION": 3, "TRAILER": 1}
    assert sorted(summary.sections[0].fields) == sorted(f.name for f in layout.sections[0].fields)


def test_region_of_size_zero_and_empty_layout():
    from devmig.state import RegionSpec, StateDeclaration

    decl = StateDeclaration(regions=[RegionSpec("empty", 0)])
    layout = decl.layout({})
    enc = StreamEncoder(MODEL, {}, layout)
    data = enc.header() + enc.trailer()
    dst = [Region.for_layout(layout.regions[0])]
    decoder = decoder_for(layout, dst, config={})
    decode_all(decoder, data)
    assert decoder.done and decoder.staged_sections() == {}


INSPECT_ERRORS = [
    (b"", "TRUNCATED"),
    (b"DVM", "TRUNCATED"),
    (b"QEVM\x00\x01\x00\x00", "BAD_MAGIC"),
    (b"DVMG\x00\x01\x00\x00", "VERSION_UNSUPPORTED"),
    (b"DVMG\x00\x03\x00\x00", "VERSION_UNSUPPORTED"),
    (b"DVMG\x00\x02\x00\x00", "TRUNCATED"),
]


@pytest.mark.parametrize(("data", "code"), INSPECT_ERRORS)
def test_inspect_refusals(data, code):
    from devmig import StreamError

    with pytest.raises(StreamError) as info:
        inspect_stream(data)
    assert info.value.code == code


def test_inspect_refuses_corrupt_and_truncated_streams():
    from devmig import StreamError

    layout = DECL.layout(FULL)
    data = encode_stream(layout, make_regions(layout), sections_for(layout), compress=True)
    for cut, code in ((len(data) - 1, "TRUNCATED"), (20, "TRUNCATED")):
        with pytest.raises(StreamError) as info:
            inspect_stream(data[:cut])
        assert info.value.code == code
    flipped = bytearray(data)
    flipped[200] ^= 1
    with pytest.raises(StreamError) as info:
        inspect_stream(bytes(flipped))
    assert info.value.code in {"RECORD_CORRUPT", "TOO_LARGE", "TRUNCATED", "RECORD_UNKNOWN"}
    summary = inspect_stream(data).to_dict()
    assert summary["model"] == MODEL and summary["trailer"] is True
    assert sum(r["compressed_records"] for r in summary["regions"]) > 0
