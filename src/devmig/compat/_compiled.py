"""A compiled form of a device model for the check's hot path.

Theory of operation: a pairwise check is asked many times for the same few
models (every device of a fleet against every host), so each
:class:`~devmig.model.DeviceModel` is compiled once, on first use, into plain
tuples, sets and dicts: per parameter its Python type and either the frozen
set of allowed values or its integer ranges; per constraint its conditions as
``(name, type, values, lo, hi)`` tuples. :func:`accepts` answers rules 2-4 of
DESIGN §3 on that form without building a single object; only when it says
no does the caller build the reasons from the pydantic model itself.

Compiled forms are cached by object identity (models are frozen), with a weak
reference so that a dead model's entry goes away with it.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

from devmig.model import BoolParam, Condition, DeviceModel, InSet, IntParam, Range, StrParam, Value

__all__ = ["CompiledModel", "IdentityCache", "accepts", "compiled", "constraints_hold", "off_mismatches"]

_INF = float("inf")
_SET_LIMIT = 512  # an int parameter with at most this many values is compiled to a set

# (name, type or None for a mixed-type set of (type, value) pairs, values or None, lo, hi)
CondSpec = tuple[str, type | None, frozenset[Any] | None, float, float]
# (type, allowed values or None, ranges as (min, max, step))
ParamSpec = tuple[type, frozenset[Value] | None, tuple[tuple[int, int, int], ...]]

A = TypeVar("A")
B = TypeVar("B")
V = TypeVar("V")


class IdentityCache(Generic[V]):
    """A small cache of values computed from one or two objects, keyed by their identity.

    Frozen pydantic models are not cheaply hashable, and two equal documents
    are rarely both alive, so identity is the right key. Entries hold weak
    references: an entry is dropped when a key object dies, and the cache is
    cleared whenever it reaches ``limit`` entries, so it never grows without bound.
    """

    def __init__(self, limit: int = 65536) -> None:
        self._entries: dict[tuple[int, int], tuple[weakref.ref[Any], weakref.ref[Any] | None, V]] = {}
        self._limit = limit

    def get(self, a: A, b: B, make: Callable[[A, B], V]) -> V:
        """Return the value cached for ``(a, b)``, computing ``make(a, b)`` on a miss."""
        ident = (id(a), id(b))
        entry = self._entries.get(ident)
        if entry is not None and entry[0]() is a and (entry[1] is None or entry[1]() is b):
            return entry[2]
        value = make(a, b)
        entries = self._entries
        if len(entries) >= self._limit:
            entries.clear()

        def drop(_: object, ident: tuple[int, int] = ident) -> None:
            entries.pop(ident, None)

        ref_b = None if b is None else weakref.ref(b, drop)
        entries[ident] = (weakref.ref(a, drop), ref_b, value)
        return value

    def clear(self) -> None:
        """Forget every entry."""
        self._entries.clear()


@dataclass(frozen=True, slots=True)
class CompiledModel:
    """One device model as plain data for the hot path.

    Attributes:
        specs: per parameter ``(type, allowed set or None, int ranges)``.
        off: every parameter's off value.
        off_refused: the parameters whose off value the model does not allow.
        constraints: per constraint ``(when conditions, require conditions)``.
    """

    specs: dict[str, ParamSpec]
    off: dict[str, Value]
    off_refused: tuple[str, ...]
    constraints: tuple[tuple[tuple[CondSpec, ...], tuple[CondSpec, ...]], ...]


def _param_spec(param: BoolParam | IntParam | StrParam) -> ParamSpec:
    if isinstance(param, BoolParam):
        return bool, frozenset(param.allowed), ()
    if isinstance(param, IntParam):
        ranges = tuple((r.min, r.max, r.step or 1) for r in param.allowed)
        count = sum(max(0, (hi - lo) // step + 1) for lo, hi, step in ranges)
        if count <= _SET_LIMIT:
            values = frozenset(v for lo, hi, step in ranges for v in range(lo, hi + 1, step))
            return int, frozenset(values), ranges
        return int, None, ranges
    return str, frozenset(param.allowed), ()


def compile_condition(name: str, cond: Condition) -> CondSpec:
    """Compile one constraint condition on parameter ``name``."""
    kind = type(cond)
    if kind is bool or kind is int or kind is str:
        return name, kind, frozenset((cond,)), 0, 0
    if kind is not InSet and (kind is Range or isinstance(cond, Range)):
        lo = _INF * -1 if cond.min is None else cond.min  # type: ignore[union-attr]
        hi = _INF if cond.max is None else cond.max  # type: ignore[union-attr]
        return name, int, None, lo, hi
    # ``kind is InSet`` first: isinstance() on a pydantic class costs more than the rest
    values: tuple[Value, ...] = (
        cast(InSet, cond).in_ if kind is InSet or isinstance(cond, InSet) else cast("tuple[Value]", (cond,))
    )
    types = {type(v) for v in values}
    if len(types) == 1:
        return name, types.pop(), frozenset(values), 0, 0
    return name, None, frozenset((type(v), v) for v in values), 0, 0


def _compile(model: DeviceModel) -> CompiledModel:
    specs = {name: _param_spec(p) for name, p in model.params.items()}
    off = dict(model.off_values)
    refused = tuple(name for name, p in model.params.items() if not p.allows(p.off))
    constraints = tuple(
        (
            tuple(compile_condition(n, c) for n, c in k.when.items()),
            tuple(compile_condition(n, c) for n, c in k.require.items()),
        )
        for k in model.constraints
    )
    return CompiledModel(specs, off, refused, constraints)


_COMPILED: IdentityCache[CompiledModel] = IdentityCache()


def compiled(model: DeviceModel) -> CompiledModel:
    """Return the compiled form of ``model`` (cached by identity)."""
    return _COMPILED.get(model, None, _compile_one)


def _compile_one(model: DeviceModel, _: None) -> CompiledModel:
    return _compile(model)


def cond_holds(spec: CondSpec, value: object) -> bool:
    """Return whether a compiled condition holds for ``value`` (``None``: absent, never holds)."""
    _, t, vals, lo, hi = spec
    if t is None:
        return vals is not None and (type(value), value) in vals
    if type(value) is not t:
        return False
    if vals is None:
        return bool(lo <= value <= hi)  # type: ignore[operator]
    return value in vals


def accepts(cm: CompiledModel, items: Sequence[tuple[str, Value]], names: frozenset[str] | None = None) -> bool:
    """Return whether rules 2-4 of DESIGN §3 hold for a canonical configuration on ``cm``.

    Args:
        cm: the destination model, compiled.
        items: the canonical configuration's ``(parameter, value)`` pairs.
        names: the parameter names of ``items`` when the caller has them.

    Returns:
        ``True`` when every value is known and allowed, every omitted parameter
        is allowed at its off value and the full configuration satisfies every
        constraint. Builds no object on the way.
    """
    specs = cm.specs
    for name, v in items:
        spec = specs.get(name)
        if spec is None:
            return False
        t, vals, ranges = spec
        if type(v) is not t:
            return False
        if vals is not None:
            if v not in vals:
                return False
        else:
            for lo, hi, step in ranges:
                if lo <= v <= hi and (v - lo) % step == 0:  # type: ignore[operator]
                    break
            else:
                return False
    if cm.off_refused:
        if names is None:
            names = frozenset(n for n, _ in items)
        for name in cm.off_refused:
            if name not in names:
                return False
    if cm.constraints:
        full = cm.off.copy()
        full.update(items)
        return constraints_hold(cm.constraints, full)
    return True


def constraints_hold(
    constraints: tuple[tuple[tuple[CondSpec, ...], tuple[CondSpec, ...]], ...], full: dict[str, Value]
) -> bool:
    """Return whether a full configuration satisfies every compiled constraint (rule 4)."""
    get = full.get
    for when, require in constraints:
        applies = True
        for cname, ct, cvals, clo, chi in when:
            cv = get(cname)
            if ct is None:
                if cvals is None or (type(cv), cv) not in cvals:
                    applies = False
                    break
            elif type(cv) is not ct or (
                not (clo <= cv <= chi) if cvals is None else cv not in cvals  # type: ignore[operator]
            ):
                applies = False
                break
        if not applies:
            continue
        for cname, ct, cvals, clo, chi in require:
            cv = get(cname)
            if ct is None:
                if cvals is None or (type(cv), cv) not in cvals:
                    return False
            elif type(cv) is not ct or (
                not (clo <= cv <= chi) if cvals is None else cv not in cvals  # type: ignore[operator]
            ):
                return False
    return True


def off_mismatches(source: DeviceModel, destination: DeviceModel) -> tuple[str, ...]:
    """Return the parameters both models define whose off values differ (typed), in destination order."""
    src = source.params
    out = []
    for name, p in destination.params.items():
        sp = src.get(name)
        if sp is not None and not (type(sp.off) is type(p.off) and sp.off == p.off):
            out.append(name)
    return tuple(out)
