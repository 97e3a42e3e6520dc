"""The discard rule of DESIGN §4, through the real decoder and both of its input paths.

Pre-copy sends BULK records straight from the memory of a running device,
flagged ``LIVE``. A write that races the send tears a record: its digest no
longer matches the bytes that went out, and the page, dirtied after its bit
was cleared, is sent again. The destination discards such a record — nothing
more of it is applied and its range leaves the coverage, even where earlier
records had covered it — and the load goes on. Every other wrong digest, and
every corruption that no later record repairs, refuses the stream, and the
destination is then as it was created.

The races are made deterministic here: the "concurrent writer" writes into
region memory between ``next_records()`` handing out a LIVE record and the
record's bytes being taken for the wire.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pytest
from state_helpers import (
    CANON,
    DECL,
    FULL,
    MODEL,
    blank_regions,
    bulk_record,
    craft,
    decode,
    decoder_for,
    encode_stream,
    framing_digest,
    header_record,
    make_regions,
    section_records,
    sections_for,
)

from devmig import StreamError
from devmig.state import (
    PAGE_SIZE,
    ROUND_END,
    Buffer,
    Bulk,
    Discarded,
    PrecopySource,
    Region,
    StreamEncoder,
    inspect_stream,
    state_digest,
)
from devmig.state._records import (
    BULK_HEAD,
    DIGEST,
    FLAG_LIVE,
    PREAMBLE,
    RECORD_HEAD,
    Codec,
    RecordType,
)

LAYOUT = DECL.layout(FULL)
SECTIONS = sections_for(LAYOUT)
MEM, RING = (r.size for r in LAYOUT.regions)
ZERO_COPY = pytest.mark.parametrize("zero_copy", [False, True], ids=["receive_data", "get_buffer"])


# -- a source whose device keeps writing ---------------------------------------------


@dataclass
class Source:
    """A device's regions, its encoder and pre-copy source, and the stream so far, per record."""

    seed: int
    compress: bool = False
    chunk: int = PAGE_SIZE
    regions: list[Region] = field(init=False)
    records: list[bytes] = field(init=False)
    source: PrecopySource = field(init=False)

    def __post_init__(self) -> None:
        self.regions = make_regions(LAYOUT, seed=self.seed, zero_pages=False)
        encoder = StreamEncoder(
            MODEL, CANON, LAYOUT, {}, chunk_size=self.chunk, compress=self.compress
        )
        self.preamble_and_header = encoder.header()
        self.source = PrecopySource(self.regions, encoder)
        self.records = []

    def round(self, racing: Callable[[list[Buffer]], None] | None = None) -> None:
        """One whole pre-copy round; ``racing`` writes while its records wait to be sent."""
        while (buffers := self.source.next_records(1 << 20)) is not ROUND_END:
            assert isinstance(buffers, list)
            if racing is not None:
                racing(buffers)
            self.records += _split(b"".join(bytes(b) for b in buffers))

    def stop(self) -> None:
        """STOP_COPY to the end: the rest, the sections, the trailer."""
        while buffers := self.source.next_records(1 << 20, stopped=True):
            self.records += _split(b"".join(bytes(b) for b in buffers))
        self.records += _split(self.source.finish(SECTIONS))

    def write(self, region: int, page: int, data: bytes = b"written") -> None:
        self.regions[region].write(page * PAGE_SIZE + 100, data)

    def stream(self) -> bytes:
        return self.preamble_and_header + b"".join(self.records)

    def digest(self) -> bytes:
        return state_digest(LAYOUT, SECTIONS, self.regions)

    def find(self, region: int, page: int, *, round: int, live: bool = True) -> int:
        """The index in :attr:`records` of the BULK for ``region``/``page`` sent in ``round``."""
        current = 0
        for index, record in enumerate(self.records):
            rtype, flags, _ = RECORD_HEAD.unpack_from(record)
            if rtype == RecordType.ROUND_END:
                current += 1
            elif rtype == RecordType.BULK and current == round:
                r, offset, _, _ = BULK_HEAD.unpack_from(record, RECORD_HEAD.size)
                if (r, offset) == (region, page * PAGE_SIZE) and (flags == FLAG_LIVE) == live:
                    return index
        raise LookupError((region, page, round))


def _split(data: bytes) -> list[bytes]:
    out, pos = [], 0
    while pos < len(data):
        _, _, length = RECORD_HEAD.unpack_from(data, pos)
        end = pos + RECORD_HEAD.size + length + DIGEST.size
        out.append(data[pos:end])
        pos = end
    return out


def _flip(record: bytes, index: int) -> bytes:
    out = bytearray(record)
    out[index] ^= 0x10
    return bytes(out)


DATA = RECORD_HEAD.size + BULK_HEAD.size  # where a BULK's data starts in its record
OFFSET = slice(RECORD_HEAD.size + 4, RECORD_HEAD.size + 12)  # a BULK's offset field


def _tear(source: Source, region: int, page: int) -> Callable[[list[Buffer]], None]:
    """A writer that stores into ``page`` while the LIVE record pointing at it waits."""

    def racing(buffers: list[Buffer]) -> None:
        for buffer in buffers:
            if (
                isinstance(buffer, memoryview)
                and buffer.obj is source.regions[region].data
                and np.shares_memory(
                    np.frombuffer(buffer, np.uint8),
                    source.regions[region].data[page * PAGE_SIZE : (page + 1) * PAGE_SIZE],
                )
            ):
                source.write(region, page, b"torn by a racing write")
                return
        raise AssertionError(f"no LIVE record of page {page} in this batch")

    return racing


def _load(data: bytes, *, zero_copy: bool) -> tuple[list[object], list[Region], object]:
    dst = blank_regions(LAYOUT)
    decoder = decoder_for(LAYOUT, dst)
    events = decode(decoder, data, zero_copy=zero_copy)
    return events, dst, decoder


def _refused(data: bytes, *, zero_copy: bool) -> StreamError:
    """Load ``data``: it must be refused; the destination is then as created and loads again."""
    dst = blank_regions(LAYOUT)
    created = [r.data.tobytes() for r in dst]
    decoder = decoder_for(LAYOUT, dst)
    with pytest.raises(StreamError) as info:
        decode(decoder, data, zero_copy=zero_copy)
    decoder.abort()
    assert [r.data.tobytes() for r in dst] == created
    src = make_regions(LAYOUT, seed=99)
    again = decoder_for(LAYOUT, dst)
    decode(again, encode_stream(LAYOUT, src, SECTIONS), zero_copy=zero_copy)
    assert state_digest(LAYOUT, again.staged_sections(), dst) == state_digest(LAYOUT, SECTIONS, src)
    return info.value


# -- a torn record is discarded and re-sent --------------------------------------------


@ZERO_COPY
def test_live_record_torn_by_a_concurrent_writer_is_discarded_and_resent(zero_copy):
    source = Source(seed=1)
    source.round(racing=_tear(source, 0, 2))  # page 2's record is torn after its digest
    source.round()  # page 2 was dirtied after its bit was cleared: sent again
    source.stop()
    torn = source.records[source.find(0, 2, round=0)]
    resent = source.records[source.find(0, 2, round=1)]
    assert torn[1] == resent[1] == FLAG_LIVE
    events, dst, decoder = _load(source.stream(), zero_copy=zero_copy)
    discarded = [e for e in events if isinstance(e, Discarded)]
    assert discarded == [Discarded(0, 2 * PAGE_SIZE, PAGE_SIZE, 0)]
    assert decoder.discarded_records == 1 and decoder.discarded_bytes == PAGE_SIZE
    assert any(isinstance(e, Bulk) and e.live and e.offset == 2 * PAGE_SIZE for e in events)
    assert decoder.done
    assert state_digest(LAYOUT, decoder.staged_sections(), dst) == source.digest()
    summary = inspect_stream(source.stream())
    assert summary.digest_ok is True
    assert (summary.regions[0].discarded_records, summary.regions[0].discarded_bytes) == (1, 4096)
    assert summary.regions[0].covered == ((0, MEM),)


@ZERO_COPY
@pytest.mark.parametrize("then", ["another-round", "stop-copy"])
def test_a_torn_multi_page_record_is_resent_whole(then, zero_copy):
    """One page of a 5-page LIVE record torn: the destination uncovers all 5, the source re-sends all 5."""
    source = Source(seed=11, chunk=5 * PAGE_SIZE)
    source.round(racing=_tear(source, 0, 3))  # pages 0..4 of region 0 go as one record
    if then == "another-round":
        source.round()
    source.stop()
    events, dst, decoder = _load(source.stream(), zero_copy=zero_copy)
    assert [e for e in events if isinstance(e, Discarded)] == [Discarded(0, 0, 5 * PAGE_SIZE, 0)]
    assert source.source.expanded_pages == 4  # the record's other pages, not dirty themselves
    assert decoder.done
    assert state_digest(LAYOUT, decoder.staged_sections(), dst) == source.digest()


@ZERO_COPY
def test_every_record_of_a_round_torn_still_loads(zero_copy):
    """Writes into every page while round 0 waits: all discarded, the next round repairs all."""
    source = Source(seed=2)

    def racing(buffers: list[Buffer]) -> None:
        for region in source.regions:
            for page in range(region.page_count):
                region.write(page * PAGE_SIZE, b"\xff")

    source.round(racing)
    source.stop()
    _events, dst, decoder = _load(source.stream(), zero_copy=zero_copy)
    pages = sum(r.page_count for r in source.regions)
    assert decoder.discarded_records == pages and decoder.discarded_bytes == MEM + RING
    assert state_digest(LAYOUT, decoder.staged_sections(), dst) == source.digest()


# -- refused: corruption that no later record repairs ----------------------------------


@ZERO_COPY
def test_s1_resent_live_payload_corrupted_after_an_earlier_round_covered_it(zero_copy):
    """The discarded range leaves the coverage although round 0 covered it: BULK_INCOMPLETE."""
    source = Source(seed=3)
    source.round()
    source.write(0, 1)
    source.round()  # re-sends page 1, LIVE
    source.stop()  # nothing dirty any more: page 1 is not sent again
    index = source.find(0, 1, round=1)
    source.records[index] = _flip(source.records[index], DATA + 500)
    err = _refused(source.stream(), zero_copy=zero_copy)
    assert (err.code, err.region, err.offset) == ("BULK_INCOMPLETE", 0, PAGE_SIZE), err
    summary = inspect_stream(source.stream())  # inspect discards it the same way
    assert summary.regions[0].discarded_records == 1
    assert summary.regions[0].covered == ((0, PAGE_SIZE), (2 * PAGE_SIZE, MEM))


@ZERO_COPY
def test_s2_resent_live_record_moved_to_a_page_that_stop_copy_resends(zero_copy):
    """Coverage completes again, but the BULK fields are in the framing: DIGEST_MISMATCH."""
    source = Source(seed=4)
    source.round()
    source.write(0, 1)
    source.round()  # re-sends page 1, LIVE
    source.write(0, 3)
    source.stop()  # re-sends page 3 (unflagged) and not page 1
    source.find(0, 3, round=2, live=False)
    index = source.find(0, 1, round=1)
    record = bytearray(source.records[index])
    record[OFFSET] = (3 * PAGE_SIZE).to_bytes(8, "big")  # now says page 3; digest as sent
    source.records[index] = bytes(record)
    err = _refused(source.stream(), zero_copy=zero_copy)
    assert err.code == "DIGEST_MISMATCH", err


@ZERO_COPY
def test_s3_compressed_record_payload_corrupted(zero_copy):
    source = Source(seed=5, compress=True)
    source.regions[0].data[PAGE_SIZE : 2 * PAGE_SIZE] = 7  # compresses
    source.round()
    source.stop()
    index = source.find(0, 1, round=0, live=False)
    record = source.records[index]
    assert record[DATA - 1] == Codec.ZSTD and record[1] == 0  # never LIVE
    source.records[index] = _flip(record, len(record) - DIGEST.size - 3)
    err = _refused(source.stream(), zero_copy=zero_copy)
    assert err.code == "RECORD_CORRUPT", err


def _corrupt_nth(rtype: RecordType, nth: int, at: Callable[[bytes], int]) -> bytes:
    """A valid pre-copy stream with the ``nth`` record of ``rtype`` corrupted at ``at(record)``."""
    source = Source(seed=6)
    source.regions[1].data[: 2 * PAGE_SIZE] = 0  # two ZERO records
    source.round()
    source.write(0, 4)
    source.stop()
    matching = [i for i, r in enumerate(source.records) if r[0] == rtype]
    index = matching[nth]
    source.records[index] = _flip(source.records[index], at(source.records[index]))
    return source.stream()


CORRUPTED = {
    "unflagged-bulk-payload": (RecordType.BULK, -1, lambda r: DATA + 7),
    "unflagged-bulk-digest": (RecordType.BULK, -1, lambda r: len(r) - 1),
    "zero-payload": (RecordType.ZERO, 0, lambda r: RECORD_HEAD.size + 11),
    "round-end-payload": (RecordType.ROUND_END, 0, lambda r: RECORD_HEAD.size + 3),
    "section-payload": (RecordType.SECTION, 1, lambda r: RECORD_HEAD.size + 9),
    "trailer-payload": (RecordType.TRAILER, 0, lambda r: RECORD_HEAD.size + 5),
    "trailer-digest": (RecordType.TRAILER, 0, lambda r: len(r) - 2),
}


@ZERO_COPY
@pytest.mark.parametrize(("rtype", "nth", "at"), list(CORRUPTED.values()), ids=list(CORRUPTED))
def test_every_other_wrong_digest_refuses_at_once(rtype, nth, at, zero_copy):
    data = _corrupt_nth(rtype, nth, at)
    err = _refused(data, zero_copy=zero_copy)
    assert err.code == "RECORD_CORRUPT", err
    with pytest.raises(StreamError) as info:
        inspect_stream(data)
    assert info.value.code == "RECORD_CORRUPT"


def test_header_with_a_wrong_digest_refuses_at_once():
    data = bytearray(craft(header_record(), *section_records(LAYOUT, SECTIONS)))
    data[PREAMBLE.size + RECORD_HEAD.size + 3] ^= 1
    err = _refused(bytes(data), zero_copy=False)
    assert (err.code, err.record) == ("RECORD_CORRUPT", 0)


# -- the discard limit: twice the region's size ------------------------------------------


def _torn_live(region: int, offset: int, data: bytes) -> bytes:
    return _flip(bulk_record(region, offset, data, flags=FLAG_LIVE), DATA)


def _with_discards(ring_bytes_discarded: int) -> tuple[bytes, list[Region]]:
    src = make_regions(LAYOUT, seed=8)
    ring = src[1].data.tobytes()
    torn = [_torn_live(1, 0, ring[:PAGE_SIZE]) for _ in range(ring_bytes_discarded // PAGE_SIZE)]
    bulk = [bulk_record(i, 0, r.data.tobytes(), flags=FLAG_LIVE) for i, r in enumerate(src)]
    return craft(header_record(), *torn, *bulk, *section_records(LAYOUT, SECTIONS)), src


@ZERO_COPY
def test_twice_the_region_discarded_still_loads(zero_copy):
    data, src = _with_discards(2 * RING)
    _events, dst, decoder = _load(data, zero_copy=zero_copy)
    assert decoder.discarded_bytes == 2 * RING and decoder.done
    assert state_digest(LAYOUT, decoder.staged_sections(), dst) == state_digest(
        LAYOUT, SECTIONS, src
    )


@ZERO_COPY
def test_more_than_twice_the_region_discarded_refuses_the_stream(zero_copy):
    data, _ = _with_discards(2 * RING + PAGE_SIZE)
    err = _refused(data, zero_copy=zero_copy)
    assert (err.code, err.region) == ("DISCARD_LIMIT", 1), err
    assert err.problems[0].value == 2 * RING + PAGE_SIZE
    assert err.problems[0].allowed == 2 * RING


# -- the framing digest ---------------------------------------------------------------


def test_trailer_hashes_the_framing_once_not_the_payloads():
    """Changing a payload with its record digest kept changes nothing the trailer hashes."""
    src = make_regions(LAYOUT, seed=10)
    data = encode_stream(LAYOUT, src, SECTIONS, rounds=1)
    summary = inspect_stream(data)
    assert bytes.fromhex(summary.digest) == framing_digest(data[: -(RECORD_HEAD.size + 16 + 8)])
    torn = _flip(bulk_record(0, 0, b"x" * 10, flags=FLAG_LIVE), DATA)
    assert framing_digest(PREAMBLE.pack(b"DVMG", 2, 0) + torn) == framing_digest(
        PREAMBLE.pack(b"DVMG", 2, 0) + _flip(torn, DATA + 1)
    )
    assert framing_digest(PREAMBLE.pack(b"DVMG", 2, 0) + torn) != framing_digest(
        PREAMBLE.pack(b"DVMG", 2, 0) + _flip(torn, RECORD_HEAD.size + 5)  # its offset field
    )


# -- through an SDK device: what the agent shows as the migration's statistics -------------


def test_device_counts_the_discarded_records_of_its_load():
    """A reference device's pre-copy record torn at the source: the destination device counts it."""
    from devmig.devices.accel import AccelV1, AccelV3
    from devmig.migration import State

    source = AccelV1.create("version=1,mem-size-mib=64")
    source.step(20)
    source.set_state(State.PRE_COPY)
    wire = bytearray()
    torn = False
    while not isinstance(buffers := source.read_data(1 << 20), type(ROUND_END)):
        for buffer in buffers:
            if not torn and isinstance(buffer, memoryview) and len(buffer) >= PAGE_SIZE:
                np.frombuffer(buffer, np.uint8)[:8] ^= 0xFF  # a racing store, before the send...
                source.regions[0].mark_dirty(0, source.regions[0].size)  # ...then its mark
                torn = True
            wire += buffer
    assert torn
    source.set_state(State.STOP_COPY)
    while buffers := source.read_data(1 << 20):
        assert isinstance(buffers, list)
        for buffer in buffers:
            wire += buffer
    destination = AccelV3.create_canonical(source.config)
    destination.set_state(State.RESUMING)
    destination.write_data(bytes(wire))
    records, nbytes = destination.load_discards
    assert records == 1 and nbytes > 0
    destination.set_state(State.STOP)
    assert destination.load_discards == (records, nbytes)  # kept after the commit
    assert destination.digest() == source.digest()
