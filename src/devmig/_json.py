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

from typing import TypeAlias

__all__ = ["JsonObject", "JsonValue"]

JsonValue: TypeAlias = "dict[str, JsonValue] | list[JsonValue] | str | int | float | bool | None"
"""Any JSON value."""

JsonObject: TypeAlias = "dict[str, JsonValue]"
"""A JSON object."""
