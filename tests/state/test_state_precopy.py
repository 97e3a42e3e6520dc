"""PrecopySource: rounds, sizes, zero-copy LIVE records, and a running device dirtying memory."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from state_helpers import (
    CANON,
    DECL,
    FULL,
    MODEL,
    blank_regions,
    decode_all,
    decoder_for,
    make_regions,
    sections_for,
)

from devmig import StreamError
from devmig.state import (
    PAGE_SIZE,
    ROUND_END,
    PrecopySource,
    Region,
    StreamEncoder,
    state_digest,
)
from devmig.state._records import FLAG_LIVE, RECORD_HEAD, Codec, RecordType

LAYOUT = DECL.layout(FULL)
SECTIONS = sections_for(LAYOUT)
TOTAL = LAYOUT.region_bytes


def _source(regions, chunk=8192, **kw):
    encoder = StreamEncoder(MODEL, CANON, LAYOUT, {}, chunk_size=chunk)
    return encoder.header(), PrecopySource(regions, encoder, **kw)


def _types(buffers) -> list[int]:
    """Record types in a list of buffers (heads are where a record starts)."""
    data = b"".join(bytes(b) for b in buffers)
    out, pos = [], 0
    while pos < len(data):
        rtype, _, length = RECORD_HEAD.unpack(data[pos : pos + 6])
        out.append(rtype)
        pos += 6 + length + 8
    return out


def _random_writes(rng: random.Random, regions, count: int) -> None:
    for _ in range(count):
        region = rng.choice(regions)
        offset = rng.randrange(region.size)
        length = min(rng.choice([1, 7, 100, 4096, 9000]), region.size - offset)
        region.write(offset, rng.randbytes(length))


def test_sizes_through_the_first_pass():
    regions = make_regions(LAYOUT, seed=1)
    _, src = _source(regions, chunk=4096)
    assert src.initial_bytes == TOTAL and src.dirty_bytes == 0
    records = src.next_records(4096 + 31)
    assert isinstance(records, list) and len(records) == 3  # one BULK: head, data, digest
    assert src.initial_bytes == TOTAL - 4096
    regions[0].write(10, b"x")  # behind the first pass: dirty
    regions[0].write(3 * 4096, b"y")  # ahead of it: still initial
    assert src.dirty_bytes == PAGE_SIZE
    assert src.initial_bytes == TOTAL - 4096
    assert src.stop_copy_size() >= TOTAL


def test_round_end_record_then_sentinel():
    regions = make_regions(LAYOUT, seed=2, zero_pages=False)
    _, src = _source(regions)
    seen = []
    while (records := src.next_records(1 << 20)) is not ROUND_END:
        seen += _types(records)
    assert seen[-1] == RecordType.ROUND_END and seen.count(RecordType.ROUND_END) == 1
    assert src.initial_bytes == 0 and src.dirty_bytes == 0
    # Nothing dirty: an empty round has no ROUND_END record, just the sentinel.
    assert src.next_records(1 << 20) is ROUND_END
    regions[1].write(5000, b"abc")
    assert src.dirty_bytes == PAGE_SIZE
    records = src.next_records(1 << 20)
    assert _types(records) == [RecordType.BULK, RecordType.ROUND_END]
    assert len(records[1]) == 2 * PAGE_SIZE  # the whole LIVE record that carried the page
    assert src.expanded_pages == 1
    assert src.next_records(1 << 20) is ROUND_END
    assert src.rounds == 2


def test_max_bytes_is_respected_after_the_first_record():
    regions = make_regions(LAYOUT, seed=3, zero_pages=False)
    _, src = _source(regions, chunk=8192)
    for budget in (100, 5000, 20000):
        records = src.next_records(budget)
        assert isinstance(records, list)
        size = sum(len(b) for b in records)
        assert size <= max(budget, 4096 + 31)


def test_every_phase_sends_region_memory_live_only_while_running():
    regions = make_regions(LAYOUT, seed=4, zero_pages=False)
    _, src = _source(regions, chunk=4096)
    pre = src.next_records(4096 + 31)
    assert isinstance(pre[1], memoryview) and pre[1].obj is regions[0].data  # no copy
    assert pre[0][1] == FLAG_LIVE  # read while the device runs
    assert src.copied_bytes == 0 and src.encoder.live_records == 1
    stop = src.next_records(4096 + 31, stopped=True)
    assert isinstance(stop[1], memoryview) and stop[1].obj is regions[0].data
    assert stop[0][1] == 0  # the device is stopped: nothing can tear it
    assert src.stopped
    with pytest.raises(StreamError) as info:
        src.next_records(100, stopped=False)
    assert info.value.code == "STREAM_ORDER"


def test_untracked_region_is_copied_and_never_live():
    """A region something writes without marking pages (a client's mapping) is never LIVE."""
    regions = make_regions(LAYOUT, seed=4, zero_pages=False)
    untracked = Region.for_layout(LAYOUT.regions[0], tracked=False)
    untracked.data[:] = regions[0].data
    _, src = _source([untracked, regions[1]], chunk=4096)
    pre = src.next_records(4096 + 31)
    assert isinstance(pre[1].obj, bytes) and pre[0][1] == 0  # a private copy
    assert src.copied_bytes == 4096 and src.encoder.live_records == 0


def test_compressed_precopy_records_are_not_live():
    """zstd output is a private buffer, consistent with its digest: only raw records are LIVE."""
    regions = make_regions(LAYOUT, seed=4, zero_pages=False)
    regions[0].data[:4096] = 7  # compresses
    encoder = StreamEncoder(MODEL, CANON, LAYOUT, {}, chunk_size=4096, compress=True)
    encoder.header()
    src = PrecopySource(regions, encoder)
    first = src.next_records(4096 + 31)
    assert first[0][1] == 0 and first[0][6 + 16] == Codec.ZSTD
    second = src.next_records(4096 + 31)  # random bytes: kept raw, so LIVE
    assert second[0][1] == FLAG_LIVE and second[0][6 + 16] == Codec.RAW
    assert second[1].obj is regions[0].data


def test_finish_needs_every_byte_sent():
    _, src = _source(make_regions(LAYOUT, seed=5))
    with pytest.raises(StreamError) as info:
        src.finish(SECTIONS)
    assert info.value.code == "STREAM_ORDER"


def test_writes_tearing_live_records_are_discarded_and_resent():
    """Zero-copy pre-copy: the device keeps writing while the records wait to be sent.

    The writes land in memory the LIVE records point at, after their digests were
    taken: the torn records are discarded and their pages come again.
    """
    rng = random.Random(7)
    regions = make_regions(LAYOUT, seed=7)
    header, src = _source(regions, chunk=4096)
    wire = [header]
    for _ in range(3):
        while (records := src.next_records(9000)) is not ROUND_END:
            _random_writes(rng, regions, 5)  # lands in memory the records were taken from
            wire += [bytes(b) for b in records]
    while records := src.next_records(1 << 16, stopped=True):
        wire += [bytes(b) for b in records]
    wire.append(src.finish(SECTIONS))
    dst = blank_regions(LAYOUT)
    decoder = decoder_for(LAYOUT, dst)
    decode_all(decoder, b"".join(wire))
    assert decoder.discarded_records > 0
    assert state_digest(LAYOUT, decoder.staged_sections(), dst) == state_digest(
        LAYOUT, SECTIONS, regions
    )


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    rounds=st.integers(0, 5),
    chunk_pages=st.integers(1, 4),
    budget=st.integers(1, 40000),
    compress=st.booleans(),
)
def test_concurrent_dirtying_converges_to_the_source_state(
    seed, rounds, chunk_pages, budget, compress
):
    rng = random.Random(seed)
    regions = make_regions(LAYOUT, seed=seed % 1000)
    encoder = StreamEncoder(
        MODEL, CANON, LAYOUT, {}, compress=compress, chunk_size=chunk_pages * PAGE_SIZE
    )
    src = PrecopySource(regions, encoder)
    wire = [encoder.header()]
    done = 0
    while done < rounds:
        records = src.next_records(budget)
        if records is ROUND_END:
            done += 1
            continue
        wire += [bytes(b) for b in records]
        _random_writes(rng, regions, rng.randrange(4))
    _random_writes(rng, regions, 3)  # the device stops after a last burst
    expected = [r.data.tobytes() for r in regions]
    while records := src.next_records(budget, stopped=True):
        wire += [bytes(b) for b in records]
    assert src.initial_bytes == 0 and src.dirty_bytes == 0
    wire.append(src.finish(SECTIONS))
    dst = blank_regions(LAYOUT)
    decoder = decoder_for(LAYOUT, dst)
    decode_all(decoder, b"".join(wire))
    assert [r.data.tobytes() for r in dst] == expected
    assert state_digest(LAYOUT, decoder.staged_sections(), dst) == state_digest(
        LAYOUT, SECTIONS, regions
    )


class _VfioDataFd:
    """What a device in the SDK does with the source: read(n) in PRE_COPY/STOP_COPY."""

    def __init__(self, regions) -> None:
        self.encoder = StreamEncoder(MODEL, CANON, LAYOUT, {"implementation": "sdk-test"})
        self.source = PrecopySource(regions, self.encoder)
        self.pending = bytearray(self.encoder.header())
        self.finished = False

    def read(self, n: int, *, stopped: bool) -> bytes | None:
        """Up to ``n`` stream bytes; ``None`` is ENOMSG (pre-copy), ``b""`` the end."""
        while len(self.pending) < n and not self.finished:
            records = self.source.next_records(n, stopped=stopped)
            if records is ROUND_END:
                if self.pending:
                    break
                return None
            if not records:  # stop-copy bulk done
                self.pending += self.source.finish(SECTIONS)
                self.finished = True
                break
            for b in records:
                self.pending += b
        out = bytes(self.pending[:n])
        del self.pending[:n]
        return out


def test_sdk_style_read_loop():
    regions = make_regions(LAYOUT, seed=8)
    fd = _VfioDataFd(regions)
    stream = bytearray()
    enomsg = 0
    while enomsg < 3:
        chunk = fd.read(3000, stopped=False)
        if chunk is None:
            enomsg += 1
            regions[0].write(enomsg * 100, b"dirty")
            continue
        stream += chunk
    while chunk := fd.read(3000, stopped=True):
        stream += chunk
    dst = blank_regions(LAYOUT)
    decoder = decoder_for(LAYOUT, dst)
    decode_all(decoder, bytes(stream))
    assert [r.data.tobytes() for r in dst] == [r.data.tobytes() for r in regions]


def test_source_requires_matching_regions():
    encoder = StreamEncoder(MODEL, CANON, LAYOUT, {})
    with pytest.raises(StreamError) as info:
        PrecopySource([Region("mem", 10)], encoder)
    assert info.value.code == "LAYOUT_INVALID"
    with pytest.raises(StreamError):
        PrecopySource(make_regions(LAYOUT), encoder, chunk_size=1000)
