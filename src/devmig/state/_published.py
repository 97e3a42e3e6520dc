"""A declaration's published layout (DESIGN §4, §7): what a model document carries as ``"state"``.

:func:`published_layout` turns a :class:`StateDeclaration` into the
:class:`~devmig.model.PublishedLayout` of one model document: the same sections,
fields, conditions, optional flags and regions, every size an expression of
the document's own parameters. A parameter the document does not define (one
of a later release) is replaced by the off value the declaration states for
it, and the expression simplified: a condition that holds at the off value
drops out, one that does not makes its section absent (or its size 0).

A declaration with a Python callable publishes nothing (``None``): rule 6 of
the check cannot protect that model, and ``devmig validate`` says so.
:func:`declaration_difference` tells whether a declaration and a published
layout resolve to the same layout for one configuration (a device refuses to
be created otherwise).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from devmig._errors import StreamError
from devmig.model import (
    ConditionalSize,
    DeviceModel,
    LayoutDifference,
    LayoutField,
    LayoutRegion,
    LayoutSection,
    PublishedLayout,
    ScaledSize,
    Size,
    Value,
    layout_difference,
    resolve_layout,
    when_holds,
)
from devmig.state._declaration import StateDeclaration

__all__ = ["declaration_difference", "published_layout"]


class _Absent(Exception):
    """A condition that is false at a substituted off value: the section or size is absent."""


def _off(declaration: StateDeclaration, params: Mapping[str, str], name: str, where: str) -> Value:
    if name in params:
        raise AssertionError(name)  # pragma: no cover - callers substitute only unknown names
    if name not in declaration.off_values:
        raise StreamError(
            "DECLARATION_INVALID",
            f"{where} reads parameter {name!r}, which the model document does not define; "
            f"state its off value in the declaration (off_values={{{name!r}: ...}})",
            value=name,
            allowed=sorted(params),
        )
    return declaration.off_values[name]


def _when(
    declaration: StateDeclaration, params: Mapping[str, str], when: Mapping[str, Any], where: str
) -> dict[str, Any] | None:
    """Return the conditions left once unknown parameters are at their off value (``None``: none left)."""
    kept: dict[str, Any] = {}
    for name, cond in when.items():
        if name in params:
            kept[name] = cond
        elif not when_holds({name: cond}, {name: _off(declaration, params, name, where)}):
            raise _Absent
    return kept or None


def _int_off(
    declaration: StateDeclaration, params: Mapping[str, str], name: str, where: str
) -> int:
    value = _off(declaration, params, name, where)
    if type(value) is not int:
        raise StreamError(
            "DECLARATION_INVALID", f"{where}: off value of {name!r} is not an int", value=value
        )
    return value


def _size(declaration: StateDeclaration, params: Mapping[str, str], expr: Any, where: str) -> Size:
    if type(expr) is int:
        return expr
    if isinstance(expr, str):
        return expr if expr in params else _int_off(declaration, params, expr, where)
    if isinstance(expr, ScaledSize):
        times = expr.times
        if isinstance(times, str) and times not in params:
            times = _int_off(declaration, params, times, where)
        if expr.param in params:
            return expr.model_copy(update={"times": times})
        base = _int_off(declaration, params, expr.param, where) // (expr.div or 1)
        plus = expr.plus or 0
        if times is None or type(times) is int:
            return base * (1 if times is None else times) + plus
        # (off // div) * k + c, with k a parameter: k * base + c
        return ScaledSize(param=times, times=base, plus=expr.plus)
    assert isinstance(expr, ConditionalSize)
    try:
        when = _when(declaration, params, expr.when, where)
    except _Absent:
        return 0
    then = _size(declaration, params, expr.then, where)
    if when is None:
        return then
    return ConditionalSize(when=when, then=then)


def published_layout(
    declaration: StateDeclaration, params: Mapping[str, str] | DeviceModel
) -> PublishedLayout | None:
    """Return the layout a model document publishes for a declaration.

    Args:
        declaration: the implementation's state declaration (the device's own
            sections: the SDK's ``devmig`` section is not published).
        params: the document's parameters, name → type name, or the model itself.

    Returns:
        The :class:`~devmig.model.PublishedLayout`, or ``None`` when the
        declaration uses a Python callable (see ``declaration.callables``).

    Raises:
        StreamError: ``DECLARATION_INVALID`` when the declaration reads a
            parameter the document does not define and states no off value for it.
    """
    if isinstance(params, DeviceModel):
        params = {name: p.type_name for name, p in params.params.items()}
    if declaration.callables:
        return None
    sections = []
    for spec in declaration.sections:
        where = f"section {spec.name!r}"
        try:
            when = None if spec.when is None else _when(declaration, params, spec.when, where)  # type: ignore[arg-type]
        except _Absent:
            continue
        fields = tuple(
            LayoutField(
                name=f.name,
                type=f.kind,
                max=None
                if f.max is None
                else _size(declaration, params, f.max, f"field {spec.name}.{f.name}"),
            )
            for f in spec.fields
        )
        sections.append(
            LayoutSection(name=spec.name, fields=fields, when=when, optional=spec.optional)
        )
    regions = tuple(
        LayoutRegion(name=r.name, size=_size(declaration, params, r.size, f"region {r.name!r}"))
        for r in declaration.regions
    )
    return PublishedLayout(sections=tuple(sections), regions=regions)


def declaration_difference(
    declaration: StateDeclaration, published: PublishedLayout, config: Mapping[str, Value]
) -> LayoutDifference | None:
    """Return how a declaration and a published layout differ for a full configuration (``None``: they agree).

    Every section is compared, optional ones included.

    Raises:
        StreamError: ``LAYOUT_INVALID`` when either cannot be resolved for ``config``.
    """
    mine = declaration.layout(config).resolved()
    try:
        theirs = resolve_layout(published, config)
    except ValueError as exc:
        raise StreamError("LAYOUT_INVALID", f"the published state layout: {exc}") from exc
    return layout_difference(mine, theirs, one_sided_optional=False)
