"""The block device's state declaration, its requests and its cache geometry, the same in every release."""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

from devmig.model import Value
from devmig.state import FieldKind, FieldSpec, RegionSpec, SectionSpec, StateDeclaration

__all__ = [
    "BLK_MODEL",
    "BLK_STATE",
    "COUNTERS",
    "DISCARD",
    "FLUSH",
    "FREE",
    "MAX_REQUEST_BLOCKS",
    "OP_NAMES",
    "READ",
    "WRITE",
    "_REQUEST_FIELDS",
    "Request",
    "cache_blocks",
]

BLK_MODEL = "example.org/devices/blk"
READ, WRITE, FLUSH, DISCARD = 0, 1, 2, 3
"""Request operations, as in ``inflight.op``."""
OP_NAMES = ("read", "write", "flush", "discard")
FREE = (1 << 64) - 1
"""The ``cache.lba`` entry of an empty slot."""
MAX_REQUEST_BLOCKS = 8
COUNTERS = ("reads", "writes", "flushes", "blocks_read", "blocks_written", "busy")
_REQUEST_FIELDS = ("tag", "queue", "op", "lba", "blocks")


class Request(NamedTuple):
    """One guest request in flight (``op`` is ``READ``, ``WRITE``, ``FLUSH`` or ``DISCARD``)."""

    tag: int
    queue: int
    op: int
    lba: int
    blocks: int


def cache_blocks(config: Mapping[str, Value]) -> int:
    """Return the write-back cache's size in blocks: ``queue-depth // 8``, or 0 when ``write-cache=off``."""
    return int(config["queue-depth"]) // 8 if config["write-cache"] is True else 0


_INFLIGHT_MAX = {"param": "queue-depth", "times": "num-queues"}
"""Requests in flight at most: ``queue-depth * num-queues``."""
CACHE_BLOCKS = {"when": {"write-cache": True}, "then": {"param": "queue-depth", "div": 8}}
"""The cache's size in blocks, as :func:`cache_blocks` computes it."""
_CACHE_BYTES = {"when": {"write-cache": True}, "then": {"param": "queue-depth", "div": 8, "times": "block-size"}}


def _request_array(kind: FieldKind, name: str) -> FieldSpec:
    return FieldSpec(name, kind, max=_INFLIGHT_MAX)


BLK_STATE = StateDeclaration(
    sections=[
        SectionSpec("disk", [FieldSpec("capacity", "u64"), FieldSpec("next_tag", "u64")]),
        SectionSpec(
            "queues",
            [FieldSpec("submitted", "u32[]", max="num-queues"), FieldSpec("completed", "u32[]", max="num-queues")],
        ),
        SectionSpec(
            "inflight",
            [
                _request_array("u64[]", "tag"),
                _request_array("u16[]", "queue"),
                _request_array("u8[]", "op"),
                _request_array("u64[]", "lba"),
                _request_array("u32[]", "blocks"),
            ],
        ),
        SectionSpec("counters", [FieldSpec(name, "u64") for name in COUNTERS]),
        SectionSpec("cache", [FieldSpec("lba", "u64[]", max=CACHE_BLOCKS)], when={"write-cache": True}),
        # 1.0.0 knows no ``discard``: for it the parameter is at its off value (off_values).
        SectionSpec(
            "discard",
            [FieldSpec("discards", "u64"), FieldSpec("blocks_discarded", "u64")],
            when={"discard": True},
        ),
        SectionSpec(
            "stats",
            [
                FieldSpec("cache_hits", "u64"),
                FieldSpec("writeback_blocks", "u64"),
                FieldSpec("capacity_flushes", "u64"),
            ],
            optional=True,
        ),
    ],
    regions=[RegionSpec("cache", _CACHE_BYTES)],
    off_values={"discard": False},
)
"""The block device's state, the same in every release."""
