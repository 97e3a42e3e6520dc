"""The release diff's ``STATE_*`` rules (DESIGN §3): changes of a model's published state layout.

Theory of operation: the two layouts are compared as written — section by
section (by name), field by field, region by region — which gives the
*candidate* changes: a section removed or added (not an optional one), a
field removed, added (a rename is both), retyped or with another maximum, a
region changed, a section's condition or optional flag changed. Each
candidate depends on a few parameters (the conditions of its sections, the
parameters of its sizes); it *shows* for a configuration when the two
layouts, resolved for it, differ there. Over those parameters only, every
value OLD allows is tried (boundary values where a domain is too large, then
a shown change is reported with ``exact=False``); for each combination that
shows it, the solver looks for a configuration OLD accepts with those values
(parameters only OLD defines at its off value: the others already break
upgrade). Found: the change breaks both directions, with that configuration
as its example. Never found: it is listed with nothing broken.

A configuration OLD accepts that fails rule 6 against NEW differs from it in
some first place, which is a candidate that shows for it: the diff and the
check never disagree.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from devmig.compat._compiled import compile_condition
from devmig.compat._solver import Restriction, Solution, Space
from devmig.model import (
    ConditionalSize,
    DeviceModel,
    IntParam,
    LayoutSection,
    PublishedLayout,
    ResolvedLayout,
    ScaledSize,
    Size,
    UnresolvableLayout,
    Value,
    format_value,
    render_size,
    resolve_layout,
)

__all__ = ["StateCandidate", "state_candidates", "state_search"]

_SCAN = 256  # an int domain with more values is sampled at its boundaries
_COMBOS = 4096  # combinations tried per candidate


@dataclass(frozen=True)
class StateCandidate:
    """A difference of two layouts as written, with the test telling whether it shows.

    Attributes:
        rule: the ``STATE_*`` rule id.
        loc: ``("state", "sections", s)``, ``(..., "fields", f)`` or ``("state", "regions", r)``.
        message: what changed.
        old: OLD's side as JSON data.
        new: NEW's side as JSON data.
        params: the parameters whether it shows depends on.
        shows: given both resolved layouts (``None``: unresolvable), whether it shows.
    """

    rule: str
    loc: tuple[str, ...]
    message: str
    old: Any
    new: Any
    params: frozenset[str]
    shows: Callable[[ResolvedLayout | None, ResolvedLayout | None], bool]


def _size_params(expr: Size | None) -> set[str]:
    if expr is None or type(expr) is int:
        return set()
    if isinstance(expr, str):
        return {expr}
    if isinstance(expr, ScaledSize):
        return {expr.param} | ({expr.times} if isinstance(expr.times, str) else set())
    assert isinstance(expr, ConditionalSize)
    return set(expr.when) | _size_params(expr.then)


def _when(section: LayoutSection | None) -> set[str]:
    return set(section.when or ()) if section is not None else set()


def _json(value: Any) -> Any:
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json", by_alias=True, exclude_none=True)
    if isinstance(value, dict):
        return {k: _json(v) for k, v in value.items()}
    return value


def _active(layout: ResolvedLayout | None, name: str) -> Any:
    return None if layout is None else layout.section(name)


def _sections_order(layout: ResolvedLayout, other: ResolvedLayout) -> list[str]:
    names = {s.name for s in other.sections}
    return [s.name for s in layout.sections if s.name in names]


def state_candidates(old: PublishedLayout, new: PublishedLayout) -> list[StateCandidate]:
    """Return every difference of two published layouts as written, in OLD's order then NEW's."""
    out: list[StateCandidate] = []
    olds = {s.name: s for s in old.sections}
    news = {s.name: s for s in new.sections}
    for s in old.sections:
        n = news.get(s.name)
        loc = ("state", "sections", s.name)
        if n is None:
            if not s.optional:
                out.append(
                    StateCandidate(
                        "STATE_SECTION_REMOVED",
                        loc,
                        f"state section {s.name} is removed",
                        s.name,
                        None,
                        frozenset(_when(s)),
                        _left_active(s.name),
                    )
                )
            continue
        if s == n:
            continue
        both = frozenset(_when(s) | _when(n))
        if s.when != n.when or s.optional != n.optional:
            out.append(
                StateCandidate(
                    "STATE_CONDITION_CHANGED",
                    loc,
                    f"state section {s.name}'s condition changed: "
                    f"{_render_condition(s)} -> {_render_condition(n)}",
                    {"when": _json(s.when), "optional": s.optional},
                    {"when": _json(n.when), "optional": n.optional},
                    both,
                    _condition_changed(s.name),
                )
            )
        out += _field_candidates(s, n, both)
    for n in new.sections:
        if n.name not in olds and not n.optional:
            out.append(
                StateCandidate(
                    "STATE_SECTION_ADDED",
                    ("state", "sections", n.name),
                    f"state section {n.name} is added",
                    None,
                    n.name,
                    frozenset(_when(n)),
                    _right_active(n.name),
                )
            )
    common = [s.name for s in old.sections if s.name in news]
    if common != [s.name for s in new.sections if s.name in olds]:
        params = frozenset().union(*(_when(olds[c]) | _when(news[c]) for c in common))
        out.append(
            StateCandidate(
                "STATE_SECTION_ADDED",
                ("state", "sections"),
                "state sections are in another order",
                common,
                [s.name for s in new.sections if s.name in olds],
                params,
                lambda a, b: (
                    a is None or b is None or _sections_order(a, b) != _sections_order(b, a)
                ),
            )
        )
    out += _region_candidates(old, new)
    return out


Shows = Callable[[ResolvedLayout | None, ResolvedLayout | None], bool]


def _left_active(name: str) -> Shows:
    def shows(a: ResolvedLayout | None, b: ResolvedLayout | None) -> bool:
        return a is None or _active(a, name) is not None

    return shows


def _right_active(name: str) -> Shows:
    def shows(a: ResolvedLayout | None, b: ResolvedLayout | None) -> bool:
        return b is None or _active(b, name) is not None

    return shows


def _condition_changed(name: str) -> Shows:
    def shows(a: ResolvedLayout | None, b: ResolvedLayout | None) -> bool:
        return _condition_shows(a, b, name)

    return shows


def _max_changed(section: str, field: str) -> Shows:
    def shows(a: ResolvedLayout | None, b: ResolvedLayout | None) -> bool:
        return _max_shows(a, b, section, field)

    return shows


def _size_changed(name: str) -> Shows:
    def shows(a: ResolvedLayout | None, b: ResolvedLayout | None) -> bool:
        return a is None or b is None or dict(a.regions).get(name) != dict(b.regions).get(name)

    return shows


def _render_condition(s: LayoutSection) -> str:
    from devmig.model import render_condition

    when = " and ".join(render_condition(k, c) for k, c in (s.when or {}).items()) or "always"
    return when + (" (optional)" if s.optional else "")


def _condition_shows(a: ResolvedLayout | None, b: ResolvedLayout | None, name: str) -> bool:
    if a is None or b is None:
        return True
    x, y = a.section(name), b.section(name)
    if x is None and y is None:
        return False
    if x is None or y is None:
        present = x or y
        return present is not None and not present.optional
    return x.optional != y.optional


def _field_candidates(
    s: LayoutSection, n: LayoutSection, when: frozenset[str]
) -> list[StateCandidate]:
    out: list[StateCandidate] = []
    name = s.name
    old_fields = {f.name: (i, f) for i, f in enumerate(s.fields)}
    new_fields = {f.name: (i, f) for i, f in enumerate(n.fields)}

    def both_active(a: ResolvedLayout | None, b: ResolvedLayout | None) -> bool:
        return (
            a is None
            or b is None
            or (_active(a, name) is not None and _active(b, name) is not None)
        )

    for f in s.fields:
        loc = ("state", "sections", name, "fields", f.name)
        if f.name not in new_fields:
            out.append(
                StateCandidate(
                    "STATE_FIELD_REMOVED",
                    loc,
                    f"field {name}.{f.name} ({f.type}) is removed",
                    f.name,
                    None,
                    when,
                    both_active,
                )
            )
            continue
        j, g = new_fields[f.name]
        if f.type != g.type:
            out.append(
                StateCandidate(
                    "STATE_FIELD_TYPE_CHANGED",
                    loc,
                    f"field {name}.{f.name} changed type: {f.type} -> {g.type}",
                    f.type,
                    g.type,
                    when,
                    both_active,
                )
            )
        if f.max != g.max:
            params = when | _size_params(f.max) | _size_params(g.max)
            out.append(
                StateCandidate(
                    "STATE_FIELD_MAX_CHANGED",
                    loc,
                    f"field {name}.{f.name}'s maximum changed: {render_size(f.max)} -> {render_size(g.max)}",
                    _json(f.max),
                    _json(g.max),
                    frozenset(params),
                    _max_changed(name, f.name),
                )
            )
        if old_fields[f.name][0] != j and [x.name for x in s.fields if x.name in new_fields] != [
            x.name for x in n.fields if x.name in old_fields
        ]:
            out.append(
                StateCandidate(
                    "STATE_FIELD_ADDED",
                    loc,
                    f"field {name}.{f.name} moved (position {old_fields[f.name][0]} -> {j})",
                    old_fields[f.name][0],
                    j,
                    when,
                    both_active,
                )
            )
    for g in n.fields:
        if g.name not in old_fields:
            out.append(
                StateCandidate(
                    "STATE_FIELD_ADDED",
                    ("state", "sections", name, "fields", g.name),
                    f"field {name}.{g.name} ({g.type}) is added",
                    None,
                    g.name,
                    when,
                    both_active,
                )
            )
    return out


def _max_shows(
    a: ResolvedLayout | None, b: ResolvedLayout | None, section: str, field: str
) -> bool:
    if a is None or b is None:
        return True
    x, y = a.section(section), b.section(section)
    if x is None or y is None:
        return False
    fx = next((f for f in x.fields if f.name == field), None)
    fy = next((f for f in y.fields if f.name == field), None)
    return fx is not None and fy is not None and fx.max != fy.max


def _region_candidates(old: PublishedLayout, new: PublishedLayout) -> list[StateCandidate]:
    out: list[StateCandidate] = []
    old_names = [r.name for r in old.regions]
    new_names = [r.name for r in new.regions]
    news = {r.name: r for r in new.regions}
    for r in old.regions:
        loc = ("state", "regions", r.name)
        n = news.get(r.name)
        if n is None:
            out.append(
                StateCandidate(
                    "STATE_REGION_CHANGED",
                    loc,
                    f"region {r.name} is removed",
                    r.name,
                    None,
                    frozenset(),
                    lambda a, b: True,
                )
            )
        elif r.size != n.size:
            out.append(
                StateCandidate(
                    "STATE_REGION_CHANGED",
                    loc,
                    f"region {r.name}'s size changed: {render_size(r.size)} -> {render_size(n.size)}",
                    _json(r.size),
                    _json(n.size),
                    frozenset(_size_params(r.size) | _size_params(n.size)),
                    _size_changed(r.name),
                )
            )
    for name in new_names:
        if name not in old_names:
            out.append(
                StateCandidate(
                    "STATE_REGION_CHANGED",
                    ("state", "regions", name),
                    f"region {name} is added",
                    None,
                    name,
                    frozenset(),
                    lambda a, b: True,
                )
            )
    common = [n for n in old_names if n in news]
    if common != [n for n in new_names if n in old_names]:
        out.append(
            StateCandidate(
                "STATE_REGION_CHANGED",
                ("state", "regions"),
                "regions are in another order",
                common,
                new_names,
                frozenset(),
                lambda a, b: True,
            )
        )
    return out


# -- the search -----------------------------------------------------------------------


def _domain(model: DeviceModel, name: str, hints: set[Value]) -> tuple[list[Value], bool]:
    """Return the values OLD allows for a parameter (boundary samples when too many), and whether exact."""
    p = model.params[name]
    if not isinstance(p, IntParam):
        return list(dict.fromkeys(p.allowed)), True
    total = sum(max(0, (r.last - r.min) // (r.step or 1) + 1) for r in p.allowed)
    if total <= _SCAN:
        return sorted({v for r in p.allowed for v in range(r.min, r.max + 1, r.step or 1)}), True
    values: set[int] = set()
    for r in p.allowed:
        step = r.step or 1
        values.update((r.min, r.min + step, r.last - step, r.last))
    for h in hints:
        if type(h) is int:
            values.update(v for v in (h - 1, h, h + 1) if p.allows(v))
    return sorted(v for v in values if p.allows(v)), False


def _hints(old: PublishedLayout, new: PublishedLayout) -> set[Value]:
    out: set[Value] = set()
    for layout in (old, new):
        for s in layout.sections:
            for cond in (s.when or {}).values():
                out.update(_condition_values(cond))
    return out


def _condition_values(cond: Any) -> Iterator[Value]:
    if isinstance(cond, (bool, int, str)):
        yield cond
    elif hasattr(cond, "in_"):
        yield from cond.in_
    else:
        for v in (getattr(cond, "min", None), getattr(cond, "max", None)):
            if v is not None:
                yield v


def state_search(
    old: DeviceModel,
    new: DeviceModel,
    space: Space,
    candidate: StateCandidate,
) -> tuple[Solution | None, bool]:
    """Find a configuration OLD accepts for which a candidate shows.

    Returns:
        ``(solution, exact)``: the solver's solution for the first combination
        that shows (``None`` when none does), and whether every combination
        of the candidate's parameters was tried.
    """
    assert old.state is not None and new.state is not None
    free: list[str] = []
    fixed: dict[str, Value] = {}
    for name in sorted(candidate.params):
        if name in old.params and name in new.params:
            free.append(name)
        elif name in old.params:
            fixed[name] = old.params[name].off  # only OLD defines it: NEW accepts it only off
    hints = _hints(old.state, new.state)
    domains = []
    exact = True
    for name in free:
        values, whole = _domain(old, name, hints)
        exact = exact and whole
        domains.append(values)
    total = 1
    for d in domains:
        total *= max(1, len(d))
    if total > _COMBOS:
        return None, False
    base_old = dict(old.off_values)
    base_new = dict(new.off_values)
    base_old.update(fixed)
    found_maybe = False
    for combo in itertools.product(*domains):
        chosen = dict(zip(free, combo, strict=True))
        a = _resolve(old.state, {**base_old, **chosen})
        b = _resolve(new.state, {**base_new, **chosen})
        if not candidate.shows(a, b):
            continue
        restrictions: Mapping[str, Restriction] = {
            n: Restriction(tests=((compile_condition(n, v), True),))
            for n, v in {**chosen, **fixed}.items()
        }
        sol = space.solve(restrictions)
        if sol.status == "found":
            return sol, exact
        if sol.status == "maybe":
            found_maybe = True
    if found_maybe:
        return Solution("maybe"), False
    return None, exact


def _resolve(layout: PublishedLayout, config: dict[str, Value]) -> ResolvedLayout | None:
    try:
        return resolve_layout(layout, config)
    except UnresolvableLayout:
        return None


def render_values(values: Mapping[str, Value]) -> str:
    """Render parameter values for a message."""
    return ",".join(f"{k}={format_value(v)}" for k, v in sorted(values.items()))
