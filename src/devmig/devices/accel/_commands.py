"""The accelerator's commands: opcodes, spans, the guest's workload that submits them, their checks.

A command is ``(tag, op, dst, src, length, arg)`` (:data:`Command`); an engine
holds one with the beats it has done (:data:`EngineRow`, all zeros when idle).
The guest — the seeded workload, which is not the device — turns five draws
into one command inside the hot set (:func:`_guest_command`); a command
loaded from a stream is checked with :func:`_command_problem`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

__all__ = [
    "AXPY",
    "BEAT_BYTES",
    "CHECKSUM",
    "COMMAND_FIELDS",
    "COPY",
    "ENGINE_FIELDS",
    "FILL",
    "LINE",
    "MAX_LANES_SPAN",
    "MAX_SPAN",
    "MAX_SUBMIT",
    "OP_NAMES",
    "SCALE",
    "_DRAWS",
    "_IDLE",
    "Command",
    "EngineRow",
    "_beats",
    "_command",
    "_command_problem",
    "_engine_row",
    "_guest_command",
]

LINE: Final = 64
"""Commands address whole 64-byte lines."""
MAX_SPAN: Final = 64 << 10
"""The longest FILL, COPY or CHECKSUM span."""
MAX_LANES_SPAN: Final = 8 * LINE
"""The longest SCALE or AXPY span (256 16-bit lanes)."""
BEAT_BYTES: Final = 16 << 10
"""Bytes an engine moves per beat."""
MAX_SUBMIT: Final = 3

FILL, COPY, CHECKSUM, SCALE, AXPY = 1, 2, 3, 4, 5
OP_NAMES: Final = {FILL: "fill", COPY: "copy", CHECKSUM: "checksum", SCALE: "scale", AXPY: "axpy"}
_OP_BY_DRAW: Final = (FILL, FILL, FILL, COPY, COPY, CHECKSUM, SCALE, AXPY)
_DRAWS: Final = 2 + 5 * MAX_SUBMIT

Command = tuple[int, int, int, int, int, int]
"""A queued command: ``(tag, op, dst, src, length, arg)``."""
EngineRow = tuple[int, int, int, int, int, int, int]
"""An engine: its command and the beats done, all zeros when idle."""
_IDLE: Final[EngineRow] = (0, 0, 0, 0, 0, 0, 0)
COMMAND_FIELDS: Final = ("tag", "op", "dst", "src", "length", "arg")
ENGINE_FIELDS: Final = (*COMMAND_FIELDS, "beats_done")


# -- the guest's workload (shared: it is not the device) -------------------------


def _guest_command(draws: Sequence[int], hot: int, fp16: bool) -> tuple[int, int, int, int, int]:
    """Turn five draws into ``(op, dst, src, length, arg)`` inside a hot set of ``hot`` bytes."""
    kind, dst_draw, src_draw, length_draw, arg = draws
    op = _OP_BY_DRAW[kind % len(_OP_BY_DRAW)]
    if op == AXPY and not fp16:
        op = CHECKSUM
    longest = MAX_LANES_SPAN if op in (SCALE, AXPY) else MAX_SPAN
    length = (1 + length_draw % (longest // LINE)) * LINE
    slots = (hot - length) // LINE + 1
    return op, dst_draw % slots * LINE, src_draw % slots * LINE, length, arg


def _beats(op: int, length: int) -> int:
    """Beats an engine spends on a command: one per 16 KiB moved, two for compute."""
    return 2 if op in (SCALE, AXPY) else 1 + (length - 1) // BEAT_BYTES


def _command_problem(
    op: int, dst: int, src: int, length: int, memory: int, fp16: bool
) -> str | None:
    """Why a loaded command could not have been submitted, or ``None``."""
    if op not in OP_NAMES or (op == AXPY and not fp16):
        return f"opcode {op} is not available in this configuration"
    longest = MAX_LANES_SPAN if op in (SCALE, AXPY) else MAX_SPAN
    if length <= 0 or length % LINE or length > longest:
        return f"{OP_NAMES[op]} length {length} is not 64..{longest} in whole lines"
    if dst % LINE or src % LINE or max(dst, src) + length > memory:
        return (
            f"{OP_NAMES[op]} span dst={dst} src={src} length={length} is not inside device memory"
        )
    return None


def _command(values: Sequence[int]) -> Command:
    tag, op, dst, src, length, arg = (int(v) for v in values)
    return tag, op, dst, src, length, arg


def _engine_row(values: Sequence[int]) -> EngineRow:
    tag, op, dst, src, length, arg, done = (int(v) for v in values)
    return tag, op, dst, src, length, arg, done
