"""The decoder's BULK hot path decides exactly as the general checks, at every boundary.

A sound raw BULK head skips the general record-head and BULK-field checks;
each case below sits on one edge of that shortcut (one byte inside or outside
a limit, a flag, a phase, a codec) and must be accepted or refused with the
same code as before, through both input paths.
"""

from __future__ import annotations

import pytest
import zstandard
from state_helpers import (
    blank_regions,
    bulk_record,
    craft,
    decode,
    decoder_for,
    stream_parts,
)

from devmig import StreamError
from devmig.state import Bulk, state_digest
from devmig.state._records import BULK_HEAD, RECORD_HEAD, RecordType, encode_record

LAYOUT, SRC, SECTIONS, H, B, S = stream_parts(seed=9)
MEM = LAYOUT.regions[0].size
RING = LAYOUT.regions[1].size
MEM_BYTES = SRC[0].data.tobytes()
RING_BYTES = SRC[1].data.tobytes()


def _head(rtype: int, flags: int, payload: bytes) -> bytes:
    """A record whose head says ``rtype``/``flags``, with a correct payload digest."""
    record = encode_record(rtype, payload)
    return RECORD_HEAD.pack(rtype, flags, len(payload)) + record[RECORD_HEAD.size :]


_ZSTD_ABC = zstandard.ZstdCompressor(write_content_size=True).compress(b"abc")


def _flipped(record: bytes, index: int) -> bytes:
    out = bytearray(record)
    out[index] ^= 1
    return bytes(out)


def _chunked(size: int) -> list[bytes]:
    """Every region in raw BULK records of ``size`` bytes (the last of each may be shorter)."""
    return [
        bulk_record(index, i, data[i : i + size])
        for index, data in enumerate((MEM_BYTES, RING_BYTES))
        for i in range(0, len(data), size)
    ]


def _decode(data: bytes, zero_copy: bool, **limits: int) -> list[object]:
    return decode(decoder_for(LAYOUT, blank_regions(LAYOUT), **limits), data, zero_copy=zero_copy)


REFUSED = {
    "length-one-below-bulk-fields": (
        craft(H, encode_record(RecordType.BULK, BULK_HEAD.pack(0, 0, 0, 0)[:-1])),
        "RECORD_CORRUPT",
        {},
    ),
    "raw-length-one-more-than-data": (
        craft(H, bulk_record(0, 0, MEM_BYTES[:100], raw=101)),
        "RECORD_CORRUPT",
        {},
    ),
    "raw-length-one-less-than-data": (
        craft(H, bulk_record(0, 0, MEM_BYTES[:100], raw=99)),
        "RECORD_CORRUPT",
        {},
    ),
    "chunk-one-over-limit": (
        craft(H, bulk_record(0, 0, MEM_BYTES[:4097])),
        "TOO_LARGE",
        {"max_chunk": 4096},
    ),
    "record-one-over-max-record": (
        craft(H, bulk_record(0, 0, MEM_BYTES[:4096])),
        "TOO_LARGE",
        {"max_record": BULK_HEAD.size + 4095},
    ),
    "one-byte-past-region-end": (
        craft(H, bulk_record(1, 1, RING_BYTES)),
        "BULK_OUT_OF_RANGE",
        {},
    ),
    "region-index-one-past-last": (
        craft(H, bulk_record(len(LAYOUT.regions), 0, b"abc")),
        "BULK_OUT_OF_RANGE",
        {},
    ),
    "skippable-flag": (
        craft(H, _head(RecordType.BULK, 0x80, BULK_HEAD.pack(0, 0, 3, 0) + b"abc")),
        "RECORD_CORRUPT",
        {},
    ),
    "reserved-flag": (
        craft(H, _head(RecordType.BULK, 0x02, BULK_HEAD.pack(0, 0, 3, 0) + b"abc")),
        "RECORD_CORRUPT",
        {},
    ),
    "live-and-skippable-flags": (
        craft(H, _head(RecordType.BULK, 0x81, BULK_HEAD.pack(0, 0, 3, 0) + b"abc")),
        "RECORD_CORRUPT",
        {},
    ),
    "live-flag-on-zstd": (
        craft(H, _head(RecordType.BULK, 0x01, BULK_HEAD.pack(0, 0, 3, 1) + _ZSTD_ABC)),
        "RECORD_CORRUPT",
        {},
    ),
    "bulk-after-a-section": (craft(H, *B, S[0], B[0], *S[1:]), "STREAM_ORDER", {}),
    "bulk-before-header": (craft(B[0], H, *B[1:], *S), "STREAM_ORDER", {}),
    "unknown-codec": (
        craft(H, bulk_record(0, 0, MEM_BYTES[:100], codec=7)),
        "RECORD_UNKNOWN",
        {},
    ),
    "raw-data-bit-flipped": (
        craft(H, _flipped(bulk_record(0, 0, MEM_BYTES[:99]), 40)),
        "RECORD_CORRUPT",
        {},
    ),
}


@pytest.mark.parametrize("zero_copy", [False, True], ids=["receive_data", "get_buffer"])
@pytest.mark.parametrize(("data", "code", "limits"), list(REFUSED.values()), ids=list(REFUSED))
def test_edge_refused(data, code, limits, zero_copy):
    with pytest.raises(StreamError) as info:
        _decode(data, zero_copy, **limits)
    assert info.value.code == code, info.value


ACCEPTED = {
    "chunk-exactly-at-limit": (_chunked(4096), {"max_chunk": 4096}),
    "record-exactly-max-record": (_chunked(4096), {"max_record": BULK_HEAD.size + 4096}),
    "ends-exactly-at-region-end": (
        [B[0], bulk_record(1, 1, RING_BYTES[1:]), bulk_record(1, 0, RING_BYTES[:1])],
        {},
    ),
    "empty-raw-chunk-at-region-end": ([bulk_record(1, RING, b""), *B], {}),
    "live-flag": ([_head(RecordType.BULK, 0x01, BULK_HEAD.pack(0, 0, 3, 0) + b"abc"), *B], {}),
}


@pytest.mark.parametrize("zero_copy", [False, True], ids=["receive_data", "get_buffer"])
@pytest.mark.parametrize(("bulk", "limits"), list(ACCEPTED.values()), ids=list(ACCEPTED))
def test_edge_accepted(bulk, limits, zero_copy):
    dst = blank_regions(LAYOUT)
    decoder = decoder_for(LAYOUT, dst, **limits)
    events = decode(decoder, craft(H, *bulk, *S), zero_copy=zero_copy)
    assert sum(isinstance(e, Bulk) for e in events) == len(bulk)
    assert decoder.done
    assert state_digest(LAYOUT, decoder.staged_sections(), dst) == state_digest(
        LAYOUT, SECTIONS, SRC
    )
