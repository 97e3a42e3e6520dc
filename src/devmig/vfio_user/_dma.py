"""The server's view of client memory: DMA mappings, the device's DMA writes, dirty logging.

A mapping made with a descriptor is ``mmap``-ed here (the descriptor is
closed right after: the mapping keeps the memory); one made without is
message-only, and the device's writes to it become DMA_WRITE commands to the
client (:meth:`DmaSpace.write` returns them for the server loop to send).
Either way the write is *logged* when DMA logging is on: the pages it
touched (at the logging page size) join the dirty set, which
DMA_LOGGING_REPORT and DMA_UNMAP's dirty bitmap read and clear. Only the
device's own writes are logged — what the specification asks of a device.

Refusals carry errnos: an overlapping map ``EEXIST`` (the spec's rule; an
identical re-map replaces the old one), a map beyond ``max_dma_maps``
``ENOSPC``, an unmap of no exact mapping ``ENOENT``, an ``mmap`` failure
``EINVAL``, a write outside every mapping ``EFAULT``.
"""

from __future__ import annotations

import errno
import mmap
import os
from dataclasses import dataclass

from devmig.vfio_user._errors import VfioUserError
from devmig.vfio_user._features import LoggingReport, bitmap_bytes
from devmig.vfio_user._requests import DmaMap, DmaWrite

__all__ = ["DmaSpace", "Mapping"]


@dataclass(slots=True)
class Mapping:
    """One DMA mapping: IOVA range, access flags, and the memory when mmap-able."""

    addr: int
    size: int
    flags: int
    memory: mmap.mmap | None = None

    def close(self) -> None:
        """Drop the memory (every reference the server holds)."""
        if self.memory is not None:
            self.memory.close()
            self.memory = None


class DmaSpace:
    """Every DMA mapping of one connection, and the dirty log of the device's writes."""

    def __init__(self, max_maps: int = 65535) -> None:
        self.max_maps = max_maps
        self.mappings: dict[int, Mapping] = {}
        self.log_page_size: int | None = None
        self._dirty: set[int] = set()
        self.writes = 0
        self.bytes_written = 0

    # -- mappings ----------------------------------------------------------------------

    def map(self, request: DmaMap) -> None:
        """Add a mapping (the descriptor, if any, is consumed: mapped then closed)."""
        try:
            old = self.mappings.get(request.addr)
            if old is not None and old.size == request.size:
                self.unmap(old.addr, old.size)
            elif any(
                m.addr < request.addr + request.size and request.addr < m.addr + m.size
                for m in self.mappings.values()
            ):
                raise VfioUserError(
                    "DMA_MAP overlaps a mapping", errno=errno.EEXIST, value=request.addr
                )
            if len(self.mappings) >= self.max_maps:
                raise VfioUserError(
                    "too many DMA mappings", errno=errno.ENOSPC, value=len(self.mappings)
                )
            memory = None
            if request.fd is not None:
                try:
                    memory = mmap.mmap(
                        request.fd,
                        request.size,
                        mmap.MAP_SHARED,
                        mmap.PROT_READ | mmap.PROT_WRITE,
                        offset=request.offset,
                    )
                except (OSError, ValueError, OverflowError) as exc:
                    raise VfioUserError(
                        f"cannot map the DMA descriptor: {exc}", value=request.offset
                    ) from exc
            self.mappings[request.addr] = Mapping(request.addr, request.size, request.flags, memory)
        finally:
            if request.fd is not None:
                os.close(request.fd)

    def unmap(self, addr: int, size: int) -> Mapping:
        """Remove the mapping at exactly ``[addr, addr + size)``."""
        mapping = self.mappings.get(addr)
        if mapping is None or mapping.size != size:
            raise VfioUserError(
                "DMA_UNMAP matches no mapping exactly", errno=errno.ENOENT, value=addr
            )
        del self.mappings[addr]
        mapping.close()
        return mapping

    def unmap_all(self) -> None:
        """Remove every mapping."""
        for mapping in self.mappings.values():
            mapping.close()
        self.mappings.clear()

    def first(self) -> Mapping | None:
        """The mapping with the lowest IOVA (where the device writes its completion records)."""
        return self.mappings[min(self.mappings)] if self.mappings else None

    # -- the device's writes -----------------------------------------------------------

    def write(self, addr: int, data: bytes) -> DmaWrite | None:
        """The device writes ``data`` at IOVA ``addr``; returns the DMA_WRITE to send when message-only."""
        for mapping in self.mappings.values():
            if mapping.addr <= addr and addr + len(data) <= mapping.addr + mapping.size:
                break
        else:
            raise VfioUserError("DMA write outside every mapping", errno=errno.EFAULT, value=addr)
        out = None
        if mapping.memory is not None:
            at = addr - mapping.addr
            mapping.memory[at : at + len(data)] = data
        else:
            out = DmaWrite(addr, data)
        self.writes += 1
        self.bytes_written += len(data)
        if self.log_page_size and data:
            first, last = addr // self.log_page_size, (addr + len(data) - 1) // self.log_page_size
            self._dirty.update(range(first, last + 1))
        return out

    # -- logging -----------------------------------------------------------------------

    def start_logging(self, page_size: int) -> None:
        """DMA_LOGGING_START (the ranges are a hint; every write is logged)."""
        if self.log_page_size is not None:
            raise VfioUserError("DMA logging is already on", errno=errno.EBUSY)
        self.log_page_size = page_size
        self._dirty.clear()

    def stop_logging(self) -> None:
        """DMA_LOGGING_STOP."""
        if self.log_page_size is None:
            raise VfioUserError("DMA logging is off", errno=errno.EINVAL)
        self.log_page_size = None
        self._dirty.clear()

    def report(self, report: LoggingReport) -> bytes:
        """The bitmap of ``report``'s pages written since the last report (reading clears them)."""
        lp = self.log_page_size
        if lp is None:
            raise VfioUserError("DMA logging is off", errno=errno.EINVAL)
        pages = report.pages
        if pages > 1 << 26:
            raise VfioUserError(
                "DMA_LOGGING_REPORT range is too large", errno=errno.E2BIG, value=report.length
            )
        bits = bytearray(bitmap_bytes(pages))
        lo, hi = report.iova, report.iova + report.length
        taken = [p for p in self._dirty if p * lp < hi and (p + 1) * lp > lo]
        for p in taken:
            start = max(p * lp, lo) - lo
            end = min((p + 1) * lp, hi) - lo
            for q in range(start // report.page_size, (end - 1) // report.page_size + 1):
                bits[q // 8] |= 1 << (q % 8)
            if p * lp >= lo and (p + 1) * lp <= hi:
                self._dirty.discard(p)
        return bytes(bits)
