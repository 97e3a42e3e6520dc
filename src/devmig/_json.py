"""The type of JSON data, defined once for every package.

:data:`JsonValue` is what ``json.loads`` can return and ``json.dumps`` can
write: a recursive union, not an alias of ``Any``, so code that reads a
value must check its type first (``isinstance``) -- the check that a
``dict[str, Any]`` let it skip. :data:`JsonObject` is a JSON object
(a request body, a journal payload, an agent's answer).

Raw JSON enters as ``Any`` only where it is parsed (``json.loads``,
``response.json()``); those lines end with ``# JSON boundary`` and
``tools/count_any.py`` lists them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeAlias

__all__ = ["JsonObject", "JsonValue", "object_at", "str_at"]

JsonValue: TypeAlias = "dict[str, JsonValue] | list[JsonValue] | str | int | float | bool | None"
"""Any JSON value."""

JsonObject: TypeAlias = "dict[str, JsonValue]"
"""A JSON object."""


def str_at(obj: Mapping[str, JsonValue], key: str) -> str:
    """``obj[key]``, which must be a string (an answer's field read after it was checked to be an object).

    Raises:
        KeyError: ``key`` is missing.
        TypeError: it is not a string.
    """
    value = obj[key]
    if not isinstance(value, str):
        raise TypeError(f"{key!r} is a {type(value).__name__}, not a string")
    return value


def object_at(obj: Mapping[str, JsonValue], key: str) -> JsonObject:
    """``obj[key]``, which must be an object.

    Raises:
        KeyError: ``key`` is missing.
        TypeError: it is not an object.
    """
    value = obj[key]
    if not isinstance(value, dict):
        raise TypeError(f"{key!r} is a {type(value).__name__}, not an object")
    return value
