"""State declarations: what a device's state is made of, and its shape for one configuration.

A device author declares named :class:`SectionSpec` s of typed :class:`FieldSpec` s
and bulk :class:`RegionSpec` s in a :class:`StateDeclaration`. Variable-length
fields (``str``, ``bytes``, arrays) carry a declared maximum; maxima and region
sizes are a constant, the name of an ``int`` parameter, an expression of
parameters in the form a model document publishes (DESIGN §7:
``{"param": p, "div": d, "times": k, "plus": c}`` or
``{"when": {...}, "then": size}``), or — unpublishable — a function of the
configuration. A section may be *conditional* (``when=``: a condition map as
in constraints, or a predicate) or *optional*. A declaration that reads a
parameter some release of the model does not define states its off value
(``off_values=``): where the configuration lacks it, the off value applies.

:meth:`StateDeclaration.layout` resolves all of that for one full
configuration into a :class:`StateLayout`: the active sections in declaration
order, every maximum and region size as a number. The layout validates section
values (:meth:`StateLayout.validate_section`), collecting every problem.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final, Literal, get_args

import numpy as np
from pydantic import TypeAdapter, ValidationError

from devmig._errors import Problem, StreamError
from devmig.model import Condition as ConditionValue
from devmig.model import (
    ConditionalSize,
    ResolvedField,
    ResolvedLayout,
    ResolvedSection,
    ScaledSize,
    Size,
    UnresolvableLayout,
    resolve_size,
    when_holds,
)
from devmig.state._problems import (
    Config,
    ConfigValue,
    error_from_problems,
    freeze_config,
    is_config_value,
)
from devmig.state._values import INT_RANGES, is_int, normalize_field

__all__ = [
    "Condition",
    "FieldKind",
    "FieldLayout",
    "FieldSpec",
    "RegionLayout",
    "RegionSpec",
    "SectionLayout",
    "SectionSpec",
    "SizeExpr",
    "StateDeclaration",
    "StateLayout",
]

FieldKind = Literal[
    "u8", "u16", "u32", "u64", "i64", "bool", "str", "bytes",
    "u8[]", "u16[]", "u32[]", "u64[]", "i64[]",
]  # fmt: skip
"""The type of a field; ``"u32[]"`` is an array of ``u32``."""

SizeExpr = int | str | Mapping[str, Any] | ScaledSize | ConditionalSize | Callable[[Config], int]
"""A declared size: a constant, the name of an ``int`` parameter, a §7 expression
(``{"param": p, "div": d, "times": k, "plus": c}``, ``{"when": {...}, "then": size}``),
or a function of the configuration (which no document can publish)."""

Condition = Mapping[str, Any] | Callable[[Config], bool]
"""When a section is present: parameter → condition (a value compared typed,
``{"min": a, "max": b}`` or ``{"in": [...]}``; all must hold), or a predicate."""

_SIZE_ADAPTER: TypeAdapter[Size] = TypeAdapter(Size)
_WHEN_ADAPTER: TypeAdapter[dict[str, ConditionValue]] = TypeAdapter(dict[str, ConditionValue])

_KINDS: Final = frozenset(get_args(FieldKind))
_VARIABLE: Final = frozenset(k for k in _KINDS if k in ("str", "bytes") or k.endswith("[]"))


def _declaration_error(
    message: str, *, section: str | None = None, value: object = None
) -> StreamError:
    return StreamError("DECLARATION_INVALID", message, section=section, value=value)


def _check_name(name: object, what: str, *, section: str | None = None) -> None:
    if not isinstance(name, str) or not name:
        raise _declaration_error(
            f"{what} name must be a non-empty string", section=section, value=name
        )


def _size_expr(size: object, what: str, *, section: str | None = None) -> SizeExpr:
    """Check a declared size and return it frozen (§7 mappings become typed expressions)."""
    if isinstance(size, (ScaledSize, ConditionalSize)) or (
        callable(size) and not isinstance(size, type)
    ):
        return size
    if isinstance(size, Mapping):
        try:
            return _SIZE_ADAPTER.validate_python(dict(size), by_alias=True, by_name=False)
        except ValidationError as exc:
            raise _declaration_error(
                f"{what} is no size expression: {exc.errors(include_url=False)[0]['msg']}",
                section=section,
                value=repr(size),
            ) from None
    if isinstance(size, bool) or not isinstance(size, (int, str)):
        raise _declaration_error(
            f"{what} must be an int, a parameter name, a size expression or a callable",
            section=section,
            value=size,
        )
    if isinstance(size, int) and size < 0:
        raise _declaration_error(f"{what} must not be negative", section=section, value=size)
    return size


def _is_callable(expr: object) -> bool:
    return callable(expr) and not isinstance(expr, (str, int, Mapping, ScaledSize, ConditionalSize))


@dataclass(frozen=True)
class FieldSpec:
    """One typed field of a section.

    Args:
        name: the field's name, unique in its section.
        kind: one of ``u8 u16 u32 u64 i64 bool str bytes`` or an array of an
            integer kind (``"u32[]"``).
        max: for ``str`` (UTF-8 bytes), ``bytes`` and arrays (elements) the
            declared maximum length, required there and refused elsewhere.

    Raises:
        StreamError: ``DECLARATION_INVALID`` for a bad name, kind or maximum.
    """

    name: str
    kind: FieldKind
    max: SizeExpr | None = None

    def __post_init__(self) -> None:
        _check_name(self.name, "field")
        if self.kind not in _KINDS:
            raise _declaration_error(
                f"field {self.name!r}: unknown kind {self.kind!r}", value=self.kind
            )
        if self.kind in _VARIABLE:
            if self.max is None:
                raise _declaration_error(f"field {self.name!r} ({self.kind}) needs a maximum")
            object.__setattr__(self, "max", _size_expr(self.max, f"maximum of field {self.name!r}"))
        elif self.max is not None:
            raise _declaration_error(
                f"field {self.name!r} ({self.kind}) has a fixed size; it takes no maximum"
            )


@dataclass(frozen=True)
class SectionSpec:
    """A named group of fields, saved and loaded as one SECTION record.

    Args:
        name: unique in the declaration.
        fields: the fields, in order.
        when: present exactly when this holds for the configuration (a mapping
            of parameter → value compared typed, or a predicate); ``None``:
            always present.
        optional: extra data that a reader without this section skips; it is
            left out of the state digest and must not change guest-visible
            behaviour. An optional section may be absent from a stream.
    """

    name: str
    fields: Sequence[FieldSpec]
    when: Condition | None = None
    optional: bool = False

    def __post_init__(self) -> None:
        _check_name(self.name, "section")
        object.__setattr__(self, "fields", tuple(self.fields))
        seen: set[str] = set()
        for f in self.fields:
            if not isinstance(f, FieldSpec):
                raise _declaration_error("fields must be FieldSpec", section=self.name, value=f)
            if f.name in seen:
                raise _declaration_error(f"duplicate field {f.name!r}", section=self.name)
            seen.add(f.name)
        if self.when is not None and not _is_callable(self.when):
            if not isinstance(self.when, Mapping) or not all(isinstance(k, str) for k in self.when):
                raise _declaration_error(
                    "when= must map parameter names to conditions, or be a callable",
                    section=self.name,
                )
            try:
                when = _WHEN_ADAPTER.validate_python(dict(self.when), by_alias=True, by_name=False)
            except ValidationError as exc:
                raise _declaration_error(
                    "when= must map parameter names to conditions (a bool/int/str value, "
                    '{"min": a, "max": b} or {"in": [...]}), or be a callable: '
                    + str(exc.errors(include_url=False)[0]["msg"]),
                    section=self.name,
                ) from None
            object.__setattr__(self, "when", MappingProxyType(when))
        if not isinstance(self.optional, bool):
            raise _declaration_error("optional must be a bool", section=self.name)


@dataclass(frozen=True)
class RegionSpec:
    """A bulk region (device memory), sent as BULK/ZERO records.

    Args:
        name: unique among the regions.
        size: bytes; a constant, an ``int`` parameter name, or a function of
            the configuration.
    """

    name: str
    size: SizeExpr

    def __post_init__(self) -> None:
        _check_name(self.name, "region")
        object.__setattr__(self, "size", _size_expr(self.size, f"size of region {self.name!r}"))


@dataclass(frozen=True, slots=True)
class FieldLayout:
    """A field with its maximum resolved (``None`` for fixed-size kinds)."""

    name: str
    kind: FieldKind
    max: int | None

    def bound(self) -> int:
        """Return an upper bound of the field's value size in CBOR."""
        if self.kind == "bool":
            return 1
        if self.kind in INT_RANGES:
            return 9
        assert self.max is not None
        if self.kind.endswith("[]"):
            return 9 + 9 * self.max
        return 9 + self.max


@dataclass(frozen=True, slots=True)
class SectionLayout:
    """An active section for one configuration.

    Attributes:
        position: index among the layout's active sections (record order).
        max_size: an upper bound of its SECTION payload size.
    """

    name: str
    fields: tuple[FieldLayout, ...]
    optional: bool
    position: int
    max_size: int

    def field(self, name: str) -> FieldLayout | None:
        """Return the field called ``name``, or ``None``."""
        for f in self.fields:
            if f.name == name:
                return f
        return None


@dataclass(frozen=True, slots=True)
class RegionLayout:
    """A region with its size resolved; ``index`` is its number in BULK/ZERO records."""

    name: str
    size: int
    index: int


@dataclass(frozen=True)
class StateLayout:
    """The shape of a device's state for one full configuration.

    Attributes:
        config: the full configuration the layout was resolved for.
        sections: the active sections, in declaration order.
        regions: every region, in declaration order.
        inactive: names of declared sections whose ``when`` is false.
    """

    config: Mapping[str, ConfigValue]
    sections: tuple[SectionLayout, ...]
    regions: tuple[RegionLayout, ...]
    inactive: frozenset[str] = field(default_factory=frozenset)

    def section(self, name: str) -> SectionLayout | None:
        """Return the active section called ``name``, or ``None``."""
        for s in self.sections:
            if s.name == name:
                return s
        return None

    def resolved(self, *, skip: frozenset[str] = frozenset()) -> ResolvedLayout:
        """Return the layout as a model document's layout resolves (sections named in ``skip`` left out)."""
        return ResolvedLayout(
            tuple(
                ResolvedSection(
                    s.name,
                    s.optional,
                    tuple(ResolvedField(f.name, f.kind, f.max) for f in s.fields),
                )
                for s in self.sections
                if s.name not in skip
            ),
            tuple((r.name, r.size) for r in self.regions),
        )

    @property
    def max_section_size(self) -> int:
        """The largest SECTION payload any active section may need."""
        return max((s.max_size for s in self.sections), default=0)

    @property
    def region_bytes(self) -> int:
        """The total size of every region."""
        return sum(r.size for r in self.regions)

    def validate_section(self, name: str, values: Mapping[str, Any]) -> dict[str, Any]:
        """Check one section's values and return them normalised for encoding.

        Normalised: integers as ``int``, arrays as ``list[int]``, ``bytes`` as
        ``bytes``. Every problem is collected (unknown, missing and ill-typed
        fields, integers out of range, lengths above the maximum).

        Raises:
            StreamError: ``SECTION_UNKNOWN`` when ``name`` is not an active
                section; ``SECTION_INVALID`` naming the section and every bad
                field (``loc`` ends with ``("field", name)``).
        """
        spec = self.section(name)
        if spec is None:
            raise StreamError(
                "SECTION_UNKNOWN",
                f"section {name!r} is not active in this configuration",
                section=name,
                allowed=[s.name for s in self.sections],
            )
        problems: list[Problem] = []
        out: dict[str, Any] = {}
        if not isinstance(values, Mapping):
            raise StreamError(
                "SECTION_INVALID", f"section {name!r}: fields must be a mapping", section=name
            )
        for key in values:
            if not isinstance(key, str) or spec.field(key) is None:
                problems.append(
                    Problem(
                        "SECTION_INVALID",
                        ("section", name, "field", str(key)),
                        f"section {name!r} has no field {key!r}",
                        allowed=[f.name for f in spec.fields],
                    )
                )
        for f in spec.fields:
            loc = ("section", name, "field", f.name)
            if f.name not in values:
                problems.append(Problem("SECTION_INVALID", loc, f"field {f.name!r} is missing"))
                continue
            value, field_problems = normalize_field(f, values[f.name], loc)
            problems += field_problems
            out[f.name] = value
        if problems:
            raise error_from_problems(problems, section=name)
        return out


class StateDeclaration:
    """Everything a device declares about its state.

    Args:
        sections: the sections, in record order.
        regions: the bulk regions; a region's index is its position here.

    Raises:
        StreamError: ``DECLARATION_INVALID`` for duplicate names or entries
            of the wrong type.
    """

    def __init__(
        self,
        sections: Iterable[SectionSpec] = (),
        regions: Iterable[RegionSpec] = (),
        *,
        off_values: Mapping[str, ConfigValue] | None = None,
    ) -> None:
        self.sections: tuple[SectionSpec, ...] = tuple(sections)
        self.regions: tuple[RegionSpec, ...] = tuple(regions)
        offs = dict(off_values or {})
        if not all(isinstance(k, str) and is_config_value(v) for k, v in offs.items()):
            raise _declaration_error("off_values= must map parameter names to bool/int/str values")
        self.off_values: Mapping[str, ConfigValue] = MappingProxyType(offs)
        for kind, items, cls in (
            ("section", self.sections, SectionSpec),
            ("region", self.regions, RegionSpec),
        ):
            names: set[str] = set()
            for item in items:
                if not isinstance(item, cls):
                    raise _declaration_error(f"{kind}s must be {cls.__name__}", value=item)
                if item.name in names:
                    raise _declaration_error(f"duplicate {kind} {item.name!r}")
                names.add(item.name)

    @property
    def callables(self) -> list[str]:
        """Where the declaration uses a Python callable (which no document can publish), e.g. ``section ecc when``."""
        out = []
        for s in self.sections:
            if s.when is not None and _is_callable(s.when):
                out.append(f"section {s.name} when")
            out += [f"section {s.name} field {f.name} max" for f in s.fields if _is_callable(f.max)]
        out += [f"region {r.name} size" for r in self.regions if _is_callable(r.size)]
        return out

    def __repr__(self) -> str:
        return (
            f"StateDeclaration(sections={[s.name for s in self.sections]}, "
            f"regions={[r.name for r in self.regions]})"
        )

    def layout(self, config: Mapping[str, ConfigValue]) -> StateLayout:
        """Resolve the declaration for one full configuration.

        Args:
            config: every parameter of the model with its value (not the
                canonical configuration: parameters at their off value must be
                present too).

        Returns:
            The :class:`StateLayout`.

        Raises:
            StreamError: ``CONFIG_INVALID`` for a malformed configuration;
                ``LAYOUT_INVALID`` (every problem) when a condition or size
                names a missing parameter or a parameter of the wrong type, a
                callable fails or returns something other than expected, or a
                size is negative.
        """
        frozen = freeze_config(config)
        view = {**self.off_values, **frozen} if self.off_values else frozen
        problems: list[Problem] = []
        sections: list[SectionLayout] = []
        inactive: set[str] = set()
        for spec in self.sections:
            active = _condition(spec, view, problems)
            if not active:
                inactive.add(spec.name)
                continue
            fields = tuple(
                FieldLayout(
                    f.name,
                    f.kind,
                    None
                    if f.max is None
                    else _size(f.max, view, problems, ("section", spec.name, "field", f.name)),
                )
                for f in spec.fields
            )
            bound = (
                64
                + len(spec.name.encode())
                + sum(9 + len(f.name.encode()) + f.bound() for f in fields)
            )
            sections.append(SectionLayout(spec.name, fields, spec.optional, len(sections), bound))
        regions = tuple(
            RegionLayout(r.name, _size(r.size, view, problems, ("region", r.name)), i)
            for i, r in enumerate(self.regions)
        )
        if problems:
            raise error_from_problems(problems)
        return StateLayout(MappingProxyType(frozen), tuple(sections), regions, frozenset(inactive))


def _condition(spec: SectionSpec, config: Config, problems: list[Problem]) -> bool:
    loc = ("section", spec.name, "when")
    when = spec.when
    if when is None:
        return True
    if _is_callable(when):
        try:
            result = when(config)  # type: ignore[operator]
        except Exception as exc:
            problems.append(Problem("LAYOUT_INVALID", loc, f"condition failed: {exc!r}"))
            return False
        if not isinstance(result, (bool, np.bool_)):
            problems.append(
                Problem("LAYOUT_INVALID", loc, "condition must return a bool", value=repr(result))
            )
            return False
        return bool(result)
    for param in when:  # type: ignore[union-attr]
        if param not in config:
            problems.append(
                Problem("LAYOUT_INVALID", (*loc, param), f"configuration lacks parameter {param!r}")
            )
            return False
    return when_holds(when, config)  # type: ignore[arg-type]


def _size(
    expr: SizeExpr, config: Config, problems: list[Problem], loc: tuple[str | int, ...]
) -> int:
    if isinstance(expr, int):
        return expr
    if isinstance(expr, str):
        if expr not in config:
            problems.append(
                Problem("LAYOUT_INVALID", loc, f"configuration lacks parameter {expr!r}")
            )
            return 0
        value: object = config[expr]
    elif isinstance(expr, (ScaledSize, ConditionalSize)):
        try:
            value = resolve_size(expr, config)
        except UnresolvableLayout as exc:
            problems.append(Problem("LAYOUT_INVALID", loc, f"size expression: {exc}"))
            return 0
    else:
        try:
            value = expr(config)  # type: ignore[operator]
        except Exception as exc:
            problems.append(Problem("LAYOUT_INVALID", loc, f"size expression failed: {exc!r}"))
            return 0
    number = operator.index(value) if is_int(value) else -1  # type: ignore[arg-type]
    if number < 0:
        problems.append(
            Problem(
                "LAYOUT_INVALID",
                loc,
                "size must be a non-negative int",
                value=repr(value),
                allowed={"min": 0},
            )
        )
        return 0
    return number
