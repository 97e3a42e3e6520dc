"""Checking and normalising section field values against their resolved layout.

Every problem is collected (not just the first), each a ``SECTION_INVALID``
:class:`~devmig.Problem` whose ``loc`` names the section and field (and the
element index inside an array).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from devmig._errors import Problem

if TYPE_CHECKING:
    from devmig.state._declaration import FieldLayout

__all__ = ["INT_RANGES", "is_int", "normalize_field"]

INT_RANGES: Final[Mapping[str, tuple[int, int]]] = {
    "u8": (0, (1 << 8) - 1),
    "u16": (0, (1 << 16) - 1),
    "u32": (0, (1 << 32) - 1),
    "u64": (0, (1 << 64) - 1),
    "i64": (-(1 << 63), (1 << 63) - 1),
}
_MAX_ELEMENT_PROBLEMS: Final = 4


def is_int(value: object) -> bool:
    """Return whether ``value`` is an integer (Python or numpy), not a bool."""
    return (isinstance(value, (int, np.integer))) and not isinstance(value, (bool, np.bool_))


def normalize_field(
    f: FieldLayout, value: Any, loc: tuple[str | int, ...]
) -> tuple[Any, list[Problem]]:
    """Return ``(normalised value, problems)`` for one field's value."""
    kind = f.kind
    if kind == "bool":
        if isinstance(value, (bool, np.bool_)):
            return bool(value), []
        return value, [_bad(loc, f"field {f.name!r} must be a bool", value, "bool")]
    if kind in INT_RANGES:
        if not is_int(value):
            return value, [_bad(loc, f"field {f.name!r} must be an integer", value, kind)]
        lo, hi = INT_RANGES[kind]
        if not lo <= int(value) <= hi:
            return value, [
                _bad(
                    loc,
                    f"field {f.name!r} is out of range for {kind}",
                    value,
                    {"min": lo, "max": hi},
                )
            ]
        return int(value), []
    assert f.max is not None
    if kind == "bytes":
        if not isinstance(value, (bytes, bytearray, memoryview)):
            return value, [_bad(loc, f"field {f.name!r} must be bytes", value, "bytes")]
        data = bytes(value)
        if len(data) > f.max:
            return data, [_too_long(loc, f, len(data), "bytes")]
        return data, []
    if kind == "str":
        if not isinstance(value, str):
            return value, [_bad(loc, f"field {f.name!r} must be a str", value, "str")]
        try:
            size = len(value.encode("utf-8"))
        except UnicodeEncodeError:
            return value, [_bad(loc, f"field {f.name!r} is not valid Unicode", value, "str")]
        if size > f.max:
            return value, [_too_long(loc, f, size, "UTF-8 bytes")]
        return value, []
    # arrays
    element = kind[:-2]
    if isinstance(value, np.ndarray):
        value = value.tolist() if value.ndim == 1 else value
    if not isinstance(value, (list, tuple)):
        return value, [_bad(loc, f"field {f.name!r} must be a list of {element}", value, kind)]
    problems: list[Problem] = []
    if len(value) > f.max:
        problems.append(_too_long(loc, f, len(value), "elements"))
    lo, hi = INT_RANGES[element]
    bad = [i for i, v in enumerate(value) if not is_int(v) or not lo <= int(v) <= hi]
    for i in bad[:_MAX_ELEMENT_PROBLEMS]:
        problems.append(
            _bad(
                (*loc, i),
                f"element {i} of field {f.name!r} is not a {element}"
                + (f" ({len(bad)} bad elements)" if i == bad[0] and len(bad) > 1 else ""),
                value[i],
                {"min": lo, "max": hi},
            )
        )
    if problems:
        return value, problems
    return [int(v) for v in value], []


def _bad(loc: tuple[str | int, ...], message: str, value: Any, allowed: Any) -> Problem:
    shown = value if isinstance(value, (bool, int, str, type(None))) else type(value).__name__
    if isinstance(shown, str) and len(shown) > 64:
        shown = shown[:64] + "..."
    return Problem("SECTION_INVALID", loc, message, value=shown, allowed=allowed)


def _too_long(loc: tuple[str | int, ...], f: FieldLayout, size: int, unit: str) -> Problem:
    return Problem(
        "SECTION_INVALID",
        loc,
        f"field {f.name!r} has {size} {unit}, above its maximum {f.max}",
        value=size,
        allowed={"max": f.max},
    )
