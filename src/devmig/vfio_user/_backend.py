"""A devmig SDK device behind vfio-user: PCI config, BARs, interrupts, DMA, migration.

Theory of operation
-------------------
:class:`DeviceBackend` is the :class:`~devmig.vfio_user.Handler` that
``devmig vfio-user serve`` runs for one :class:`~devmig.device.Device`. The
device shows as a PCI function (region 7, :class:`ConfigSpace`, with the
model's IDs from :data:`PCI_IDS`) with:

* **BAR0**, the control block (4 KiB, trapped): magic ``DVMG``, the VFIO
  state, the step counter, the interrupt count, a doorbell (write *n*: run
  *n* steps now), the state digest (16 bytes at 0x20, computed when read) and
  the IOVA of the completion ring (0x30; 0 = the lowest mapping);
* **BAR1…** one per state region of the device (size rounded up to a power
  of two), backed by a memfd and *trapped*: no MMAP flag, so every client
  write is a REGION_WRITE that stores and marks its pages dirty — nothing a
  client writes escapes dirty tracking, and pre-copy may send them ``LIVE``.
  Writes are refused while STOP_COPY or RESUMING (the state is being read or
  loaded).

While RUNNING or PRE_COPY the seeded workload runs (:meth:`tick`, driven by
the serve loop at a configurable rate); each tick that did work raises the
INTx eventfd (when the client assigned one and did not mask it) and, when
the client mapped DMA memory, writes a 16-byte completion record (steps,
interrupts) into it — through the mapping, or as a DMA_WRITE message for a
message-only mapping — so DMA logging sees real writes.

Migration is MIG_DEVICE_STATE with the device's own VFIO v2 walk
(:meth:`Device.set_state`) and MIG_DATA_READ/WRITE carrying exactly the
devmig stream (DESIGN §4). A read returns up to the requested size; a short
read is the end of a pre-copy round (the device's ``ROUND_END``) or, in
STOP_COPY, of the stream. A refused load (a bad MIG_DATA_WRITE, or
``RESUMING → STOP`` with an incomplete stream) answers ``EINVAL`` and
reports the decoder's problem through ``log`` (one JSON line on stderr).
"""

from __future__ import annotations

import errno
import hashlib
import mmap
import os
import struct
from collections import deque
from collections.abc import Callable
from typing import Any, Final

import numpy as np

from devmig._errors import DevmigError, StreamError, TransitionError
from devmig.device import Device
from devmig.migration import MigrationFlags, State
from devmig.state import Region, RoundEndSignal
from devmig.vfio_user._connection import Reply, Request
from devmig.vfio_user._dma import DmaSpace
from devmig.vfio_user._errors import VfioUserError
from devmig.vfio_user._features import (
    FEATURE_OPS,
    LoggingReport,
    bitmap_bytes,
    pack_device_state,
    pack_migration_flags,
    parse_device_state,
    parse_logging_report,
    parse_logging_start,
)
from devmig.vfio_user._pci import ConfigSpace, PciIds
from devmig.vfio_user._replies import (
    DeviceFeatureReply,
    DeviceInfo,
    DmaUnmapReply,
    EmptyReply,
    IrqInfo,
    MigDataReadReply,
    RegionInfo,
    RegionIoFds,
    RegionReadReply,
    RegionWriteMultiReply,
    RegionWriteReply,
    ReplyBody,
)
from devmig.vfio_user._requests import (
    UNMAP_ALL,
    UNMAP_GET_DIRTY_BITMAP,
    DeviceFeature,
    DeviceGetInfo,
    DeviceReset,
    DmaMap,
    DmaUnmap,
    DmaWrite,
    GetIrqInfo,
    GetRegionInfo,
    GetRegionIoFds,
    MigDataRead,
    MigDataWrite,
    RegionRead,
    RegionWrite,
    RegionWriteMulti,
    SetIrqs,
)
from devmig.vfio_user._wire import (
    DeviceFlags,
    Feature,
    FeatureOp,
    IrqIndex,
    IrqInfoFlags,
    MigrationFeature,
    RegionFlags,
    SetIrqsFlags,
)

__all__ = [
    "BAR0_SIZE",
    "CONFIG_REGION",
    "CONTROL",
    "NUM_REGIONS",
    "PCI_IDS",
    "DeviceBackend",
    "pci_ids",
]

NUM_REGIONS: Final = 9
"""vfio-pci's regions: BAR0-5, ROM, CONFIG, VGA."""
CONFIG_REGION: Final = 7
BAR0_SIZE: Final = 4096
CONTROL: Final = {
    "magic": 0x00,
    "state": 0x04,
    "steps": 0x08,
    "interrupts": 0x10,
    "doorbell": 0x18,
    "digest": 0x20,
    "ring": 0x30,
}
"""BAR0 register offsets."""
_MAGIC: Final = int.from_bytes(b"DVMG", "little")
_CONTROL_USED: Final = 0x40
"""BAR0 bytes that hold registers; the rest of the 4 KiB reads as zeros."""
_IRQ_COUNTS: Final = {
    IrqIndex.INTX: 1,
    IrqIndex.MSI: 0,
    IrqIndex.MSIX: 0,
    IrqIndex.ERR: 1,
    IrqIndex.REQ: 1,
}
_VFIO_USER_STATES: Final = frozenset(
    {State.STOP, State.RUNNING, State.STOP_COPY, State.RESUMING, State.PRE_COPY}
)
_RECORD = struct.Struct("<QQ")

PCI_IDS: Final[dict[str, PciIds]] = {
    "example.org/devices/nic": PciIds(0x1234, 0xD001, 0x020000),
    "example.org/devices/blk": PciIds(0x1234, 0xD002, 0x018000),
    "example.org/devices/accel": PciIds(0x1234, 0xD003, 0x120000),
    "example.org/devices/accel-lite": PciIds(0x1234, 0xD004, 0x120000),
}
"""Model → the PCI identity its served devices show (other models: :func:`pci_ids`)."""


def pci_ids(model: str) -> PciIds:
    """The PCI identity of ``model``: the table's, else device ID 0xD100-0xD1FF from its name, class 0xFF."""
    known = PCI_IDS.get(model)
    if known is not None:
        return known
    return PciIds(0x1234, 0xD100 + hashlib.sha256(model.encode()).digest()[0], 0xFF0000)


def _bar_size(size: int) -> int:
    return max(4096, 1 << (max(size, 1) - 1).bit_length())


def back_with_memfd(region: Region) -> mmap.mmap | None:
    """Move ``region``'s bytes into a memfd mapping (same contents; ``None`` for an empty region).

    The state package allocates regions with numpy; a served device keeps
    them in shareable memory instead. The region's array and view are
    replaced in place, so every user of the region sees the memfd.
    """
    if region.size == 0:
        return None
    fd = os.memfd_create(f"devmig-{region.name}", os.MFD_CLOEXEC)
    try:
        os.ftruncate(fd, region.size)
        memory = mmap.mmap(fd, region.size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    finally:
        os.close(fd)
    array = np.frombuffer(memory, dtype=np.uint8)
    array[:] = region.data
    region.data = array
    region._view = memoryview(memory)
    return memory


class DeviceBackend:
    """The vfio-user face of one SDK device (see the module's theory of operation).

    Args:
        make_device: builds the device afresh (at start and on DEVICE_RESET).
        log: receives one JSON-able dict per noteworthy event (a refused load).
        write_multiple: accept REGION_WRITE_MULTI (when the client offers it).
    """

    def __init__(
        self, make_device: Callable[[], Device], *, log: Callable[[dict[str, Any]], None]
    ) -> None:
        self._make = make_device
        self.log = log
        self.dma = DmaSpace()
        self.irq_fds: dict[tuple[int, int], int] = {}
        self.irq_control_fds: dict[tuple[int, int], int] = {}
        self.intx_masked = False
        self.interrupts = 0
        self.outbox: list[DmaWrite] = []
        """DMA_WRITE commands for message-only mappings, for the serve loop to send."""
        self.device: Device
        self._memories: list[mmap.mmap] = []
        self._start_device()
        bars = [BAR0_SIZE, *(_bar_size(r.size) for r in self.device.regions)]
        if len(bars) > 6:
            raise DevmigError(
                f"a served device has at most 5 state regions, not {len(bars) - 1}",
                code="BACKEND_UNSUPPORTED",
            )
        self.config = ConfigSpace(pci_ids(self.device.config.model), bars)
        self.bar_sizes = bars
        self._sizes = tuple(self._region_info(i).size for i in range(NUM_REGIONS))

    def _start_device(self) -> None:
        self.device = self._make()
        self._memories = [
            m for m in (back_with_memfd(r) for r in self.device.regions) if m is not None
        ]
        self._pending: deque[memoryview] = deque()

    def close(self) -> None:
        """Release the device, the DMA mappings and the eventfds."""
        self.device.close()
        self.dma.unmap_all()
        for table in (self.irq_fds, self.irq_control_fds):
            for fd in table.values():
                os.close(fd)
            table.clear()

    # -- the workload ----------------------------------------------------------------

    def tick(self, steps: int) -> None:
        """Run ``steps`` of seeded work when running, then complete: interrupt and DMA record."""
        if steps <= 0 or not self.device.running:
            return
        self.device.step(steps)
        self._complete()

    def _complete(self) -> None:
        self.interrupts += 1
        fd = self.irq_fds.get((IrqIndex.INTX, 0))
        if fd is not None and not self.intx_masked:
            os.eventfd_write(fd, 1)
        ring = self.dma.first()
        if ring is not None and ring.size >= _RECORD.size:
            slots = ring.size // _RECORD.size
            addr = ring.addr + (self.interrupts % slots) * _RECORD.size
            out = self.dma.write(addr, _RECORD.pack(self.device.steps, self.interrupts))
            if out is not None:
                self.outbox.append(out)

    # -- dispatch --------------------------------------------------------------------

    def handle(self, request: Request) -> ReplyBody:
        """Execute one command (the :class:`~devmig.vfio_user.Handler` interface)."""
        body = request.body
        if isinstance(body, RegionRead):
            return RegionReadReply(self._read(body.region, body.offset, body.count))
        if isinstance(body, RegionWrite):
            self._write(body.region, body.offset, body.data)
            return RegionWriteReply()
        if isinstance(body, RegionWriteMulti):
            for w in body.writes:
                self._write(w.region, w.offset, w.data)
            return RegionWriteMultiReply(len(body.writes))
        if isinstance(body, MigDataRead):
            return MigDataReadReply(parts=tuple(self._mig_read(body.size)))
        if isinstance(body, MigDataWrite):
            self._mig_write(body.data)
            return EmptyReply()
        if isinstance(body, DeviceFeature):
            return self._feature(body)
        if isinstance(body, DeviceGetInfo):
            return DeviceInfo(DeviceFlags.RESET | DeviceFlags.PCI, NUM_REGIONS, len(_IRQ_COUNTS))
        if isinstance(body, GetRegionInfo):
            return self._region_info(body.index)
        if isinstance(body, GetRegionIoFds):
            self._region_info(body.index)
            return RegionIoFds(body.index)
        if isinstance(body, GetIrqInfo):
            if body.index not in _IRQ_COUNTS:
                raise VfioUserError("no such interrupt index", value=body.index)
            return IrqInfo(body.index, IrqInfoFlags.EVENTFD, _IRQ_COUNTS[IrqIndex(body.index)])
        if isinstance(body, SetIrqs):
            self._set_irqs(body)
            return EmptyReply()
        if isinstance(body, DmaMap):
            self.dma.map(body)
            return EmptyReply()
        if isinstance(body, DmaUnmap):
            return self._unmap(body)
        if isinstance(body, DeviceReset):
            self._reset()
            return EmptyReply()
        raise VfioUserError(f"{request.cmd.name} is not served", value=int(request.cmd))

    def on_reply(self, reply: Reply) -> None:
        """Replies to the DMA_WRITEs of message-only mappings need nothing more."""

    # -- regions ---------------------------------------------------------------------

    def _region_info(self, index: int) -> RegionInfo:
        rw = RegionFlags.READ | RegionFlags.WRITE
        if index == CONFIG_REGION:
            return RegionInfo(index, rw, 256)
        if 0 <= index < len(self.bar_sizes):
            return RegionInfo(index, rw, self.bar_sizes[index])
        if 0 <= index < NUM_REGIONS:
            return RegionInfo(index, 0, 0)  # no such BAR, no ROM, no VGA
        raise VfioUserError("no such region", value=index)

    def _span(self, region: int, offset: int, count: int) -> int:
        size = self._sizes[region] if 0 <= region < NUM_REGIONS else self._region_info(region).size
        if offset + count > size or count == 0:
            raise VfioUserError(
                f"region {region}: [{offset}, {offset + count}) is outside its {size} bytes",
                value=offset,
            )
        return size

    def _read(self, region: int, offset: int, count: int) -> bytes:
        self._span(region, offset, count)
        if region == CONFIG_REGION:
            return self.config.read(offset, count)
        if region == 0:
            return self._control_read(offset, count)
        state = self.device.regions[region - 1]
        end = min(offset + count, state.size)
        data = bytes(state.read(offset, end - offset)) if offset < end else b""
        return data.ljust(count, b"\0")

    def _write(self, region: int, offset: int, data: bytes) -> None:
        self._span(region, offset, len(data))
        if region == CONFIG_REGION:
            self.config.write(offset, data)
        elif region == 0:
            self._control_write(offset, data)
        else:
            if self.device.state_name in (State.STOP_COPY, State.RESUMING):
                raise VfioUserError(
                    f"device memory is not writable in {self.device.state_name.name}"
                )
            state = self.device.regions[region - 1]
            end = min(offset + len(data), state.size)
            if offset < end:
                state.write(offset, data[: end - offset])

    def _control_read(self, offset: int, count: int) -> bytes:
        if offset >= _CONTROL_USED:
            return bytes(count)
        block = bytearray(_CONTROL_USED)
        struct.pack_into("<II", block, 0, _MAGIC, int(self.device.state_name))
        struct.pack_into("<QQ", block, CONTROL["steps"], self.device.steps, self.interrupts)
        if offset < CONTROL["digest"] + 16 and offset + count > CONTROL["digest"]:
            block[CONTROL["digest"] : CONTROL["digest"] + 16] = self.device.digest()
        ring = self.dma.first()
        struct.pack_into("<Q", block, CONTROL["ring"], ring.addr if ring else 0)
        return bytes(block[offset : offset + count]).ljust(count, b"\0")

    def _control_write(self, offset: int, data: bytes) -> None:
        if offset == CONTROL["doorbell"] and len(data) == 4:
            steps = int.from_bytes(data, "little")
            if not self.device.running:
                raise VfioUserError(
                    "the doorbell needs a running device", value=self.device.state_name.name
                )
            self.tick(steps)

    # -- interrupts ------------------------------------------------------------------

    def _set_irqs(self, body: SetIrqs) -> None:
        index, count = (
            body.index,
            _IRQ_COUNTS.get(IrqIndex(body.index)) if body.index in _IRQ_COUNTS else None,
        )
        if count is None or body.start + body.count > count:
            raise VfioUserError(
                "SET_IRQS outside the index's vectors", value=(body.index, body.start, body.count)
            )
        flags = SetIrqsFlags(body.flags)
        if flags & SetIrqsFlags.DATA_EVENTFD:
            # TRIGGER eventfds are where interrupts go; MASK/UNMASK eventfds (a VMM's INTx
            # resampling) are held and closed with the index, the device never needs to read them.
            table = self.irq_fds if flags & SetIrqsFlags.ACTION_TRIGGER else self.irq_control_fds
            for i in range(body.count):
                old = table.pop((index, body.start + i), None)
                if old is not None:
                    os.close(old)
                if body.fds:
                    table[(index, body.start + i)] = body.fds[i]
            return
        if flags & SetIrqsFlags.DATA_NONE and body.count == 0:
            for table in (self.irq_fds, self.irq_control_fds):
                for key in [k for k in table if k[0] == index]:
                    os.close(table.pop(key))
            return
        fire = (
            [True] * body.count if flags & SetIrqsFlags.DATA_NONE else [bool(b) for b in body.data]
        )
        if index == IrqIndex.INTX and flags & (
            SetIrqsFlags.ACTION_MASK | SetIrqsFlags.ACTION_UNMASK
        ):
            if any(fire):
                self.intx_masked = bool(flags & SetIrqsFlags.ACTION_MASK)
            return
        if flags & SetIrqsFlags.ACTION_TRIGGER:
            for i, yes in enumerate(fire):
                fd = self.irq_fds.get((index, body.start + i))
                if yes and fd is not None:
                    os.eventfd_write(fd, 1)

    # -- DMA -------------------------------------------------------------------------

    def _unmap(self, body: DmaUnmap) -> DmaUnmapReply:
        if body.flags & UNMAP_ALL:
            self.dma.unmap_all()
            return DmaUnmapReply(0, 0, body.flags)
        bitmap = b""
        if body.flags & UNMAP_GET_DIRTY_BITMAP:
            if self.dma.log_page_size is None:
                raise VfioUserError("a dirty bitmap needs DMA logging on")
            report = LoggingReport(body.addr, body.size, body.bitmap_pgsize)
            if bitmap_bytes(report.pages) > body.bitmap_size:
                raise VfioUserError("the dirty bitmap does not fit", value=body.bitmap_size)
            bitmap = self.dma.report(report)
        self.dma.unmap(body.addr, body.size)
        return DmaUnmapReply(body.addr, body.size, body.flags, bitmap)

    def _reset(self) -> None:
        self.device.close()
        self._start_device()

    # -- migration -------------------------------------------------------------------

    def _migration_flags(self) -> int:
        flags = MigrationFeature.STOP_COPY
        if self.device.flags & MigrationFlags.PRE_COPY:
            flags |= MigrationFeature.PRE_COPY
        return int(flags)

    def _feature(self, body: DeviceFeature) -> DeviceFeatureReply:
        ops = FeatureOp(body.flags & (FeatureOp.GET | FeatureOp.SET | FeatureOp.PROBE))
        try:
            feature = Feature(body.feature)
        except ValueError:
            raise VfioUserError("unknown device feature", value=body.feature) from None
        supported = FEATURE_OPS[feature]
        asked = ops & (FeatureOp.GET | FeatureOp.SET)
        if ops & FeatureOp.PROBE:
            if asked & ~supported:
                raise VfioUserError(f"{feature.name} does not support {asked!r}", value=int(asked))
            return DeviceFeatureReply(body.flags, body.data)
        if asked not in (FeatureOp.GET, FeatureOp.SET) or not asked & supported:
            raise VfioUserError(f"{feature.name}: one of {supported!r}", value=int(ops))
        if asked == FeatureOp.GET:
            data = self._feature_get(feature, body.data)
            if body.argsz < 8 + len(data):
                raise VfioUserError(
                    "DEVICE_FEATURE GET argsz leaves no room for the data", value=body.argsz
                )
            return DeviceFeatureReply(body.flags, data)
        self._feature_set(feature, body.data)
        return DeviceFeatureReply(body.flags, body.data)

    def _feature_get(self, feature: Feature, data: bytes) -> bytes:
        if feature is Feature.MIGRATION:
            return pack_migration_flags(self._migration_flags())
        if feature is Feature.MIG_DEVICE_STATE:
            return pack_device_state(int(self.device.state_name))
        report = parse_logging_report(data)
        return data + self.dma.report(report)

    def _feature_set(self, feature: Feature, data: bytes) -> None:
        if feature is Feature.MIG_DEVICE_STATE:
            self._set_state(parse_device_state(data))
        elif feature is Feature.DMA_LOGGING_START:
            self.dma.start_logging(parse_logging_start(data).page_size)
        else:
            parse_logging_start(data)
            self.dma.stop_logging()

    def _set_state(self, raw: int) -> None:
        if raw not in _VFIO_USER_STATES:
            raise VfioUserError(
                "vfio-user devices take STOP, RUNNING, STOP_COPY, RESUMING or PRE_COPY", value=raw
            )
        target = State(raw)
        before = self.device.state_name
        try:
            self.device.set_state(target)
        except TransitionError as exc:
            raise VfioUserError(f"{before.name} → {target.name}: {exc}", value=raw) from exc
        except StreamError as exc:
            self.log({"event": "load_refused", "problems": exc.to_dicts()})
            raise VfioUserError(f"the stream did not load: {exc}", value=raw) from exc
        if target not in (State.PRE_COPY, State.STOP_COPY):
            self._pending.clear()

    def _mig_read(self, size: int) -> list[memoryview]:
        """Up to ``size`` stream bytes, as views (device memory in STOP_COPY: no copy)."""
        state = self.device.state_name
        if state not in (State.PRE_COPY, State.STOP_COPY):
            raise VfioUserError(f"no migration data in {state.name}", value=state.name)
        out: list[memoryview] = []
        have = 0
        while have < size:
            if not self._pending:
                chunk = self.device.read_data(max(size - have, 4096))
                if isinstance(chunk, RoundEndSignal) or chunk == []:
                    break
                self._pending.extend(memoryview(b).cast("B") for b in chunk)
                continue
            view = self._pending.popleft()
            take = min(len(view), size - have)
            out.append(view[:take])
            if take < len(view):
                self._pending.appendleft(view[take:])
            have += take
        return out

    def _mig_write(self, data: bytes) -> None:
        if self.device.state_name != State.RESUMING:
            raise VfioUserError(
                f"migration data is written in RESUMING, not {self.device.state_name.name}"
            )
        try:
            self.device.write_data(data)
        except StreamError as exc:
            self.log({"event": "load_refused", "problems": exc.to_dicts()})
            raise VfioUserError(f"the stream was refused: {exc}") from exc
        except DevmigError as exc:
            raise VfioUserError(str(exc), errno=errno.EINVAL) from exc
