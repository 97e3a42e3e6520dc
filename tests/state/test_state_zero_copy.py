"""The get_buffer/buffer_updated path: same result as receive_data, bulk bytes land in place."""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from state_helpers import (
    DECL,
    FULL,
    blank_regions,
    decode_all,
    decode_zero_copy,
    decoder_for,
    encode_stream,
    header_record,
    make_regions,
    preamble,
    sections_for,
)

from devmig.state import NEED_DATA, Bulk, state_digest
from devmig.state._records import BULK_HEAD, RECORD_HEAD, RecordType

LAYOUT = DECL.layout(FULL)
SRC = make_regions(LAYOUT, seed=21)
SECTIONS = sections_for(LAYOUT)
RAW = encode_stream(LAYOUT, SRC, SECTIONS, rounds=3, seed=5)
SRC_ZSTD = make_regions(LAYOUT, seed=21)
ZSTD = encode_stream(LAYOUT, SRC_ZSTD, SECTIONS, rounds=2, compress=True, seed=5)


def _reference(data: bytes):
    dst = blank_regions(LAYOUT)
    decoder = decoder_for(LAYOUT, dst)
    events = decode_all(decoder, data)
    return events, [r.data.tobytes() for r in dst], decoder.staged_sections()


REFERENCES = {id(RAW): _reference(RAW), id(ZSTD): _reference(ZSTD)}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), compressed=st.booleans())
def test_zero_copy_random_splits_equal_receive_data(seed, compressed):
    data = ZSTD if compressed else RAW
    events, contents, staged = REFERENCES[id(data)]
    dst = blank_regions(LAYOUT)
    decoder = decoder_for(LAYOUT, dst)
    assert decode_zero_copy(decoder, data, random.Random(seed)) == events
    assert [r.data.tobytes() for r in dst] == contents
    assert decoder.staged_sections() == staged
    src = SRC_ZSTD if compressed else SRC
    assert state_digest(LAYOUT, staged, dst) == state_digest(LAYOUT, SECTIONS, src)


@settings(max_examples=40, deadline=None)
@given(splits=st.lists(st.integers(1, 5000), max_size=60))
def test_receive_data_any_segmentation(splits):
    events, contents, _ = REFERENCES[id(RAW)]
    dst = blank_regions(LAYOUT)
    assert decode_all(decoder_for(LAYOUT, dst), RAW, splits=splits) == events
    assert [r.data.tobytes() for r in dst] == contents


def test_mixing_both_input_paths():
    events, contents, _ = REFERENCES[id(RAW)]
    rng = random.Random(3)
    dst = blank_regions(LAYOUT)
    decoder = decoder_for(LAYOUT, dst)
    got = []
    pos = 0
    while pos < len(RAW):
        n = rng.randrange(1, 3000)
        if rng.random() < 0.5:
            decoder.receive_data(RAW[pos : pos + n])
            pos += len(RAW[pos : pos + n])
        else:
            buf = decoder.get_buffer(-1)
            n = min(n, len(buf), len(RAW) - pos)
            buf[:n] = RAW[pos : pos + n]
            decoder.buffer_updated(n)
            pos += n
        while (e := decoder.next_event()) is not NEED_DATA:
            got.append(e)
    decoder.end_of_input()
    assert got == events
    assert [r.data.tobytes() for r in dst] == contents


def test_buffer_inside_raw_bulk_is_the_region_memory():
    dst = blank_regions(LAYOUT)
    decoder = decoder_for(LAYOUT, dst)
    payload = bytes(range(256)) * 16
    head = RECORD_HEAD.pack(RecordType.BULK, 0, BULK_HEAD.size + len(payload))
    decoder.receive_data(
        preamble() + header_record() + head + BULK_HEAD.pack(0, 100, len(payload), 0)
    )
    assert decoder.next_event().model  # Header
    buf = decoder.get_buffer(-1)
    assert len(buf) == len(payload)
    assert buf.obj is dst[0].data  # the region's own memory, not a staging buffer
    buf[:] = payload
    decoder.buffer_updated(len(payload))
    assert dst[0].data[100 : 100 + len(payload)].tobytes() == payload  # landed in place
    digest_buf = decoder.get_buffer(-1)
    assert digest_buf.obj is not dst[0].data and len(digest_buf) < 64


def test_partial_receives_into_region_slice():
    data = RAW
    dst = blank_regions(LAYOUT)
    decoder = decoder_for(LAYOUT, dst)
    pos = 0
    bulks = 0
    while pos < len(data):
        buf = decoder.get_buffer(-1)
        n = min(len(buf), len(data) - pos, 1000)  # a slow transport: at most 1000 bytes a read
        buf[:n] = data[pos : pos + n]
        decoder.buffer_updated(n)
        pos += n
        while (e := decoder.next_event()) is not NEED_DATA:
            bulks += isinstance(e, Bulk)
    decoder.end_of_input()
    assert bulks and decoder.done


def test_buffer_updated_misuse():
    decoder = decoder_for(LAYOUT, blank_regions(LAYOUT))
    try:
        decoder.buffer_updated(5)
    except Exception as exc:
        assert exc.code == "API_MISUSE"
    else:
        raise AssertionError("expected API_MISUSE")
    buf = decoder.get_buffer(-1)
    try:
        decoder.buffer_updated(len(buf) + 1)
    except Exception as exc:
        assert exc.code == "API_MISUSE"
    else:
        raise AssertionError("expected API_MISUSE")
