"""The building blocks that model documents and published state layouts share.

Frozen pydantic bases, parameter names, and constraint conditions (a literal,
``{"min", "max"}`` or ``{"in": [...]}``) with their typed evaluation.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    Tag,
)

from devmig.model._values import Value, format_value, same_value

__all__ = [
    "Condition",
    "InSet",
    "ParamName",
    "Range",
    "ScalarValue",
    "condition_holds",
    "condition_json",
    "render_condition",
]

ParamName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=128)]
ScalarValue = StrictBool | StrictInt | StrictStr


class _Frozen(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        populate_by_name=True,
        serialize_by_alias=True,
        validate_by_alias=True,
        validate_by_name=True,
    )



class Range(_Frozen):
    """A constraint condition: ``min <= value <= max`` (either side optional)."""

    min: StrictInt | None = None
    max: StrictInt | None = None

    def __eq__(self, other: object) -> bool:
        # strict ints or None, no extras or private attributes: equal field dicts are equal ranges
        if type(other) is Range and type(self) is Range:
            return self.__dict__ == other.__dict__
        return super().__eq__(other)

    __hash__ = _Frozen.__hash__


class InSet(_Frozen):
    """A constraint condition: the value is one of ``in``."""

    in_: Annotated[tuple[ScalarValue, ...], Field(alias="in", min_length=1)]


def _condition_tag(value: object) -> str | None:
    """Tell which kind of condition a raw value is, so errors come from that kind only.

    The tags appear in pydantic's error locations; they contain a ``:`` so
    that they can never be mistaken for a key of the document.
    """
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, str):
        return "str"
    if isinstance(value, InSet) or (isinstance(value, Mapping) and "in" in value):
        return "condition:in"
    if isinstance(value, (Range, Mapping)):
        return "condition:range"
    return None


Condition = Annotated[
    Annotated[StrictBool, Tag("bool")]
    | Annotated[StrictInt, Tag("int")]
    | Annotated[StrictStr, Tag("str")]
    | Annotated[Range, Tag("condition:range")]
    | Annotated[InSet, Tag("condition:in")],
    Discriminator(
        _condition_tag,
        custom_error_type="condition_type",
        custom_error_message='a condition is a literal, {"min": a, "max": b} or {"in": [...]}',
    ),
]


def condition_holds(cond: Condition, value: Value) -> bool:
    """Return whether a parameter value satisfies one constraint condition."""
    if isinstance(cond, Range):
        if type(value) is not int:
            return False
        return (cond.min is None or value >= cond.min) and (cond.max is None or value <= cond.max)
    if isinstance(cond, InSet):
        return any(same_value(value, v) for v in cond.in_)
    return same_value(value, cond)


def condition_json(cond: Condition) -> Any:
    """Return a condition as JSON data."""
    if isinstance(cond, (Range, InSet)):
        return cond.model_dump(exclude_none=True, by_alias=True)
    return cond


def render_condition(name: str, cond: Condition) -> str:
    """Render ``name`` with a condition for messages: ``rx-queues>=2``, ``rss=on``."""
    if isinstance(cond, Range):
        if cond.min is not None and cond.max is not None:
            return f"{format_value(cond.min)}<={name}<={format_value(cond.max)}"
        if cond.min is not None:
            return f"{name}>={format_value(cond.min)}"
        if cond.max is not None:
            return f"{name}<={format_value(cond.max)}"
        return f"{name} (any)"
    if isinstance(cond, InSet):
        return f"{name} in {{{', '.join(format_value(v) for v in cond.in_)}}}"
    return f"{name}={format_value(cond)}"

