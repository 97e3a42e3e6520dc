"""acme-blk 1.0.0, the block device every later release extends (see the package's theory of operation)."""

from __future__ import annotations

import os
import struct
import weakref
from collections.abc import Mapping
from typing import Any

import numpy as np
import xxhash

from devmig._errors import Problem, StreamError
from devmig._examples import load_example
from devmig.device import Device, DeviceError
from devmig.devices.blk._image import _image_problem, _open_image
from devmig.devices.blk._state import (
    _REQUEST_FIELDS,
    BLK_MODEL,
    BLK_STATE,
    COUNTERS,
    FLUSH,
    FREE,
    MAX_REQUEST_BLOCKS,
    OP_NAMES,
    READ,
    WRITE,
    Request,
    cache_blocks,
)
from devmig.model import ModelDocument
from devmig.state import error_from_problems

__all__ = ["BlkV1", "_doc"]

MAX_SUBMIT = 4
MAX_COMPLETE = 3
_DRAWS = 1 + 4 * MAX_SUBMIT + 1
_MASK32 = (1 << 32) - 1
_MAX_PROBLEMS = 8
_HASH_CHUNK = 1 << 20
_DATA_KEY = struct.Struct(">QQQ")


def _doc(name: str) -> ModelDocument:
    return load_example(name)


def _block_data(seed: int, tag: int, index: int, block_size: int) -> bytes:
    """The data request ``tag`` writes to its ``index``-th block (its guest buffer)."""
    word = xxhash.xxh64_intdigest(_DATA_KEY.pack(seed & FREE, tag, index))
    return int(word).to_bytes(8, "big") * (block_size // 8)


class BlkV1(Device):
    """acme-blk 1.0.0: a list per queue, a linearly scanned list of cache slots, block-by-block write-back.

    Attributes:
        capacity: the image's size in blocks.
        cache: the write-back cache's data (the ``cache`` region; empty when ``write-cache=off``).
        image_writes: ``pwrite`` calls this device made (not state; differs by release).
        log: what the guest observed (see the package docstring).
    """

    document_source = staticmethod(lambda: _doc("acme-blk/1.0.0"))
    model_id = BLK_MODEL
    state = BLK_STATE

    def setup(self) -> None:
        """Open the image (host setting ``image``) and set up empty queues and cache.

        Raises:
            ImageError: the image is missing, unreadable or of an unusable size.
        """
        p = self.params
        self.block_size = int(p["block-size"])
        self.queue_depth = int(p["queue-depth"])
        self.num_queues = int(p["num-queues"])
        self.write_cache = p["write-cache"] is True
        self.cache_blocks = cache_blocks(p)
        self.cache = self.regions[0]
        fd, self.capacity = _open_image(self.host, self.block_size)
        self._fd = fd
        self._closer = weakref.finalize(self, os.close, fd)  # also closes a device nobody closed
        self.image_writes = 0
        self.next_tag = 0
        self.submitted = [0] * self.num_queues
        self.completed = [0] * self.num_queues
        self.counters = dict.fromkeys(COUNTERS, 0)
        self.cache_hits = self.writeback_blocks = self.capacity_flushes = 0
        self._init_queues()
        self._init_cache()

    def close(self) -> None:
        """Close the image file (never writes it; idempotent). The device cannot work afterwards."""
        self._closer()

    # -- the image -------------------------------------------------------------

    def _image(self) -> int:
        if not self._closer.alive:
            raise DeviceError(
                [Problem("DEVICE_CLOSED", ("host", "image"), "the device's image is closed",
                         value=self.host.get("image"))]
            )
        return self._fd

    def _pread(self, offset: int, length: int) -> bytes:
        fd = self._image()
        try:
            data = os.pread(fd, length, offset)
        except OSError as exc:
            raise _image_problem("IMAGE_IO", f"read failed at byte {offset}: {exc.strerror}", value=offset) from exc
        if len(data) != length:
            raise _image_problem("IMAGE_IO", f"short read at byte {offset}: the image shrank", value=offset)
        return data

    def _pwrite(self, offset: int, data: bytes | memoryview) -> None:
        fd = self._image()
        try:
            written = os.pwrite(fd, data, offset)
        except OSError as exc:
            raise _image_problem("IMAGE_IO", f"write failed at byte {offset}: {exc.strerror}", value=offset) from exc
        if written != len(data):
            raise _image_problem("IMAGE_IO", f"short write at byte {offset}", value=offset)
        self.image_writes += 1

    def image_digest(self) -> str:
        """Return the xxh3-128 (hex) of the whole image as it is on the host now."""
        digest = xxhash.xxh3_128()
        size = self.capacity * self.block_size
        for offset in range(0, size, _HASH_CHUNK):
            digest.update(self._pread(offset, min(_HASH_CHUNK, size - offset)))
        return str(digest.hexdigest())

    # -- behaviour -------------------------------------------------------------

    def work(self, rng: np.random.Generator) -> None:
        # Every release draws the same numbers in the same order, whatever it uses.
        d = [int(x) for x in rng.integers(0, 1 << 32, size=_DRAWS)]
        for i in range(d[0] % (MAX_SUBMIT + 1)):
            base = 1 + 4 * i
            self._submit(d[base], d[base + 1], d[base + 2], d[base + 3])
        for _ in range(d[-1] % (MAX_COMPLETE + 1)):
            request = self._pop_oldest()
            if request is None:
                break
            self._complete(request)

    def _op_for(self, kind: int) -> int:
        """Map a draw in 0..15 to an operation; without discard its share goes to writes."""
        if kind < 7:
            return READ
        return FLUSH if kind == 13 else WRITE

    def _allowed_ops(self) -> frozenset[int]:
        return frozenset({READ, WRITE, FLUSH})

    def _submit(self, op_draw: int, lba_draw: int, len_draw: int, queue_draw: int) -> None:
        op = self._op_for(op_draw % 16)
        queue = queue_draw % self.num_queues
        if self._inflight_count(queue) >= self.queue_depth:
            self.counters["busy"] += 1
            self.log.append(("busy", queue, OP_NAMES[op]))
            return
        lba = blocks = 0
        if op != FLUSH:
            lba = lba_draw % self.capacity
            blocks = min(1 + len_draw % MAX_REQUEST_BLOCKS, self.capacity - lba)
        tag = self.next_tag
        self.next_tag += 1
        self.submitted[queue] = (self.submitted[queue] + 1) & _MASK32
        self._push(Request(tag, queue, op, lba, blocks))

    def _complete(self, request: Request) -> None:
        self.completed[request.queue] = (self.completed[request.queue] + 1) & _MASK32
        self._execute(request)

    def _execute(self, r: Request) -> None:
        if r.op == READ:
            data = self._read_blocks(r.lba, r.blocks)
            self.counters["reads"] += 1
            self.counters["blocks_read"] += r.blocks
            self.log.append(("read", r.queue, r.tag, r.lba, r.blocks, xxhash.xxh64_intdigest(data)))
        elif r.op == WRITE:
            for i in range(r.blocks):
                self._store(r.lba + i, _block_data(self.seed, r.tag, i, self.block_size))
            self.counters["writes"] += 1
            self.counters["blocks_written"] += r.blocks
            self.log.append(("write", r.queue, r.tag, r.lba, r.blocks))
        elif r.op == FLUSH:
            self._writeback()
            self.counters["flushes"] += 1
            self.log.append(("flush", r.queue, r.tag))
        else:  # load_sections refuses operations this configuration lacks
            raise DeviceError(f"operation {r.op} is not supported", code="DEVICE_STATE")

    def _store(self, lba: int, data: bytes) -> None:
        """Write one block: into the cache (making room by a write-back when full), or through."""
        if not self.write_cache:
            self._pwrite(lba * self.block_size, data)
            return
        slot = self._slot_of(lba)
        if slot is None:
            slot = self._allocate(lba)
            if slot is None:
                self.capacity_flushes += 1
                self._writeback()
                slot = self._allocate(lba)
                assert slot is not None  # a written-back cache has every slot free
        self.cache.write(slot * self.block_size, data)

    def flush_all(self) -> str:
        """The guest's final flush: complete every in-flight request, write the cache back.

        Returns:
            The image digest (:meth:`image_digest`) afterwards, also logged
            as ``("flush-all", digest)``.

        Raises:
            DeviceError: ``DEVICE_STOPPED`` unless RUNNING or PRE_COPY (a
                stopped device never writes the image); ``DEVICE_CLOSED``.
            ImageError: ``IMAGE_IO``.
        """
        if not self.running:
            raise DeviceError(
                [Problem("DEVICE_STOPPED", ("state",),
                         f"the device is in {self.state_name.name}; a flush needs RUNNING or PRE_COPY",
                         value=self.state_name.name, allowed=["RUNNING", "PRE_COPY"])]
            )
        while (request := self._pop_oldest()) is not None:
            self._complete(request)
        self._writeback()
        digest = self.image_digest()
        self.log.append(("flush-all", digest))
        return digest

    def dirty_blocks(self) -> list[int]:
        """Return the block numbers held dirty in the write-back cache, ascending."""
        return sorted(lba for lba in self._slot_table() if lba != FREE)

    # -- request queues (1.0.0: one list per queue) ------------------------------

    def _init_queues(self) -> None:
        self.queues: list[list[Request]] = [[] for _ in range(self.num_queues)]

    def _inflight_count(self, queue: int) -> int:
        return len(self.queues[queue])

    def _push(self, request: Request) -> None:
        self.queues[request.queue].append(request)

    def _pop_oldest(self) -> Request | None:
        busy = [q for q in self.queues if q]
        if not busy:
            return None
        return min(busy, key=lambda q: q[0].tag).pop(0)

    def _inflight(self) -> list[Request]:
        return sorted((r for q in self.queues for r in q), key=lambda r: r.tag)

    def _load_inflight(self, requests: list[Request]) -> None:
        self._init_queues()
        for r in requests:
            self.queues[r.queue].append(r)

    # -- write-back cache (1.0.0: a list of slots, scanned) ----------------------

    def _init_cache(self) -> None:
        self.slot_lba: list[int] = [FREE] * self.cache_blocks

    def _slot_of(self, lba: int) -> int | None:
        try:
            return self.slot_lba.index(lba)
        except ValueError:
            return None

    def _allocate(self, lba: int) -> int | None:
        slot = self._slot_of(FREE)
        if slot is not None:
            self.slot_lba[slot] = lba
        return slot

    def _release(self, slot: int) -> None:
        self.slot_lba[slot] = FREE

    def _writeback(self) -> None:
        bs = self.block_size
        for slot, lba in enumerate(self.slot_lba):
            if lba != FREE:
                self._pwrite(lba * bs, self.cache.read(slot * bs, bs))
                self.slot_lba[slot] = FREE
                self.writeback_blocks += 1

    def _read_blocks(self, lba: int, blocks: int) -> bytes:
        bs = self.block_size
        parts: list[bytes] = []
        for block in range(lba, lba + blocks):
            slot = self._slot_of(block)
            if slot is None:
                parts.append(self._pread(block * bs, bs))
            else:
                self.cache_hits += 1
                parts.append(bytes(self.cache.read(slot * bs, bs)))
        return b"".join(parts)

    def _slot_table(self) -> list[int]:
        return list(self.slot_lba)

    def _load_slot_table(self, table: list[int]) -> None:
        self.slot_lba = list(table)

    # -- state -----------------------------------------------------------------

    def save_sections(self) -> dict[str, dict[str, Any]]:
        requests = self._inflight()
        out: dict[str, dict[str, Any]] = {
            "disk": {"capacity": self.capacity, "next_tag": self.next_tag},
            "queues": {"submitted": list(self.submitted), "completed": list(self.completed)},
            "inflight": {name: [getattr(r, name) for r in requests] for name in _REQUEST_FIELDS},
            "counters": dict(self.counters),
        }
        if self.write_cache:
            out["cache"] = {"lba": self._slot_table()}
        return out

    def load_sections(self, sections: Mapping[str, Mapping[str, Any]]) -> None:
        disk = sections["disk"]
        if int(disk["capacity"]) != self.capacity:
            raise StreamError(
                "SECTION_INVALID",
                f"the source's image has {disk['capacity']} blocks, this device's {self.capacity}",
                section="disk",
                value=int(disk["capacity"]),
                allowed=self.capacity,
                hint="source and destination must share one image",
            )
        next_tag = int(disk["next_tag"])
        queues = sections["queues"]
        submitted, completed = list(queues["submitted"]), list(queues["completed"])
        if len(submitted) != self.num_queues or len(completed) != self.num_queues:
            raise StreamError("SECTION_INVALID", "queue count differs from the configuration", section="queues",
                              value=len(submitted), allowed=self.num_queues)
        requests = self._check_inflight(sections["inflight"], next_tag, submitted, completed)
        table = self._check_cache(sections.get("cache"))
        self.next_tag = next_tag
        self.submitted, self.completed = submitted, completed
        self.counters = {name: int(sections["counters"][name]) for name in COUNTERS}
        self._load_inflight(requests)
        self._load_slot_table(table)

    def _check_inflight(
        self, values: Mapping[str, Any], next_tag: int, submitted: list[int], completed: list[int]
    ) -> list[Request]:
        """Return the in-flight requests, or refuse them (``SECTION_INVALID``, every problem)."""
        columns = [list(values[name]) for name in _REQUEST_FIELDS]
        if len({len(c) for c in columns}) != 1:
            raise StreamError("SECTION_INVALID", "the request arrays differ in length", section="inflight",
                              value=[len(c) for c in columns])
        problems: list[Problem] = []

        def bad(name: str, i: int, message: str, value: int, allowed: Any) -> None:
            problems.append(Problem("SECTION_INVALID", ("section", "inflight", "field", name, i),
                                    message, value=value, allowed=allowed))

        requests = [Request(*row) for row in zip(*columns, strict=True)]
        allowed_ops = self._allowed_ops()
        depth = [0] * self.num_queues
        last = -1
        for i, r in enumerate(requests):
            if not last < r.tag < next_tag:
                bad(
                    "tag",
                    i,
                    "tags must increase and stay below next_tag",
                    r.tag,
                    {"min": last + 1, "max": next_tag - 1},
                )
            last = max(last, r.tag)
            if r.queue < self.num_queues:
                depth[r.queue] += 1
            else:
                bad("queue", i, "no such queue", r.queue, {"max": self.num_queues - 1})
            if r.op not in allowed_ops:
                bad("op", i, "operation not available in this configuration", r.op, sorted(allowed_ops))
            elif r.op == FLUSH and (r.lba or r.blocks):
                bad("blocks", i, "a flush names no blocks", r.blocks, 0)
            elif r.op != FLUSH and not (1 <= r.blocks <= MAX_REQUEST_BLOCKS and r.lba + r.blocks <= self.capacity):
                bad("lba", i, f"blocks [{r.lba}, {r.lba + r.blocks}) are outside the image", r.lba,
                    {"max": self.capacity - 1, "blocks": MAX_REQUEST_BLOCKS})
        for q in range(self.num_queues):
            expected = (submitted[q] - completed[q]) & _MASK32
            if depth[q] != expected or depth[q] > self.queue_depth:
                problems.append(Problem(
                    "SECTION_INVALID", ("section", "queues", "field", "submitted", q),
                    f"queue {q} has {depth[q]} requests in flight; its indices say {expected}",
                    value=depth[q], allowed={"expected": expected, "max": self.queue_depth}))
        if problems:
            raise error_from_problems(problems[:_MAX_PROBLEMS], section="inflight")
        return requests

    def _check_cache(self, values: Mapping[str, Any] | None) -> list[int]:
        """Return the slot table, or refuse it (``SECTION_INVALID``, every problem)."""
        if values is None:
            return []
        table = list(values["lba"])
        problems: list[Problem] = []
        if len(table) != self.cache_blocks:
            problems.append(Problem("SECTION_INVALID", ("section", "cache", "field", "lba"),
                                    "cache size differs from the configuration",
                                    value=len(table), allowed=self.cache_blocks))
        seen: set[int] = set()
        for slot, lba in enumerate(table):
            if lba != FREE and (lba >= self.capacity or lba in seen):
                problems.append(Problem("SECTION_INVALID", ("section", "cache", "field", "lba", slot),
                                        "a slot names a block outside the image or twice",
                                        value=lba, allowed={"max": self.capacity - 1}))
            seen.add(lba)
        if problems:
            raise error_from_problems(problems[:_MAX_PROBLEMS], section="cache")
        return table
