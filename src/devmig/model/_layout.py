"""Published state layouts (DESIGN §4, §7): their shape, their resolution, their comparison.

A model may carry ``"state"``: the sections, fields, conditions, optional
flags and regions its implementation declares, every maximum and size an
expression of the document's own parameters. :func:`resolve_layout` turns one
into a :class:`ResolvedLayout` for one full configuration — plain, hashable,
comparable data; :func:`layout_difference` names the first difference between
two of them (rule 6 of DESIGN §3 and a device's creation use the same one).

Size expressions (``max`` and ``size``):

* an integer;
* a parameter name (an ``int`` parameter);
* ``{"param": p, "div": d, "times": k, "plus": c}`` — ``(p // d) * k + c``,
  ``div``, ``times`` and ``plus`` optional, ``k`` an integer or an ``int``
  parameter's name;
* ``{"when": condition map, "then": size}`` — the size when every condition
  holds, else 0.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Final, Literal, get_args

from pydantic import Discriminator, Field, StrictBool, StrictInt, StrictStr, Tag

from devmig._errors import Loc, Problem
from devmig.model._conditions import (
    Condition,
    InSet,
    ParamName,
    Range,
    _Frozen,
    condition_holds,
    render_condition,
)
from devmig.model._values import Value, show_value, type_of

__all__ = [
    "FIELD_TYPES",
    "ConditionalSize",
    "FieldType",
    "LayoutDifference",
    "LayoutField",
    "LayoutRegion",
    "LayoutSection",
    "PublishedLayout",
    "ResolvedField",
    "ResolvedLayout",
    "ResolvedSection",
    "ScaledSize",
    "Size",
    "UnresolvableLayout",
    "layout_difference",
    "layout_params",
    "layout_problems",
    "render_size",
    "resolve_layout",
    "resolve_size",
    "when_holds",
]

FieldType = Literal[
    "u8", "u16", "u32", "u64", "i64", "bool", "str", "bytes",
    "u8[]", "u16[]", "u32[]", "u64[]", "i64[]",
]  # fmt: skip
"""A field's type: the SDK's field kinds."""

FIELD_TYPES: Final = frozenset(get_args(FieldType))
VARIABLE_TYPES: Final = frozenset(
    t for t in FIELD_TYPES if t in ("str", "bytes") or t.endswith("[]")
)

Name = Annotated[StrictStr, Field(min_length=1, max_length=128)]


class _FastEqual(_Frozen):
    """Equality by field dicts: the fields are strict scalars, tuples and models of this kind.

    Skips ``BaseModel.__eq__``'s generic checks, which dominate comparing two
    layouts of fresh documents (the release diff compares every model's).
    """

    def __eq__(self, other: object) -> bool:
        if type(other) is type(self):
            return self.__dict__ == other.__dict__
        return super().__eq__(other)

    __hash__ = _Frozen.__hash__


class ScaledSize(_FastEqual):
    """``(param // div) * times + plus``; ``times`` an integer or an ``int`` parameter."""

    param: ParamName
    div: Annotated[StrictInt, Field(ge=1)] | None = None
    times: StrictInt | ParamName | None = None
    plus: StrictInt | None = None


class ConditionalSize(_FastEqual):
    """``then`` when every condition of ``when`` holds, else 0."""

    when: Annotated[dict[ParamName, Condition], Field(min_length=1)]
    then: Size


def _size_tag(value: object) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return "int"
    if isinstance(value, str):
        return "param"
    if isinstance(value, ConditionalSize) or (isinstance(value, Mapping) and "when" in value):
        return "size:when"
    if isinstance(value, (ScaledSize, Mapping)):
        return "size:param"
    return None


Size = Annotated[
    Annotated[Annotated[StrictInt, Field(ge=0)], Tag("int")]
    | Annotated[ParamName, Tag("param")]
    | Annotated[ScaledSize, Tag("size:param")]
    | Annotated[ConditionalSize, Tag("size:when")],
    Discriminator(
        _size_tag,
        custom_error_type="size_type",
        custom_error_message='a size is an integer, a parameter name, {"param": ...} or {"when": ..., "then": ...}',
    ),
]

ConditionalSize.model_rebuild()


class LayoutField(_FastEqual):
    """A field: its name, its type, and for variable-length types its maximum."""

    name: Name
    type: FieldType
    max: Size | None = None


class LayoutSection(_FastEqual):
    """A section: fields in order, present when ``when`` holds (always without it)."""

    name: Name
    fields: tuple[LayoutField, ...] = ()
    when: dict[ParamName, Condition] | None = None
    optional: StrictBool = False


class LayoutRegion(_FastEqual):
    """A bulk region and its size in bytes."""

    name: Name
    size: Size


class PublishedLayout(_FastEqual):
    """A model's published state layout: sections in record order, then regions."""

    sections: tuple[LayoutSection, ...] = ()
    regions: tuple[LayoutRegion, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """Return the layout as JSON data (the document's ``"state"``)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True, exclude_defaults=True)


# -- resolution ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ResolvedField:
    """A field for one configuration (``max`` is ``None`` for fixed-size types)."""

    name: str
    type: str
    max: int | None


@dataclass(frozen=True, slots=True)
class ResolvedSection:
    """An active section for one configuration."""

    name: str
    optional: bool
    fields: tuple[ResolvedField, ...]


@dataclass(frozen=True, slots=True)
class ResolvedLayout:
    """A layout for one configuration: the active sections, then the regions ``(name, size)``."""

    sections: tuple[ResolvedSection, ...]
    regions: tuple[tuple[str, int], ...]

    def section(self, name: str) -> ResolvedSection | None:
        """Return the active section called ``name``, or ``None``."""
        for s in self.sections:
            if s.name == name:
                return s
        return None


INVALID_SIZE: Final = -1
"""What a size that works out negative resolves to: one value, so two layouts compare
element by element (an SDK declaration refuses such a configuration: LAYOUT_INVALID)."""


class UnresolvableLayout(ValueError):
    """A layout names a parameter the configuration lacks, or holds it with another type."""


def _param_int(config: Mapping[str, Value], name: str) -> int:
    value = config.get(name)
    if type(value) is not int:
        raise UnresolvableLayout(f"parameter {name!r} is {show_value(value)}, not an int")
    return value


def when_holds(when: Mapping[str, Condition], config: Mapping[str, Value]) -> bool:
    """Return whether every condition holds (raises :class:`UnresolvableLayout` for a missing parameter)."""
    for name, cond in when.items():
        if name not in config:
            raise UnresolvableLayout(f"the configuration lacks parameter {name!r}")
        if not condition_holds(cond, config[name]):
            return False
    return True


def resolve_size(expr: Size, config: Mapping[str, Value]) -> int:
    """Return a size expression's value for a full configuration (raises :class:`UnresolvableLayout`)."""
    kind = type(expr)
    if kind is int:
        value = expr
    elif kind is str:
        value = _param_int(config, expr)  # type: ignore[arg-type]
    elif kind is ScaledSize:
        s: ScaledSize = expr  # type: ignore[assignment]
        value = _param_int(config, s.param) // (s.div or 1)
        times = s.times
        if times is not None:
            value *= times if type(times) is int else _param_int(config, times)  # type: ignore[arg-type]
        value += s.plus or 0
    else:
        c: ConditionalSize = expr  # type: ignore[assignment]
        value = resolve_size(c.then, config) if when_holds(c.when, config) else 0
    if value < 0:  # type: ignore[operator]
        return INVALID_SIZE  # no device has this configuration (its declaration refuses it)
    return value  # type: ignore[return-value]


def resolve_layout(layout: PublishedLayout, config: Mapping[str, Value]) -> ResolvedLayout:
    """Resolve a published layout for one full configuration.

    Args:
        layout: the published layout.
        config: every parameter of the model with its value.

    Returns:
        The :class:`ResolvedLayout`.

    Raises:
        UnresolvableLayout: a condition or size names a parameter the
            configuration lacks or holds with another type. A size that works
            out negative is :data:`INVALID_SIZE`.
    """
    sections = []
    for spec in layout.sections:
        if spec.when is not None and not when_holds(spec.when, config):
            continue
        fields = tuple(
            ResolvedField(f.name, f.type, None if f.max is None else resolve_size(f.max, config))
            for f in spec.fields
        )
        sections.append(ResolvedSection(spec.name, spec.optional, fields))
    regions = tuple((r.name, resolve_size(r.size, config)) for r in layout.regions)
    return ResolvedLayout(tuple(sections), regions)


# -- comparison ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LayoutDifference:
    """The first difference between two resolved layouts.

    Attributes:
        loc: where: ``("state", "section", s)``, ``("state", "section", s,
            "field", f)`` or ``("state", "region", r)``.
        what: ``"section"``, ``"optional"``, ``"order"``, ``"field"``,
            ``"type"``, ``"max"``, ``"region"`` or ``"size"``.
        left: the first layout's value there (``None``: it has none).
        right: the second layout's value there (``None``: it has none).
    """

    loc: Loc
    what: str
    left: Any
    right: Any

    def describe(self, left: str = "the source", right: str = "the destination") -> str:
        """Return one sentence naming the difference and both values."""
        place = _place(self.loc)
        if self.what in ("section", "field", "region"):
            has, lacks = (left, right) if self.right is None else (right, left)
            return f"{place} is in {has}'s state layout but not in {lacks}'s"
        if self.what == "order":
            return f"{place}: {left}'s state layout has section {self.left!r} there, {right}'s {self.right!r}"
        return f"{place}: {self.what} {_show(self.left)} in {left}'s state layout, {_show(self.right)} in {right}'s"


def _show(value: object) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return "none" if value is None else str(value)


def _place(loc: Loc) -> str:
    parts = list(loc[1:])
    words = []
    while parts:
        kind, name = parts[0], parts[1]
        words.append(f"{kind} {name}")
        parts = parts[2:]
    return " ".join(words) or "state"


def layout_difference(
    left: ResolvedLayout, right: ResolvedLayout, *, one_sided_optional: bool = True
) -> LayoutDifference | None:
    """Return the first difference between two resolved layouts, or ``None`` when they are the same.

    Sections are compared in order, by name, optional flag and fields (name,
    type, maximum, in order); then the regions (name, size, in order).

    Args:
        left: one layout (the source's, or the declaration's).
        right: the other.
        one_sided_optional: ignore an optional section only one side has (its
            reader skips it: DESIGN §3 rule 6); ``False`` compares everything.
    """
    if left == right:
        return None
    ls, rs = left.sections, right.sections
    if one_sided_optional:
        lnames = {s.name for s in ls}
        rnames = {s.name for s in rs}
        ls = tuple(s for s in ls if not s.optional or s.name in rnames)
        rs = tuple(s for s in rs if not s.optional or s.name in lnames)
    for a, b in zip(ls, rs, strict=False):
        if a.name != b.name:
            if not any(s.name == a.name for s in rs):
                return LayoutDifference(("state", "section", a.name), "section", a.name, None)
            if not any(s.name == b.name for s in ls):
                return LayoutDifference(("state", "section", b.name), "section", None, b.name)
            return LayoutDifference(("state", "section", a.name), "order", a.name, b.name)
        found = _section_difference(a, b)
        if found is not None:
            return found
    if len(ls) != len(rs):
        extra = ls[len(rs)] if len(ls) > len(rs) else rs[len(ls)]
        return LayoutDifference(
            ("state", "section", extra.name),
            "section",
            extra.name if len(ls) > len(rs) else None,
            extra.name if len(rs) > len(ls) else None,
        )
    for (an, asize), (bn, bsize) in zip(left.regions, right.regions, strict=False):
        if an != bn:
            if all(n != an for n, _ in right.regions):
                return LayoutDifference(("state", "region", an), "region", an, None)
            return LayoutDifference(("state", "region", bn), "region", None, bn)
        if asize != bsize:
            return LayoutDifference(("state", "region", an), "size", asize, bsize)
    if len(left.regions) != len(right.regions):
        longer = left.regions if len(left.regions) > len(right.regions) else right.regions
        name = longer[min(len(left.regions), len(right.regions))][0]
        return LayoutDifference(
            ("state", "region", name),
            "region",
            name if longer is left.regions else None,
            name if longer is right.regions else None,
        )
    return None


def _section_difference(a: ResolvedSection, b: ResolvedSection) -> LayoutDifference | None:
    here = ("state", "section", a.name)
    if a.optional != b.optional:
        return LayoutDifference(here, "optional", a.optional, b.optional)
    for fa, fb in zip(a.fields, b.fields, strict=False):
        if fa.name != fb.name:
            if all(f.name != fa.name for f in b.fields):
                return LayoutDifference((*here, "field", fa.name), "field", fa.name, None)
            return LayoutDifference((*here, "field", fb.name), "field", None, fb.name)
        if fa.type != fb.type:
            return LayoutDifference((*here, "field", fa.name), "type", fa.type, fb.type)
        if fa.max != fb.max:
            return LayoutDifference((*here, "field", fa.name), "max", fa.max, fb.max)
    if len(a.fields) != len(b.fields):
        if len(a.fields) > len(b.fields):
            name = a.fields[len(b.fields)].name
            return LayoutDifference((*here, "field", name), "field", name, None)
        name = b.fields[len(a.fields)].name
        return LayoutDifference((*here, "field", name), "field", None, name)
    return None


# -- what a layout reads, and its consistency -------------------------------------


def _size_params(expr: Size | None) -> Iterator[str]:
    if expr is None or type(expr) is int:
        return
    if isinstance(expr, str):
        yield expr
    elif isinstance(expr, ScaledSize):
        yield expr.param
        if isinstance(expr.times, str):
            yield expr.times
    elif isinstance(expr, ConditionalSize):
        yield from expr.when
        yield from _size_params(expr.then)


def layout_params(layout: PublishedLayout) -> frozenset[str]:
    """Return every parameter a layout reads (its conditions and sizes)."""
    out: set[str] = set()
    for s in layout.sections:
        out.update(s.when or ())
        for f in s.fields:
            out.update(_size_params(f.max))
    for r in layout.regions:
        out.update(_size_params(r.size))
    return frozenset(out)


def render_size(expr: Size | None) -> str:
    """Render a size expression for messages: ``queue-depth//8*block-size``, ``64``."""
    if expr is None:
        return "none"
    if type(expr) is int or isinstance(expr, str):
        return str(expr)
    if isinstance(expr, ScaledSize):
        text = expr.param
        if expr.div:
            text += f"//{expr.div}"
        if expr.times is not None:
            text += f"*{expr.times}"
        if expr.plus:
            text += f"+{expr.plus}"
        return text
    assert isinstance(expr, ConditionalSize)
    cond = " and ".join(render_condition(n, c) for n, c in expr.when.items())
    return f"({render_size(expr.then)} when {cond}, else 0)"


def layout_problems(layout: PublishedLayout, params: Mapping[str, str], loc: Loc) -> list[Problem]:
    """Return the consistency problems of a published layout.

    Args:
        layout: the layout.
        params: the document's parameters, name → type name.
        loc: the layout's location (``("models", 0, "state")``).

    Returns:
        ``STATE_PARAM_UNKNOWN`` for a parameter the document does not define,
        ``SCHEMA`` for a duplicate name, a maximum on a fixed-size type or none
        on a variable one, a size naming a non-``int`` parameter, a condition
        whose value has the wrong type.
    """
    problems: list[Problem] = []

    def unknown(name: str, where: Loc) -> None:
        problems.append(
            Problem(
                "STATE_PARAM_UNKNOWN",
                where,
                f"the state layout names parameter {show_value(name)}, which the document does not define",
                value=name,
                allowed=sorted(params),
                hint="a layout names only its own document's parameters: the generator substitutes "
                "the declared off value of a parameter of a later release",
            )
        )

    def check_when(when: Mapping[str, Condition], where: Loc) -> None:
        for name, cond in when.items():
            if name not in params:
                unknown(name, (*where, name))
                continue
            bad = _condition_type(params[name], cond)
            if bad:
                problems.append(Problem("SCHEMA", (*where, name), bad, allowed=params[name]))

    def check_size(expr: Size | None, where: Loc) -> None:
        if expr is None or type(expr) is int:
            return
        names: list[tuple[str, Loc]] = []
        if isinstance(expr, str):
            names.append((expr, where))
        elif isinstance(expr, ScaledSize):
            names.append((expr.param, (*where, "param")))
            if isinstance(expr.times, str):
                names.append((expr.times, (*where, "times")))
        elif isinstance(expr, ConditionalSize):
            check_when(expr.when, (*where, "when"))
            check_size(expr.then, (*where, "then"))
        for name, at in names:
            if name not in params:
                unknown(name, at)
            elif params[name] != "int":
                problems.append(
                    Problem(
                        "SCHEMA",
                        at,
                        f"a size names {name}, a {params[name]} parameter; sizes read int parameters",
                        value=name,
                        allowed="int",
                    )
                )

    def check_once(kind: str, name: str, seen: set[str], where: Loc) -> None:
        if name in seen:
            problems.append(Problem("SCHEMA", (*where, "name"), f"{kind} {name!r} is listed twice"))
        seen.add(name)

    seen_sections: set[str] = set()
    for i, section in enumerate(layout.sections):
        sloc = (*loc, "sections", i)
        check_once("section", section.name, seen_sections, sloc)
        if section.when is not None:
            check_when(section.when, (*sloc, "when"))
        seen_fields: set[str] = set()
        for j, f in enumerate(section.fields):
            floc = (*sloc, "fields", j)
            check_once("field", f.name, seen_fields, floc)
            if f.type in VARIABLE_TYPES and f.max is None:
                problems.append(
                    Problem("SCHEMA", (*floc, "max"), f"field {f.name!r} ({f.type}) needs a max")
                )
            elif f.type not in VARIABLE_TYPES and f.max is not None:
                problems.append(
                    Problem(
                        "SCHEMA",
                        (*floc, "max"),
                        f"field {f.name!r} ({f.type}) has a fixed size: no max",
                    )
                )
            check_size(f.max, (*floc, "max"))
    seen_regions: set[str] = set()
    for i, region in enumerate(layout.regions):
        rloc = (*loc, "regions", i)
        check_once("region", region.name, seen_regions, rloc)
        check_size(region.size, (*rloc, "size"))
    return problems


def _condition_type(type_name: str, cond: Condition) -> str | None:
    if isinstance(cond, Range):
        return (
            None
            if type_name == "int"
            else f"a min/max condition needs an int parameter, not {type_name}"
        )
    values = cond.in_ if isinstance(cond, InSet) else (cond,)
    for v in values:
        if type_of(v) != type_name:
            return f"condition value {show_value(v)} is not a {type_name}"
    return None
