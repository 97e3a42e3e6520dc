"""Reply bodies: one frozen dataclass per reply shape, encoded against the request it answers.

A reply's bytes depend on its request: GET_REGION_INFO and GET_REGION_IO_FDS
replies are truncated to the request's ``argsz`` (with ``argsz`` saying the
full size, capabilities and descriptors left out when they do not fit), a
MIG_DATA_READ reply is zero-padded to 8 + the requested size (its ``argsz``
and ``size`` give the real length), SET and PROBE of DEVICE_FEATURE echo the
request. So :meth:`encode` takes the request, and so does :meth:`decode`,
which checks what the client side can check. With ``strict`` it enforces
libvfio-user's receive rules on top: the payload is *exactly* the size the
request implies, echoed fields equal the request's, descriptors only where
the reply may carry them; a violation is a
:class:`~devmig.vfio_user.VfioUserError` with code ``VFIO_USER_STRICT``.
"""

from __future__ import annotations

import errno
import struct
from dataclasses import dataclass
from typing import Any, Final, Protocol

from devmig.state import Buffer
from devmig.vfio_user._capabilities import Capabilities
from devmig.vfio_user._errors import VfioUserError
from devmig.vfio_user._requests import (
    UNMAP_GET_DIRTY_BITMAP,
    DeviceFeature,
    DmaRead,
    DmaUnmap,
    DmaWrite,
    GetRegionInfo,
    GetRegionIoFds,
    MigDataRead,
    Payload,
    RegionRead,
    RegionWrite,
    RegionWriteMulti,
)
from devmig.vfio_user._wire import Command, FeatureOp, RegionFlags

__all__ = [
    "REPLY_TYPES",
    "SPARSE_MMAP_CAP",
    "DeviceFeatureReply",
    "DeviceInfo",
    "DmaReadReply",
    "DmaUnmapReply",
    "DmaWriteReply",
    "EmptyReply",
    "ErrorReply",
    "IoFdEntry",
    "IrqInfo",
    "MigDataReadReply",
    "RegionInfo",
    "RegionIoFds",
    "RegionReadReply",
    "RegionWriteMultiReply",
    "RegionWriteReply",
    "ReplyBody",
    "VersionReply",
]

SPARSE_MMAP_CAP: Final = 1
"""``VFIO_REGION_INFO_CAP_SPARSE_MMAP`` (version 1)."""

_VERSION = struct.Struct("<HH")
_INFO = struct.Struct("<IIII")
_REGION_INFO = struct.Struct("<IIIIQQ")
_CAP_HEADER = struct.Struct("<HHI")
_SPARSE = struct.Struct("<II")
_AREA = struct.Struct("<QQ")
_IO_FD = struct.Struct("<QQIIIIQ")
_ACCESS = struct.Struct("<QII")
_DMA_ACCESS = struct.Struct("<QQ")
_DMA_UNMAP = struct.Struct("<IIQQ")
_BITMAP = struct.Struct("<QQ")
_U64 = struct.Struct("<Q")
_FEATURE = struct.Struct("<II")
_MIG_DATA = struct.Struct("<II")

Fds = tuple[int, ...]


class ReplyBody(Protocol):
    """What every reply body offers."""

    def encode(self, request: Any) -> tuple[bytes, Fds]: ...


def _strict(message: str, value: object = None) -> VfioUserError:
    return VfioUserError(message, errno=errno.EPROTO, code="VFIO_USER_STRICT", value=value)


def _need(payload: Payload, size: int, what: str, strict: bool) -> None:
    if len(payload) < size or (strict and len(payload) != size):
        raise _strict(f"{what} reply must be {size} bytes", len(payload))


def _no_fds(fds: Fds, what: str, strict: bool) -> None:
    if fds and strict:
        raise _strict(f"{what} reply carries no file descriptors", len(fds))


@dataclass(frozen=True, slots=True)
class ErrorReply:
    """An error reply: the header only, flags ``0x21``, ``errno`` set."""

    errno: int

    def encode(self, request: Any) -> tuple[bytes, Fds]:
        return b"", ()


@dataclass(frozen=True, slots=True)
class EmptyReply:
    """The reply of DMA_MAP, DEVICE_SET_IRQS, DEVICE_RESET and MIG_DATA_WRITE: no payload."""

    def encode(self, request: Any) -> tuple[bytes, Fds]:
        return b"", ()

    @classmethod
    def decode(cls, payload: Payload, fds: Fds, request: Any, strict: bool) -> EmptyReply:
        _no_fds(fds, "empty", strict)
        _need(payload, 0, "this", strict)
        return cls()


@dataclass(frozen=True, slots=True)
class VersionReply:
    """The server's VERSION: major, minor (≤ the client's) and capabilities."""

    major: int
    minor: int
    capabilities: Capabilities

    def encode(self, request: Any) -> tuple[bytes, Fds]:
        return _VERSION.pack(self.major, self.minor) + self.capabilities.encode(), ()

    @classmethod
    def decode(cls, payload: Payload, fds: Fds, request: Any, strict: bool) -> VersionReply:
        _no_fds(fds, "VERSION", strict)
        if len(payload) < 4:
            raise _strict("VERSION reply is short", len(payload))
        major, minor = _VERSION.unpack_from(payload)
        if major != request.major or minor > request.minor:
            raise _strict(
                "VERSION reply must keep the major and not raise the minor", (major, minor)
            )
        caps = Capabilities.decode(bytes(payload[4:]))
        if caps.twin_socket:
            raise _strict("the server enabled twin-socket mode, which devmig never offers")
        return cls(major, minor, caps)


@dataclass(frozen=True, slots=True)
class DmaUnmapReply:
    """DMA_UNMAP's reply: the request's 24 bytes, plus the dirty bitmap when asked."""

    addr: int
    size: int
    flags: int = 0
    bitmap: bytes = b""

    def encode(self, request: DmaUnmap) -> tuple[bytes, Fds]:
        head = _DMA_UNMAP.pack(
            request.argsz or _DMA_UNMAP.size, request.flags, request.addr, request.size
        )
        if request.flags & UNMAP_GET_DIRTY_BITMAP:
            bitmap = self.bitmap.ljust(request.bitmap_size, b"\0")[: request.bitmap_size]
            return head + _BITMAP.pack(request.bitmap_pgsize, request.bitmap_size) + bitmap, ()
        return head, ()

    @classmethod
    def decode(cls, payload: Payload, fds: Fds, request: DmaUnmap, strict: bool) -> DmaUnmapReply:
        _no_fds(fds, "DMA_UNMAP", strict)
        dirty = request.flags & UNMAP_GET_DIRTY_BITMAP
        _need(
            payload,
            _DMA_UNMAP.size + (_BITMAP.size + request.bitmap_size if dirty else 0),
            "DMA_UNMAP",
            strict,
        )
        _argsz, flags, addr, size = _DMA_UNMAP.unpack_from(payload)
        if strict and (addr, size, flags) != (request.addr, request.size, request.flags):
            raise _strict("DMA_UNMAP reply must echo the request", (addr, size, flags))
        bitmap = bytes(payload[_DMA_UNMAP.size + _BITMAP.size :]) if dirty else b""
        return cls(addr, size, flags, bitmap)


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """DEVICE_GET_INFO's reply."""

    flags: int
    num_regions: int
    num_irqs: int

    def encode(self, request: Any) -> tuple[bytes, Fds]:
        return _INFO.pack(_INFO.size, self.flags, self.num_regions, self.num_irqs), ()

    @classmethod
    def decode(cls, payload: Payload, fds: Fds, request: Any, strict: bool) -> DeviceInfo:
        _no_fds(fds, "DEVICE_GET_INFO", strict)
        _need(payload, _INFO.size, "DEVICE_GET_INFO", strict)
        argsz, flags, regions, irqs = _INFO.unpack_from(payload)
        if strict and argsz != _INFO.size:
            raise _strict("DEVICE_GET_INFO reply argsz must be 16", argsz)
        return cls(flags, regions, irqs)


def _truncated(full: bytes, head_size: int, argsz: int) -> tuple[bytes, bool]:
    """``full`` cut to ``argsz``: whole when it fits, else the head zero-padded (the tail left out)."""
    if argsz >= len(full):
        return full, True
    return full[:head_size].ljust(argsz, b"\0"), False


@dataclass(frozen=True, slots=True)
class RegionInfo:
    """DEVICE_GET_REGION_INFO's reply: flags, size, mmap offset, sparse areas, the mmap fd.

    ``argsz`` (filled by :meth:`decode`) is the full size the server needs;
    when it exceeds the request's, capabilities and descriptor were left out.
    """

    index: int
    flags: int
    size: int
    offset: int = 0
    sparse_areas: tuple[tuple[int, int], ...] = ()
    fd: int | None = None
    argsz: int = 0

    def _full(self) -> bytes:
        flags = self.flags
        caps = b""
        if self.sparse_areas:
            flags |= RegionFlags.CAPS
            caps = _CAP_HEADER.pack(SPARSE_MMAP_CAP, 1, 0) + _SPARSE.pack(len(self.sparse_areas), 0)
            caps += b"".join(_AREA.pack(o, s) for o, s in self.sparse_areas)
        full = _REGION_INFO.size + len(caps)
        cap_offset = _REGION_INFO.size if caps else 0
        return _REGION_INFO.pack(full, flags, self.index, cap_offset, self.size, self.offset) + caps

    def encode(self, request: GetRegionInfo) -> tuple[bytes, Fds]:
        full = self._full()
        payload, whole = _truncated(full, _REGION_INFO.size, request.argsz)
        if not whole:  # the kernel's way: CAPS stays, cap_offset 0, no capability, no descriptor
            payload = bytes(payload[:12]) + b"\0\0\0\0" + bytes(payload[16:])
        fds = (self.fd,) if whole and self.fd is not None and self.flags & RegionFlags.MMAP else ()
        return payload, fds

    @classmethod
    def decode(cls, payload: Payload, fds: Fds, request: GetRegionInfo, strict: bool) -> RegionInfo:
        if len(payload) < _REGION_INFO.size:
            raise _strict("DEVICE_GET_REGION_INFO reply is short", len(payload))
        argsz, flags, index, cap_offset, size, offset = _REGION_INFO.unpack_from(payload)
        if strict:
            if len(payload) != min(argsz, request.argsz):
                raise _strict(
                    "DEVICE_GET_REGION_INFO reply must be min(argsz, request argsz) bytes",
                    len(payload),
                )
            if index != request.index:
                raise _strict("DEVICE_GET_REGION_INFO reply must echo the index", index)
            if len(fds) > (1 if flags & RegionFlags.MMAP else 0):
                raise _strict(
                    "DEVICE_GET_REGION_INFO reply: one descriptor, for an MMAP region", len(fds)
                )
        areas: list[tuple[int, int]] = []
        seen = 0
        while cap_offset and cap_offset + _CAP_HEADER.size <= len(payload) and seen < 16:
            cap_id, _version, nxt = _CAP_HEADER.unpack_from(payload, cap_offset)
            if cap_id == SPARSE_MMAP_CAP and cap_offset + 16 <= len(payload):
                (count, _reserved) = _SPARSE.unpack_from(payload, cap_offset + _CAP_HEADER.size)
                base = cap_offset + 16
                if base + count * _AREA.size > len(payload):
                    raise _strict("sparse mmap capability overruns the reply", count)
                areas = [_AREA.unpack_from(payload, base + i * _AREA.size) for i in range(count)]
            cap_offset, seen = nxt, seen + 1
        return cls(
            index,
            flags & ~RegionFlags.CAPS,
            size,
            offset,
            tuple(areas),
            fds[0] if fds else None,
            argsz,
        )


@dataclass(frozen=True, slots=True)
class IoFdEntry:
    """One sub-region of a GET_REGION_IO_FDS reply (the spec's 40-byte ioeventfd entry)."""

    offset: int
    size: int
    fd_index: int
    type: int = 0
    flags: int = 0
    datamatch: int = 0


@dataclass(frozen=True, slots=True)
class RegionIoFds:
    """DEVICE_GET_REGION_IO_FDS's reply: sub-regions and their descriptors."""

    index: int
    entries: tuple[IoFdEntry, ...] = ()
    fds: Fds = ()
    argsz: int = 0

    def encode(self, request: GetRegionIoFds) -> tuple[bytes, Fds]:
        body = b"".join(
            _IO_FD.pack(e.offset, e.size, e.fd_index, e.type, e.flags, 0, e.datamatch)
            for e in self.entries
        )
        full = _INFO.pack(_INFO.size + len(body), 0, self.index, len(self.entries)) + body
        payload, whole = _truncated(full, _INFO.size, request.argsz)
        return payload, (self.fds if whole else ())

    @classmethod
    def decode(
        cls, payload: Payload, fds: Fds, request: GetRegionIoFds, strict: bool
    ) -> RegionIoFds:
        if len(payload) < _INFO.size:
            raise _strict("DEVICE_GET_REGION_IO_FDS reply is short", len(payload))
        argsz, _flags, index, count = _INFO.unpack_from(payload)
        if strict and (len(payload) != min(argsz, request.argsz) or index != request.index):
            raise _strict(
                "DEVICE_GET_REGION_IO_FDS reply: min(argsz, request argsz) bytes, echoed index",
                argsz,
            )
        entries: tuple[IoFdEntry, ...] = ()
        if count and len(payload) >= _INFO.size + count * _IO_FD.size:
            rows = [_IO_FD.unpack_from(payload, _INFO.size + i * _IO_FD.size) for i in range(count)]
            entries = tuple(IoFdEntry(o, s, fi, t, f, d) for o, s, fi, t, f, _pad, d in rows)
            if strict and any(e.fd_index >= len(fds) for e in entries):
                raise _strict("an IO_FDS entry names a descriptor the reply does not carry")
        return cls(index, entries, fds, argsz)


@dataclass(frozen=True, slots=True)
class IrqInfo:
    """DEVICE_GET_IRQ_INFO's reply."""

    index: int
    flags: int
    count: int

    def encode(self, request: Any) -> tuple[bytes, Fds]:
        return _INFO.pack(_INFO.size, self.flags, self.index, self.count), ()

    @classmethod
    def decode(cls, payload: Payload, fds: Fds, request: Any, strict: bool) -> IrqInfo:
        _no_fds(fds, "DEVICE_GET_IRQ_INFO", strict)
        _need(payload, _INFO.size, "DEVICE_GET_IRQ_INFO", strict)
        _argsz, flags, index, count = _INFO.unpack_from(payload)
        if strict and index != request.index:
            raise _strict("DEVICE_GET_IRQ_INFO reply must echo the index", index)
        return cls(index, flags, count)


@dataclass(frozen=True, slots=True)
class RegionReadReply:
    """REGION_READ's reply: offset, region, count echoed, then exactly ``count`` bytes."""

    data: bytes

    def encode(self, request: RegionRead) -> tuple[bytes, Fds]:
        return _ACCESS.pack(request.offset, request.region, request.count) + self.data, ()

    @classmethod
    def decode(
        cls, payload: Payload, fds: Fds, request: RegionRead, strict: bool
    ) -> RegionReadReply:
        _no_fds(fds, "REGION_READ", strict)
        _need(payload, _ACCESS.size + request.count, "REGION_READ", strict)
        offset, region, count = _ACCESS.unpack_from(payload)
        if (offset, region, count) != (request.offset, request.region, request.count):
            raise _strict(
                "REGION_READ reply must echo offset, region and count", (offset, region, count)
            )
        return cls(bytes(payload[_ACCESS.size : _ACCESS.size + count]))


@dataclass(frozen=True, slots=True)
class RegionWriteReply:
    """REGION_WRITE's reply: offset, region, count echoed (16 bytes)."""

    def encode(self, request: RegionWrite) -> tuple[bytes, Fds]:
        return _ACCESS.pack(request.offset, request.region, len(request.data)), ()

    @classmethod
    def decode(
        cls, payload: Payload, fds: Fds, request: RegionWrite, strict: bool
    ) -> RegionWriteReply:
        _no_fds(fds, "REGION_WRITE", strict)
        _need(payload, _ACCESS.size, "REGION_WRITE", strict)
        if _ACCESS.unpack_from(payload) != (request.offset, request.region, len(request.data)):
            raise _strict("REGION_WRITE reply must echo offset, region and count")
        return cls()


@dataclass(frozen=True, slots=True)
class DmaReadReply:
    """DMA_READ's reply (client → server): address, count, data."""

    data: bytes

    def encode(self, request: DmaRead) -> tuple[bytes, Fds]:
        return _DMA_ACCESS.pack(request.addr, request.count) + self.data, ()

    @classmethod
    def decode(cls, payload: Payload, fds: Fds, request: DmaRead, strict: bool) -> DmaReadReply:
        _no_fds(fds, "DMA_READ", strict)
        _need(payload, _DMA_ACCESS.size + request.count, "DMA_READ", strict)
        if _DMA_ACCESS.unpack_from(payload) != (request.addr, request.count):
            raise _strict("DMA_READ reply must echo address and count")
        return cls(bytes(payload[_DMA_ACCESS.size : _DMA_ACCESS.size + request.count]))


@dataclass(frozen=True, slots=True)
class DmaWriteReply:
    """DMA_WRITE's reply: address and count (8 bytes each, as libvfio-user and QEMU send it)."""

    def encode(self, request: DmaWrite) -> tuple[bytes, Fds]:
        return _DMA_ACCESS.pack(request.addr, len(request.data)), ()

    @classmethod
    def decode(cls, payload: Payload, fds: Fds, request: DmaWrite, strict: bool) -> DmaWriteReply:
        _no_fds(fds, "DMA_WRITE", strict)
        _need(payload, _DMA_ACCESS.size, "DMA_WRITE", strict)
        return cls()


@dataclass(frozen=True, slots=True)
class RegionWriteMultiReply:
    """REGION_WRITE_MULTI's reply: how many writes were done."""

    wr_cnt: int

    def encode(self, request: RegionWriteMulti) -> tuple[bytes, Fds]:
        return _U64.pack(self.wr_cnt), ()

    @classmethod
    def decode(
        cls, payload: Payload, fds: Fds, request: RegionWriteMulti, strict: bool
    ) -> RegionWriteMultiReply:
        _no_fds(fds, "REGION_WRITE_MULTI", strict)
        _need(payload, _U64.size, "REGION_WRITE_MULTI", strict)
        return cls(_U64.unpack_from(payload)[0])


@dataclass(frozen=True, slots=True)
class DeviceFeatureReply:
    """DEVICE_FEATURE's reply: SET and PROBE echo the request; GET carries the feature's data."""

    flags: int
    data: bytes = b""

    def encode(self, request: DeviceFeature) -> tuple[bytes, Fds]:
        if request.flags & FeatureOp.GET and not request.flags & FeatureOp.PROBE:
            return _FEATURE.pack(_FEATURE.size + len(self.data), self.flags) + self.data, ()
        return request.encode()

    @classmethod
    def decode(
        cls, payload: Payload, fds: Fds, request: DeviceFeature, strict: bool
    ) -> DeviceFeatureReply:
        _no_fds(fds, "DEVICE_FEATURE", strict)
        if len(payload) < _FEATURE.size:
            raise _strict("DEVICE_FEATURE reply is short", len(payload))
        argsz, flags = _FEATURE.unpack_from(payload)
        if strict:
            if request.flags & FeatureOp.GET and not request.flags & FeatureOp.PROBE:
                if argsz != len(payload) or argsz > request.argsz or flags != request.flags:
                    raise _strict(
                        "DEVICE_FEATURE GET reply: argsz = its length, within the request's", argsz
                    )
            elif payload != request.encode()[0]:
                raise _strict("DEVICE_FEATURE SET/PROBE reply must echo the request")
        return cls(flags, bytes(payload[_FEATURE.size :]))


@dataclass(frozen=True, slots=True)
class MigDataReadReply:
    """MIG_DATA_READ's reply: ``data`` (shorter than asked: the end of this phase's data).

    On the wire the payload is always 8 + the *requested* size, zero-padded;
    ``argsz`` = 8 + ``len(data)`` and ``size`` = ``len(data)``. A server may
    give ``parts`` (buffers, e.g. views of device memory) instead of ``data``:
    they are sent as they are, without a copy.
    """

    data: bytes = b""
    parts: tuple[Buffer, ...] = ()

    def encode_parts(self, request: MigDataRead) -> tuple[bytes, tuple[Buffer, ...]]:
        """The 8-byte head, then the data buffers and the zero padding (nothing joined)."""
        parts = self.parts or ((self.data,) if self.data else ())
        n = sum(len(memoryview(p)) for p in parts)
        pad = (bytes(request.size - n),) if request.size > n else ()
        return _MIG_DATA.pack(_MIG_DATA.size + n, n), (*parts, *pad)

    def encode(self, request: MigDataRead) -> tuple[bytes, Fds]:
        head, parts = self.encode_parts(request)
        return head + b"".join(parts), ()

    @classmethod
    def decode(
        cls, payload: Payload, fds: Fds, request: MigDataRead, strict: bool
    ) -> MigDataReadReply:
        _no_fds(fds, "MIG_DATA_READ", strict)
        if len(payload) < _MIG_DATA.size:
            raise _strict("MIG_DATA_READ reply is short", len(payload))
        argsz, size = _MIG_DATA.unpack_from(payload)
        if (
            size > request.size
            or argsz != _MIG_DATA.size + size
            or len(payload) < _MIG_DATA.size + size
        ):
            raise _strict(
                "MIG_DATA_READ reply: size within the request, argsz = 8 + size", (argsz, size)
            )
        if strict and len(payload) != _MIG_DATA.size + request.size:
            raise _strict("MIG_DATA_READ reply must be 8 + the requested size bytes", len(payload))
        return cls(bytes(payload[_MIG_DATA.size : _MIG_DATA.size + size]))


class _Decoder(Protocol):
    def decode(self, payload: Payload, fds: Fds, request: Any, strict: bool) -> ReplyBody: ...


REPLY_TYPES: Final[dict[Command, _Decoder]] = {
    Command.VERSION: VersionReply,
    Command.DMA_MAP: EmptyReply,
    Command.DMA_UNMAP: DmaUnmapReply,
    Command.DEVICE_GET_INFO: DeviceInfo,
    Command.DEVICE_GET_REGION_INFO: RegionInfo,
    Command.DEVICE_GET_REGION_IO_FDS: RegionIoFds,
    Command.DEVICE_GET_IRQ_INFO: IrqInfo,
    Command.DEVICE_SET_IRQS: EmptyReply,
    Command.REGION_READ: RegionReadReply,
    Command.REGION_WRITE: RegionWriteReply,
    Command.DMA_READ: DmaReadReply,
    Command.DMA_WRITE: DmaWriteReply,
    Command.DEVICE_RESET: EmptyReply,
    Command.REGION_WRITE_MULTI: RegionWriteMultiReply,
    Command.DEVICE_FEATURE: DeviceFeatureReply,
    Command.MIG_DATA_READ: MigDataReadReply,
    Command.MIG_DATA_WRITE: EmptyReply,
}
"""Command → the class decoding its reply."""
