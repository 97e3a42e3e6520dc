"""The later acme-blk releases: what 1.1.0 (discard, stats) and 2.0.0 (ring, heap, coalesced I/O) change."""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from devmig.devices.blk._device import BlkV1, _doc
from devmig.devices.blk._state import DISCARD, FREE, Request

__all__ = ["BlkV1_1", "BlkV2"]


class BlkV1_1(BlkV1):
    """acme-blk 1.1.0: adds the discard command (``discard``) and the optional ``stats`` section."""

    document_source = staticmethod(lambda: _doc("acme-blk/1.1.0"))

    def setup(self) -> None:
        """Set up as 1.0.0 does, plus the discard counters."""
        super().setup()
        self.discard = self.params.get("discard", False) is True
        self.discards = 0
        self.blocks_discarded = 0

    def _op_for(self, kind: int) -> int:
        if kind >= 14 and self.discard:
            return DISCARD
        return super()._op_for(kind)

    def _allowed_ops(self) -> frozenset[int]:
        return super()._allowed_ops() | ({DISCARD} if self.discard else set())

    def _execute(self, r: Request) -> None:
        if r.op != DISCARD:
            super()._execute(r)
            return
        for block in range(r.lba, r.lba + r.blocks):
            slot = self._slot_of(block)
            if slot is not None:
                self._release(slot)  # a later flush must not bring the old data back
        self._pwrite(r.lba * self.block_size, bytes(r.blocks * self.block_size))
        self.discards += 1
        self.blocks_discarded += r.blocks
        self.log.append(("discard", r.queue, r.tag, r.lba, r.blocks))

    def save_sections(self) -> dict[str, dict[str, Any]]:
        out = super().save_sections()
        if self.discard:
            out["discard"] = {"discards": self.discards, "blocks_discarded": self.blocks_discarded}
        out["stats"] = {
            "cache_hits": self.cache_hits,
            "writeback_blocks": self.writeback_blocks,
            "capacity_flushes": self.capacity_flushes,
        }
        return out

    def load_sections(self, sections: Mapping[str, Mapping[str, Any]]) -> None:
        super().load_sections(sections)
        discard = sections.get("discard", {})
        self.discards = int(discard.get("discards", 0))
        self.blocks_discarded = int(discard.get("blocks_discarded", 0))
        stats = sections.get("stats", {})
        self.cache_hits = int(stats.get("cache_hits", 0))
        self.writeback_blocks = int(stats.get("writeback_blocks", 0))
        self.capacity_flushes = int(stats.get("capacity_flushes", 0))


class BlkV2(BlkV1_1):
    """acme-blk 2.0.0: one request ring, a dict-and-heap cache index, one pread per read, coalesced write-back."""

    document_source = staticmethod(lambda: _doc("acme-blk/2.0.0"))

    # -- request queues: one ring in tag order plus per-queue depths -------------

    def _init_queues(self) -> None:
        self._ring: deque[Request] = deque()
        self._depth = [0] * self.num_queues

    def _inflight_count(self, queue: int) -> int:
        return self._depth[queue]

    def _push(self, request: Request) -> None:
        self._ring.append(request)
        self._depth[request.queue] += 1

    def _pop_oldest(self) -> Request | None:
        if not self._ring:
            return None
        request = self._ring.popleft()
        self._depth[request.queue] -= 1
        return request

    def _inflight(self) -> list[Request]:
        return list(self._ring)

    def _load_inflight(self, requests: list[Request]) -> None:
        self._init_queues()
        for r in requests:
            self._push(r)

    # -- write-back cache: block → slot index, free-slot heap ---------------------

    def _init_cache(self) -> None:
        self._index: dict[int, int] = {}
        self._slots: npt.NDArray[np.uint64] = np.full(self.cache_blocks, FREE, dtype=np.uint64)
        self._free = list(range(self.cache_blocks))  # ascending: already a heap

    def _slot_of(self, lba: int) -> int | None:
        return self._index.get(lba)

    def _allocate(self, lba: int) -> int | None:
        if not self._free:
            return None
        slot = heapq.heappop(self._free)
        self._index[lba] = slot
        self._slots[slot] = lba
        return slot

    def _release(self, slot: int) -> None:
        del self._index[int(self._slots[slot])]
        self._slots[slot] = FREE
        heapq.heappush(self._free, slot)

    def _writeback(self) -> None:
        if not self._index:
            return
        bs = self.block_size
        start, run = -1, list[memoryview]()
        for lba, slot in sorted(self._index.items()):
            if run and lba == start + len(run):
                run.append(self.cache.read(slot * bs, bs))
                continue
            if run:
                self._pwrite(start * bs, b"".join(run))
            start, run = lba, [self.cache.read(slot * bs, bs)]
        self._pwrite(start * bs, b"".join(run))
        self.writeback_blocks += len(self._index)
        self._init_cache()

    def _read_blocks(self, lba: int, blocks: int) -> bytes:
        bs = self.block_size
        data = bytearray(self._pread(lba * bs, blocks * bs))
        for i in range(blocks):
            slot = self._index.get(lba + i)
            if slot is not None:
                self.cache_hits += 1
                data[i * bs : (i + 1) * bs] = self.cache.read(slot * bs, bs)
        return bytes(data)

    def _slot_table(self) -> list[int]:
        return [int(x) for x in self._slots]

    def _load_slot_table(self, table: list[int]) -> None:
        self._init_cache()
        used = [slot for slot, lba in enumerate(table) if lba != FREE]
        for slot in used:
            self._index[table[slot]] = slot
            self._slots[slot] = table[slot]
        self._free = sorted(set(range(self.cache_blocks)) - set(used))
