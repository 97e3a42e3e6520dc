"""QEMU-style option strings: ``version=2,rx-table-size=48`` (DESIGN §2).

Items are ``key=value`` separated by commas; ``,,`` is a literal comma; a bare
``key`` means ``key=on``. This module only splits the text into items and
converts a raw value to a parameter type; :mod:`devmig.model._config` gives the
items meaning for one model.
"""

from __future__ import annotations

from dataclasses import dataclass

from devmig._errors import Problem
from devmig.model._values import TypeName, Value, format_value

__all__ = ["OptionItem", "convert_value", "format_options", "split_options"]

_BOOL_WORDS = {
    "on": True,
    "true": True,
    "yes": True,
    "off": False,
    "false": False,
    "no": False,
}


@dataclass(frozen=True, slots=True)
class OptionItem:
    """One ``key=value`` item; ``value`` is ``None`` for a bare key."""

    key: str
    value: str | None
    position: int


def split_options(text: str) -> tuple[list[OptionItem], list[Problem]]:
    """Split an option string into items, collecting every syntax problem.

    Returns:
        The well-formed items in order, and a ``SYNTAX`` problem for every
        empty item (``a=1,,,b`` is fine: ``,,`` is a comma inside the value).
        An empty string has no items.
    """
    items: list[OptionItem] = []
    problems: list[Problem] = []
    if text == "":
        return items, problems
    current: list[str] = []
    start = 0
    i = 0
    n = len(text)
    raw_items: list[tuple[str, int]] = []
    while i < n:
        ch = text[i]
        if ch == ",":
            if i + 1 < n and text[i + 1] == ",":
                current.append(",")
                i += 2
                continue
            raw_items.append(("".join(current), start))
            current = []
            i += 1
            start = i
            continue
        current.append(ch)
        i += 1
    raw_items.append(("".join(current), start))
    for raw, pos in raw_items:
        if raw == "":
            problems.append(
                Problem(
                    "SYNTAX",
                    ("config",),
                    f"empty item at position {pos}",
                    value=text,
                    hint="items are key=value separated by one comma; write ',,' for a comma in a value",
                    context={"position": pos},
                )
            )
            continue
        key, sep, value = raw.partition("=")
        if key == "":
            problems.append(
                Problem(
                    "SYNTAX",
                    ("config",),
                    f"item {raw!r} at position {pos} has no key",
                    value=raw,
                    hint="items are key=value",
                    context={"position": pos},
                )
            )
            continue
        items.append(OptionItem(key, value if sep else None, pos))
    return items, problems


def convert_value(type_name: TypeName, raw: str | None) -> Value | None:
    """Convert a raw option value to a parameter type; ``None`` if it is not of that type.

    Booleans accept ``on/off/true/false/yes/no`` in any case, and a bare key
    (``raw is None``) as ``on``. Integers are decimal with an optional sign, or
    ``0x`` hexadecimal. Strings are taken as written (a bare key is no string).
    """
    if type_name == "bool":
        if raw is None:
            return True
        return _BOOL_WORDS.get(raw.lower())
    if raw is None:
        return None
    if type_name == "int":
        return _parse_int(raw)
    return raw


_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")
_DEC_DIGITS = frozenset("0123456789")
_CHUNK = 1000  # decimal digits converted at a time (below Python's str->int limit)


def _parse_int(raw: str) -> int | None:
    text = raw
    sign = 1
    if text[:1] in ("+", "-"):
        sign = -1 if text[0] == "-" else 1
        text = text[1:]
    if text[:2].lower() == "0x":
        digits = text[2:]
        if digits and all(c in _HEX_DIGITS for c in digits):
            return sign * int(digits, 16)
        return None
    if text and all(c in _DEC_DIGITS for c in text):
        return sign * _decimal(text)
    return None


def _decimal(digits: str) -> int:
    """Convert ASCII decimal digits of any length (``int()`` refuses more than ~4300)."""
    if len(digits) <= _CHUNK:
        return int(digits)
    value = 0
    for start in range(0, len(digits), _CHUNK):
        chunk = digits[start : start + _CHUNK]
        value = value * 10 ** len(chunk) + int(chunk)
    return value


def format_options(items: list[tuple[str, Value]] | tuple[tuple[str, Value], ...]) -> str:
    """Render ``(key, value)`` pairs in option syntax, in the order given."""
    return ",".join(f"{k}={format_value(v)}" for k, v in items)
