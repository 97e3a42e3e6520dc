"""DEVICE_FEATURE data: the migration and DMA-logging features vfio-user defines.

The DEVICE_FEATURE body carries ``flags`` (feature index | GET/SET/PROBE)
and opaque ``data``; this module gives that data its shape, both ways:

* MIGRATION (GET, PROBE): ``u64 flags`` (STOP_COPY 1, P2P 2, PRE_COPY 4);
* MIG_DEVICE_STATE (GET, SET, PROBE): ``device_state u32 | data_fd u32``
  (``data_fd`` unused: MIG_DATA_READ/WRITE carry the data);
* DMA_LOGGING_START / STOP (SET, PROBE): ``page_size u64 | num_ranges u32 |
  reserved u32`` then ranges (``iova u64 | length u64``; none = everything);
* DMA_LOGGING_REPORT (GET, PROBE): ``iova u64 | length u64 | page_size u64``,
  the reply appending a bitmap of u64 words, bit *i* for page *i*.

Parsers raise :class:`~devmig.vfio_user.VfioUserError` (``EINVAL``) for a
short or inconsistent payload, so a server answers it with an error reply.
"""

from __future__ import annotations

import errno
import struct
from dataclasses import dataclass
from typing import Final

from devmig.vfio_user._errors import VfioUserError
from devmig.vfio_user._requests import DeviceFeature
from devmig.vfio_user._wire import Feature, FeatureOp

__all__ = [
    "FEATURE_OPS",
    "MAX_LOGGING_RANGES",
    "LoggingRange",
    "LoggingReport",
    "LoggingStart",
    "bitmap_bytes",
    "feature_get",
    "feature_probe",
    "feature_set",
    "pack_device_state",
    "pack_migration_flags",
    "parse_device_state",
    "parse_logging_report",
    "parse_logging_start",
]

FEATURE_OPS: Final[dict[Feature, FeatureOp]] = {
    Feature.MIGRATION: FeatureOp.GET,
    Feature.MIG_DEVICE_STATE: FeatureOp.GET | FeatureOp.SET,
    Feature.DMA_LOGGING_START: FeatureOp.SET,
    Feature.DMA_LOGGING_STOP: FeatureOp.SET,
    Feature.DMA_LOGGING_REPORT: FeatureOp.GET,
}
"""Feature → the operations it supports (PROBE asks about these)."""

MAX_LOGGING_RANGES: Final = 1024

_U64 = struct.Struct("<Q")
_STATE = struct.Struct("<II")
_START = struct.Struct("<QII")
_RANGE = struct.Struct("<QQ")
_REPORT = struct.Struct("<QQQ")


def _bad(message: str, value: object = None) -> VfioUserError:
    return VfioUserError(message, errno=errno.EINVAL, value=value)


def feature_get(feature: Feature, data: bytes = b"", *, reply_data: int = 0) -> DeviceFeature:
    """A GET request; ``reply_data`` is the room for the reply's data (argsz = 8 + data + room)."""
    return DeviceFeature(feature | FeatureOp.GET, data, argsz=8 + len(data) + reply_data)


def feature_set(feature: Feature, data: bytes = b"") -> DeviceFeature:
    """A SET request."""
    return DeviceFeature(feature | FeatureOp.SET, data)


def feature_probe(feature: Feature, ops: FeatureOp = FeatureOp(0)) -> DeviceFeature:
    """A PROBE request (with GET and/or SET: succeeds only if all are supported)."""
    return DeviceFeature(feature | FeatureOp.PROBE | ops)


def pack_migration_flags(flags: int) -> bytes:
    """MIGRATION's GET data."""
    return _U64.pack(flags)


def pack_device_state(state: int) -> bytes:
    """MIG_DEVICE_STATE's data (``data_fd`` 0xFFFFFFFF: unused in vfio-user)."""
    return _STATE.pack(state, 0xFFFFFFFF)


def parse_device_state(data: bytes) -> int:
    """The ``device_state`` of MIG_DEVICE_STATE data (8 bytes)."""
    if len(data) != _STATE.size:
        raise _bad("MIG_DEVICE_STATE data is 8 bytes", len(data))
    return int(_STATE.unpack(data)[0])


@dataclass(frozen=True, slots=True)
class LoggingRange:
    """One IOVA range of DMA_LOGGING_START/STOP."""

    iova: int
    length: int


@dataclass(frozen=True, slots=True)
class LoggingStart:
    """DMA_LOGGING_START/STOP data: page size and ranges (none: all memory)."""

    page_size: int
    ranges: tuple[LoggingRange, ...] = ()

    def pack(self) -> bytes:
        """The feature data."""
        return _START.pack(self.page_size, len(self.ranges), 0) + b"".join(
            _RANGE.pack(r.iova, r.length) for r in self.ranges
        )


def parse_logging_start(data: bytes) -> LoggingStart:
    """Parse DMA_LOGGING_START/STOP data.

    Raises:
        VfioUserError: ``EINVAL`` for a short payload, more ranges than the
            payload holds (or than :data:`MAX_LOGGING_RANGES`), a page size that
            is not a power of two.
    """
    if len(data) < _START.size:
        raise _bad("DMA_LOGGING data is short", len(data))
    page_size, count, _reserved = _START.unpack_from(data)
    if page_size == 0 or page_size & (page_size - 1):
        raise _bad("DMA logging page size must be a power of two", page_size)
    if count > MAX_LOGGING_RANGES or len(data) != _START.size + count * _RANGE.size:
        raise _bad("DMA logging ranges do not match num_ranges", count)
    ranges = tuple(
        LoggingRange(*_RANGE.unpack_from(data, _START.size + i * _RANGE.size)) for i in range(count)
    )
    return LoggingStart(page_size, ranges)


@dataclass(frozen=True, slots=True)
class LoggingReport:
    """DMA_LOGGING_REPORT's request data: which IOVA range, at which page size."""

    iova: int
    length: int
    page_size: int

    def pack(self) -> bytes:
        """The feature data."""
        return _REPORT.pack(self.iova, self.length, self.page_size)

    @property
    def pages(self) -> int:
        """Pages in the range."""
        return -(-self.length // self.page_size)


def bitmap_bytes(pages: int) -> int:
    """Bytes of a dirty bitmap of ``pages`` pages: whole u64 words."""
    return -(-pages // 64) * 8


def parse_logging_report(data: bytes) -> LoggingReport:
    """Parse DMA_LOGGING_REPORT request data.

    Raises:
        VfioUserError: ``EINVAL`` for a wrong size, an empty range or a page
            size that is not a power of two.
    """
    if len(data) != _REPORT.size:
        raise _bad("DMA_LOGGING_REPORT data is 24 bytes", len(data))
    report = LoggingReport(*_REPORT.unpack(data))
    if report.page_size == 0 or report.page_size & (report.page_size - 1) or report.length == 0:
        raise _bad(
            "DMA_LOGGING_REPORT needs a range and a power-of-two page size", report.page_size
        )
    return report
