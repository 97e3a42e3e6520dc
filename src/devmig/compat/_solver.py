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
graph; the *base* configuration is the init configuration, which OLD
always accepts. Everything is compiled lazily, on first need. A
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

import itertools
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any, Literal, NamedTuple

from devmig.compat._compiled import CondSpec, compile_condition, cond_holds
from devmig.compat._domain import (
    IntProg,
    in_progressions,
    int_classes,
    int_progressions,
    iter_int_classes,
)
from devmig.model import DeviceModel, Value

__all__ = ["MAYBE", "NODE_LIMIT", "NO_SOLUTION", "Restriction", "Solution", "Space"]

NODE_LIMIT = 20000
_QUICK = 3  # values per restricted parameter the quick try combines

Status = Literal["found", "none", "maybe"]


class Restriction(NamedTuple):
    """What one parameter's value must satisfy in a question, beyond being allowed.

    Immutable (a named tuple: questions build hundreds per diff, and a tuple is
    built several times faster than a frozen dataclass).

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
            if self.exclude_values and (type(value), value) in self.exclude_values:
                return False
            if self.exclude and type(value) is int and in_progressions(value, self.exclude):
                return False
        return self.admits_class(value)

    def admits_class(self, value: Value) -> bool:
        """Return whether the tests admit ``value``, exclusions aside.

        For an int, the answer is the same for every integer of a class whose
        points include :meth:`int_points`, so one value answers for its whole class.
        """
        seen_as = self.seen_as
        if seen_as is not None and type(value) is type(seen_as[0]) and value == seen_as[0]:
            value = seen_as[1]
        for (_, t, vals, lo, hi), want in self.tests:  # cond_holds(), inlined
            if t is None:
                holds = vals is not None and (type(value), value) in vals
            elif type(value) is not t:
                holds = False
            elif vals is None:
                holds = lo <= value <= hi  # type: ignore[operator]
            else:
                holds = value in vals
            if holds is not want:
                return False
        return True

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


class Solution(NamedTuple):
    """The answer to a question (an immutable named tuple).

    Attributes:
        status: ``found`` (a witness exists), ``none`` (provably none) or
            ``maybe`` (the solver could not decide; treat as found).
        witness: a full configuration OLD accepts that answers the question,
            when ``status`` is ``found`` and every value is exact.
        version: the published version the witness is, if it is one (the
            newest, when several expand to the same configuration).
        changes: for a witness found by search, the values of the searched
            parameters (every other parameter is at its init value);
            ``None`` for a published version or the init configuration.
    """

    status: Status
    witness: Mapping[str, Value] | None = None
    version: str | None = None
    changes: Mapping[str, Value] | None = None

    @property
    def exists(self) -> bool:
        """Whether a break must be reported (``found`` or ``maybe``)."""
        return self.status != "none"

    @property
    def exact(self) -> bool:
        """Whether the answer is exact (``maybe`` is not)."""
        return self.status != "maybe"


NO_SOLUTION = Solution("none")
"""The answer "provably none" (solutions are immutable: one object serves every question)."""
MAYBE = Solution("maybe")
"""The answer "could not decide"."""


class Space:
    """The configurations one model accepts, compiled for questions.

    Everything is computed lazily and kept: a model with fifty parameters of
    which one changed compiles only the constraints and that parameter's
    component. The model must be consistent, as the loader guarantees (init
    values and published versions accepted); a witness is only as good as
    that guarantee.

    Args:
        model: the model.
    """

    def __init__(self, model: DeviceModel) -> None:
        self.model = model
        params = model.params
        self.params = params
        self._off: Mapping[str, Value] | None = None  # the off values, when a caller asks for them all
        self.init: Mapping[str, Value] = model.init_values
        self._constraints = model.constraints
        self._specs: dict[int, tuple[tuple[CondSpec, ...], tuple[CondSpec, ...]]] = {}
        self.cparams: list[tuple[str, ...]] = []
        # a defaultdict, read only with get() and `in`, which add no key
        self._cons_of: dict[str, list[int]] = defaultdict(list)
        # Only names here: conditions are compiled, and components found, when a search needs them.
        keys = params.keys()
        cparams, cons_of = self.cparams, self._cons_of
        for index, k in enumerate(self._constraints):
            kd = k.__dict__
            names = (*kd["when"], *kd["require"])
            if len(keys & names) != len(names):  # a name twice, or one the model lacks
                names = tuple(n for n in dict.fromkeys(names) if n in params)
            cparams.append(names)
            for n in names:
                cons_of[n].append(index)
        self._root: dict[str, str] | None = None
        self._members: dict[str, list[str]] = {}
        self._info: dict[str, tuple[tuple[IntProg, ...] | None, tuple[Value, ...]]] = {}
        self._seeds: list[tuple[str | None, Mapping[str, Value]]] | None = None
        self._classes: dict[str, list[tuple[Value, bool]]] = {}
        self._simplest: tuple[str | None, Mapping[str, Value]] | None = None
        self._points: dict[str, list[int]] = {}
        self._named: dict[str, set[tuple[type, Any]]] = {}

    def spec(self, index: int) -> tuple[tuple[CondSpec, ...], tuple[CondSpec, ...]]:
        """Return constraint ``index`` compiled: ``(when conditions, require conditions)``."""
        got = self._specs.get(index)
        if got is None:
            k = self._constraints[index]
            params = self.params
            got = (
                tuple(compile_condition(n, c) for n, c in k.when.items() if n in params),
                tuple(compile_condition(n, c) for n, c in k.require.items() if n in params),
            )
            self._specs[index] = got
        return got

    def specs_on(self, name: str) -> list[CondSpec]:
        """Return every compiled condition on parameter ``name``."""
        out = []
        for index in self._cons_of.get(name, ()):
            when, require = self.spec(index)
            out += [s for s in (*when, *require) if s[0] == name]
        return out

    def free(self, name: str) -> bool:
        """Return whether no constraint names ``name``."""
        return name not in self._cons_of

    # -- per parameter ----------------------------------------------------------

    def info(self, name: str) -> tuple[tuple[IntProg, ...] | None, tuple[Value, ...]]:
        """Return ``(int progressions or None, allowed values of a bool/str parameter)``."""
        got = self._info.get(name)
        if got is None:
            p = self.params[name]
            if p.type == "int":
                got = (int_progressions(p), ())
            else:
                got = (None, tuple(dict.fromkeys(p.allowed)))
            self._info[name] = got
        return got

    def cons_of(self, name: str) -> list[int]:
        """Return the indices of the constraints naming ``name``."""
        return self._cons_of.get(name, [])

    def _components(self) -> dict[str, str]:
        if self._root is None:
            parent: dict[str, str] = {n: n for n in self._cons_of}

            def find(x: str) -> str:
                while parent[x] != x:
                    parent[x] = parent[parent[x]]
                    x = parent[x]
                return x

            for names in self.cparams:
                for n in names[1:]:
                    parent[find(n)] = find(names[0])
            self._root = {name: find(name) for name in parent}
            for name, root in self._root.items():
                self._members.setdefault(root, []).append(name)
        return self._root

    def root(self, name: str) -> str:
        """Return the component of ``name`` (parameters linked by constraints share one)."""
        return self._components().get(name, name)

    def members(self, root: str) -> list[str]:
        """Return the parameters of a component."""
        self._components()
        return self._members.get(root, [root])

    def allows(self, name: str, value: Value) -> bool:
        """Return whether parameter ``name`` allows ``value`` (typed)."""
        progs, values = self.info(name)
        if progs is not None:
            return type(value) is int and in_progressions(value, progs)
        return any(type(v) is type(value) and v == value for v in values)

    def satisfied(self, index: int, full: Mapping[str, Value]) -> bool:
        """Return whether the full configuration satisfies constraint ``index``."""
        when, require = self.spec(index)
        for spec in when:
            if not cond_holds(spec, full.get(spec[0])):
                return True
        return all(cond_holds(spec, full.get(spec[0])) for spec in require)

    def valid(self, full: Mapping[str, Value]) -> bool:
        """Return whether the model accepts a full configuration (allowed values and constraints)."""
        return all(n in full and self.allows(n, full[n]) for n in self.params) and all(
            self.satisfied(i, full) for i in range(len(self._constraints))
        )

    # -- the base configuration -------------------------------------------------

    def base_value(self, name: str) -> Value:
        """Return ``name``'s value in the base configuration (its init value)."""
        return self.init[name]

    @property
    def base(self) -> Mapping[str, Value]:
        """The base configuration: the init values, which the model always accepts.

        A witness keeps the base value of every parameter outside the
        components it searches (constraints only link parameters of one
        component, so any mix of accepted components is accepted), so an
        example reads "the init values, except ...".
        """
        return self.init

    @property
    def off(self) -> Mapping[str, Value]:
        """Every parameter's off value (read-only; computed on first use)."""
        if self._off is None:
            self._off = self.model.off_values
        return self._off

    @property
    def seeds(self) -> list[tuple[str | None, Mapping[str, Value]]]:
        """Published versions (newest first) and the init configuration, as ``(version, full)``."""
        if self._seeds is None:
            model = self.model
            seeds: list[tuple[str | None, Mapping[str, Value]]] = [
                (v.name, model.version_values(v)) for v in reversed(model.versions)
            ]
            seeds.append((None, self.init))
            self._seeds = seeds
        return self._seeds

    def simplest(self) -> tuple[str | None, Mapping[str, Value]]:
        """Return the published version with the fewest non-off values (the newest of equals).

        Without a published version, the init configuration.
        """
        if self._simplest is not None:
            return self._simplest
        best: tuple[str | None, Mapping[str, Value]] | None = None
        best_count = 0
        off = self.off
        for version in self.model.versions:
            count = sum(
                1 for n, v in version.params.items() if not (type(v) is type(off[n]) and v == off[n])
            )
            if best is None or count <= best_count:
                best, best_count = (version.name, self.model.version_values(version)), count
        self._simplest = best if best is not None else (None, self.init)
        return self._simplest

    def _quick(self, restricted: Mapping[str, list[tuple[Value, bool]]]) -> Solution | None:
        """Try the init configuration with only the restricted parameters changed.

        Constraints naming none of them hold as in the init configuration, so
        checking the constraints that name them is enough. Tries the first
        few exact values of each; ``None`` when none works (the full search
        decides then).
        """
        names = list(restricted)
        choices = [[v for v, exact in restricted[n] if exact][:_QUICK] for n in names]
        return self._try(names, choices)

    def _try(self, names: list[str], choices: list[list[Value]]) -> Solution | None:
        """Try every combination of ``choices`` for ``names`` on the init configuration (see :meth:`_quick`)."""
        touched = sorted({i for n in names for i in self.cons_of(n)})
        full = dict(self.init)
        for combo in itertools.product(*choices):
            full.update(zip(names, combo, strict=True))
            if all(self.satisfied(i, full) for i in touched):
                return Solution("found", full, None, dict(zip(names, combo, strict=True)))
        return None

    def _solve_free(self, restrictions: Mapping[str, Restriction]) -> Solution:
        """Answer a question on parameters no constraint names: each one on its own."""
        changes: dict[str, Value] = {}
        for name, r in restrictions.items():
            head = self._head(name, r)
            if head is not _NO_HEAD:
                changes[name] = head
                continue
            got = self._first_class(name, r)
            if got is None:
                return NO_SOLUTION
            if not got[1]:
                return MAYBE
            changes[name] = got[0]
        witness = dict(self.init)
        witness.update(changes)
        return Solution("found", witness, None, changes)

    def _int_points(self, name: str) -> list[int]:
        """Return the points where a condition on int parameter ``name`` may change (with its off and init values)."""
        got = self._points.get(name)
        if got is None:
            got = [x for spec in self.specs_on(name) for x in _spec_points(spec)]
            for v in (self.params[name].off, self.init[name]):
                if type(v) is int:
                    got += [v, v + 1]
            self._points[name] = got
        return got

    def _typed_points(self, name: str) -> set[tuple[type, Any]]:
        """Return the values the conditions on ``name`` name (with its off and init values), typed."""
        got = self._named.get(name)
        if got is None:
            got = {x for spec in self.specs_on(name) for x in _spec_typed(spec)}
            off = self.params[name].off
            got.add((type(off), off))
            got.add((type(self.init[name]), self.init[name]))
            self._named[name] = got
        return got

    def _head(self, name: str, restriction: Restriction) -> Any:
        """Return the first value of :meth:`classes` when it is the init or the off value, else ``_NO_HEAD``.

        Both are points of their own class (a class of one value), so either is
        a class of ``classes(name, restriction)`` exactly when the parameter
        allows it and the restriction admits it; they rank first (init, then
        off), and both are exact. Spares computing every class when one of
        them answers.
        """
        progs, values = self.info(name)
        for v in (self.init[name], self.params[name].off):
            if progs is not None:
                if (
                    type(v) is int
                    and in_progressions(v, progs)
                    and not (restriction.exclude and in_progressions(v, restriction.exclude))
                    and restriction.admits(v, excluded_checked=True)
                ):
                    return v
            elif any(type(x) is type(v) and x == v for x in values) and restriction.admits(v):
                return v
        return _NO_HEAD

    def _first_class(self, name: str, restriction: Restriction) -> tuple[Value, bool] | None:
        """Return ``_first(self.classes(name, restriction))`` when :meth:`_head` found nothing.

        The init and off values then are no class of the answer, so the
        classes of an int parameter come by increasing value, as
        :func:`~devmig.compat._domain.iter_int_classes` yields them: taken
        lazily, up to the first exact one.
        """
        progs, _ = self.info(name)
        if progs is None:
            return _first(self.classes(name, restriction))
        stand_in = None
        points = self._int_points(name) + restriction.int_points()
        for v, exact in iter_int_classes(progs, restriction.exclude, points, restriction.admits_class):
            if exact:
                return v, True
            if stand_in is None:
                stand_in = (v, False)
        return stand_in

    def _first_exact(self, name: str, restriction: Restriction) -> list[Value]:
        """Return the first :data:`_QUICK` exact values of ``classes(name, restriction)``, computed lazily for an int.

        The init and off values are classes of one value (see :meth:`_head`)
        and rank first; the other classes follow by increasing value, as
        :func:`~devmig.compat._domain.iter_int_classes` yields them.
        """
        progs, _ = self.info(name)
        if progs is None:
            return [v for v, exact in self.classes(name, restriction) if exact][:_QUICK]
        out: list[Value] = []
        init, off = self.init[name], self.params[name].off
        for v in (init, off):
            if (
                type(v) is int
                and v not in out
                and in_progressions(v, progs)
                and not (restriction.exclude and in_progressions(v, restriction.exclude))
                and restriction.admits(v, excluded_checked=True)
            ):
                out.append(v)
        if len(out) >= _QUICK:
            return out
        points = self._int_points(name) + restriction.int_points()
        for v, exact in iter_int_classes(progs, restriction.exclude, points, restriction.admits_class):
            if not exact or v in (init, off):
                continue
            out.append(v)
            if len(out) >= _QUICK:
                break
        return out

    def classes(self, name: str, restriction: Restriction | None = None) -> list[tuple[Value, bool]]:
        """Return one ``(value, exact)`` per class of the values ``name`` allows (and the restriction admits).

        Values are ordered base value first, then the off and init values, then the others.
        """
        if restriction is None:
            cached = self._classes.get(name)
            if cached is not None:
                return cached
        progs, values = self.info(name)
        out: list[tuple[Value, bool]]
        if progs is not None:
            points: list[int] = self._int_points(name)
            if restriction is None:
                out = list(int_classes(progs, (), points))
            else:
                points = points + restriction.int_points()
                out = list(iter_int_classes(progs, restriction.exclude, points, restriction.admits_class))
        elif all(type(v) is bool for v in values):
            out = [(v, True) for v in values if restriction is None or restriction.admits(v)]
        else:
            named = set(self._typed_points(name))
            if restriction is not None:
                named.update(restriction.typed_points())
            out = []
            other = False
            for v in values:
                if restriction is not None and not restriction.admits(v):
                    continue
                if (type(v), v) in named:
                    out.append((v, True))
                elif not other:
                    out.append((v, True))
                    other = True
        if len(out) > 1:
            out = _ranked(out, self.base_value(name), self.params[name].off, self.init[name])
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
        # the seeds (see :attr:`seeds`), without building their full configurations:
        # a version's value is its own, else the off value
        items = restrictions.items()
        params = self.params
        for spec in reversed(self.model.versions):
            given = spec.params
            for n, r in items:
                v = given.get(n, _ABSENT)
                if not r.admits(params[n].off if v is _ABSENT else v):
                    break
            else:
                return Solution("found", self.model.version_values(spec), spec.name)
        init = self.init
        for n, r in items:
            if not r.admits(init[n]):
                break
        else:
            return Solution("found", init, None)
        if all(self.free(n) for n in restrictions):
            return self._solve_free(restrictions)
        # The quick try needs only the first few exact classes of each restricted
        # parameter: take them lazily, and compute every class only when it fails.
        choices: list[list[Value]] = []
        for name, r in restrictions.items():
            first = self._first_exact(name, r)
            if not first:
                break
            choices.append(first)
        else:
            quick = self._try(list(restrictions), choices)
            if quick is not None:
                return quick
        restricted: dict[str, list[tuple[Value, bool]]] = {}
        for name, r in restrictions.items():
            dom = self.classes(name, r)
            if not dom:
                return NO_SOLUTION
            restricted[name] = dom
        quick = self._quick(restricted)
        if quick is not None:
            return quick
        roots = {self.root(n) for n in restrictions}
        order = _order([n for n in restrictions], roots, self)
        domains: dict[str, list[tuple[Value, bool]]] = {}
        for name in order:
            dom = restricted[name] if name in restricted else self.classes(name)
            if not dom:
                return NO_SOLUTION
            domains[name] = dom
        init = self.init
        full = {name: init[name] for name in order}
        search = _Search(self, order, full)
        result = search.run(domains)
        if result is None:
            return MAYBE
        if not result:
            return NO_SOLUTION
        if not search.exact:
            return MAYBE
        witness = dict(self.base)
        witness.update(full)
        # a witness equal to a published version would have been found among the seeds
        return Solution("found", witness, None, full)


_NO_HEAD: Any = object()
_ABSENT: Any = object()


def _first(classes: Iterable[tuple[Value, bool]]) -> tuple[Value, bool] | None:
    """Return the first exact class, else the first stand-in, else ``None``."""
    stand_in = None
    for value, exact in classes:
        if exact:
            return value, exact
        if stand_in is None:
            stand_in = (value, exact)
    return stand_in


def _ranked(values: list[tuple[Value, bool]], base: Value, off: Value, init: Value) -> list[tuple[Value, bool]]:
    """Order values for familiar witnesses: the base (init) value, then off, then init, then the rest (stable)."""
    buckets: tuple[list[tuple[Value, bool]], ...] = ([], [], [], [])
    tb, to, ti = type(base), type(off), type(init)
    for ve in values:
        v = ve[0]
        tv = type(v)
        if tv is tb and v == base:
            buckets[0].append(ve)
        elif tv is to and v == off:
            buckets[1].append(ve)
        elif tv is ti and v == init:
            buckets[2].append(ve)
        else:
            buckets[3].append(ve)
    return [*buckets[0], *buckets[1], *buckets[2], *buckets[3]]


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
        for index in space.cons_of(name):
            for other in space.cparams[index]:
                if other not in seen:
                    seen.add(other)
                    order.append(other)
    for root in roots:
        for n in space.members(root):
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
            for index in self.space.cons_of(name):
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
            for index in space.cons_of(name):
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
        full[name] = space.init[name]
        return False


class _GaveUp(Exception):
    pass
