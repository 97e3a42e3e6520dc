"""Typed, frozen model documents and host reports (DESIGN §7).

These classes are the *shape* of the documents: pydantic v2 models with
unknown keys forbidden and scalar types strict (``true`` is never an ``int``,
``"1"`` never an ``int``). They are also where the core's questions about one
model are answered: which values a parameter allows, the nearest allowed
values, which constraints a configuration violates. The consistency rules that
span fields (init allowed, versions valid, ...) live in ``_validate.py``; use
:func:`devmig.model.load_document` to build a document from raw JSON, which
runs both.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping
from functools import cached_property
from operator import attrgetter
from types import MappingProxyType
from typing import Annotated, Any, Literal

from pydantic import Field, StrictBool, StrictInt, StrictStr

from devmig.model._conditions import (
    Condition,
    InSet,
    ParamName,
    Range,
    ScalarValue,
    _Frozen,
    condition_holds,
    render_condition,
)
from devmig.model._layout import PublishedLayout
from devmig.model._values import TypeName, Value, format_value, same_value

_OFF = attrgetter("off")
_INIT = attrgetter("init")

__all__ = [
    "BoolParam",
    "Condition",
    "Constraint",
    "DeviceModel",
    "HostReport",
    "Implementation",
    "InSet",
    "IntParam",
    "IntRange",
    "ModelDocument",
    "Param",
    "Range",
    "StrParam",
    "VersionSpec",
    "MODEL_DOCUMENT_FORMAT",
    "HOST_REPORT_FORMAT",
]

MODEL_DOCUMENT_FORMAT = "devmig/model-document/1"
HOST_REPORT_FORMAT = "devmig/host-report/1"


class IntRange(_Frozen):
    """An inclusive range of integers, ``min``, ``min+step``, ... up to ``max``."""

    min: StrictInt
    max: StrictInt
    step: Annotated[StrictInt, Field(ge=1)] | None = None

    def __eq__(self, other: object) -> bool:
        # The fields are strict ints (never a bool) and there are no extras or private
        # attributes: equal field dicts are equal ranges. Skips BaseModel.__eq__'s generic checks.
        if type(other) is IntRange and type(self) is IntRange:
            return self.__dict__ == other.__dict__
        return super().__eq__(other)

    __hash__ = _Frozen.__hash__

    def contains(self, value: int) -> bool:
        """Return whether ``value`` lies on this range's grid."""
        if value < self.min or value > self.max:
            return False
        return self.step is None or (value - self.min) % self.step == 0

    @property
    def last(self) -> int:
        """The largest value of the range (``max`` need not lie on the grid)."""
        if self.step is None:
            return self.max
        return self.min + (self.max - self.min) // self.step * self.step

    def nearest(self, value: int) -> list[int]:
        """Return the range's values nearest to ``value`` (one below and one above, when they exist)."""
        if self.max < self.min:
            return []
        if value <= self.min:
            return [self.min]
        if value >= self.last:
            return [self.last]
        step = self.step or 1
        below = self.min + (value - self.min) // step * step
        return [below] if below == value else [below, below + step]

    def render(self) -> str:
        """Return a short rendering: ``0..64 step 16``."""
        d = self.__dict__  # the fields in one lookup: a diff renders thousands of ranges
        lo, hi, step = d["min"], d["max"], d["step"]
        if lo == hi:
            return format_value(lo)
        text = f"{format_value(lo)}..{format_value(hi)}"
        return text + (f" step {format_value(step)}" if step else "")


class _ParamBase(_Frozen):
    description: StrictStr = ""

    def allows(self, value: object) -> bool:  # pragma: no cover - overridden
        raise NotImplementedError

    @property
    def type_name(self) -> TypeName:  # pragma: no cover - overridden
        raise NotImplementedError

    def allowed_json(self) -> Any:
        """Return ``allowed`` as JSON data (ranges as dicts)."""
        raise NotImplementedError  # pragma: no cover

    def nearest(self, value: object) -> list[Value]:
        """Return the allowed values closest to ``value`` (for hints)."""
        raise NotImplementedError  # pragma: no cover

    def describe_allowed(self) -> str:
        """Return the allowed values as a short human string."""
        raise NotImplementedError  # pragma: no cover

    def hint_for(self, value: object) -> str:
        """Return a hint naming the nearest allowed values to ``value``."""
        near = self.nearest(value)
        if not near:
            return "no value is allowed"
        return "nearest allowed values: " + ", ".join(format_value(v) for v in near)


class BoolParam(_ParamBase):
    """A boolean parameter. ``allowed`` defaults to both values."""

    type: Literal["bool"]
    allowed: Annotated[tuple[StrictBool, ...], Field(min_length=1)] = (False, True)
    off: StrictBool
    init: StrictBool

    @property
    def type_name(self) -> TypeName:
        return "bool"

    def allows(self, value: object) -> bool:
        """Return whether ``value`` is a bool this parameter accepts."""
        return isinstance(value, bool) and value in self.allowed

    def allowed_json(self) -> Any:
        return list(self.allowed)

    def nearest(self, value: object) -> list[Value]:
        return sorted(set(self.allowed))

    def describe_allowed(self) -> str:
        return ", ".join(format_value(v) for v in sorted(set(self.allowed)))


class IntParam(_ParamBase):
    """An integer parameter; ``allowed`` is a list of inclusive ranges."""

    type: Literal["int"]
    allowed: Annotated[tuple[IntRange, ...], Field(min_length=1)]
    off: StrictInt
    init: StrictInt

    @property
    def type_name(self) -> TypeName:
        return "int"

    def allows(self, value: object) -> bool:
        """Return whether ``value`` is an int (not a bool) inside one of the ranges."""
        if type(value) is not int:
            return False
        return any(r.contains(value) for r in self.allowed)

    def allowed_json(self) -> Any:
        return [r.model_dump(exclude_none=True) for r in self.allowed]

    def nearest(self, value: object) -> list[Value]:
        if type(value) is not int:
            return [r.min for r in self.allowed[:2]]
        candidates = sorted({n for r in self.allowed for n in r.nearest(value)})
        candidates.sort(key=lambda n: (abs(n - value), n))
        return [*sorted(candidates[:2])]

    def describe_allowed(self) -> str:
        return ", ".join(r.render() for r in self.allowed)


class StrParam(_ParamBase):
    """A string parameter; ``allowed`` lists the accepted strings."""

    type: Literal["str"]
    allowed: Annotated[tuple[StrictStr, ...], Field(min_length=1)]
    off: StrictStr
    init: StrictStr

    @property
    def type_name(self) -> TypeName:
        return "str"

    def allows(self, value: object) -> bool:
        """Return whether ``value`` is one of the allowed strings."""
        return isinstance(value, str) and value in self.allowed

    def allowed_json(self) -> Any:
        return list(self.allowed)

    def nearest(self, value: object) -> list[Value]:
        if isinstance(value, str):
            close = difflib.get_close_matches(value, self.allowed, n=2, cutoff=0.0)
            if close:
                return list(close)
        return list(self.allowed[:2])

    def describe_allowed(self) -> str:
        return ", ".join(self.allowed)


Param = Annotated[BoolParam | IntParam | StrParam, Field(discriminator="type")]



class Constraint(_Frozen):
    """A dependency between parameters: when every ``when`` holds, every ``require`` must."""

    when: dict[ParamName, Condition] = Field(default_factory=dict)
    require: Annotated[dict[ParamName, Condition], Field(min_length=1)]
    message: StrictStr = ""

    def applies(self, config: Mapping[str, Value]) -> bool:
        """Return whether every ``when`` condition holds for the full configuration."""
        for name, cond in self.when.items():
            value = config.get(name)
            if value is None or not condition_holds(cond, value):
                return False
        return True

    def failing(self, config: Mapping[str, Value]) -> list[str]:
        """Return the ``require`` parameters the full configuration fails (empty: satisfied)."""
        if not self.applies(config):
            return []
        out = []
        for name, cond in self.require.items():
            value = config.get(name)
            if value is None or not condition_holds(cond, value):
                out.append(name)
        return out

    def render(self) -> str:
        """Return the constraint's message, or a rendering of its conditions."""
        if self.message:
            return self.message
        when = " and ".join(render_condition(n, c) for n, c in self.when.items())
        req = " and ".join(render_condition(n, c) for n, c in self.require.items())
        return f"{when} requires {req}" if when else f"requires {req}"


class VersionSpec(_Frozen):
    """A published version: an immutable alias for a full configuration."""

    name: Annotated[StrictStr, Field(min_length=1, max_length=128)]
    params: dict[ParamName, ScalarValue] = Field(default_factory=dict)


class DeviceModel(_Frozen):
    """One model of a model document: its parameters, constraints and versions.

    The document loader guarantees the consistency rules of DESIGN §7 before a
    ``DeviceModel`` reaches the rest of devmig; its helpers assume them.
    """

    model: Annotated[StrictStr, Field(min_length=1, max_length=256)]
    description: StrictStr = ""
    params: dict[ParamName, Param] = Field(default_factory=dict)
    constraints: tuple[Constraint, ...] = ()
    versions: tuple[VersionSpec, ...] = ()
    state: PublishedLayout | None = None
    """The published state layout (DESIGN §4, §7), generated from the implementation's declaration."""

    @property
    def id(self) -> str:
        """The model's id (``example.org/devices/nic``)."""
        return self.model

    @cached_property
    def off_values(self) -> Mapping[str, Value]:
        """Every parameter's off value (read-only)."""
        params = self.params
        return MappingProxyType(dict(zip(params, map(_OFF, params.values()), strict=True)))

    @cached_property
    def init_values(self) -> Mapping[str, Value]:
        """Every parameter's init value, the full init configuration (read-only)."""
        params = self.params
        return MappingProxyType(dict(zip(params, map(_INIT, params.values()), strict=True)))

    @cached_property
    def version_map(self) -> Mapping[str, VersionSpec]:
        """Versions by name, read-only (the last listed wins for a duplicate name)."""
        return MappingProxyType({v.name: v for v in self.versions})

    @property
    def latest(self) -> VersionSpec | None:
        """The latest published version, if any."""
        return self.versions[-1] if self.versions else None

    def version_values(self, version: VersionSpec) -> dict[str, Value]:
        """Return the full configuration a version expands to (off values, then its params)."""
        full = dict(self.off_values)
        full.update(version.params)
        return full

    def violated(self, config: Mapping[str, Value]) -> Iterator[tuple[int, Constraint, list[str]]]:
        """Yield ``(index, constraint, failing params)`` for each violated constraint."""
        for index, constraint in enumerate(self.constraints):
            failing = constraint.failing(config)
            if failing:
                yield index, constraint, failing

    def canonical_items(self, full: Mapping[str, Value]) -> tuple[tuple[str, Value], ...]:
        """Return the canonical configuration of a full one: off values dropped, sorted."""
        params = self.params
        return tuple(
            sorted(
                (k, v)
                for k, v in full.items()
                if k not in params or not same_value(v, params[k].off)
            )
        )


class Implementation(_Frozen):
    """An implementation release: ``{"name": "acme-nic", "release": "3.0.0"}``."""

    name: Annotated[StrictStr, Field(min_length=1, max_length=256)]
    release: Annotated[StrictStr, Field(min_length=1, max_length=128)]

    def render(self) -> str:
        """Return ``name release``."""
        return f"{self.name} {self.release}"


class ModelDocument(_Frozen):
    """What one implementation release publishes about itself (DESIGN §7)."""

    format: Literal["devmig/model-document/1"]
    implementation: Implementation
    models: tuple[DeviceModel, ...]

    def find(self, model_id: str) -> DeviceModel | None:
        """Return the model with that id, or ``None``."""
        for m in self.models:
            if m.model == model_id:
                return m
        return None

    def to_json(self) -> dict[str, Any]:
        """Return the document as JSON data (the published form)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class HostReport(_Frozen):
    """Everything one host supports: the answer of the query mechanism (DESIGN §7)."""

    format: Literal["devmig/host-report/1"]
    host: Annotated[StrictStr, Field(min_length=1, max_length=256)]
    implementations: tuple[ModelDocument, ...] = ()
    carriers: (
        dict[Annotated[StrictStr, Field(min_length=3, max_length=385, pattern=r"^.+/.+$")],
             Literal["agent", "vmm"]]
        | None
    ) = None
    """``"NAME/RELEASE"`` → who carries its devices' migration data (DESIGN §9); absent: ``agent``."""

    def carrier(self, implementation: Implementation) -> Literal["agent", "vmm"]:
        """Return who carries the migration data of an implementation's devices (``agent`` unless said)."""
        if self.carriers is None:
            return "agent"
        return self.carriers.get(f"{implementation.name}/{implementation.release}", "agent")

    def candidates(self, model_id: str) -> list[tuple[Implementation, DeviceModel]]:
        """Return every ``(implementation, model)`` on this host that supports ``model_id``."""
        out = []
        for doc in self.implementations:
            m = doc.find(model_id)
            if m is not None:
                out.append((doc.implementation, m))
        return out

    def to_json(self) -> dict[str, Any]:
        """Return the report as JSON data."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)

