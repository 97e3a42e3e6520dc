"""vfio-user wire facts: command numbers, header flags and the 16-byte header.

Every message, command or reply, starts with the same header (integers in
host byte order, little-endian on every host devmig runs on)::

    msg_id u16 | cmd u16 | msg_size u32 (header included) | flags u32 | error_no u32

``flags`` bits 0-3 give the type (0 command, 1 reply), ``0x10`` is NO_REPLY
(the command is executed and never answered) and ``0x20`` ERROR (a reply
carrying ``error_no``). The numbers here are QEMU's ``docs/interop/vfio-user.rst``
and ``<linux/vfio.h>``, which the protocol reuses for its structures.
"""

from __future__ import annotations

import enum
import struct
from typing import Final, NamedTuple

__all__ = [
    "CLIENT_COMMANDS",
    "FLAG_ERROR",
    "FLAG_NO_REPLY",
    "HEADER",
    "HEADER_SIZE",
    "SERVER_COMMANDS",
    "TYPE_COMMAND",
    "TYPE_MASK",
    "TYPE_REPLY",
    "Command",
    "DeviceFlags",
    "Feature",
    "FeatureOp",
    "Header",
    "IrqIndex",
    "IrqInfoFlags",
    "MigrationFeature",
    "RegionFlags",
    "SetIrqsFlags",
]

HEADER: Final = struct.Struct("<HHIII")
HEADER_SIZE: Final = HEADER.size

TYPE_MASK: Final = 0xF
TYPE_COMMAND: Final = 0
TYPE_REPLY: Final = 1
FLAG_NO_REPLY: Final = 0x10
FLAG_ERROR: Final = 0x20


class Command(enum.IntEnum):
    """The commands of the specification (14, once DIRTY_PAGES, is retired)."""

    VERSION = 1
    DMA_MAP = 2
    DMA_UNMAP = 3
    DEVICE_GET_INFO = 4
    DEVICE_GET_REGION_INFO = 5
    DEVICE_GET_REGION_IO_FDS = 6
    DEVICE_GET_IRQ_INFO = 7
    DEVICE_SET_IRQS = 8
    REGION_READ = 9
    REGION_WRITE = 10
    DMA_READ = 11
    DMA_WRITE = 12
    DEVICE_RESET = 13
    REGION_WRITE_MULTI = 15
    DEVICE_FEATURE = 16
    MIG_DATA_READ = 17
    MIG_DATA_WRITE = 18


SERVER_COMMANDS: Final = frozenset({Command.DMA_READ, Command.DMA_WRITE})
"""Commands the server sends (the client answers them)."""
CLIENT_COMMANDS: Final = frozenset(set(Command) - SERVER_COMMANDS)
"""Commands the client sends (the server answers them)."""


class DeviceFlags(enum.IntFlag):
    """``vfio_device_info.flags``."""

    RESET = 1
    PCI = 2


class RegionFlags(enum.IntFlag):
    """``vfio_region_info.flags``."""

    READ = 1
    WRITE = 2
    MMAP = 4
    CAPS = 8


class IrqIndex(enum.IntEnum):
    """The PCI interrupt indexes of ``vfio_irq_info.index``."""

    INTX = 0
    MSI = 1
    MSIX = 2
    ERR = 3
    REQ = 4


class IrqInfoFlags(enum.IntFlag):
    """``vfio_irq_info.flags``."""

    EVENTFD = 1
    MASKABLE = 2
    AUTOMASKED = 4
    NORESIZE = 8


class SetIrqsFlags(enum.IntFlag):
    """``vfio_irq_set.flags``: one data type (bits 0-2) and one action (bits 3-5)."""

    DATA_NONE = 1
    DATA_BOOL = 2
    DATA_EVENTFD = 4
    ACTION_MASK = 8
    ACTION_UNMASK = 0x10
    ACTION_TRIGGER = 0x20


class Feature(enum.IntEnum):
    """The DEVICE_FEATURE indexes vfio-user defines."""

    MIGRATION = 1
    MIG_DEVICE_STATE = 2
    DMA_LOGGING_START = 6
    DMA_LOGGING_STOP = 7
    DMA_LOGGING_REPORT = 8


class FeatureOp(enum.IntFlag):
    """DEVICE_FEATURE operation bits (above the 16-bit feature index)."""

    GET = 1 << 16
    SET = 1 << 17
    PROBE = 1 << 18


class MigrationFeature(enum.IntFlag):
    """The ``flags`` of the MIGRATION feature (``VFIO_MIGRATION_*``)."""

    STOP_COPY = 1
    P2P = 2
    PRE_COPY = 4


class Header(NamedTuple):
    """One message header (a named tuple: built and read on every message).

    Attributes:
        msg_id: chosen by the command's sender, echoed by the reply.
        cmd: the command number (an ``int``: unknown numbers are kept as received).
        size: the whole message's size, header included.
        flags: type, NO_REPLY and ERROR bits.
        error_no: the errno of an error reply (0 otherwise).
    """

    msg_id: int
    cmd: int
    size: int
    flags: int = TYPE_COMMAND
    error_no: int = 0

    @property
    def is_reply(self) -> bool:
        """Whether the type bits say reply."""
        return self.flags & TYPE_MASK == TYPE_REPLY

    @property
    def no_reply(self) -> bool:
        """Whether the NO_REPLY bit is set."""
        return bool(self.flags & FLAG_NO_REPLY)

    @property
    def is_error(self) -> bool:
        """Whether the ERROR bit is set."""
        return bool(self.flags & FLAG_ERROR)

    def pack(self) -> bytes:
        """The header's 16 bytes."""
        return HEADER.pack(*self)

    @classmethod
    def unpack(cls, data: bytes | bytearray | memoryview) -> Header:
        """Read a header from the first 16 bytes of ``data``."""
        return cls._make(HEADER.unpack_from(data))
