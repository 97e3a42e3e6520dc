"""The wire format of the migration stream (DESIGN §4): constants, framing, payloads.

A stream is ``b"DVMG" | u16 major | u16 minor`` followed by records::

    u8 type | u8 flags | u32 length | payload (length bytes) | u64 xxh3-64 of payload

All integers are big-endian. Payloads:

========== ==============================================================
HEADER     CBOR map ``{"model": str, "config": {str: bool|int|str}, "producer": {str: ...}}``
BULK       ``u32 region | u64 offset | u32 raw length | u8 codec | data``;
           codec 0: data is raw (``raw length`` bytes), codec 1: one zstd frame
ZERO       ``u32 region | u64 offset | u64 length``
ROUND_END  ``u32 round`` (the 0-based number of the pre-copy round it ends)
SECTION    CBOR map ``{"name": str, "optional": bool, "fields": {str: value}}``
TRAILER    16 bytes: xxh3-128 of the stream's *framing* — the 8 bytes of magic
           and version, then for every record before the trailer, in order,
           its 6-byte head, for a BULK its 17 bytes of BULK fields, and its
           8-byte digest, as received (:class:`FramingHash`). Payload bytes
           are hashed once on each side, by their record's digest.
========== ==============================================================

Flags: bit 0 (``FLAG_LIVE``) marks a BULK record read from region memory while
the device ran (pre-copy), and only with codec RAW: a destination that finds
its digest wrong discards it instead of refusing the stream (DESIGN §4). Bit 7
(``FLAG_SKIPPABLE``) marks a record that a reader which does not know its type
may skip (how a later minor version adds a record type); the six record types
above never carry it. Every other bit is reserved and must be zero.

The record order is the table :data:`ORDER`, read by both the encoder and the
decoder.
"""

from __future__ import annotations

import enum
import io
import struct
from collections.abc import Mapping
from typing import Any, Final

import cbor2
import xxhash
import zstandard

from devmig._errors import StreamError

__all__ = [
    "BULK_HEAD",
    "Codec",
    "FLAG_LIVE",
    "FLAG_SKIPPABLE",
    "FramingHash",
    "MAGIC",
    "ORDER",
    "PREAMBLE",
    "PREAMBLE_SIZE",
    "Phase",
    "RECORD_HEAD",
    "RECORD_OVERHEAD",
    "RecordType",
    "VERSION_MAJOR",
    "VERSION_MINOR",
    "ZERO_PAYLOAD",
    "ROUND_END_PAYLOAD",
    "TRAILER_PAYLOAD_SIZE",
    "decode_cbor",
    "decompress_chunk",
    "encode_cbor",
    "encode_record",
    "expected_types",
    "zstd_bound",
]

MAGIC: Final = b"DVMG"
VERSION_MAJOR: Final = 2
VERSION_MINOR: Final = 0
PREAMBLE: Final = struct.Struct(">4sHH")
PREAMBLE_SIZE: Final = PREAMBLE.size  # 8

RECORD_HEAD: Final = struct.Struct(">BBI")  # type, flags, length: 6 bytes
DIGEST: Final = struct.Struct(">Q")  # xxh3-64 of the payload: 8 bytes
RECORD_OVERHEAD: Final = RECORD_HEAD.size + DIGEST.size  # 14

BULK_HEAD: Final = struct.Struct(">IQIB")  # region, offset, raw length, codec: 17 bytes
ZERO_PAYLOAD: Final = struct.Struct(">IQQ")  # region, offset, length: 20 bytes
ROUND_END_PAYLOAD: Final = struct.Struct(">I")  # round: 4 bytes
TRAILER_PAYLOAD_SIZE: Final = 16

FLAG_LIVE: Final = 0x01
FLAG_SKIPPABLE: Final = 0x80
KNOWN_FLAGS: Final = FLAG_LIVE | FLAG_SKIPPABLE


class RecordType(enum.IntEnum):
    """The record types of the stream (the ``u8 type`` of a record)."""

    HEADER = 1
    BULK = 2
    ZERO = 3
    ROUND_END = 4
    SECTION = 5
    TRAILER = 6


class Codec(enum.IntEnum):
    """How the data of a BULK record is encoded."""

    RAW = 0
    ZSTD = 1


class Phase(enum.Enum):
    """Where a stream is: which record types may come next (see :data:`ORDER`)."""

    PREAMBLE = "preamble"
    HEADER = "header"
    BULK = "bulk"
    SECTIONS = "sections"
    DONE = "done"
    ERROR = "error"


ORDER: Final[Mapping[Phase, Mapping[RecordType, Phase]]] = {
    Phase.HEADER: {RecordType.HEADER: Phase.BULK},
    Phase.BULK: {
        RecordType.BULK: Phase.BULK,
        RecordType.ZERO: Phase.BULK,
        RecordType.ROUND_END: Phase.BULK,
        RecordType.SECTION: Phase.SECTIONS,
        RecordType.TRAILER: Phase.DONE,
    },
    Phase.SECTIONS: {
        RecordType.SECTION: Phase.SECTIONS,
        RecordType.TRAILER: Phase.DONE,
    },
    Phase.PREAMBLE: {},
    Phase.DONE: {},
    Phase.ERROR: {},
}
"""The record order: for each phase, the record types allowed and the phase after."""


def expected_types(phase: Phase) -> list[str]:
    """Return the names of the record types allowed in ``phase``."""
    return [t.name for t in ORDER[phase]]


class FramingHash:
    """The running xxh3-128 a TRAILER carries: the stream's framing, never its payloads.

    Feed it the preamble, then per record its head, its BULK fields (BULK
    only) and its digest, as sent or received; pieces may be fed in any
    segmentation (the hash is of their concatenation).
    """

    __slots__ = ("_hash", "update")

    def __init__(self) -> None:
        self._hash = xxhash.xxh3_128()
        self.update = self._hash.update

    def digest(self) -> bytes:
        """Return the 16-byte digest of what was fed so far."""
        return self._hash.digest()

    def hexdigest(self) -> str:
        """Return :meth:`digest` as hex."""
        return self._hash.hexdigest()


def encode_record(rtype: int, payload: bytes, *, flags: int = 0) -> bytes:
    """Frame one record: head, payload and the payload's xxh3-64."""
    return (
        RECORD_HEAD.pack(rtype, flags, len(payload))
        + payload
        + DIGEST.pack(xxhash.xxh3_64_intdigest(payload))
    )


def encode_cbor(value: Any) -> bytes:
    """Encode ``value`` as canonical CBOR (sorted maps, shortest forms)."""
    return cbor2.dumps(value, canonical=True)


def _refuse_tag(*_args: Any) -> Any:
    raise ValueError("CBOR tags are not allowed in a migration stream")


class _RefuseEveryTag(Mapping[int, Any]):
    """A semantic-decoder table that maps every tag to a refusal."""

    def __getitem__(self, key: int) -> Any:
        return _refuse_tag

    def __contains__(self, key: object) -> bool:
        return True

    def __iter__(self) -> Any:
        return iter(())

    def __len__(self) -> int:
        return 0


_NO_TAGS: Final = _RefuseEveryTag()
CBOR_MAX_DEPTH: Final = 8


def decode_cbor(
    payload: bytes | memoryview,
    *,
    what: str,
    record: int | None = None,
    section: str | None = None,
) -> Any:
    """Decode one CBOR item that must fill ``payload`` exactly.

    The payload is already bounded by the record limits. Tags (dates, bignums,
    shared references, ...), indefinite lengths, duplicate keys, non-string
    map keys and nesting deeper than a few levels are refused.

    Raises:
        StreamError: ``RECORD_CORRUPT``, chained ``from`` the cbor2 error.
    """
    fp = io.BytesIO(payload)
    try:
        decoder = cbor2.CBORDecoder(
            fp,
            tag_hook=_refuse_tag,
            semantic_decoders=_NO_TAGS,
            max_depth=CBOR_MAX_DEPTH,
            allow_indefinite=False,
            allow_duplicate_keys=False,
            strict_hashable_types=True,
        )
        value = decoder.decode()
    except (cbor2.CBORError, ValueError, TypeError, OverflowError, RecursionError) as exc:
        raise StreamError(
            "RECORD_CORRUPT",
            f"{what}: invalid CBOR ({exc})",
            record=record,
            section=section,
        ) from exc
    if fp.tell() != len(payload):
        raise StreamError(
            "RECORD_CORRUPT",
            f"{what}: {len(payload) - fp.tell()} bytes after the CBOR item",
            record=record,
            section=section,
        )
    return value


def zstd_bound(size: int) -> int:
    """Return the largest size zstd may produce when compressing ``size`` bytes."""
    small = (128 << 10) - size >> 11 if size < (128 << 10) else 0
    return size + (size >> 8) + small + 64


def decompress_chunk(
    data: bytes | memoryview,
    raw_length: int,
    *,
    record: int | None = None,
    region: int | None = None,
    offset: int | None = None,
) -> bytes:
    """Decompress one zstd frame that must expand to exactly ``raw_length`` bytes.

    The frame's declared content size is checked *before* anything is
    allocated, and decompression is bounded by ``raw_length``.

    Raises:
        StreamError: ``RECORD_CORRUPT`` (chained from the zstd error) when the
            frame is invalid, declares another size, or expands to more or
            fewer bytes, or carries trailing data.
    """

    def corrupt(reason: str, exc: BaseException | None = None) -> StreamError:
        err = StreamError(
            "RECORD_CORRUPT",
            f"BULK zstd data {reason}",
            record=record,
            region=region,
            offset=offset,
            allowed=raw_length,
        )
        if exc is not None:
            err.__cause__ = exc
        return err

    try:
        declared = zstandard.frame_content_size(data)
    except zstandard.ZstdError as exc:
        raise corrupt("has no valid frame header", exc) from exc
    if declared not in (-1, raw_length):
        raise corrupt(f"declares {declared} bytes, the record states {raw_length}")
    if raw_length == 0:
        if declared != 0:
            raise corrupt("must declare an empty frame for an empty chunk")
        return b""
    window = max(1 << 20, 1 << max(raw_length - 1, 1).bit_length())
    try:
        out: bytes = zstandard.ZstdDecompressor(max_window_size=window).decompress(
            data, max_output_size=raw_length, allow_extra_data=False
        )
    except zstandard.ZstdError as exc:
        raise corrupt(f"does not decompress ({exc})", exc) from exc
    if len(out) != raw_length:
        raise corrupt(f"expands to {len(out)} bytes, the record states {raw_length}")
    return out
