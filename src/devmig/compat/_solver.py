"""A small exact constraint solver over the configurations a model accepts.

Theory of operation: the release diff must decide questions such as "does OLD
accept some configuration with ``rx-table-size=128``?" or "does OLD accept
some configuration that violates this new constraint?" exactly, so that it
agrees with the pairwise check. A configuration OLD accepts gives every
parameter an allowed value and satisfies every constraint; a constraint is a
conjunction of per-parameter conditions implying another.

:class:`Space` compiles one model once: per parameter the classes of its
values (:mod:`devmig.compat._domain`), the constraints as compiled
conditions, the connected components of the "appear in one constraint"
graph, and a *base* configuration that OLD accepts (per component, all off
values when that is accepted, else the init values, which always are). A
question (:meth:`Space.solve`) restricts a few parameters; only the
components of those parameters are searched, by backtracking over class
representatives with forward checking, trying published versions and the
init configuration first (so that examples are familiar). Everything else
keeps its base value, so a witness is always a configuration OLD accepts.

The search is exact. It gives up after :data:`NODE_LIMIT` nodes, and a class
stand-in that may be empty (see :func:`~devmig.compat._domain.find_int`) makes
an answer inexact; in both cases the answer is "maybe" and the diff reports
the break (conservative).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from devmig.compat._compiled import CondSpec, compile_condition, cond_holds
from devmig.compat._domain import IntProg, in_progressions, int_classes, int_progressions
from devmig.model import BoolParam, DeviceModel, IntParam, Value

__all__ = ["NODE_LIMIT", "Restriction", "Solution", "Space"]

NODE_LIMIT = 20000

Status = Literal["found", "none", "maybe"]


@dataclass(frozen=True, slots=True)
class Restriction:
    """What one parameter's value must satisfy in a question, beyond being allowed.

    Attributes:
        exclude: integer values to leave out, as progressions.
        exclude_values: values to leave out, as ``(type, value)`` pairs (typed).
        tests: compiled conditions with the answer each must give.
        seen_as: ``(old off, new off)``: the tests see ``new off`` where the
            value is ``old off`` (what a configuration omitting the parameter
            means at the destination when the off values differ).
    """

    exclude: tuple[IntProg, ...] = ()
    exclude_values: frozenset[tuple[type, Any]] = frozenset()
    tests: tuple[tuple[CondSpec, bool], ...] = ()
    seen_as: tuple[Value, Value] | None = None

    def admits(self, value: Value, *, excluded_checked: bool = False) -> bool:
        """Return whether ``value`` passes the restriction (exclusions unless already checked)."""
        if not excluded_checked:
            if (type(value), value) in self.exclude_values:
                return False
            if self.exclude and type(value) is int and in_progressions(value, self.exclude):
                return False
        seen = value
        if self.seen_as is not None and type(value) is type(self.seen_as[0]) and value == self.seen_as[0]:
            seen = self.seen_as[1]
        return all(cond_holds(spec, seen) is want for spec, want in self.tests)

    def int_points(self) -> list[int]:
        """Return the integer points where the restriction's answer may change."""
        out: list[int] = []
        for spec, _ in self.tests:
            out += _spec_points(spec)
        if self.seen_as is not None and type(self.seen_as[0]) is int:
            out += [self.seen_as[0], self.seen_as[0] + 1]
        return out

    def typed_points(self) -> list[tuple[type, Any]]:
        """Return the listed values the restriction's tests name, as ``(type, value)`` pairs."""
        out: list[tuple[type, Any]] = []
        for spec, _ in self.tests:
            out += _spec_typed(spec)
        if self.seen_as is not None:
            out.append((type(self.seen_as[0]), self.seen_as[0]))
        return out


def _spec_points(spec: CondSpec) -> list[int]:
    _, _, vals, lo, hi = spec
    out: list[int] = []
    if vals is None:
        if lo != float("-inf"):
            out.append(int(lo))
        if hi != float("inf"):
            out.append(int(hi) + 1)
        return out
    for v in vals:
        if isinstance(v, tuple):
            v = v[1]
        if type(v) is int:
            out += [v, v + 1]
    return out


@dataclass(frozen=True, slots=True)
class Solution:
    """The answer to a question.

    Attributes:
        status: ``found`` (a witness exists), ``none`` (provably none) or
            ``maybe`` (the solver could not decide; treat as found).
        witness: a full configuration OLD accepts that answers the question,
            when ``status`` is ``found`` and every value is exact.
    """

    status: Status
    witness: Mapping[str, Value] | None = None

    @property
    def exists(self) -> bool:
        """Whether a break must be reported (``found`` or ``maybe``)."""
        return self.status != "none"

    @property
    def exact(self) -> bool:
        """Whether the answer is exact (``maybe`` is not)."""
        return self.status != "maybe"


@dataclass(slots=True)
class _Var:
    name: str
    domain: list[tuple[Value, bool]] = field(default_factory=list)


class Space:
    """The configurations one model accepts, compiled for questions.

    Args:
        model: the model (its document must be consistent, as loaded).
    """

    def __init__(self, model: DeviceModel) -> None:
        self.model = model
        params = model.params
        self.off: dict[str, Value] = dict(model.off_values)
        self.init: dict[str, Value] = dict(model.init_values)
        self.progs: dict[str, tuple[IntProg, ...]] = {}
        self.values: dict[str, tuple[Value, ...]] = {}
        self.bools: set[str] = set()
        for name, p in params.items():
            if isinstance(p, IntParam):
                self.progs[name] = int_progressions(p)
            elif isinstance(p, BoolParam):
                self.values[name] = tuple(dict.fromkeys(p.allowed))
                self.bools.add(name)
            else:
                self.values[name] = tuple(dict.fromkeys(p.allowed))
        self.constraints: list[tuple[tuple[CondSpec, ...], tuple[CondSpec, ...]]] = []
        self.cparams: list[tuple[str, ...]] = []
        self.cons_of: dict[str, list[int]] = {name: [] for name in params}
        self.points: dict[str, list[Any]] = {name: [] for name in params}
        parent = {name: name for name in params}

        def find(x: str) -> str:
            while parent[x] != x:
                parent[x] = parent[parent[x]]
                x = parent[x]
            return x

        for index, k in enumerate(model.constraints):
            when = tuple(compile_condition(n, c) for n, c in k.when.items() if n in params)
            require = tuple(compile_condition(n, c) for n, c in k.require.items() if n in params)
            self.constraints.append((when, require))
            names = tuple(dict.fromkeys(s[0] for s in (*when, *require)))
            self.cparams.append(names)
            for spec in (*when, *require):
                if spec[0] in self.progs:
                    self.points[spec[0]] += _spec_points(spec)
                else:
                    self.points[spec[0]] += _spec_typed(spec)
            for n in names:
                self.cons_of[n].append(index)
            for n in names[1:]:
                parent[find(n)] = find(names[0])
        self.component: dict[str, str] = {name: find(name) for name in params}
        self.members: dict[str, list[str]] = {}
        for name in params:
            self.members.setdefault(self.component[name], []).append(name)
        self.sound = self.valid(self.init)
        self.base: dict[str, Value] = dict(self.init)
        for group in self.members.values():
            trial = dict(self.base)
            trial.update((n, self.off[n]) for n in group)
            if all(self.allows(n, self.off[n]) for n in group) and all(
                self.satisfied(i, trial) for n in group for i in self.cons_of[n]
            ):
                self.base.update((n, self.off[n]) for n in group)
        self.seeds: list[dict[str, Value]] = []
        for version in model.versions:
            full = model.version_values(version)
            if set(full) == set(params) and self.valid(full):
                self.seeds.append(full)
        if self.sound:
            self.seeds.append(self.init)
        self._classes: dict[str, list[tuple[Value, bool]]] = {}

    def allows(self, name: str, value: Value) -> bool:
        """Return whether parameter ``name`` allows ``value`` (typed)."""
        progs = self.progs.get(name)
        if progs is not None:
            return type(value) is int and in_progressions(value, progs)
        allowed = self.values[name]
        return any(type(v) is type(value) and v == value for v in allowed)

    def satisfied(self, index: int, full: Mapping[str, Value]) -> bool:
        """Return whether the full configuration satisfies constraint ``index``."""
        when, require = self.constraints[index]
        for spec in when:
            if not cond_holds(spec, full.get(spec[0])):
                return True
        return all(cond_holds(spec, full.get(spec[0])) for spec in require)

    def valid(self, full: Mapping[str, Value]) -> bool:
        """Return whether the model accepts a full configuration (allowed values and constraints)."""
        return all(n in full and self.allows(n, full[n]) for n in self.off) and all(
            self.satisfied(i, full) for i in range(len(self.constraints))
        )

    def classes(self, name: str, restriction: Restriction | None = None) -> list[tuple[Value, bool]]:
        """Return one ``(value, exact)`` per class of the values ``name`` allows (and the restriction admits).

        Values are ordered base value first, then the off and init values, then the others.
        """
        if restriction is None:
            cached = self._classes.get(name)
            if cached is not None:
                return cached
        progs = self.progs.get(name)
        out: list[tuple[Value, bool]]
        if progs is not None:
            points: list[int] = [*self.points[name]]
            for v in (self.off[name], self.init[name]):
                if type(v) is int:
                    points += [v, v + 1]
            exclude: tuple[IntProg, ...] = ()
            if restriction is not None:
                points += restriction.int_points()
                exclude = restriction.exclude
            out = [
                (v, exact)
                for v, exact in int_classes(progs, exclude, points)
                if restriction is None or restriction.admits(v, excluded_checked=True)
            ]
        elif name in self.bools:
            out = [(v, True) for v in self.values[name] if restriction is None or restriction.admits(v)]
        else:
            named = {*self.points[name], (type(self.off[name]), self.off[name])}
            named.add((type(self.init[name]), self.init[name]))
            if restriction is not None:
                named.update(restriction.typed_points())
            out = []
            other = False
            for v in self.values[name]:
                if restriction is not None and not restriction.admits(v):
                    continue
                if (type(v), v) in named:
                    out.append((v, True))
                elif not other:
                    out.append((v, True))
                    other = True
        base, off, init = self.base[name], self.off[name], self.init[name]
        out.sort(key=lambda ve: _rank(ve[0], base, off, init))
        if restriction is None:
            self._classes[name] = out
        return out

    def solve(self, restrictions: Mapping[str, Restriction]) -> Solution:
        """Find a configuration the model accepts whose values pass every restriction.

        Args:
            restrictions: per parameter, what its value must satisfy.

        Returns:
            A :class:`Solution`: ``found`` with a witness (published versions
            and the init configuration are tried first), ``none``, or ``maybe``.
        """
        for seed in self.seeds:
            if all(r.admits(seed[n]) for n, r in restrictions.items()):
                return Solution("found", seed)
        if not self.sound:
            return Solution("maybe")
        roots = {self.component[n] for n in restrictions}
        order = _order([n for n in restrictions], roots, self)
        domains: dict[str, list[tuple[Value, bool]]] = {}
        for name in order:
            r = restrictions.get(name)
            dom = self.classes(name, r)
            if not dom:
                return Solution("none")
            domains[name] = dom
        full = dict(self.base)
        search = _Search(self, order, full)
        result = search.run(domains)
        if result is None:
            return Solution("maybe")
        if not result:
            return Solution("none")
        if not search.exact:
            return Solution("maybe")
        return Solution("found", full)


def _rank(value: Value, base: Value, off: Value, init: Value) -> int:
    """Order values for familiar witnesses: the base value, then off, then init, then the rest."""
    for rank, x in enumerate((base, off, init)):
        if type(x) is type(value) and x == value:
            return rank
    return 3


def _spec_typed(spec: CondSpec) -> list[tuple[type, Any]]:
    vals = spec[2]
    if vals is None:
        return []
    return [v if isinstance(v, tuple) else (type(v), v) for v in vals]


def _order(start: Iterable[str], roots: set[str], space: Space) -> list[str]:
    """Order the parameters of the components in ``roots``: restricted first, then breadth-first."""
    order: list[str] = []
    seen: set[str] = set()
    queue = [n for n in start]
    for n in queue:
        if n not in seen:
            seen.add(n)
            order.append(n)
    i = 0
    while i < len(order):
        name = order[i]
        i += 1
        for index in space.cons_of[name]:
            for other in space.cparams[index]:
                if other not in seen:
                    seen.add(other)
                    order.append(other)
    for root in roots:
        for n in space.members[root]:
            if n not in seen:
                seen.add(n)
                order.append(n)
    return order


class _Search:
    """Backtracking with forward checking over class representatives."""

    def __init__(self, space: Space, order: list[str], full: dict[str, Value]) -> None:
        self.space = space
        self.order = order
        self.full = full
        self.assigned: set[str] = set()
        self.nodes = 0
        self.exact = True
        self._exact: dict[str, bool] = {}

    def run(self, domains: dict[str, list[tuple[Value, bool]]]) -> bool | None:
        """Return ``True`` (solution left in ``full``), ``False`` (none) or ``None`` (gave up)."""
        # Constraints with a single parameter prune before the search starts.
        for name in self.order:
            for index in self.space.cons_of[name]:
                if len(self.space.cparams[index]) == 1:
                    domains[name] = self._prune(index, name, domains[name])
                    if not domains[name]:
                        return False
        try:
            found = self._step(0, domains)
        except _GaveUp:
            return None
        if found:
            self.exact = all(self._exact.get(n, True) for n in self.order)
        return found

    def _prune(self, index: int, name: str, domain: list[tuple[Value, bool]]) -> list[tuple[Value, bool]]:
        full = self.full
        saved = full[name]
        kept = []
        for value, exact in domain:
            full[name] = value
            if self.space.satisfied(index, full):
                kept.append((value, exact))
        full[name] = saved
        return kept

    def _step(self, i: int, domains: dict[str, list[tuple[Value, bool]]]) -> bool:
        if i == len(self.order):
            return True
        name = self.order[i]
        space = self.space
        full = self.full
        for value, exact in domains[name]:
            self.nodes += 1
            if self.nodes > NODE_LIMIT:
                raise _GaveUp
            full[name] = value
            self.assigned.add(name)
            ok = True
            pruned: dict[str, list[tuple[Value, bool]]] = {}
            for index in space.cons_of[name]:
                free = [n for n in space.cparams[index] if n not in self.assigned]
                if not free:
                    if not space.satisfied(index, full):
                        ok = False
                        break
                elif len(free) == 1:
                    other = free[0]
                    dom = self._prune(index, other, pruned.get(other, domains[other]))
                    if not dom:
                        ok = False
                        break
                    pruned[other] = dom
            if ok:
                nxt = {**domains, **pruned} if pruned else domains
                if self._step(i + 1, nxt):
                    self._exact[name] = exact
                    return True
            self.assigned.discard(name)
        full[name] = space.base[name]
        return False


class _GaveUp(Exception):
    pass
