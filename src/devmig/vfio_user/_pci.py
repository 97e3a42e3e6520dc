"""A type-0 PCI configuration space with PCI semantics (BAR sizing, read-only IDs, no ROM).

The 256-byte header a served device shows its client: vendor and device
IDs, class code, command register (I/O, memory, bus master, INTx disable
writable), interrupt pin A, and up to six 32-bit memory BARs. Writing all
ones to a BAR and reading it back gives ``~(size - 1)`` (the size probe every
PCI driver and QEMU do); any other write keeps only the address bits. A BAR
that does not exist, the expansion ROM BAR (there is no ROM), the IDs and
the capability pointer ignore writes. Reads and writes may be any width at
any offset: the rules apply byte by byte through a writable mask.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

__all__ = ["CONFIG_SIZE", "ConfigSpace", "PciIds"]

CONFIG_SIZE: Final = 256
_BAR0: Final = 0x10
_COMMAND_WRITABLE: Final = 0x0407  # I/O, memory, bus master, INTx disable
_BAR_FLAGS_MEM32: Final = 0x0


@dataclass(frozen=True, slots=True)
class PciIds:
    """The identity a served device shows in config space."""

    vendor: int
    device: int
    class_code: int
    """base class << 16 | subclass << 8 | programming interface."""
    revision: int = 1
    subsystem_vendor: int = 0
    subsystem: int = 0


class ConfigSpace:
    """One device's configuration space.

    Args:
        ids: vendor, device, class, revision, subsystem.
        bar_sizes: size of BAR0..BAR5 (0: no BAR); each a power of two of at least 16.
    """

    def __init__(self, ids: PciIds, bar_sizes: list[int]) -> None:
        if len(bar_sizes) > 6 or any(
            s and (s < 16 or s & (s - 1) or s > 1 << 31) for s in bar_sizes
        ):
            raise ValueError(f"BAR sizes must be powers of two from 16 to 2 GiB: {bar_sizes}")
        self.ids = ids
        self.bar_sizes = [*bar_sizes, *[0] * (6 - len(bar_sizes))]
        self.data = bytearray(CONFIG_SIZE)
        self._writable = bytearray(CONFIG_SIZE)
        struct.pack_into("<HH", self.data, 0, ids.vendor, ids.device)
        self.data[0x08] = ids.revision
        self.data[0x09:0x0C] = ids.class_code.to_bytes(3, "little")
        self.data[0x0E] = 0  # header type 0, single function
        struct.pack_into("<HH", self.data, 0x2C, ids.subsystem_vendor, ids.subsystem)
        self.data[0x3D] = 1  # interrupt pin A
        struct.pack_into("<H", self._writable, 0x04, _COMMAND_WRITABLE)
        self._writable[0x0C] = 0xFF  # cache line size
        self._writable[0x0D] = 0xFF  # latency timer
        self._writable[0x3C] = 0xFF  # interrupt line
        for i, size in enumerate(self.bar_sizes):
            if size:
                struct.pack_into("<I", self._writable, _BAR0 + 4 * i, 0xFFFFFFFF)
                struct.pack_into("<I", self.data, _BAR0 + 4 * i, _BAR_FLAGS_MEM32)

    def read(self, offset: int, count: int) -> bytes:
        """Read ``count`` bytes at ``offset`` (outside the 256 bytes: zeros)."""
        end = min(offset + count, CONFIG_SIZE)
        head = bytes(self.data[offset:end]) if offset < CONFIG_SIZE else b""
        return head.ljust(count, b"\0")

    def write(self, offset: int, data: bytes) -> None:
        """Write ``data`` at ``offset`` through the writable mask, then apply BAR rules."""
        for i, value in enumerate(data):
            at = offset + i
            if at >= CONFIG_SIZE:
                break
            mask = self._writable[at]
            self.data[at] = (self.data[at] & ~mask & 0xFF) | (value & mask)
        for i, size in enumerate(self.bar_sizes):
            if size and offset < _BAR0 + 4 * i + 4 and offset + len(data) > _BAR0 + 4 * i:
                (raw,) = struct.unpack_from("<I", self.data, _BAR0 + 4 * i)
                struct.pack_into(
                    "<I",
                    self.data,
                    _BAR0 + 4 * i,
                    (raw & ~(size - 1) & 0xFFFFFFF0) | _BAR_FLAGS_MEM32,
                )

    def bar_address(self, index: int) -> int:
        """The address programmed into BAR ``index``."""
        return int(struct.unpack_from("<I", self.data, _BAR0 + 4 * index)[0]) & 0xFFFFFFF0

    @property
    def command(self) -> int:
        """The command register."""
        return int(struct.unpack_from("<H", self.data, 0x04)[0])
