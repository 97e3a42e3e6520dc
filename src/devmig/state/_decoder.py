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
(``max_record``, ``max_section``, ``max_chunk``) is refused on the spot. Small
records (HEADER, SECTION, ZERO, ROUND_END, TRAILER, zstd BULK) are gathered
into one bounded buffer, their xxh3-64 checked, then decoded (CBOR only inside
that buffer). A raw BULK is never gathered: its data goes straight to the
destination region — from the input queue with one copy, or, through
``get_buffer``, by handing the transport the region's own memory slice so
the bytes land in place. Its xxh3-64 and the running xxh3-128 of the stream
are fed piece by piece as the data lands (cache-hot), and the digest is
checked when the record's last 8 bytes arrive. ZERO clears a range in place.
Coverage of every region is tracked per page (:class:`PageCoverage`).

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
from devmig.state._coverage import PageCoverage
from devmig.state._declaration import StateLayout
from devmig.state._events import (
    NEED_DATA,
    Bulk,
    Event,
    Header,
    NeedData,
    RoundEnd,
    Section,
    Trailer,
    Zero,
)
from devmig.state._payloads import parse_header, parse_section
from devmig.state._problems import config_differences, error_from_problems, freeze_config
from devmig.state._records import (
    BULK_HEAD,
    DIGEST,
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
    Phase,
    RecordType,
    decompress_chunk,
    expected_types,
    zstd_bound,
)
from devmig.state._region import Region

__all__ = ["StreamDecoder"]

DEFAULT_MAX_CHUNK: Final = 16 << 20
DEFAULT_MAX_SECTION: Final = 1 << 20
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


_TYPES: Final[Mapping[int, RecordType]] = {int(t): t for t in RecordType}
_ORDER: Final[Mapping[Phase, Mapping[int, Phase]]] = {
    phase: {int(t): nxt for t, nxt in allowed.items()} for phase, allowed in ORDER.items()
}


_FIXED_LENGTH: Final[Mapping[int, int]] = {
    RecordType.ZERO.value: ZERO_PAYLOAD.size,
    RecordType.ROUND_END.value: ROUND_END_PAYLOAD.size,
    RecordType.TRAILER.value: TRAILER_PAYLOAD_SIZE,
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
        self.max_chunk = max_chunk
        self.max_section = (
            max_section
            if max_section is not None
            else max(DEFAULT_MAX_SECTION, layout.max_section_size)
        )
        bulk_max = BULK_HEAD.size + zstd_bound(max_chunk)
        self.max_record = max_record if max_record is not None else max(bulk_max, self.max_section)
        self._phase = Phase.HEADER
        self._want: int = _Want.PREAMBLE
        self._error: StreamError | None = None
        self._inq: deque[memoryview] = deque()
        self._inq_len = 0
        self._events: deque[Event] = deque()
        self._handed: tuple[bool, memoryview] | None = None
        self._consumed = 0
        self._record = -1
        self._record_start = 0
        self._round = 0
        self._trailer = xxhash.xxh3_128()
        self._expected_trailer = b""
        self._rtype: RecordType | None = None
        self._next_phase = Phase.HEADER
        self._need = 0
        self._length = 0
        self._rec_hash = xxhash.xxh3_64()
        self._bulk = (0, 0, 0, Codec.RAW)
        self._dest = memoryview(b"")
        self._dest_pos = 0
        self._coverage = [PageCoverage(r.size) for r in layout.regions]
        self._staged: dict[str, dict[str, Any]] = {}
        self._next_section = 0
        self._steps = (  # indexed by _Want
            self._step_preamble,
            self._step_record_head,
            self._step_bulk_head,
            self._step_bulk_data,
            self._step_bulk_digest,
            self._step_payload,
            self._step_done,
        )
        self._allowed = _ORDER[Phase.HEADER]
        self.header: Header | None = None
        """The HEADER event, once accepted."""
        self.minor: int | None = None
        """The stream's minor version, once read."""
        self.bulk_bytes = 0
        """Bulk bytes landed (raw and decompressed)."""
        self.zero_bytes = 0
        """Bytes cleared by ZERO records."""

    # -- public API -----------------------------------------------------------

    @property
    def phase(self) -> Phase:
        """Where the stream is: ``HEADER`` … ``DONE``, or ``ERROR``."""
        return self._phase

    @property
    def round(self) -> int:
        """Pre-copy rounds ended so far."""
        return self._round

    @property
    def done(self) -> bool:
        """Whether the TRAILER was verified (the load is complete)."""
        return self._want == _Want.DONE and self._error is None

    @property
    def error(self) -> StreamError | None:
        """The error that ended the load, if any."""
        return self._error

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Queue stream bytes (any segmentation). Immutable ``bytes`` are kept, not copied.

        Raises:
            StreamError: the decoder's error if it is in ERROR.
        """
        self._raise_if_error()
        view = memoryview(data).cast("B")
        if not view.readonly:
            view = memoryview(bytes(view))
        if len(view):
            self._inq.append(view)
            self._inq_len += len(view)

    def next_event(self) -> Event | NeedData:
        """Return the next event, or :data:`NEED_DATA` when no full record is buffered.

        Raises:
            StreamError: on any refusal (then and ever after: the decoder is in ERROR).
        """
        self._raise_if_error()
        if not self._events:
            self._process(until_event=True)
        return self._events.popleft() if self._events else NEED_DATA

    def get_buffer(self, sizehint: int = -1) -> memoryview:
        """Lend the transport a buffer to receive into (``BufferedProtocol.get_buffer``).

        Inside a raw BULK payload the buffer *is* the destination region's
        memory slice, so the bytes land in place. Otherwise it is a small
        buffer sized to reach the next decision point (a record head plus
        BULK fields), so that the next BULK payload can again land in place.

        Args:
            sizehint: ignored (the decoder knows what it needs).

        Raises:
            StreamError: the decoder's error, or one found while parsing
                what was already received.
        """
        self._raise_if_error()
        if self._want != _Want.BULK_DATA or self._inq_len:
            self._process(until_event=False)
        if self._want == _Want.BULK_DATA and not self._inq_len:
            view = self._dest[self._dest_pos :]
            self._handed = (True, view)
            return view
        view = memoryview(bytearray(self._framing_size()))
        self._handed = (False, view)
        return view

    def buffer_updated(self, nbytes: int) -> None:
        """Account ``nbytes`` received into the buffer from the last :meth:`get_buffer`.

        Raises:
            StreamError: the decoder's error; ``API_MISUSE`` without a
                preceding ``get_buffer`` or for a size beyond that buffer.
        """
        self._raise_if_error()
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
            piece = view[:nbytes]
            self._rec_hash.update(piece)
            self._trailer.update(piece)
            self._dest_pos += nbytes
            self._consumed += nbytes
            if self._dest_pos == len(self._dest):
                self._want = _Want.BULK_DIGEST
        else:
            self._inq.append(view[:nbytes])
            self._inq_len += nbytes

    def end_of_input(self) -> None:
        """Declare that no more bytes will come; the stream must be complete.

        Raises:
            StreamError: ``TRUNCATED`` when the input ended inside a record
                or before the TRAILER; any error found in the remaining input.
        """
        self._raise_if_error()
        self._process(until_event=False)
        if self._want != _Want.DONE:
            inside = self._want not in (_Want.RECORD_HEAD, _Want.PREAMBLE) or self._inq_len
            self._fail(
                "TRUNCATED",
                f"input ended {'inside a record' if inside else 'before the TRAILER'} "
                f"(waiting for {_Want.NAMES[self._want]})",
                record=self._record if inside else self._record + 1,
                offset=self._consumed + self._inq_len,
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
                round=self._round,
            )
        return {name: dict(fields) for name, fields in self._staged.items()}

    def abort(self) -> None:
        """Give up the load: reset every region to its creation contents, drop staged sections.

        The decoder ends in ERROR (code ``ABORTED`` unless it already failed).
        Use a new decoder to load again.
        """
        for region in self.regions:
            region.reset()
        self._staged.clear()
        self._events.clear()
        self._inq.clear()
        self._inq_len = 0
        if self._error is None:
            self._error = StreamError("ABORTED", "the load was aborted", round=self._round)
        self._phase = Phase.ERROR

    # -- input queue ----------------------------------------------------------

    def _take(self, n: int) -> memoryview | None:
        if self._inq_len < n:
            return None
        first = self._inq[0]
        if len(first) >= n:
            out = first[:n]
            if len(first) == n:
                self._inq.popleft()
            else:
                self._inq[0] = first[n:]
        else:
            buf = bytearray(n)
            pos = 0
            while pos < n:
                chunk = self._inq[0]
                k = min(len(chunk), n - pos)
                buf[pos : pos + k] = chunk[:k]
                pos += k
                if k == len(chunk):
                    self._inq.popleft()
                else:
                    self._inq[0] = chunk[k:]
            out = memoryview(buf)
        self._inq_len -= n
        self._consumed += n
        return out

    def _peek(self, n: int) -> bytes:
        out = b""
        for chunk in self._inq:
            out += bytes(chunk[: n - len(out)])
            if len(out) >= n:
                break
        return out

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
        return max(1, need - self._inq_len)

    # -- processing -----------------------------------------------------------

    def _raise_if_error(self) -> None:
        if self._error is not None:
            raise self._error

    def _fail(self, code: str, message: str, **where: Any) -> NoReturn:
        where.setdefault("record", self._record if self._record >= 0 else None)
        where.setdefault("round", self._round)
        raise StreamError(code, message, **where)

    def _process(self, *, until_event: bool) -> None:
        steps = self._steps
        events = self._events
        try:
            while steps[self._want]():
                if until_event and events:
                    return
        except StreamError as exc:
            if self._error is None:
                self._error = exc
                self._phase = Phase.ERROR
            raise

    def _step_done(self) -> bool:
        if self._inq_len:
            self._fail(
                "STREAM_ORDER",
                "data after the TRAILER",
                record=self._record + 1,
                offset=self._consumed,
            )
        return False

    def _step_preamble(self) -> bool:
        if self._inq_len < PREAMBLE_SIZE:
            if not MAGIC.startswith(self._peek(len(MAGIC))):
                self._fail(
                    "BAD_MAGIC", "not a devmig stream", offset=0, value=self._peek(len(MAGIC))
                )
            return False
        raw = self._take(PREAMBLE_SIZE)
        assert raw is not None
        magic, major, minor = PREAMBLE.unpack(raw)
        if magic != MAGIC:
            self._fail(
                "BAD_MAGIC", "not a devmig stream", offset=0, value=bytes(magic), allowed=MAGIC
            )
        if major != VERSION_MAJOR:
            self._fail(
                "VERSION_UNSUPPORTED",
                f"stream format {major}.{minor}; this reader reads major {VERSION_MAJOR}",
                offset=4,
                value=major,
                allowed=VERSION_MAJOR,
            )
        self.minor = minor
        self._trailer.update(raw)
        self._want = _Want.RECORD_HEAD
        return True

    def _step_record_head(self) -> bool:
        raw = self._take(RECORD_HEAD.size)
        if raw is None:
            return False
        rtype, flags, length = RECORD_HEAD.unpack(raw)
        self._record += 1
        self._record_start = start = self._consumed - RECORD_HEAD.size
        if flags & ~KNOWN_FLAGS:
            self._fail(
                "RECORD_CORRUPT",
                f"reserved flag bits set ({flags:#04x})",
                offset=start,
                value=flags,
            )
        if length > self.max_record:
            self._fail(
                "TOO_LARGE",
                "record longer than allowed",
                offset=start,
                value=length,
                allowed=self.max_record,
            )
        known = _TYPES.get(rtype)
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
            self._check_length(known, length, start)
        self._rtype = known
        self._length = length
        if known is RecordType.TRAILER:
            self._expected_trailer = self._trailer.digest()
        else:
            self._trailer.update(raw)
        if known is RecordType.BULK:
            self._want = _Want.BULK_HEAD
        else:
            self._need = length + DIGEST.size
            self._rec_hash = xxhash.xxh3_64()
            self._want = _Want.PAYLOAD
        return True

    def _check_length(self, rtype: RecordType, length: int, start: int) -> None:
        fixed = _FIXED_LENGTH.get(rtype.value)
        if fixed is not None and length != fixed:
            self._fail(
                "RECORD_CORRUPT",
                f"{rtype.name} length must be {fixed}",
                offset=start,
                value=length,
                allowed=fixed,
            )
        if rtype in (RecordType.HEADER, RecordType.SECTION) and length > self.max_section:
            self._fail(
                "TOO_LARGE",
                f"{rtype.name} longer than allowed",
                offset=start,
                value=length,
                allowed=self.max_section,
            )
        if rtype is RecordType.BULK:
            if length < BULK_HEAD.size:
                self._fail(
                    "RECORD_CORRUPT", "BULK shorter than its fields", offset=start, value=length
                )
            if length > BULK_HEAD.size + zstd_bound(self.max_chunk):
                self._fail(
                    "TOO_LARGE",
                    "BULK longer than the chunk limit allows",
                    offset=start,
                    value=length,
                    allowed=BULK_HEAD.size + zstd_bound(self.max_chunk),
                )

    def _check_region(self, region: int, offset: int, length: int) -> Region:
        if region >= len(self.regions):
            self._fail(
                "BULK_OUT_OF_RANGE",
                f"no region {region}",
                region=region,
                offset=offset,
                allowed={"min": 0, "max": len(self.regions) - 1},
            )
        target = self.regions[region]
        if offset + length > target.size:
            self._fail(
                "BULK_OUT_OF_RANGE",
                f"bytes [{offset}, {offset + length}) outside region {target.name!r} of {target.size} bytes",
                region=region,
                offset=offset,
                value=length,
                allowed={"min": 0, "max": target.size},
            )
        return target

    def _step_bulk_head(self) -> bool:
        raw = self._take(BULK_HEAD.size)
        if raw is None:
            return False
        region, offset, raw_length, codec = BULK_HEAD.unpack(raw)
        data_length = self._need_bulk_data(region, offset, raw_length, codec)
        self._trailer.update(raw)
        self._rec_hash = xxhash.xxh3_64(raw)
        self._bulk = (region, offset, raw_length, Codec(codec))
        if codec == Codec.ZSTD:
            self._need = data_length + DIGEST.size
            self._want = _Want.PAYLOAD
        else:
            self._dest = self.regions[region].view[offset : offset + raw_length]
            self._dest_pos = 0
            self._want = _Want.BULK_DATA if raw_length else _Want.BULK_DIGEST
        return True

    def _need_bulk_data(self, region: int, offset: int, raw_length: int, codec: int) -> int:
        if raw_length > self.max_chunk:
            self._fail(
                "TOO_LARGE",
                "BULK chunk larger than allowed",
                region=region,
                offset=offset,
                value=raw_length,
                allowed=self.max_chunk,
            )
        self._check_region(region, offset, raw_length)
        data_length = self._length - BULK_HEAD.size
        if codec == Codec.RAW:
            if data_length != raw_length:
                self._fail(
                    "RECORD_CORRUPT",
                    "raw BULK data length differs from its stated length",
                    region=region,
                    offset=offset,
                    value=data_length,
                    allowed=raw_length,
                )
        elif codec == Codec.ZSTD:
            if data_length > zstd_bound(raw_length):
                self._fail(
                    "RECORD_CORRUPT",
                    "zstd BULK data larger than zstd could produce for its raw length",
                    region=region,
                    offset=offset,
                    value=data_length,
                    allowed=zstd_bound(raw_length),
                )
        else:
            self._fail(
                "RECORD_UNKNOWN",
                f"unknown BULK codec {codec}",
                region=region,
                offset=offset,
                value=codec,
            )
        return data_length

    def _step_bulk_data(self) -> bool:
        moved = False
        dest = self._dest
        while self._inq and self._dest_pos < len(dest):
            chunk = self._inq[0]
            k = min(len(chunk), len(dest) - self._dest_pos)
            piece = chunk[:k]
            dest[self._dest_pos : self._dest_pos + k] = piece
            self._rec_hash.update(piece)
            self._trailer.update(piece)
            if k == len(chunk):
                self._inq.popleft()
            else:
                self._inq[0] = chunk[k:]
            self._inq_len -= k
            self._consumed += k
            self._dest_pos += k
            moved = True
        if self._dest_pos == len(dest):
            self._want = _Want.BULK_DIGEST
            return True
        return moved

    def _step_bulk_digest(self) -> bool:
        raw = self._take(DIGEST.size)
        if raw is None:
            return False
        region, offset, raw_length, _ = self._bulk
        if DIGEST.unpack(raw)[0] != self._rec_hash.intdigest():
            self._fail("RECORD_CORRUPT", "BULK digest mismatch", region=region, offset=offset)
        self._trailer.update(raw)
        self._land(region, offset, raw_length, compressed=False)
        return True

    def _land(self, region: int, offset: int, length: int, *, compressed: bool) -> None:
        self._coverage[region].add(offset, length)
        self.bulk_bytes += length
        self._events.append(Bulk(region, offset, length, self._round, compressed))
        self._end_record()

    def _end_record(self) -> None:
        if self._next_phase is not self._phase:
            self._phase = self._next_phase
            self._allowed = _ORDER[self._phase]
        self._want = _Want.DONE if self._phase is Phase.DONE else _Want.RECORD_HEAD

    def _step_payload(self) -> bool:
        raw = self._take(self._need)
        if raw is None:
            return False
        body = raw[: -DIGEST.size]
        self._rec_hash.update(body)
        if DIGEST.unpack(raw[-DIGEST.size :])[0] != self._rec_hash.intdigest():
            what = self._rtype.name if self._rtype is not None else "record"
            self._fail("RECORD_CORRUPT", f"{what} digest mismatch", offset=self._record_start)
        rtype = self._rtype
        if rtype is not RecordType.TRAILER:
            self._trailer.update(raw)
        if rtype is RecordType.BULK:
            self._on_zstd(body)
        elif rtype is RecordType.SECTION:
            self._on_section(body)
        elif rtype is RecordType.ZERO:
            self._on_zero(body)
        elif rtype is RecordType.ROUND_END:
            self._on_round_end(body)
        elif rtype is RecordType.HEADER:
            self._on_header(body)
        elif rtype is RecordType.TRAILER:
            self._on_trailer(body)
        else:
            self._end_record()  # a skippable record of a type this reader does not know
        return True

    # -- records --------------------------------------------------------------

    def _on_header(self, body: memoryview) -> None:
        model, config, producer = parse_header(body, record=self._record)
        if model != self.model:
            self._fail(
                "CONFIG_MISMATCH",
                f"stream is for model {model!r}, this device is {self.model!r}",
                value=model,
                allowed=self.model,
            )
        diffs = config_differences(config, self.config)
        if diffs:
            name, got, expected = diffs[0]
            self._fail(
                "CONFIG_MISMATCH",
                f"configuration differs: {name} is {got!r} in the stream, {expected!r} here"
                + (f" (and {len(diffs) - 1} more)" if len(diffs) > 1 else ""),
                value=config,
                allowed=self.config,
                hint="; ".join(f"{n}: stream {g!r} vs here {e!r}" for n, g, e in diffs),
            )
        self.header = Header(VERSION_MAJOR, self.minor or 0, model, config, producer)
        self._events.append(self.header)
        self._end_record()

    def _on_zero(self, body: memoryview) -> None:
        region, offset, length = ZERO_PAYLOAD.unpack(body)
        target = self._check_region(region, offset, length)
        target.data[offset : offset + length] = 0
        self._coverage[region].add(offset, length)
        self.zero_bytes += length
        self._events.append(Zero(region, offset, length, self._round))
        self._end_record()

    def _on_round_end(self, body: memoryview) -> None:
        (number,) = ROUND_END_PAYLOAD.unpack(body)
        if number != self._round:
            self._fail(
                "STREAM_ORDER", f"ROUND_END of round {number}", value=number, allowed=self._round
            )
        self._events.append(RoundEnd(number))
        self._round += 1
        self._end_record()

    def _on_zstd(self, body: memoryview) -> None:
        region, offset, raw_length, _ = self._bulk
        data = decompress_chunk(body, raw_length, record=self._record, region=region, offset=offset)
        self.regions[region].view[offset : offset + raw_length] = data
        self._land(region, offset, raw_length, compressed=True)

    def _on_section(self, body: memoryview) -> None:
        name, optional, fields = parse_section(body, record=self._record)
        spec = self.layout.section(name)
        if spec is None:
            if not optional:
                self._fail(
                    "SECTION_UNKNOWN",
                    f"required section {name!r} is not known (or not active) here",
                    section=name,
                    allowed=[s.name for s in self.layout.sections],
                )
            self._events.append(Section(name, optional, fields, skipped=True))
            self._end_record()
            return
        if optional != spec.optional:
            self._fail(
                "SECTION_INVALID",
                f"section {name!r} is {'optional' if spec.optional else 'required'} here",
                section=name,
                value=optional,
                allowed=spec.optional,
            )
        if name in self._staged:
            self._fail("SECTION_DUPLICATE", f"section {name!r} came twice", section=name)
        if spec.position < self._next_section:
            self._fail(
                "STREAM_ORDER",
                f"section {name!r} out of declaration order",
                section=name,
                allowed=[s.name for s in self.layout.sections[self._next_section :]],
            )
        self._check_required(self._next_section, spec.position)
        if len(body) > spec.max_size:
            self._fail(
                "TOO_LARGE", f"section {name!r} larger than declared", section=name, value=len(body)
            )
        try:
            values = self.layout.validate_section(name, fields)
        except StreamError as exc:
            raise error_from_problems(
                list(exc.problems), record=self._record, round=self._round, section=name
            ) from None
        self._staged[name] = values
        self._next_section = spec.position + 1
        self._events.append(Section(name, optional, values))
        self._end_record()

    def _check_required(self, start: int, stop: int) -> None:
        for skipped in self.layout.sections[start:stop]:
            if not skipped.optional:
                self._fail(
                    "SECTION_MISSING",
                    f"required section {skipped.name!r} is missing",
                    section=skipped.name,
                )

    def _on_trailer(self, body: memoryview) -> None:
        if bytes(body) != self._expected_trailer:
            self._fail(
                "DIGEST_MISMATCH",
                "stream digest does not match the TRAILER",
                offset=self._record_start,
                value=bytes(body).hex(),
                allowed=self._expected_trailer.hex(),
            )
        self._check_required(self._next_section, len(self.layout.sections))
        for index, coverage in enumerate(self._coverage):
            gap = coverage.first_gap()
            if gap is not None:
                self._fail(
                    "BULK_INCOMPLETE",
                    f"region {self.layout.regions[index].name!r} not covered from byte {gap}",
                    region=index,
                    offset=gap,
                )
        self._events.append(Trailer(bytes(body)))
        self._end_record()
