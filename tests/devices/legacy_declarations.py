"""The reference devices' state declarations as they were before §7 expressions: Python callables.

Kept verbatim so that a test can prove the expression forms resolve to the
very same layouts, and that devices built on either produce the same streams.
"""

from __future__ import annotations

from collections.abc import Mapping

from devmig.devices.accel._commands import COMMAND_FIELDS
from devmig.model import Value
from devmig.state import FieldKind, FieldSpec, RegionSpec, SectionSpec, StateDeclaration

MIB = 1 << 20
KEY_BYTES = 40


def _memory_bytes(config: Mapping[str, Value]) -> int:
    return int(config["mem-size-mib"]) * MIB


def _ecc_on(config: Mapping[str, Value]) -> bool:
    return config.get("ecc", False) is True


def _fp16_on(config: Mapping[str, Value]) -> bool:
    return config.get("fp16", False) is True


def _command_fields(depth: str) -> list[FieldSpec]:
    kinds: tuple[FieldKind, ...] = ("u32[]", "u8[]", "u64[]", "u64[]", "u32[]", "u32[]")
    return [FieldSpec(name, kind, max=depth) for name, kind in zip(COMMAND_FIELDS, kinds, strict=True)]


ACCEL_STATE = StateDeclaration(
    sections=[
        SectionSpec("workload", [FieldSpec("hot_bytes", "u64"), FieldSpec("next_tag", "u32")]),
        SectionSpec("queue", _command_fields("queue-depth")),
        SectionSpec(
            "engines",
            [FieldSpec("next", "u8"), *_command_fields("engines"), FieldSpec("beats_done", "u8[]", max="engines")],
        ),
        SectionSpec(
            "counters",
            [FieldSpec(n, "u64") for n in ("submitted", "completed", "rejected", "bytes_written", "checksums")],
        ),
        SectionSpec(
            "ecc",
            [
                FieldSpec("corrected", "u64"),
                FieldSpec("scrubbed", "u64"),
                FieldSpec("scrub_cursor", "u32"),
                FieldSpec("syndromes", "u32[]", max="mem-size-mib"),
            ],
            when=_ecc_on,
        ),
        SectionSpec("fp16", [FieldSpec("acc", "u16[]", max="engines"), FieldSpec("ops", "u64")], when=_fp16_on),
        SectionSpec(
            "stats",
            [
                FieldSpec("peak_queue", "u32"),
                FieldSpec("busy_engine_steps", "u64"),
                FieldSpec("idle_engine_steps", "u64"),
            ],
            optional=True,
        ),
    ],
    regions=[RegionSpec("memory", _memory_bytes)],
)


def cache_blocks(config: Mapping[str, Value]) -> int:
    return int(config["queue-depth"]) // 8 if config["write-cache"] is True else 0


def _inflight_max(config: Mapping[str, Value]) -> int:
    return int(config["queue-depth"]) * int(config["num-queues"])


def _cache_bytes(config: Mapping[str, Value]) -> int:
    return cache_blocks(config) * int(config["block-size"])


def _request_array(kind: FieldKind, name: str) -> FieldSpec:
    return FieldSpec(name, kind, max=_inflight_max)


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
        SectionSpec(
            "counters",
            [FieldSpec(n, "u64") for n in ("reads", "writes", "flushes", "blocks_read", "blocks_written", "busy")],
        ),
        SectionSpec("cache", [FieldSpec("lba", "u64[]", max=cache_blocks)], when={"write-cache": True}),
        SectionSpec(
            "discard",
            [FieldSpec("discards", "u64"), FieldSpec("blocks_discarded", "u64")],
            when=lambda c: c.get("discard", False) is True,
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
    regions=[RegionSpec("cache", _cache_bytes)],
)


def _table_size(config: Mapping[str, Value]) -> int:
    return int(config.get("rx-table-size", 0))


NIC_STATE = StateDeclaration(
    sections=[
        SectionSpec(
            "queues",
            [FieldSpec("rx_index", "u32[]", max="rx-queues"), FieldSpec("tx_index", "u32[]", max="tx-queues")],
        ),
        SectionSpec(
            "counters",
            [FieldSpec(n, "u64") for n in ("rx_packets", "rx_bytes", "rx_dropped", "tx_packets", "tx_bytes")],
        ),
        SectionSpec("filters", [FieldSpec("macs", "u64[]", max="mac-filters")]),
        SectionSpec(
            "rss",
            [FieldSpec("key", "bytes", max=KEY_BYTES), FieldSpec("table", "u8[]", max=_table_size)],
            when={"rss": True},
        ),
        SectionSpec("tso", [FieldSpec("segments", "u64")], when=lambda c: c.get("tso", False) is True),
        SectionSpec("stats", [FieldSpec("table_writes", "u64"), FieldSpec("filter_hits", "u64")], optional=True),
    ]
)

LEGACY = {"acme-accel": ACCEL_STATE, "acme-blk": BLK_STATE, "acme-nic": NIC_STATE}
"""Implementation name → its declaration before the rewrite."""
