"""Command bodies: one frozen dataclass per vfio-user command, with its codec.

Each body knows its :class:`~devmig.vfio_user.Command` (``cmd``), encodes
itself (:meth:`encode` → payload bytes and descriptors) and decodes a
received payload (:meth:`decode`), refusing anything the specification
does not allow with a :class:`~devmig.vfio_user.VfioUserError` carrying the
errno of the error reply: ``EINVAL`` for a short or inconsistent payload, a
wrong ``argsz``, descriptors where none belong or bad flags; ``E2BIG`` for a
data count beyond the negotiated ``max_data_xfer_size``. A decoder never
allocates more than the payload it was given. Layouts are the spec's tables
(offsets after the 16-byte header, little-endian).
"""

from __future__ import annotations

import errno
import struct
from dataclasses import dataclass, field
from typing import ClassVar, Final, Protocol

from devmig.vfio_user._capabilities import Capabilities
from devmig.vfio_user._errors import VfioUserError
from devmig.vfio_user._wire import Command, SetIrqsFlags

__all__ = [
    "DMA_READ_WRITE_FLAGS",
    "MULTI_WRITE_MAX",
    "Payload",
    "UNMAP_ALL",
    "UNMAP_GET_DIRTY_BITMAP",
    "DecodeLimits",
    "DeviceFeature",
    "DeviceGetInfo",
    "DeviceReset",
    "DmaMap",
    "DmaRead",
    "DmaUnmap",
    "DmaWrite",
    "GetIrqInfo",
    "GetRegionInfo",
    "GetRegionIoFds",
    "MigDataRead",
    "MigDataWrite",
    "RegionRead",
    "RegionWrite",
    "RegionWriteMulti",
    "RequestBody",
    "SetIrqs",
    "SingleWrite",
    "VersionRequest",
    "REQUEST_TYPES",
]

DMA_READ_WRITE_FLAGS: Final = 3
"""DMA_MAP flags: 1 READ, 2 WRITE."""
UNMAP_GET_DIRTY_BITMAP: Final = 1
UNMAP_ALL: Final = 2
MULTI_WRITE_MAX: Final = 200
"""The most writes one REGION_WRITE_MULTI may carry (QEMU's ``VFIO_USER_MULTI_MAX``)."""

_U32 = struct.Struct("<I")
_VERSION = struct.Struct("<HH")
_DMA_MAP = struct.Struct("<IIQQQ")
_DMA_UNMAP = struct.Struct("<IIQQ")
_BITMAP = struct.Struct("<QQ")
_INFO = struct.Struct("<IIII")
_REGION_INFO = struct.Struct("<IIIIQQ")
_SET_IRQS = struct.Struct("<IIIII")
_ACCESS = struct.Struct("<QII")
_DMA_ACCESS = struct.Struct("<QQ")
_MULTI_COUNT = struct.Struct("<Q")
_MULTI_WRITE = struct.Struct("<QII8s")
_FEATURE = struct.Struct("<II")
_MIG_DATA = struct.Struct("<II")

Fds = tuple[int, ...]
Payload = bytes | memoryview
"""A received payload: bytes, or a view of the buffer a large message was gathered in."""


@dataclass(frozen=True, slots=True)
class DecodeLimits:
    """What a receiver accepts, from VERSION: its own data limit and descriptor count."""

    max_data_xfer_size: int = 1 << 20
    max_msg_fds: int = 1
    write_multiple: bool = False


def _bad(message: str, value: object = None, err: int = errno.EINVAL) -> VfioUserError:
    return VfioUserError(message, errno=err, value=value)


def _exact(payload: Payload, size: int, what: str) -> None:
    if len(payload) != size:
        raise _bad(f"{what} payload must be {size} bytes", len(payload))


def _at_least(payload: Payload, size: int, what: str) -> None:
    if len(payload) < size:
        raise _bad(f"{what} payload is short: {size} bytes at least", len(payload))


def _no_fds(fds: Fds, what: str) -> None:
    if fds:
        raise _bad(f"{what} carries no file descriptors", len(fds))


def _argsz(argsz: int, minimum: int, what: str) -> None:
    if argsz < minimum:
        raise _bad(f"{what} argsz must be at least {minimum}", argsz)


def _fixed(payload: Payload, fds: Fds, layout: struct.Struct, what: str) -> tuple[int, ...]:
    """The fields of a descriptor-less, fixed-size body whose first field is ``argsz`` (checked)."""
    _no_fds(fds, what)
    _exact(payload, layout.size, what)
    fields: tuple[int, ...] = layout.unpack(payload)
    _argsz(fields[0], layout.size, what)
    return fields


def _data_count(count: int, limits: DecodeLimits, what: str) -> None:
    if count > limits.max_data_xfer_size:
        raise _bad(
            f"{what} count exceeds max_data_xfer_size {limits.max_data_xfer_size}",
            count,
            errno.E2BIG,
        )


class RequestBody(Protocol):
    """What every command body offers."""

    cmd: ClassVar[Command]

    def encode(self) -> tuple[bytes, Fds]: ...


@dataclass(frozen=True, slots=True)
class VersionRequest:
    """VERSION: the client's protocol version and capabilities."""

    cmd: ClassVar[Command] = Command.VERSION
    major: int = 0
    minor: int = 2
    capabilities: Capabilities = field(default_factory=Capabilities)

    def encode(self) -> tuple[bytes, Fds]:
        return _VERSION.pack(self.major, self.minor) + self.capabilities.encode(), ()

    @classmethod
    def decode(cls, payload: Payload, fds: Fds, limits: DecodeLimits) -> VersionRequest:
        _no_fds(fds, "VERSION")
        _at_least(payload, 4, "VERSION")
        major, minor = _VERSION.unpack_from(payload)
        if major != 0:
            raise _bad("VERSION major must be 0", major)
        return cls(major, minor, Capabilities.decode(bytes(payload[4:])))


@dataclass(frozen=True, slots=True)
class DmaMap:
    """DMA_MAP: client memory at IOVA ``addr``, mmap-able through ``fd`` (or message-only)."""

    cmd: ClassVar[Command] = Command.DMA_MAP
    flags: int
    offset: int
    addr: int
    size: int
    fd: int | None = None

    def encode(self) -> tuple[bytes, Fds]:
        fds = () if self.fd is None else (self.fd,)
        return _DMA_MAP.pack(_DMA_MAP.size, self.flags, self.offset, self.addr, self.size), fds

    @classmethod
    def decode(cls, payload: Payload, fds: Fds, limits: DecodeLimits) -> DmaMap:
        _exact(payload, _DMA_MAP.size, "DMA_MAP")
        argsz, flags, offset, addr, size = _DMA_MAP.unpack(payload)
        if argsz != _DMA_MAP.size:
            raise _bad("DMA_MAP argsz must be 32", argsz)
        if flags & ~DMA_READ_WRITE_FLAGS:
            raise _bad("DMA_MAP flags: only READ (1) and WRITE (2)", flags)
        if len(fds) > 1:
            raise _bad("DMA_MAP carries at most one file descriptor", len(fds))
        if size == 0 or addr + size > 1 << 64:
            raise _bad("DMA_MAP range is empty or wraps", size)
        return cls(flags, offset, addr, size, fds[0] if fds else None)


@dataclass(frozen=True, slots=True)
class DmaUnmap:
    """DMA_UNMAP: one mapping (exactly), or every mapping (UNMAP_ALL); optionally its dirty bitmap."""

    cmd: ClassVar[Command] = Command.DMA_UNMAP
    addr: int
    size: int
    flags: int = 0
    bitmap_pgsize: int = 0
    bitmap_size: int = 0
    argsz: int = 0

    def __post_init__(self) -> None:
        if not self.argsz:
            extra = _BITMAP.size + self.bitmap_size if self.flags & UNMAP_GET_DIRTY_BITMAP else 0
            object.__setattr__(self, "argsz", _DMA_UNMAP.size + extra)

    def encode(self) -> tuple[bytes, Fds]:
        base = _DMA_UNMAP.size
        if self.flags & UNMAP_GET_DIRTY_BITMAP:
            argsz = self.argsz or base + _BITMAP.size + self.bitmap_size
            return (
                _DMA_UNMAP.pack(argsz, self.flags, self.addr, self.size)
                + _BITMAP.pack(self.bitmap_pgsize, self.bitmap_size)
            ), ()
        return _DMA_UNMAP.pack(self.argsz or base, self.flags, self.addr, self.size), ()

    @classmethod
    def decode(cls, payload: Payload, fds: Fds, limits: DecodeLimits) -> DmaUnmap:
        _no_fds(fds, "DMA_UNMAP")
        _at_least(payload, _DMA_UNMAP.size, "DMA_UNMAP")
        argsz, flags, addr, size = _DMA_UNMAP.unpack_from(payload)
        if (
            flags & ~(UNMAP_GET_DIRTY_BITMAP | UNMAP_ALL)
            or flags == UNMAP_GET_DIRTY_BITMAP | UNMAP_ALL
        ):
            raise _bad("DMA_UNMAP flags: GET_DIRTY_BITMAP (1) or UNMAP_ALL (2)", flags)
        if flags & UNMAP_ALL:
            _exact(payload, _DMA_UNMAP.size, "DMA_UNMAP")
            if addr or size:
                raise _bad("DMA_UNMAP with UNMAP_ALL needs address and size 0", (addr, size))
            _argsz(argsz, _DMA_UNMAP.size, "DMA_UNMAP")
            return cls(0, 0, flags, argsz=argsz)
        if flags & UNMAP_GET_DIRTY_BITMAP:
            _exact(payload, _DMA_UNMAP.size + _BITMAP.size, "DMA_UNMAP with a dirty bitmap")
            pgsize, bitmap_size = _BITMAP.unpack_from(payload, _DMA_UNMAP.size)
            if pgsize == 0 or pgsize & (pgsize - 1):
                raise _bad("DMA_UNMAP bitmap page size must be a power of two", pgsize)
            _argsz(argsz, _DMA_UNMAP.size + _BITMAP.size + bitmap_size, "DMA_UNMAP")
            return cls(addr, size, flags, pgsize, bitmap_size, argsz)
        _exact(payload, _DMA_UNMAP.size, "DMA_UNMAP")
        _argsz(argsz, _DMA_UNMAP.size, "DMA_UNMAP")
        return cls(addr, size, flags, argsz=argsz)


@dataclass(frozen=True, slots=True)
class DeviceGetInfo:
    """DEVICE_GET_INFO: ``argsz`` is the largest reply the client takes (16 at least)."""

    cmd: ClassVar[Command] = Command.DEVICE_GET_INFO
    argsz: int = 16

    def encode(self) -> tuple[bytes, Fds]:
        return _INFO.pack(self.argsz, 0, 0, 0), ()

    @classmethod
    def decode(cls, payload: Payload, fds: Fds, limits: DecodeLimits) -> DeviceGetInfo:
        argsz = _fixed(payload, fds, _INFO, "DEVICE_GET_INFO")[0]
        return cls(argsz)


@dataclass(frozen=True, slots=True)
class GetRegionInfo:
    """DEVICE_GET_REGION_INFO for region ``index``; the reply is truncated to ``argsz``."""

    cmd: ClassVar[Command] = Command.DEVICE_GET_REGION_INFO
    index: int
    argsz: int = 32

    def encode(self) -> tuple[bytes, Fds]:
        return _REGION_INFO.pack(self.argsz, 0, self.index, 0, 0, 0), ()

    @classmethod
    def decode(cls, payload: Payload, fds: Fds, limits: DecodeLimits) -> GetRegionInfo:
        argsz, _flags, index, _cap, _size, _offset = _fixed(
            payload, fds, _REGION_INFO, "DEVICE_GET_REGION_INFO"
        )
        return cls(index, argsz)


@dataclass(frozen=True, slots=True)
class GetRegionIoFds:
    """DEVICE_GET_REGION_IO_FDS for region ``index``."""

    cmd: ClassVar[Command] = Command.DEVICE_GET_REGION_IO_FDS
    index: int
    argsz: int = 16

    def encode(self) -> tuple[bytes, Fds]:
        return _INFO.pack(self.argsz, 0, self.index, 0), ()

    @classmethod
    def decode(cls, payload: Payload, fds: Fds, limits: DecodeLimits) -> GetRegionIoFds:
        argsz, flags, index, _count = _fixed(payload, fds, _INFO, "DEVICE_GET_REGION_IO_FDS")
        if flags:
            raise _bad("DEVICE_GET_REGION_IO_FDS flags must be 0", flags)
        return cls(index, argsz)


@dataclass(frozen=True, slots=True)
class GetIrqInfo:
    """DEVICE_GET_IRQ_INFO for interrupt ``index``."""

    cmd: ClassVar[Command] = Command.DEVICE_GET_IRQ_INFO
    index: int
    argsz: int = 16

    def encode(self) -> tuple[bytes, Fds]:
        return _INFO.pack(self.argsz, 0, self.index, 0), ()

    @classmethod
    def decode(cls, payload: Payload, fds: Fds, limits: DecodeLimits) -> GetIrqInfo:
        argsz, _flags, index, _count = _fixed(payload, fds, _INFO, "DEVICE_GET_IRQ_INFO")
        return cls(index, argsz)


_DATA_TYPES: Final = SetIrqsFlags.DATA_NONE | SetIrqsFlags.DATA_BOOL | SetIrqsFlags.DATA_EVENTFD
_ACTIONS: Final = (
    SetIrqsFlags.ACTION_MASK | SetIrqsFlags.ACTION_UNMASK | SetIrqsFlags.ACTION_TRIGGER
)


@dataclass(frozen=True, slots=True)
class SetIrqs:
    """DEVICE_SET_IRQS: one data type and one action for ``count`` vectors from ``start``.

    ``data`` holds the ``count`` bool bytes of DATA_BOOL; ``fds`` the ``count``
    eventfds of DATA_EVENTFD (none: de-assign).
    """

    cmd: ClassVar[Command] = Command.DEVICE_SET_IRQS
    flags: int
    index: int
    start: int
    count: int
    data: bytes = b""
    fds: Fds = ()

    def encode(self) -> tuple[bytes, Fds]:
        argsz = _SET_IRQS.size + len(self.data)
        return _SET_IRQS.pack(
            argsz, self.flags, self.index, self.start, self.count
        ) + self.data, self.fds

    @classmethod
    def decode(cls, payload: Payload, fds: Fds, limits: DecodeLimits) -> SetIrqs:
        _at_least(payload, _SET_IRQS.size, "DEVICE_SET_IRQS")
        argsz, flags, index, start, count = _SET_IRQS.unpack_from(payload)
        _argsz(argsz, _SET_IRQS.size, "DEVICE_SET_IRQS")
        data_type, action = flags & _DATA_TYPES, flags & _ACTIONS
        if (
            flags & ~(_DATA_TYPES | _ACTIONS)
            or data_type.bit_count() != 1
            or action.bit_count() != 1
        ):
            raise _bad("DEVICE_SET_IRQS needs exactly one data type and one action", flags)
        if start + count > 1 << 32:
            raise _bad("DEVICE_SET_IRQS start + count overflows", (start, count))
        data = b""
        if data_type == SetIrqsFlags.DATA_BOOL:
            _exact(payload, _SET_IRQS.size + count, "DEVICE_SET_IRQS with DATA_BOOL")
            data = bytes(payload[_SET_IRQS.size :])
        else:
            _exact(payload, _SET_IRQS.size, "DEVICE_SET_IRQS")
        if data_type == SetIrqsFlags.DATA_EVENTFD:
            if fds and len(fds) != count:
                raise _bad(
                    "DEVICE_SET_IRQS with DATA_EVENTFD needs exactly count descriptors", len(fds)
                )
        else:
            _no_fds(fds, "DEVICE_SET_IRQS without DATA_EVENTFD")
        if (
            data_type == SetIrqsFlags.DATA_NONE
            and count == 0
            and action != SetIrqsFlags.ACTION_TRIGGER
        ):
            raise _bad("DATA_NONE with count 0 disables an index: ACTION_TRIGGER only", flags)
        return cls(flags, index, start, count, data, fds)


@dataclass(frozen=True, slots=True)
class RegionRead:
    """REGION_READ: ``count`` bytes of region ``region`` at ``offset``."""

    cmd: ClassVar[Command] = Command.REGION_READ
    region: int
    offset: int
    count: int

    def encode(self) -> tuple[bytes, Fds]:
        return _ACCESS.pack(self.offset, self.region, self.count), ()

    @classmethod
    def decode(cls, payload: Payload, fds: Fds, limits: DecodeLimits) -> RegionRead:
        _no_fds(fds, "REGION_READ")
        _exact(payload, _ACCESS.size, "REGION_READ")
        offset, region, count = _ACCESS.unpack(payload)
        _data_count(count, limits, "REGION_READ")
        return cls(region, offset, count)


@dataclass(frozen=True, slots=True)
class RegionWrite:
    """REGION_WRITE: ``data`` into region ``region`` at ``offset``."""

    cmd: ClassVar[Command] = Command.REGION_WRITE
    region: int
    offset: int
    data: bytes

    def encode(self) -> tuple[bytes, Fds]:
        return _ACCESS.pack(self.offset, self.region, len(self.data)) + self.data, ()

    @classmethod
    def decode(cls, payload: Payload, fds: Fds, limits: DecodeLimits) -> RegionWrite:
        _no_fds(fds, "REGION_WRITE")
        _at_least(payload, _ACCESS.size, "REGION_WRITE")
        offset, region, count = _ACCESS.unpack_from(payload)
        _data_count(count, limits, "REGION_WRITE")
        _exact(payload, _ACCESS.size + count, "REGION_WRITE")
        return cls(region, offset, bytes(payload[_ACCESS.size :]))


@dataclass(frozen=True, slots=True)
class DmaRead:
    """DMA_READ (server → client): ``count`` bytes of client memory at IOVA ``addr``."""

    cmd: ClassVar[Command] = Command.DMA_READ
    addr: int
    count: int

    def encode(self) -> tuple[bytes, Fds]:
        return _DMA_ACCESS.pack(self.addr, self.count), ()

    @classmethod
    def decode(cls, payload: Payload, fds: Fds, limits: DecodeLimits) -> DmaRead:
        _no_fds(fds, "DMA_READ")
        _exact(payload, _DMA_ACCESS.size, "DMA_READ")
        addr, count = _DMA_ACCESS.unpack(payload)
        _data_count(count, limits, "DMA_READ")
        return cls(addr, count)


@dataclass(frozen=True, slots=True)
class DmaWrite:
    """DMA_WRITE (server → client): ``data`` into client memory at IOVA ``addr``."""

    cmd: ClassVar[Command] = Command.DMA_WRITE
    addr: int
    data: bytes

    def encode(self) -> tuple[bytes, Fds]:
        return _DMA_ACCESS.pack(self.addr, len(self.data)) + self.data, ()

    @classmethod
    def decode(cls, payload: Payload, fds: Fds, limits: DecodeLimits) -> DmaWrite:
        _no_fds(fds, "DMA_WRITE")
        _at_least(payload, _DMA_ACCESS.size, "DMA_WRITE")
        addr, count = _DMA_ACCESS.unpack_from(payload)
        _data_count(count, limits, "DMA_WRITE")
        _exact(payload, _DMA_ACCESS.size + count, "DMA_WRITE")
        return cls(addr, bytes(payload[_DMA_ACCESS.size :]))


@dataclass(frozen=True, slots=True)
class DeviceReset:
    """DEVICE_RESET: no payload."""

    cmd: ClassVar[Command] = Command.DEVICE_RESET

    def encode(self) -> tuple[bytes, Fds]:
        return b"", ()

    @classmethod
    def decode(cls, payload: Payload, fds: Fds, limits: DecodeLimits) -> DeviceReset:
        _no_fds(fds, "DEVICE_RESET")
        _exact(payload, 0, "DEVICE_RESET")
        return cls()


@dataclass(frozen=True, slots=True)
class SingleWrite:
    """One write of REGION_WRITE_MULTI (at most 8 bytes)."""

    region: int
    offset: int
    data: bytes


@dataclass(frozen=True, slots=True)
class RegionWriteMulti:
    """REGION_WRITE_MULTI: coalesced small writes (only when ``write_multiple`` was negotiated)."""

    cmd: ClassVar[Command] = Command.REGION_WRITE_MULTI
    writes: tuple[SingleWrite, ...]

    def encode(self) -> tuple[bytes, Fds]:
        parts = [_MULTI_COUNT.pack(len(self.writes))]
        parts += [_MULTI_WRITE.pack(w.offset, w.region, len(w.data), w.data) for w in self.writes]
        return b"".join(parts), ()

    @classmethod
    def decode(cls, payload: Payload, fds: Fds, limits: DecodeLimits) -> RegionWriteMulti:
        if not limits.write_multiple:
            raise _bad("REGION_WRITE_MULTI was not negotiated", Command.REGION_WRITE_MULTI)
        _no_fds(fds, "REGION_WRITE_MULTI")
        _at_least(payload, _MULTI_COUNT.size, "REGION_WRITE_MULTI")
        (count,) = _MULTI_COUNT.unpack_from(payload)
        if not 1 <= count <= MULTI_WRITE_MAX:
            raise _bad(f"REGION_WRITE_MULTI carries 1 to {MULTI_WRITE_MAX} writes", count)
        _exact(payload, _MULTI_COUNT.size + count * _MULTI_WRITE.size, "REGION_WRITE_MULTI")
        writes = []
        for i in range(count):
            offset, region, n, data = _MULTI_WRITE.unpack_from(
                payload, _MULTI_COUNT.size + i * _MULTI_WRITE.size
            )
            if not 1 <= n <= 8:
                raise _bad("a REGION_WRITE_MULTI write carries 1 to 8 bytes", n)
            writes.append(SingleWrite(region, offset, data[:n]))
        return cls(tuple(writes))


@dataclass(frozen=True, slots=True)
class DeviceFeature:
    """DEVICE_FEATURE: ``flags`` = feature index | GET/SET/PROBE; ``data`` per feature (see ``_features``)."""

    cmd: ClassVar[Command] = Command.DEVICE_FEATURE
    flags: int
    data: bytes = b""
    argsz: int = 0

    def __post_init__(self) -> None:
        if not self.argsz:
            object.__setattr__(self, "argsz", _FEATURE.size + len(self.data))

    @property
    def feature(self) -> int:
        """The feature index (bits 0-15)."""
        return self.flags & 0xFFFF

    def encode(self) -> tuple[bytes, Fds]:
        argsz = self.argsz or _FEATURE.size + len(self.data)
        return _FEATURE.pack(argsz, self.flags) + self.data, ()

    @classmethod
    def decode(cls, payload: Payload, fds: Fds, limits: DecodeLimits) -> DeviceFeature:
        _no_fds(fds, "DEVICE_FEATURE")
        _at_least(payload, _FEATURE.size, "DEVICE_FEATURE")
        argsz, flags = _FEATURE.unpack_from(payload)
        _argsz(argsz, _FEATURE.size, "DEVICE_FEATURE")
        if flags & ~0x7FFFF:
            raise _bad("DEVICE_FEATURE flags: a feature index and GET/SET/PROBE", flags)
        return cls(flags, bytes(payload[_FEATURE.size :]), argsz)


@dataclass(frozen=True, slots=True)
class MigDataRead:
    """MIG_DATA_READ: up to ``size`` bytes of migration data (PRE_COPY or STOP_COPY)."""

    cmd: ClassVar[Command] = Command.MIG_DATA_READ
    size: int
    argsz: int = 0

    def __post_init__(self) -> None:
        if not self.argsz:
            object.__setattr__(self, "argsz", _MIG_DATA.size + self.size)

    def encode(self) -> tuple[bytes, Fds]:
        return _MIG_DATA.pack(self.argsz or _MIG_DATA.size + self.size, self.size), ()

    @classmethod
    def decode(cls, payload: Payload, fds: Fds, limits: DecodeLimits) -> MigDataRead:
        _no_fds(fds, "MIG_DATA_READ")
        _exact(payload, _MIG_DATA.size, "MIG_DATA_READ")
        argsz, size = _MIG_DATA.unpack(payload)
        _data_count(size, limits, "MIG_DATA_READ")
        _argsz(argsz, _MIG_DATA.size + size, "MIG_DATA_READ")
        return cls(size, argsz)


@dataclass(frozen=True, slots=True)
class MigDataWrite:
    """MIG_DATA_WRITE: migration data for a RESUMING device."""

    cmd: ClassVar[Command] = Command.MIG_DATA_WRITE
    data: bytes

    def encode(self) -> tuple[bytes, Fds]:
        n = len(self.data)
        return _MIG_DATA.pack(_MIG_DATA.size + n, n) + self.data, ()

    @classmethod
    def decode(cls, payload: Payload, fds: Fds, limits: DecodeLimits) -> MigDataWrite:
        _no_fds(fds, "MIG_DATA_WRITE")
        _at_least(payload, _MIG_DATA.size, "MIG_DATA_WRITE")
        argsz, size = _MIG_DATA.unpack_from(payload)
        _data_count(size, limits, "MIG_DATA_WRITE")
        _exact(payload, _MIG_DATA.size + size, "MIG_DATA_WRITE")
        _argsz(argsz, _MIG_DATA.size + size, "MIG_DATA_WRITE")
        return cls(bytes(payload[_MIG_DATA.size :]))


class _Decoder(Protocol):
    def decode(self, payload: Payload, fds: Fds, limits: DecodeLimits) -> RequestBody: ...


REQUEST_TYPES: Final[dict[Command, _Decoder]] = {
    Command.VERSION: VersionRequest,
    Command.DMA_MAP: DmaMap,
    Command.DMA_UNMAP: DmaUnmap,
    Command.DEVICE_GET_INFO: DeviceGetInfo,
    Command.DEVICE_GET_REGION_INFO: GetRegionInfo,
    Command.DEVICE_GET_REGION_IO_FDS: GetRegionIoFds,
    Command.DEVICE_GET_IRQ_INFO: GetIrqInfo,
    Command.DEVICE_SET_IRQS: SetIrqs,
    Command.REGION_READ: RegionRead,
    Command.REGION_WRITE: RegionWrite,
    Command.DMA_READ: DmaRead,
    Command.DMA_WRITE: DmaWrite,
    Command.DEVICE_RESET: DeviceReset,
    Command.REGION_WRITE_MULTI: RegionWriteMulti,
    Command.DEVICE_FEATURE: DeviceFeature,
    Command.MIG_DATA_READ: MigDataRead,
    Command.MIG_DATA_WRITE: MigDataWrite,
}
"""Command → its body class (the decoder the connection calls)."""
