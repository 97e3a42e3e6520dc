"""The stream decoder: sans-IO, incremental, loads a stream into a device's regions.

Theory of operation. The decoder is fed bytes (``receive_data``) or lends its
own buffers to the transport (``get_buffer``/``buffer_updated``, the asyncio
``BufferedProtocol`` shape) and yields one event per record from
``next_event()``, or :data:`NEED_DATA`. Inside, two small state machines run:
the stream *phase* (header, bulk, sections, done — the table ``ORDER`` shared
with the encoder) and the position *within a record* (:class:`_Want`: record
head, BULK fields, BULK data, BULK digest, or a whole small payload).

Every record head is judged from its 6 bytes before anything is buffered:
unknown type, wrong place in the order, or a length above the limits
(:class:`Limits`: ``max_record``, ``max_section``, ``max_chunk``) is refused
on the spot. Received bytes wait in an :class:`InputQueue` of views. Small
records (HEADER, SECTION, ZERO, ROUND_END, TRAILER, zstd BULK) are gathered
into one bounded buffer, their xxh3-64 checked, then decoded (CBOR only inside
that buffer). A raw BULK is never gathered: its data goes straight to the
destination region — from the input queue with one copy, or, through
``get_buffer``, by handing the transport the region's own memory slice so
the bytes land in place. Its xxh3-64 is fed piece by piece as the data lands
(cache-hot), and the digest is checked when the record's last 8 bytes
arrive. The running xxh3-128 the TRAILER carries takes only the framing
(record heads, BULK fields, record digests as received), so each payload
byte is hashed once. A raw BULK flagged ``LIVE`` (read while the source ran)
whose digest is wrong is *discarded*, not refused: its range leaves the
coverage and the load goes on (DESIGN §4); any other wrong digest refuses
the stream. This module does the framing and the byte movement; what a
verified record *means* for the destination is :class:`Load`'s job
(configuration check, ZERO in place, per-page coverage, discards, section
order and staging, trailer checks).

HEADER's model and canonical configuration are compared as typed values
before any other record is accepted. Sections are validated and *staged*;
the TRAILER verifies the stream digest, that every required section came and
that every region byte was covered. Only then is the load complete and
:meth:`StreamDecoder.staged_sections` available, for the device to commit at
RESUMING → STOP. Any failure puts the decoder in a terminal ERROR state where
every call raises the same :class:`StreamError`. Bulk data already landed in
the regions, so after a failure call :meth:`StreamDecoder.abort`, which resets
every region to its creation contents; a valid stream then loads into the same
regions with a new decoder.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any, Final, NoReturn

import xxhash

from devmig._errors import StreamError
from devmig.state._declaration import StateLayout
from devmig.state._events import NEED_DATA, Event, Header, NeedData
from devmig.state._input import InputQueue
from devmig.state._limits import DEFAULT_MAX_CHUNK, Limits
from devmig.state._load import Load
from devmig.state._problems import freeze_config
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
    VERSION_MAJOR,
    Codec,
    FramingHash,
    Phase,
    RecordType,
    decompress_chunk,
    expected_types,
    zstd_bound,
)
from devmig.state._region import Region

__all__ = ["StreamDecoder"]

_LOOKAHEAD: Final = RECORD_HEAD.size + BULK_HEAD.size  # a record head plus BULK fields


class _Want:
    """Where the decoder is within a record (plain ints: this is the hot path)."""

    PREAMBLE = 0
    RECORD_HEAD = 1
    BULK_HEAD = 2
    BULK_DATA = 3
    BULK_DIGEST = 4
    PAYLOAD = 5
    DONE = 6
    NAMES: Final = (
        "preamble",
        "record head",
        "BULK fields",
        "BULK data",
        "BULK digest",
        "payload",
        "done",
    )


_BULK: Final = int(RecordType.BULK)
_LIVE: Final = FLAG_LIVE
_BULK_TYPE: Final = RecordType.BULK
_TRAILER_TYPE: Final = RecordType.TRAILER
_RAW: Final = int(Codec.RAW)
_BULK_HEAD_SIZE: Final = BULK_HEAD.size
_TYPES: Final[Mapping[int, RecordType]] = {int(t): t for t in RecordType}
_ORDER: Final[Mapping[Phase, Mapping[int, Phase]]] = {
    phase: {int(t): nxt for t, nxt in allowed.items()} for phase, allowed in ORDER.items()
}


class StreamDecoder:
    """Decode one migration stream into a destination device.

    Args:
        model: the destination's model id.
        config: the destination's *canonical* configuration (typed values).
        layout: the destination's state layout (its full configuration).
        regions: the destination's regions, in layout order; bulk data is
            written into them in place.
        max_record: the largest record payload accepted (default: what a
            ``max_chunk`` BULK may need).
        max_section: the largest HEADER or SECTION payload (default: 1 MiB,
            or more when the layout's largest section needs it).
        max_chunk: the largest BULK raw length.

    Raises:
        StreamError: ``LAYOUT_INVALID`` when the regions do not match the
            layout; ``CONFIG_INVALID`` for a malformed configuration.
    """

    def __init__(
        self,
        model: str,
        config: Mapping[str, bool | int | str],
        layout: StateLayout,
        regions: Sequence[Region],
        *,
        max_record: int | None = None,
        max_section: int | None = None,
        max_chunk: int = DEFAULT_MAX_CHUNK,
    ) -> None:
        if len(regions) != len(layout.regions) or any(
            r.size != spec.size for r, spec in zip(regions, layout.regions, strict=False)
        ):
            raise StreamError(
                "LAYOUT_INVALID",
                "regions do not match the layout",
                value=[r.size for r in regions],
                allowed=[r.size for r in layout.regions],
            )
        self.model = model
        self.config = freeze_config(config)
        self.layout = layout
        self.regions = tuple(regions)
        self.limits = Limits.for_layout(
            layout, max_record=max_record, max_section=max_section, max_chunk=max_chunk
        )
        """The size limits in force."""
        self._max_chunk = self.limits.max_chunk
        self._largest_bulk = min(self.limits.max_record, BULK_HEAD.size + zstd_bound(max_chunk))
        self._load = Load(model, self.config, layout, self.regions)
        self._input = InputQueue()
        self._events: deque[Event] = deque()
        self._phase = Phase.HEADER
        self._allowed = _ORDER[Phase.HEADER]
        self._next_phase = Phase.HEADER
        self._want: int = _Want.PREAMBLE
        self._error: StreamError | None = None
        self._handed: tuple[bool, memoryview] | None = None
        self._landed = 0  # bytes received straight into region memory
        self._record_start = 0
        self._trailer = FramingHash()
        self._expected_trailer = b""
        self._rtype: RecordType | None = None
        self._need = 0
        self._length = 0
        self._last_length = 1 << 62  # the payload length of the latest record (none yet: large)
        self._rec_hash = xxhash.xxh3_64()
        self._live = False  # the current BULK is flagged LIVE
        self._bulk = (0, 0, 0)
        self._dest = memoryview(b"")
        self._dest_pos = 0
        self._steps = (  # indexed by _Want
            self._step_preamble,
            self._step_record_head,
            self._step_bulk_head,
            self._step_bulk_data,
            self._step_bulk_digest,
            self._step_payload,
            self._step_done,
        )
        self.header: Header | None = None
        """The HEADER event, once accepted."""
        self.minor: int | None = None
        """The stream's minor version, once read."""

    # -- public API -----------------------------------------------------------

    @property
    def phase(self) -> Phase:
        """Where the stream is: ``HEADER`` … ``DONE``, or ``ERROR``."""
        return self._phase

    @property
    def round(self) -> int:
        """Pre-copy rounds ended so far."""
        return self._load.round

    @property
    def done(self) -> bool:
        """Whether the TRAILER was verified (the load is complete)."""
        return self._want == _Want.DONE and self._error is None

    @property
    def error(self) -> StreamError | None:
        """The error that ended the load, if any."""
        return self._error

    @property
    def bulk_bytes(self) -> int:
        """Bulk bytes landed (raw and decompressed)."""
        return self._load.bulk_bytes

    @property
    def zero_bytes(self) -> int:
        """Bytes cleared by ZERO records."""
        return self._load.zero_bytes

    @property
    def discarded_records(self) -> int:
        """``LIVE`` BULK records discarded for a wrong digest (torn by a write at the source)."""
        return self._load.discarded_records

    @property
    def discarded_bytes(self) -> int:
        """The raw bytes of the discarded records (re-sent by a later record)."""
        return self._load.discarded_bytes

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Queue stream bytes (any segmentation). Immutable ``bytes`` are kept, not copied.

        Raises:
            StreamError: the decoder's error if it is in ERROR.
        """
        if self._error is not None:
            raise self._error
        view = memoryview(data).cast("B")
        if not view.readonly:
            view = memoryview(bytes(view))
        self._input.append(view)

    def next_event(self) -> Event | NeedData:
        """Return the next event, or :data:`NEED_DATA` when no full record is buffered.

        Raises:
            StreamError: on any refusal (then and ever after: the decoder is in ERROR).
        """
        if self._error is not None:
            raise self._error
        if not self._events and self._input.size:  # no step progresses without input
            self._process(until_event=True)
        return self._events.popleft() if self._events else NEED_DATA

    def get_buffer(self, sizehint: int = -1) -> memoryview:
        """Lend the transport a buffer to receive into (``BufferedProtocol.get_buffer``).

        Inside a raw BULK payload the buffer *is* the destination region's
        memory slice, so the bytes land in place. Otherwise it is a small
        buffer sized to reach the next decision point (a record head plus
        BULK fields), so that the next BULK payload can again land in place.

        Args:
            sizehint: a read-ahead the transport can take (``-1``: none).
                After a record smaller than ``sizehint`` the framing buffer
                is ``sizehint`` bytes, so that a run of small records (the
                scattered dirty pages of a stop-copy) comes in one receive
                instead of two per record; their bytes are then copied into
                place. After a large record the buffer stays exact, so the
                next large payload lands in place.

        Raises:
            StreamError: the decoder's error, or one found while parsing
                what was already received.
        """
        if self._error is not None:
            raise self._error
        if self._input.size:  # no step progresses without input
            self._process(until_event=False)
        if self._want == _Want.BULK_DATA and not self._input.size:
            view = self._dest[self._dest_pos :]
            self._handed = (True, view)
            return view
        size = self._framing_size()
        if sizehint > size and self._last_length < sizehint and self._phase is Phase.BULK:
            size = sizehint
        view = memoryview(bytearray(size))
        self._handed = (False, view)
        return view

    def buffer_updated(self, nbytes: int) -> None:
        """Account ``nbytes`` received into the buffer from the last :meth:`get_buffer`.

        Inside a raw BULK payload the bytes are already in the region: they
        are fed to the record's xxh3-64 right away.

        Raises:
            StreamError: the decoder's error; ``API_MISUSE`` without a
                preceding ``get_buffer`` or for a size beyond that buffer.
        """
        if self._error is not None:
            raise self._error
        handed, self._handed = self._handed, None
        if handed is None or not 0 <= nbytes <= len(handed[1]):
            raise StreamError(
                "API_MISUSE",
                "buffer_updated() needs a preceding get_buffer() and at most its size",
                value=nbytes,
            )
        in_region, view = handed
        if not nbytes:
            return
        if in_region:
            self._rec_hash.update(view[:nbytes])
            self._dest_pos += nbytes
            self._landed += nbytes
            if self._dest_pos == len(self._dest):
                self._want = _Want.BULK_DIGEST
        else:
            self._input.append(view[:nbytes])

    def end_of_input(self) -> None:
        """Declare that no more bytes will come; the stream must be complete.

        Raises:
            StreamError: ``TRUNCATED`` when the input ended inside a record
                or before the TRAILER; any error found in the remaining input.
        """
        self._raise_if_error()
        self._process(until_event=False)
        if self._want != _Want.DONE:
            inside = self._want not in (_Want.RECORD_HEAD, _Want.PREAMBLE) or self._input.size
            record = self._load.record
            self._fail(
                "TRUNCATED",
                f"input ended {'inside a record' if inside else 'before the TRAILER'} "
                f"(waiting for {_Want.NAMES[self._want]})",
                record=record if inside else record + 1,
                offset=self._offset + self._input.size,
            )

    def staged_sections(self) -> dict[str, dict[str, Any]]:
        """Return the validated sections, to commit at RESUMING → STOP.

        Returns:
            Section name → normalised field values, for every section received
            that this layout knows (optional ones included).

        Raises:
            StreamError: the decoder's error; ``STREAM_ORDER`` before the
                TRAILER was verified.
        """
        self._raise_if_error()
        if not self.done:
            raise StreamError(
                "STREAM_ORDER",
                "sections are staged until the TRAILER is verified",
                round=self._load.round,
            )
        return {name: dict(fields) for name, fields in self._load.staged.items()}

    def abort(self) -> None:
        """Give up the load: reset every region to its creation contents, drop staged sections.

        The decoder ends in ERROR (code ``ABORTED`` unless it already failed).
        Use a new decoder to load again.
        """
        self._load.reset()
        self._events.clear()
        self._input.clear()
        if self._error is None:
            self._error = StreamError("ABORTED", "the load was aborted", round=self._load.round)
        self._phase = Phase.ERROR

    # -- plumbing -------------------------------------------------------------

    @property
    def _offset(self) -> int:
        """Stream bytes consumed so far."""
        return self._input.consumed + self._landed

    def _framing_size(self) -> int:
        want = self._want
        if want == _Want.PREAMBLE:
            need = PREAMBLE_SIZE + _LOOKAHEAD
        elif want == _Want.RECORD_HEAD:
            need = _LOOKAHEAD
        elif want == _Want.BULK_HEAD:
            need = BULK_HEAD.size
        elif want == _Want.BULK_DATA:
            need = len(self._dest) - self._dest_pos
        elif want == _Want.BULK_DIGEST:
            need = DIGEST.size + _LOOKAHEAD
        elif want == _Want.PAYLOAD:
            need = self._need + _LOOKAHEAD
        else:
            need = 64
        return max(1, need - self._input.size)

    def _raise_if_error(self) -> None:
        if self._error is not None:
            raise self._error

    def _fail(self, code: str, message: str, **where: Any) -> NoReturn:
        self._load.fail(code, message, **where)

    def _process(self, *, until_event: bool) -> None:
        steps = self._steps
        events = self._events
        try:
            while steps[self._want]():
                if until_event and events:
                    return
        except StreamError as exc:
            if self._error is None:
                self._error = self._load.located(exc)
                self._phase = Phase.ERROR
            raise self._error from exc.__cause__

    def _end_record(self, event: Event | None) -> None:
        if event is not None:
            self._events.append(event)
        if self._next_phase is not self._phase:
            self._phase = self._next_phase
            self._allowed = _ORDER[self._phase]
        self._want = _Want.DONE if self._phase is Phase.DONE else _Want.RECORD_HEAD

    # -- steps ----------------------------------------------------------------

    def _step_done(self) -> bool:
        if self._input.size:
            self._fail(
                "STREAM_ORDER",
                "data after the TRAILER",
                record=self._load.record + 1,
                offset=self._offset,
            )
        return False

    def _step_preamble(self) -> bool:
        if self._input.size < PREAMBLE_SIZE:
            seen = self._input.peek(len(MAGIC))
            if not MAGIC.startswith(seen):
                self._fail("BAD_MAGIC", "not a devmig stream", offset=0, value=seen)
            return False
        raw = self._input.take(PREAMBLE_SIZE)
        assert raw is not None
        magic, major, minor = PREAMBLE.unpack(raw)
        if magic != MAGIC:
            self._fail(
                "BAD_MAGIC", "not a devmig stream", offset=0, value=bytes(magic), allowed=MAGIC
            )
        if major != VERSION_MAJOR:
            self._fail(
                "VERSION_UNSUPPORTED",
                f"stream format {major}.{minor}; this reader reads major {VERSION_MAJOR} only",
                offset=4,
                value=major,
                allowed=VERSION_MAJOR,
            )
        self.minor = minor
        self._trailer.update(raw)
        self._want = _Want.RECORD_HEAD
        return True

    def _step_record_head(self) -> bool:
        raw = self._input.take(RECORD_HEAD.size)
        if raw is None:
            return False
        rtype, flags, length = RECORD_HEAD.unpack(raw)
        self._load.record += 1
        self._record_start = start = self._offset - RECORD_HEAD.size
        known: RecordType | None
        if (
            rtype == _BULK
            and (not flags or flags == _LIVE)
            and _BULK_HEAD_SIZE <= length <= self._largest_bulk
            and _BULK in self._allowed
        ):  # the hot path: what _judge_record_head concludes for a sound BULK head
            self._next_phase = self._allowed[_BULK]
            known = _BULK_TYPE
        else:
            known = self._judge_record_head(rtype, flags, length, start)
        self._rtype = known
        self._length = self._last_length = length
        if known is _TRAILER_TYPE:
            self._expected_trailer = self._trailer.digest()
        else:
            self._trailer.update(raw)
        if known is _BULK_TYPE:
            self._live = flags == _LIVE
            self._want = _Want.BULK_HEAD
        else:
            self._need = length + DIGEST.size
            self._rec_hash = xxhash.xxh3_64()
            self._want = _Want.PAYLOAD
        return True

    def _judge_record_head(
        self, rtype: int, flags: int, length: int, start: int
    ) -> RecordType | None:
        """Check a record head in general; set the phase it leads to; return its known type.

        ``None`` is a skippable record of a type this reader does not know.
        """
        if flags & ~KNOWN_FLAGS:
            self._fail(
                "RECORD_CORRUPT",
                f"reserved flag bits set ({flags:#04x})",
                offset=start,
                value=flags,
            )
        known = _TYPES.get(rtype)
        self.limits.check_length(known, length, fail=self._fail, offset=start)
        if known is None:
            if not flags & FLAG_SKIPPABLE or self._phase not in (Phase.BULK, Phase.SECTIONS):
                self._fail(
                    "RECORD_UNKNOWN", f"unknown record type {rtype}", offset=start, value=rtype
                )
            self._next_phase = self._phase
        else:
            if flags & FLAG_SKIPPABLE:
                self._fail(
                    "RECORD_CORRUPT", f"{known.name} cannot be skippable", offset=start, value=flags
                )
            if flags & FLAG_LIVE and known is not _BULK_TYPE:
                self._fail(
                    "RECORD_CORRUPT", f"{known.name} cannot be LIVE", offset=start, value=flags
                )
            nxt = self._allowed.get(rtype)
            if nxt is None:
                self._fail(
                    "STREAM_ORDER",
                    f"{known.name} is not allowed in phase {self._phase.value}",
                    offset=start,
                    value=known.name,
                    allowed=expected_types(self._phase),
                )
            self._next_phase = nxt
        return known

    def _step_bulk_head(self) -> bool:
        raw = self._input.take(BULK_HEAD.size)
        if raw is None:
            return False
        region, offset, raw_length, codec = BULK_HEAD.unpack(raw)
        regions = self.regions
        need = 0  # a zstd BULK's data and digest, gathered as a payload
        if not (
            codec == _RAW
            and self._length - _BULK_HEAD_SIZE == raw_length <= self._max_chunk
            and region < len(regions)
            and offset + raw_length <= regions[region].size
        ):  # off the hot path (sound raw fields): the general checks
            if self._live and codec != _RAW:
                self._fail(
                    "RECORD_CORRUPT",
                    "a LIVE BULK must be raw",
                    region=region,
                    offset=offset,
                    value=codec,
                    allowed=_RAW,
                )
            data_length = self.limits.check_bulk(
                raw_length,
                self._length - BULK_HEAD.size,
                codec,
                fail=self._fail,
                region=region,
                offset=offset,
            )
            self._load.region(region, offset, raw_length)
            if codec == Codec.ZSTD:
                need = data_length + DIGEST.size
        self._trailer.update(raw)
        self._rec_hash = xxhash.xxh3_64(raw)
        self._bulk = (region, offset, raw_length)
        if need:
            self._need = need
            self._want = _Want.PAYLOAD
        else:
            self._dest = regions[region].view[offset : offset + raw_length]
            self._dest_pos = 0
            self._want = _Want.BULK_DATA if raw_length else _Want.BULK_DIGEST
        return True

    def _step_bulk_data(self) -> bool:
        if not self._input.size:
            return False
        dest = self._dest[self._dest_pos :]
        moved = self._input.move_into(dest, (self._rec_hash,))
        self._dest_pos += moved
        if self._dest_pos == len(self._dest):
            self._want = _Want.BULK_DIGEST
            return True
        return moved > 0

    def _step_bulk_digest(self) -> bool:
        raw = self._input.take(DIGEST.size)
        if raw is None:
            return False
        region, offset, raw_length = self._bulk
        self._trailer.update(raw)
        event: Event
        if DIGEST.unpack(raw)[0] == self._rec_hash.intdigest():
            event = self._load.bulk(region, offset, raw_length, compressed=False, live=self._live)
        elif self._live:  # torn by a write at the source: the page comes again
            event = self._load.discard(region, offset, raw_length)
        else:
            self._fail("RECORD_CORRUPT", "BULK digest mismatch", region=region, offset=offset)
        self._end_record(event)
        return True

    def _step_payload(self) -> bool:
        raw = self._input.take(self._need)
        if raw is None:
            return False
        body = raw[: -DIGEST.size]
        self._rec_hash.update(body)
        rtype = self._rtype
        if DIGEST.unpack(raw[-DIGEST.size :])[0] != self._rec_hash.intdigest():
            what = rtype.name if rtype is not None else "record"
            self._fail("RECORD_CORRUPT", f"{what} digest mismatch", offset=self._record_start)
        if rtype is not RecordType.TRAILER:
            self._trailer.update(raw[-DIGEST.size :])
        load = self._load
        event: Event | None = None
        if rtype is RecordType.BULK:
            region, offset, raw_length = self._bulk
            data = decompress_chunk(
                body, raw_length, record=load.record, region=region, offset=offset
            )
            self.regions[region].view[offset : offset + raw_length] = data
            event = load.bulk(region, offset, raw_length, compressed=True)
        elif rtype is RecordType.SECTION:
            event = load.section(body)
        elif rtype is RecordType.ZERO:
            event = load.zero(body)
        elif rtype is RecordType.ROUND_END:
            event = load.round_end(body)
        elif rtype is RecordType.HEADER:
            event = self.header = load.header(body, self.minor or 0)
        elif rtype is RecordType.TRAILER:
            event = load.trailer(body, self._expected_trailer, self._record_start)
        # else: a skippable record of a type this reader does not know
        self._end_record(event)
        return True
