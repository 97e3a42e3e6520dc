"""The accelerator's state declaration, the same for every release and for both models."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from devmig.devices.accel._commands import COMMAND_FIELDS
from devmig.model import Value
from devmig.state import FieldKind, FieldSpec, RegionSpec, SectionSpec, StateDeclaration

__all__ = [
    "ACCEL_LITE_MODEL",
    "ACCEL_MODEL",
    "ACCEL_STATE",
    "COUNTERS",
    "MIB",
    "STATS",
    "_ecc_on",
    "_fp16_on",
]

ACCEL_MODEL: Final = "example.org/devices/accel"
ACCEL_LITE_MODEL: Final = "example.org/devices/accel-lite"

MIB: Final = 1 << 20
COUNTERS: Final = ("submitted", "completed", "rejected", "bytes_written", "checksums")
STATS: Final = ("peak_queue", "busy_engine_steps", "idle_engine_steps")


def _memory_bytes(config: Mapping[str, Value]) -> int:
    return int(config["mem-size-mib"]) * MIB


def _ecc_on(config: Mapping[str, Value]) -> bool:
    return config.get("ecc", False) is True  # accel-lite has no ``ecc``


def _fp16_on(config: Mapping[str, Value]) -> bool:
    return config.get("fp16", False) is True  # 1.0.0 and accel-lite have no ``fp16``


def _command_fields(depth: str) -> list[FieldSpec]:
    kinds: tuple[FieldKind, ...] = ("u32[]", "u8[]", "u64[]", "u64[]", "u32[]", "u32[]")
    return [
        FieldSpec(name, kind, max=depth) for name, kind in zip(COMMAND_FIELDS, kinds, strict=True)
    ]


ACCEL_STATE = StateDeclaration(
    sections=[
        SectionSpec("workload", [FieldSpec("hot_bytes", "u64"), FieldSpec("next_tag", "u32")]),
        SectionSpec("queue", _command_fields("queue-depth")),
        SectionSpec(
            "engines",
            [
                FieldSpec("next", "u8"),
                *_command_fields("engines"),
                FieldSpec("beats_done", "u8[]", max="engines"),
            ],
        ),
        SectionSpec("counters", [FieldSpec(name, "u64") for name in COUNTERS]),
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
        SectionSpec(
            "fp16",
            [FieldSpec("acc", "u16[]", max="engines"), FieldSpec("ops", "u64")],
            when=_fp16_on,
        ),
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
"""The accelerator's state, the same for every release and for both models."""
