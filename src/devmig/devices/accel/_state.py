"""The accelerator's state declaration, the same for every release and for both models."""

from __future__ import annotations

from typing import Final

from devmig.devices.accel._commands import COMMAND_FIELDS
from devmig.state import FieldKind, FieldSpec, RegionSpec, SectionSpec, StateDeclaration

__all__ = [
    "ACCEL_LITE_MODEL",
    "ACCEL_MODEL",
    "ACCEL_STATE",
    "COUNTERS",
    "MIB",
    "STATS",
]

ACCEL_MODEL: Final = "example.org/devices/accel"
ACCEL_LITE_MODEL: Final = "example.org/devices/accel-lite"

MIB: Final = 1 << 20
COUNTERS: Final = ("submitted", "completed", "rejected", "bytes_written", "checksums")
STATS: Final = ("peak_queue", "busy_engine_steps", "idle_engine_steps")


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
            when={"ecc": True},
        ),
        SectionSpec(
            "fp16",
            [FieldSpec("acc", "u16[]", max="engines"), FieldSpec("ops", "u64")],
            when={"fp16": True},
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
    regions=[RegionSpec("memory", {"param": "mem-size-mib", "times": MIB})],
    # accel-lite has neither ``ecc`` nor ``fp16``, 1.0.0 no ``fp16``: there they are off
    off_values={"ecc": False, "fp16": False},
)
"""The accelerator's state, the same for every release and for both models."""
