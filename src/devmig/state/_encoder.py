"""The stream encoder: sans-IO, every method returns the bytes to send.

The encoder enforces the record order of :data:`~devmig.state._records.ORDER`
(encoding out of order is a programming error: ``STREAM_ORDER``), validates
sections against the layout, tracks which region bytes were sent, and keeps
the running xxh3-128 of the stream's framing that the TRAILER carries (record
heads, BULK fields and record digests: each payload byte is hashed once, by
its record's digest). A refused call emits nothing and changes nothing.

BULK records are returned as a list of buffers ``[record head, data, digest]``
where ``data`` is the very buffer the caller passed (or its compressed form),
so a transport can ``writelines``/``sendmsg`` them without a copy. A record
encoded raw with ``live=True`` (read while the device runs) is flagged
``LIVE``: its memory may change before it is sent, and a destination discards
it then (DESIGN §4). Otherwise the caller must not change that
memory until it has been sent.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from typing import Any, Final

import xxhash
import zstandard

from devmig._errors import StreamError
from devmig.state._coverage import PageCoverage
from devmig.state._declaration import StateLayout
from devmig.state._problems import freeze_config
from devmig.state._records import (
    BULK_HEAD,
    DIGEST,
    FLAG_LIVE,
    MAGIC,
    ORDER,
    PREAMBLE,
    RECORD_HEAD,
    ROUND_END_PAYLOAD,
    VERSION_MAJOR,
    VERSION_MINOR,
    ZERO_PAYLOAD,
    Codec,
    FramingHash,
    Phase,
    RecordType,
    encode_cbor,
    expected_types,
)

__all__ = ["Buffer", "StreamEncoder"]

Buffer = bytes | bytearray | memoryview
"""Anything the encoder returns or accepts as data."""

DEFAULT_CHUNK: Final = 2 << 20
"""The default BULK chunk: 2 MiB. Each record costs about 12 us of Python over the two sides, so
larger chunks bring the codec closer to its floor (docs/performance.md); 256 KiB chunks make the
floor faster (cache) but the codec slower (four times the records)."""
_BULK_RECORD_HEAD: Final = struct.Struct(">BBIIQIB")  # RECORD_HEAD then BULK_HEAD: 23 bytes
_FIELDS_AT: Final = RECORD_HEAD.size
_BULK_FIELDS: Final = BULK_HEAD.size
_BULK: Final = int(RecordType.BULK)
_RAW: Final = int(Codec.RAW)
_ZSTD: Final = int(Codec.ZSTD)
MAX_CHUNK: Final = 1 << 30


class StreamEncoder:
    """Encode one migration stream.

    Args:
        model: the model id.
        config: the *canonical* configuration sent in HEADER (typed values).
        layout: the state layout of the device's full configuration.
        producer: informational data (e.g. ``{"implementation": ..., "release": ...}``).
        compress: zstd-compress each BULK chunk (kept raw when that does not shrink it).
        chunk_size: the largest BULK data per record; larger data is split.
        level: the zstd level.

    Raises:
        StreamError: ``CONFIG_INVALID`` for a malformed configuration or producer,
            ``API_MISUSE`` for a bad ``chunk_size``.
    """

    def __init__(
        self,
        model: str,
        config: Mapping[str, bool | int | str],
        layout: StateLayout,
        producer: Mapping[str, Any] | None = None,
        *,
        compress: bool = False,
        chunk_size: int = DEFAULT_CHUNK,
        level: int = 3,
    ) -> None:
        if not isinstance(model, str) or not model:
            raise StreamError("CONFIG_INVALID", "model must be a non-empty string", value=model)
        if (
            isinstance(chunk_size, bool)
            or not isinstance(chunk_size, int)
            or not (0 < chunk_size <= MAX_CHUNK)
        ):
            raise StreamError(
                "API_MISUSE",
                "chunk_size out of range",
                value=chunk_size,
                allowed={"min": 1, "max": MAX_CHUNK},
            )
        self.model = model
        self.config = freeze_config(config)
        self.producer = dict(producer or {})
        if not all(isinstance(k, str) for k in self.producer):
            raise StreamError("CONFIG_INVALID", "producer keys must be strings")
        try:
            encode_cbor(self.producer)
        except Exception as exc:
            raise StreamError("CONFIG_INVALID", f"producer is not CBOR-encodable: {exc}") from exc
        self.layout = layout
        self.chunk_size = chunk_size
        self.compress = compress
        self._cctx = (
            zstandard.ZstdCompressor(level=level, write_content_size=True) if compress else None
        )
        self._phase = Phase.HEADER
        self._trailer = FramingHash()
        self._coverage = [PageCoverage(r.size) for r in layout.regions]
        self._region_sizes = [r.size for r in layout.regions]
        self._next_section = 0
        self._sent_sections: set[str] = set()
        self.round = 0
        """Pre-copy rounds ended so far."""
        self.records = 0
        """Records encoded so far."""
        self.live_records = 0
        """BULK records flagged ``LIVE`` so far."""
        self.bytes_out = 0
        """Stream bytes produced so far (magic included)."""

    @property
    def phase(self) -> Phase:
        """Where the stream is (which records may come next)."""
        return self._phase

    def _advance(self, rtype: RecordType) -> Phase:
        nxt = ORDER[self._phase].get(rtype)
        if nxt is None:
            raise StreamError(
                "STREAM_ORDER",
                f"cannot encode {rtype.name} in phase {self._phase.value}",
                record=self.records,
                round=self.round,
                value=rtype.name,
                allowed=expected_types(self._phase),
            )
        return nxt

    def _record(self, rtype: RecordType, payload: bytes) -> bytes:
        head = RECORD_HEAD.pack(rtype, 0, len(payload))
        digest = DIGEST.pack(xxhash.xxh3_64_intdigest(payload))
        out = head + payload + digest
        self._trailer.update(head)
        self._trailer.update(digest)
        self.records += 1
        self.bytes_out += len(out)
        return out

    def header(self) -> bytes:
        """Return the magic, the version and the HEADER record (the stream's first bytes)."""
        nxt = self._advance(RecordType.HEADER)
        preamble = PREAMBLE.pack(MAGIC, VERSION_MAJOR, VERSION_MINOR)
        self._trailer.update(preamble)
        self.bytes_out += len(preamble)
        payload = encode_cbor(
            {"model": self.model, "config": self.config, "producer": self.producer}
        )
        out = preamble + self._record(RecordType.HEADER, payload)
        self._phase = nxt
        return out

    def _check_range(self, region: int, offset: int, length: int) -> None:
        regions = self.layout.regions
        if (
            isinstance(region, bool)
            or not isinstance(region, int)
            or not 0 <= region < len(regions)
        ):
            raise StreamError(
                "BULK_OUT_OF_RANGE",
                f"no region {region!r}",
                record=self.records,
                region=region if isinstance(region, int) else None,
                allowed={"min": 0, "max": len(regions) - 1},
            )
        size = regions[region].size
        if offset < 0 or length < 0 or offset + length > size:
            raise StreamError(
                "BULK_OUT_OF_RANGE",
                f"bytes [{offset}, {offset + length}) outside region {regions[region].name!r} "
                f"of {size} bytes",
                record=self.records,
                region=region,
                offset=offset,
                value=length,
                allowed={"min": 0, "max": size},
            )

    def bulk(self, region: int, offset: int, data: Buffer, *, live: bool = False) -> list[Buffer]:
        """Encode ``data`` for ``region`` at ``offset`` as BULK records of at most ``chunk_size``.

        Args:
            region, offset: where the data goes.
            data: the bytes; referenced, not copied.
            live: ``data`` is region memory read while the device runs: each
                record sent raw from it is flagged ``LIVE`` (a compressed one
                is a private buffer, consistent with its digest, and is not).

        Returns:
            Three buffers per record: head (record head and BULK fields), data
            (a view of ``data`` itself, or its zstd form), and the 8-byte digest.

        Raises:
            StreamError: ``STREAM_ORDER`` after the sections began;
                ``BULK_OUT_OF_RANGE`` outside the region.
        """
        # BULK keeps the bulk phase (ORDER): skip the table for the hot case
        nxt = Phase.BULK if self._phase is Phase.BULK else self._advance(RecordType.BULK)
        view = (
            data if type(data) is memoryview and data.format == "B" else memoryview(data).cast("B")
        )
        sizes = self._region_sizes
        if not (
            type(region) is int
            and 0 <= region < len(sizes)
            and type(offset) is int
            and offset >= 0
            and offset + len(view) <= sizes[region]
        ):  # off the hot path: the general checks and their errors
            self._check_range(region, offset, len(view))
        out: list[Buffer] = []
        chunk = self.chunk_size
        cctx = self._cctx
        trailer = self._trailer
        for start in range(0, len(view), chunk):
            piece = view[start : start + chunk]
            raw = len(piece)
            codec = _RAW
            body: Buffer = piece
            flags = FLAG_LIVE if live else 0
            if cctx is not None:
                packed = cctx.compress(piece)
                if len(packed) < raw:  # a private buffer: consistent with its digest
                    body, codec, flags = packed, _ZSTD, 0
            if flags:
                self.live_records += 1
            head = _BULK_RECORD_HEAD.pack(
                _BULK, flags, _BULK_FIELDS + len(body), region, offset + start, raw, codec
            )
            hasher = xxhash.xxh3_64(head[_FIELDS_AT:])
            hasher.update(body)
            digest = DIGEST.pack(hasher.intdigest())
            trailer.update(head)  # the record head and the BULK fields
            trailer.update(digest)
            out += (head, body, digest)
            self.records += 1
            self.bytes_out += len(head) + len(body) + len(digest)
        self._coverage[region].add(offset, len(view))
        self._phase = nxt
        return out

    def zero(self, region: int, offset: int, length: int) -> bytes:
        """Encode a ZERO record: ``length`` bytes of ``region`` at ``offset`` are zero.

        Raises:
            StreamError: ``STREAM_ORDER`` after the sections began;
                ``BULK_OUT_OF_RANGE`` outside the region.
        """
        nxt = self._advance(RecordType.ZERO)
        self._check_range(region, offset, length)
        out = self._record(RecordType.ZERO, ZERO_PAYLOAD.pack(region, offset, length))
        self._coverage[region].add(offset, length)
        self._phase = nxt
        return out

    def round_end(self) -> bytes:
        """Encode a ROUND_END record ending the current pre-copy round.

        Raises:
            StreamError: ``STREAM_ORDER`` outside the bulk phase.
        """
        nxt = self._advance(RecordType.ROUND_END)
        out = self._record(RecordType.ROUND_END, ROUND_END_PAYLOAD.pack(self.round))
        self.round += 1
        self._phase = nxt
        return out

    def section(self, name: str, fields: Mapping[str, Any]) -> bytes:
        """Encode one SECTION record.

        Sections go in declaration order, each once; an optional section may
        be left out, a required one may not.

        Raises:
            StreamError: ``STREAM_ORDER`` (after the trailer, or out of
                declaration order), ``SECTION_DUPLICATE``, ``SECTION_MISSING``
                (a required section before it was skipped), ``SECTION_UNKNOWN``
                (not active in the layout), ``SECTION_INVALID`` (every bad field).
        """
        nxt = self._advance(RecordType.SECTION)
        spec = self.layout.section(name)
        values = self.layout.validate_section(name, fields)  # SECTION_UNKNOWN / SECTION_INVALID
        assert spec is not None
        if name in self._sent_sections:
            raise StreamError(
                "SECTION_DUPLICATE",
                f"section {name!r} was already encoded",
                section=name,
                record=self.records,
            )
        if spec.position < self._next_section:
            raise StreamError(
                "STREAM_ORDER",
                f"section {name!r} comes before {self.layout.sections[self._next_section - 1].name!r}",
                section=name,
                record=self.records,
                allowed=[s.name for s in self.layout.sections[self._next_section :]],
            )
        self._check_no_required(self._next_section, spec.position)
        payload = encode_cbor({"name": name, "optional": spec.optional, "fields": values})
        out = self._record(RecordType.SECTION, payload)
        self._sent_sections.add(name)
        self._next_section = spec.position + 1
        self._phase = nxt
        return out

    def _check_no_required(self, start: int, stop: int) -> None:
        for skipped in self.layout.sections[start:stop]:
            if not skipped.optional:
                raise StreamError(
                    "SECTION_MISSING",
                    f"required section {skipped.name!r} was not encoded",
                    section=skipped.name,
                    record=self.records,
                )

    def sections(self, values: Mapping[str, Mapping[str, Any]]) -> bytes:
        """Encode every active section present in ``values``, in declaration order.

        Every required section must be present; optional ones are encoded when given.

        Raises:
            StreamError: ``SECTION_UNKNOWN`` for a name that is not active,
                ``SECTION_MISSING`` for an absent required section, and what
                :meth:`section` raises. Nothing is emitted on error.
        """
        unknown = [n for n in values if self.layout.section(n) is None]
        if unknown:
            raise StreamError(
                "SECTION_UNKNOWN",
                f"section {unknown[0]!r} is not active in this configuration",
                section=unknown[0],
                allowed=[s.name for s in self.layout.sections],
            )
        todo = [s for s in self.layout.sections[self._next_section :] if s.name in values]
        for s in self.layout.sections[self._next_section :]:
            if not s.optional and s.name not in values:
                raise StreamError(
                    "SECTION_MISSING", f"required section {s.name!r} is missing", section=s.name
                )
        for s in todo:  # validate all before emitting anything
            self.layout.validate_section(s.name, values[s.name])
        return b"".join(self.section(s.name, values[s.name]) for s in todo)

    def trailer(self) -> bytes:
        """Encode the TRAILER; the stream is then complete.

        Raises:
            StreamError: ``STREAM_ORDER`` before the header or twice;
                ``SECTION_MISSING`` when a required section was not encoded;
                ``BULK_INCOMPLETE`` naming the region and first byte not sent.
        """
        nxt = self._advance(RecordType.TRAILER)
        self._check_no_required(self._next_section, len(self.layout.sections))
        for i, cov in enumerate(self._coverage):
            gap = cov.first_gap()
            if gap is not None:
                raise StreamError(
                    "BULK_INCOMPLETE",
                    f"region {self.layout.regions[i].name!r} was not sent completely",
                    region=i,
                    offset=gap,
                    record=self.records,
                )
        digest = self._trailer.digest()
        out = self._record(RecordType.TRAILER, digest)
        self._phase = nxt
        return out

    def bulk_regions(self, regions: Sequence[Buffer]) -> list[Buffer]:
        """Encode whole regions as BULK records (a one-shot STOP_COPY without pre-copy).

        The data is referenced, not copied: keep it unchanged until sent.
        """
        out: list[Buffer] = []
        for i, data in enumerate(regions):
            out += self.bulk(i, 0, data)
        return out
