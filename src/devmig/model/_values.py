"""Parameter values: their Python types, typed equality and option-syntax rendering.

A value is a ``bool``, an ``int`` or a ``str``. Because ``True == 1`` in Python,
every comparison that must respect the parameter type goes through
:func:`same_value`, and :func:`type_of` never mistakes a ``bool`` for an ``int``.
"""

from __future__ import annotations

from typing import Literal

Value = bool | int | str
TypeName = Literal["bool", "int", "str"]

__all__ = ["TypeName", "Value", "format_value", "same_value", "show_value", "type_of"]


def type_of(value: object) -> TypeName | None:
    """Return the parameter type name of ``value``, or ``None`` if it is none of them."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, str):
        return "str"
    return None


def same_value(a: object, b: object) -> bool:
    """Return whether ``a`` and ``b`` are equal *and* of the same parameter type."""
    return type(a) is type(b) and a == b


def format_value(value: Value) -> str:
    """Render a value in option syntax: ``on``/``off``, decimal, or the string with ``,`` doubled.

    An integer too long for decimal rendering (Python refuses more than about
    4300 digits) is rendered as ``0x`` hexadecimal, which option syntax reads back.
    """
    kind = type(value)
    if kind is not int and kind is not str:  # the common kinds go straight to their branch
        if kind is bool or isinstance(value, bool):
            return "on" if value else "off"
        if isinstance(value, int):
            kind = int  # an int subclass renders as an int
    if kind is int:
        try:
            return str(value)
        except ValueError:  # beyond Python's int->str digit limit: hex has none
            return hex(value)  # type: ignore[arg-type]
    return value.replace(",", ",,")  # type: ignore[union-attr]


def show_value(value: object, limit: int = 80) -> str:
    """Return a short ``repr`` of any value for a message; never raises.

    Integers too long for decimal are shown in hex, and long renderings are cut
    to ``limit`` characters, so that a message about hostile input stays small.
    """
    try:
        text = hex(value) if type(value) is int and value.bit_length() > 4000 else repr(value)
    except Exception:  # a repr that fails (deep nesting, huge ints inside containers)
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."
