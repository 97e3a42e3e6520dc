"""The release diff (DESIGN §3): every change between two releases, and what it breaks.

Theory of operation: a change *breaks upgrade* exactly when some configuration
OLD accepts (allowed values and constraints; the same set for every rule)
fails the pairwise check (:func:`~devmig.compat.check`) against NEW because of
it. Rules whose effect does not depend on the configuration (a removed model,
a changed type or off value, a new parameter whose off value NEW refuses)
break it outright; the others ask the solver (:mod:`devmig.compat._solver`)
whether OLD accepts a configuration that NEW refuses:

- ``PARAM_REMOVED``: one setting the parameter to a value other than its off
  value (so that the canonical configuration names it);
- ``ALLOWED_NARROWED``: one giving the parameter a value NEW does not allow
  (its off value included: NEW would run it at a value it refuses);
- ``CONSTRAINT_ADDED``: one whose full configuration at NEW (NEW's off values,
  then the canonical configuration) violates the new constraint.

Every rule of the check (MODEL_UNKNOWN, PARAM_UNKNOWN, VALUE_NOT_ALLOWED,
CONSTRAINT_VIOLATED, OFF_VALUE_MISMATCH) maps to one of these questions, so a
configuration of OLD that fails the check against NEW always shows up as an
upgrade break in the diff, and every example given does fail the check.

The solver is exact; where it cannot decide (a step pattern longer than
:data:`~devmig.compat._domain.SCAN_LIMIT` values, a search longer than
:data:`~devmig.compat._solver.NODE_LIMIT` nodes) it reports the break with
``exact=False`` and no example: conservative, never lenient.
"""

from __future__ import annotations

import gc
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from devmig.compat._changes import BREAKS, Change, Direction, ReleaseDiff
from devmig.compat._compiled import compile_condition, cond_holds
from devmig.compat._domain import int_difference, int_progressions
from devmig.compat._qemu_state import is_qemu_model, qemu_state_changes
from devmig.compat._solver import NO_SOLUTION, Restriction, Solution, Space
from devmig.compat._state_diff import state_candidates, state_search
from devmig.model import (
    Condition,
    Constraint,
    DeviceModel,
    InSet,
    IntParam,
    ModelDocument,
    Param,
    Range,
    Value,
    format_options,
    format_value,
    same_value,
)

__all__ = ["diff"]

_GONE: Any = object()
"""No condition (a parameter the other side's conditions do not name): no condition is of its type."""

Spaces = dict[int, Space]
"""The solver spaces of one diff, by ``id()`` of their model (alive for the whole call).

Per call, not a module cache: a :class:`Space` holds its model, so a cache keyed
by the model's identity would keep every diffed document alive.
"""


def _space(model: DeviceModel, spaces: Spaces) -> Space:
    space = spaces.get(id(model))
    if space is None:
        space = spaces[id(model)] = Space(model)
    return space


def diff(old: ModelDocument, new: ModelDocument) -> ReleaseDiff:
    """List every change from release OLD to release NEW, each with what it breaks.

    Args:
        old: the earlier release's model document.
        new: the later release's model document (usually of the same implementation).

    Returns:
        The :class:`ReleaseDiff`; ``breaking`` is true when any change breaks
        ``upgrade``, ``rollback`` or ``instantiate``. Whenever a configuration
        OLD accepts (a published version or any other) fails the pairwise check
        against NEW, some change breaks ``upgrade``.
    """
    with _collection_paused():
        return _diff(old, new)


@contextmanager
def _collection_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while the block runs (when it is on).

    A diff allocates tens of thousands of short-lived objects (changes, solver
    restrictions, witnesses) and forms no reference cycle: reference counting
    frees all of it, and the collections its allocations would trigger (16 in
    the 100-model bench, 7% of its time) find nothing. Pausing is process-wide
    and short (one diff); the collector is re-enabled only by the call that
    paused it, so nested or concurrent diffs leave it as they found it.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _diff(old: ModelDocument, new: ModelDocument) -> ReleaseDiff:
    changes: list[Change] = []
    spaces: Spaces = {}
    new_models = {m.model: m for m in new.models}
    old_ids = set()
    for om in old.models:
        old_ids.add(om.model)
        nm = new_models.get(om.model)
        if nm is None:
            example = _base_example(om, spaces)
            changes.append(
                Change(
                    "MODEL_REMOVED",
                    om.model,
                    (),
                    BREAKS["MODEL_REMOVED"],
                    f"{new.implementation.render()} no longer supports model {om.model}",
                    example=example[0],
                    example_version=example[1],
                    old=om.model,
                )
            )
            continue
        if om is nm:
            continue
        changes += _ModelDiff(om, nm, spaces).run()
    for nm in new.models:
        if nm.model not in old_ids:
            changes.append(
                Change("MODEL_ADDED", nm.model, (), (), f"new model {nm.model}", new=nm.model)
            )
    return ReleaseDiff(old.implementation, new.implementation, tuple(changes))


Example = tuple[str | None, str | None]
"""``(option string, version name)`` of an example."""


def _base_example(model: DeviceModel, spaces: Spaces) -> Example:
    """Return the simplest configuration OLD accepts (its version with the fewest non-off values)."""
    space = _space(model, spaces)
    name, _ = space.simplest()
    if name is None:
        return _example(space, Solution("found", model.init_values))
    return _version_example(model, name)


def _example(space: Space, solution: Solution) -> Example:
    """Return a solution's witness as an option string that creates exactly it on OLD.

    A published version is ``version=NAME``; any other witness is the init
    values except the searched parameters, so it is written as those changes.
    """
    if solution.witness is None:
        return None, None
    if solution.version is not None:
        return format_options([("version", solution.version)]), solution.version
    changes = solution.changes or {}
    init = space.init
    delta = sorted((k, v) for k, v in changes.items() if not (type(v) is type(init[k]) and v == init[k]))
    return format_options(delta), None


def _typed(items: tuple[tuple[str, Value], ...]) -> tuple[tuple[str, str, Value], ...]:
    return tuple((k, type(v).__name__, v) for k, v in items)


def _typed_values(values: tuple[Value, ...]) -> frozenset[tuple[type, Value]]:
    """An ``in`` condition's values as a set of ``(type, value)``: order and repetition aside, ``True`` is not ``1``."""
    return frozenset(zip(map(type, values), values, strict=True))


def _same_constraint(a: Constraint, b: Constraint) -> bool:
    """Whether two constraints are equal (the message aside).

    Equal: conditions on the same parameters, in any order, each of the same
    kind and type (typed: ``True`` is not ``1``), with equal values; an ``in``
    condition's values compare as a set. Most pairs differ in a parameter name,
    found at once.
    """
    ad, bd = a.__dict__, b.__dict__
    return _same_part(ad["require"], bd["require"]) and _same_part(ad["when"], bd["when"])


def _same_part(a: dict[str, Condition], b: dict[str, Condition]) -> bool:
    if len(a) != len(b):
        return False
    get = b.get
    for n, c in a.items():
        d = get(n, _GONE)
        kind = type(c)
        if kind is not type(d):
            return False
        if kind is InSet:
            x, y = c.__dict__["in_"], d.__dict__["in_"]
            # not the same tuple: maybe the same set of typed values, in another order or repeated
            if (x != y or tuple(map(type, x)) != tuple(map(type, y))) and _typed_values(x) != _typed_values(y):
                return False
        elif c != d:  # a scalar of the same type, or a Range (it compares its fields)
            return False
    return True


def _pair_constraints(
    olds: tuple[Constraint, ...] | list[Constraint],
    news: tuple[Constraint, ...] | list[Constraint],
    added: list[int],
) -> tuple[list[tuple[int, int]], list[int]]:
    """Pair NEW's constraints with equal ones of OLD; return ``(pairs, removed)`` and fill ``added``.

    Each NEW constraint, in order, takes the first OLD constraint equal to it
    (:func:`_same_constraint`) not taken yet; the NEW ones left are ``added``
    (in order). ``removed`` lists the OLD ones left, grouped as equal
    constraints by the first of each group, then by index (the order a dict
    of lists keyed by equal constraints would give).
    """
    free = list(range(len(olds)))
    pairs: list[tuple[int, int]] = []
    for index, k in enumerate(news):
        for at, old_index in enumerate(free):
            if _same_constraint(olds[old_index], k):
                del free[at]
                pairs.append((index, old_index))
                break
        else:
            added.append(index)
    if len(free) < 2:
        return pairs, free

    def first_equal(i: int) -> int:
        return next(j for j in range(i + 1) if _same_constraint(olds[j], olds[i]))

    return pairs, sorted(free, key=lambda i: (first_equal(i), i))


def _condition_json(cond: Condition) -> Any:
    kind = type(cond)
    if kind is bool or kind is int or kind is str:
        return cond
    if kind is not InSet and (kind is Range or isinstance(cond, Range)):  # isinstance() last: it costs
        return {k: v for k, v in (("min", cond.min), ("max", cond.max)) if v is not None}  # type: ignore[union-attr]
    if kind is InSet or isinstance(cond, InSet):
        return {"in": list(cond.in_)}  # type: ignore[union-attr]
    return cond  # pragma: no cover - every condition is one of the above


def _constraint_json(k: Constraint) -> dict[str, Any]:
    out: dict[str, Any] = {
        "when": {n: _condition_json(c) for n, c in k.when.items()},
        "require": {n: _condition_json(c) for n, c in k.require.items()},
    }
    if k.message:
        out["message"] = k.message
    return out


def _allowed_json(p: Param) -> list[Any]:
    allowed = p.__dict__["allowed"]
    if type(p) is IntParam or isinstance(p, IntParam):
        out: list[Any] = []
        for r in allowed:
            d = r.__dict__  # min, max, step: the JSON keys, in that order
            out.append(dict(d) if d["step"] is not None else {"min": d["min"], "max": d["max"]})
        return out
    return list(allowed)


def _param_json(p: Param) -> dict[str, Any]:
    d = p.__dict__
    return {"type": d["type"], "allowed": _allowed_json(p), "off": d["off"], "init": d["init"]}


class _ModelDiff:
    """The changes of one model present in both releases."""

    def __init__(self, old: DeviceModel, new: DeviceModel, spaces: Spaces) -> None:
        self.old = old
        self.new = new
        self.old_params, self.new_params = old.params, new.params
        self._spaces = spaces
        self.id = old.model
        self._space: Space | None = None
        self.moved: set[str] = set()  # parameters removed, or whose type or off value changed

    @property
    def space(self) -> Space:
        if self._space is None:
            self._space = _space(self.old, self._spaces)
        return self._space

    def change(
        self,
        rule: str,
        loc: tuple[str | int, ...],
        message: str,
        *,
        breaks: tuple[Direction, ...] | None = None,
        solution: Solution | None = None,
        example: Example = (None, None),
        old: Any = None,
        new: Any = None,
    ) -> Change:
        exact = True
        if solution is not None:
            exact = solution.exact
            if solution.witness is not None:
                example = _example(self.space, solution)
        return Change(
            rule,
            self.id,
            loc,
            BREAKS.get(rule, ()) if breaks is None else breaks,
            message,
            example[0],  # example
            example[1],  # example_version
            old,
            new,
            exact,
        )

    def run(self) -> list[Change]:
        out: list[Change] = []
        o, n = self.old, self.new
        qemu = is_qemu_model(o) and is_qemu_model(n)  # QEMU's own devices: judged by its rules
        if o.description != n.description and not qemu:  # theirs records section versions
            out.append(
                self.change("DESCRIPTION_CHANGED", ("description",), "the model's description changed",
                            old=o.description, new=n.description)
            )
        old_params, new_params = self.old_params, self.new_params
        get = new_params.get
        for name, op in old_params.items():
            np = get(name)
            if np is None:
                out.append(self.param_removed(name, op))
                continue
            # unchanged: equal field dicts (strict types: no 1 == True; ranges compare by their fields)
            if op.__dict__ == np.__dict__:
                continue
            out += self.param_changed(name, op, np)
        added = new_params.keys() - old_params.keys()
        if added:
            for name in filter(added.__contains__, new_params):  # NEW's order
                out += self.param_added(name, new_params[name])
        out += self.constraints()
        out += self.versions()
        if o.state is not None and n.state is not None and o.state != n.state:
            out += self.qemu_state() if qemu else self.state()
        elif qemu and o.description != n.description:
            out += self.qemu_state()
        return out

    # -- the state layout (rule 6) -------------------------------------------

    def qemu_state(self) -> list[Change]:
        """The changes of a model imported from QEMU's vmstate (:mod:`devmig.compat._qemu_state`)."""
        return [
            self.change(c.rule, c.loc, c.message, breaks=c.breaks, old=c.old, new=c.new)
            for c in qemu_state_changes(self.old, self.new)
        ]

    def state(self) -> list[Change]:
        """The ``STATE_*`` changes (:mod:`devmig.compat._state_diff`), each judged over OLD's configurations."""
        out: list[Change] = []
        o, n = self.old, self.new
        assert o.state is not None and n.state is not None
        unjudged = sorted(
            name for name, p in self.old_params.items()
            if name in self.new_params and not same_value(p.off, self.new_params[name].off)
        )
        for candidate in state_candidates(o.state, n.state):
            if unjudged:  # rule 5 refuses every configuration already: OFF_VALUE_CHANGED breaks both ways
                out.append(self.change(candidate.rule, candidate.loc,
                                       f"{candidate.message} (not judged: {', '.join(unjudged)} changed off value)",
                                       breaks=(), old=candidate.old, new=candidate.new))
                continue
            sol, exact = state_search(o, n, self.space, candidate)
            if sol is not None:
                out.append(self.change(candidate.rule, candidate.loc,
                                       f"{candidate.message}; configurations OLD accepts have it, so their state "
                                       "differs between the releases",
                                       breaks=BREAKS[candidate.rule], solution=sol,
                                       old=candidate.old, new=candidate.new))
            elif not exact:
                out.append(self.change(candidate.rule, candidate.loc,
                                       f"{candidate.message}; too many configurations to try them all: "
                                       "reported as breaking", breaks=BREAKS[candidate.rule],
                                       solution=Solution("maybe"), old=candidate.old, new=candidate.new))
            else:
                out.append(self.change(candidate.rule, candidate.loc,
                                       f"{candidate.message}; no configuration OLD accepts has it",
                                       breaks=(), old=candidate.old, new=candidate.new))
        return out

    # -- parameters ---------------------------------------------------------

    def param_removed(self, name: str, op: Param) -> Change:
        self.moved.add(name)
        if op.type == "int":
            restriction = Restriction(exclude=((op.off, op.off, 1),))
        else:
            restriction = Restriction(exclude_values=frozenset({(type(op.off), op.off)}))
        sol = self.space.solve({name: restriction})
        if sol.exists:
            message = (
                f"parameter {name} is removed; configurations OLD accepts set it to values other "
                f"than its off value {format_value(op.off)}, and NEW refuses them"
            )
        else:
            message = (
                f"parameter {name} is removed; OLD accepts it only at its off value "
                f"{format_value(op.off)}, so no canonical configuration names it"
            )
        return self.change("PARAM_REMOVED", ("params", name), message,
                           breaks=BREAKS["PARAM_REMOVED"] if sol.exists else (), solution=sol,
                           old=_param_json(op))

    def param_added(self, name: str, np: Param) -> list[Change]:
        out = [
            self.change("PARAM_ADDED", ("params", name),
                        f"new parameter {name} ({np.type_name}, off {format_value(np.off)})",
                        new=_param_json(np))
        ]
        if not np.allows(np.off):
            out.append(
                self.change(
                    "OFF_NOT_ALLOWED", ("params", name, "off"),
                    f"new parameter {name} does not allow its off value {format_value(np.off)} "
                    f"(allowed: {np.describe_allowed()}): NEW refuses every configuration of OLD, "
                    "which all leave it off",
                    example=_base_example(self.old, self._spaces), old=np.off, new=_allowed_json(np),
                )
            )
        return out

    def param_changed(self, name: str, op: Param, np: Param) -> list[Change]:
        out: list[Change] = []
        loc = ("params", name)
        if type(op) is not type(np):  # one class per parameter type
            self.moved.add(name)
            example = _base_example(self.old, self._spaces)
            out.append(
                self.change("TYPE_CHANGED", (*loc, "type"),
                            f"{name} changed type from {op.type_name} to {np.type_name}",
                            example=example, old=op.type_name, new=np.type_name)
            )
            out.append(self._off_changed(name, op, np, example))
            if op.description != np.description:
                out.append(self.change("DESCRIPTION_CHANGED", (*loc, "description"),
                                       f"{name}'s description changed",
                                       old=op.description, new=np.description))
            return out
        od, nd = op.__dict__, np.__dict__  # the fields, read from the dicts: one lookup each side
        if not same_value(od["off"], nd["off"]):
            self.moved.add(name)
            out.append(self._off_changed(name, op, np, _base_example(self.old, self._spaces)))
        out += self.allowed_changed(name, op, np)
        old_init, new_init = od["init"], nd["init"]
        if not same_value(old_init, new_init):
            out.append(self.change("INIT_CHANGED", (*loc, "init"),
                                   f"{name}'s init value changed from {format_value(old_init)} "
                                   f"to {format_value(new_init)}", old=old_init, new=new_init))
        if od["description"] != nd["description"]:
            out.append(self.change("DESCRIPTION_CHANGED", (*loc, "description"),
                                   f"{name}'s description changed",
                                   old=od["description"], new=nd["description"]))
        return out

    def _off_changed(
        self, name: str, op: Param, np: Param, example: Example
    ) -> Change:
        # versions both publish that name it in neither: off in each, so their meaning changed
        new_map = self.new.version_map
        changed = list(dict.fromkeys(
            v.name for v in self.old.versions
            if v.name in new_map and name not in v.params and name not in new_map[v.name].params
        ))
        versions = f"; versions that leave it off change meaning: {', '.join(changed)}" if changed else ""
        return self.change(
            "OFF_VALUE_CHANGED", ("params", name, "off"),
            f"{name}'s off value changed from {format_value(op.off)} ({op.type_name}) to "
            f"{format_value(np.off)} ({np.type_name}): the model itself changed, and every "
            f"configuration that omits it changes meaning{versions}",
            example=example, old=op.off, new=np.off,
        )

    def allowed_changed(self, name: str, op: Param, np: Param) -> list[Change]:
        out: list[Change] = []
        loc = ("params", name, "allowed")
        restriction: Restriction
        if type(op) is IntParam and type(np) is IntParam:  # (param_changed() saw one type on both sides)
            old_progs, new_progs = int_progressions(op), int_progressions(np)
            if old_progs == new_progs:
                return out
            narrowed = int_difference(old_progs, new_progs)
            widened = int_difference(new_progs, old_progs)
            restriction = Restriction(exclude=new_progs)
        else:  # bools or strings, all of one type: sets compare them exactly
            old_set, new_set = set(op.__dict__["allowed"]), set(np.__dict__["allowed"])
            if old_set == new_set:
                return out
            narrowed = not old_set <= new_set
            widened = not new_set <= old_set
            restriction = Restriction(exclude_values=frozenset((type(v), v) for v in new_set))
        both = f"(allowed: {op.describe_allowed()} -> {np.describe_allowed()})"
        if narrowed:
            sol = self.space.solve({name: restriction})
            if sol.exists:
                witness = sol.witness
                some = f" such as {name}={format_value(witness[name])}" if witness is not None else ""
                message = f"{name} no longer allows values{some} that configurations OLD accepts use {both}"
            else:
                message = f"{name} allows fewer values, but no configuration OLD accepts uses them {both}"
            out.append(self.change("ALLOWED_NARROWED", loc, message,
                                   breaks=BREAKS["ALLOWED_NARROWED"] if sol.exists else (),
                                   solution=sol, old=_allowed_json(op), new=_allowed_json(np)))
        if widened:
            out.append(self.change("ALLOWED_WIDENED", loc, f"{name} allows more values {both}",
                                   old=_allowed_json(op), new=_allowed_json(np)))
        return out

    # -- constraints --------------------------------------------------------

    def constraints(self) -> list[Change]:
        out: list[Change] = []
        o, n = self.old, self.new
        olds, news = o.constraints, n.constraints
        added: list[int] = []
        matched, removed = _pair_constraints(olds, news, added)
        for index, old_index in matched:
            old_message, new_message = olds[old_index].message, news[index].message
            if old_message != new_message:
                out.append(self.change("DESCRIPTION_CHANGED", ("constraints", index, "message"),
                                       f"constraint {index}'s message changed",
                                       old=old_message, new=new_message))
        for index in removed:
            k = olds[index]
            out.append(self.change("CONSTRAINT_REMOVED", ("constraints", index),
                                   f"constraint removed: {k.render()}", old=_constraint_json(k)))
        for index in added:
            k = news[index]
            sol = self.violations(k)
            if sol.exists:
                message = f"new constraint: {k.render()}; configurations OLD accepts violate it"
            else:
                message = f"new constraint: {k.render()}; every configuration OLD accepts satisfies it"
            out.append(self.change("CONSTRAINT_ADDED", ("constraints", index), message,
                                   breaks=BREAKS["CONSTRAINT_ADDED"] if sol.exists else (),
                                   solution=sol, new=_constraint_json(k)))
        return out

    def violations(self, k: Constraint) -> Solution:
        """Find a configuration OLD accepts whose full configuration at NEW violates ``k``."""
        old_params, new_params = self.old_params, self.new_params
        when: dict[str, list[tuple[Any, bool]]] = defaultdict(list)
        for name, cond in k.when.items():
            spec = compile_condition(name, cond)
            if name not in old_params:
                np = new_params.get(name)
                if np is None or not cond_holds(spec, np.off):
                    return NO_SOLUTION  # a parameter OLD lacks is at NEW's off value
                continue
            when[name].append((spec, True))
        best = NO_SOLUTION
        # the when parameters' restrictions are the same for every require condition
        base = {p: Restriction(tests=tuple(t), seen_as=self._seen_as(p)) for p, t in when.items()}
        for name, cond in k.require.items():
            spec = compile_condition(name, cond)
            restrictions = base
            if name not in old_params:
                np = new_params.get(name)
                if np is not None and cond_holds(spec, np.off):
                    continue
            else:
                restrictions = dict(base)
                known = when.get(name)
                tests = (*known, (spec, False)) if known is not None else ((spec, False),)
                restrictions[name] = Restriction(tests=tests, seen_as=self._seen_as(name))
            sol = self.space.solve(restrictions)
            if sol.status == "found":
                return sol
            if sol.status == "maybe":
                best = sol
        return best

    def _seen_as(self, name: str) -> tuple[Value, Value] | None:
        old_off = self.old_params[name].off
        np = self.new_params.get(name)
        if np is None or same_value(old_off, np.off):
            return None
        return old_off, np.off

    # -- versions -----------------------------------------------------------

    def versions(self) -> list[Change]:
        out: list[Change] = []
        o, n = self.old, self.new
        old_map, new_map = o.version_map, n.version_map
        # a version whose params are equal in both, naming no parameter whose type or off
        # value changed (or that NEW removed), has the same canonical configuration in both
        # a version whose params are the same in both (typed) names the same values: where its
        # canonical form or full meaning differs, an off value changed, and OFF_VALUE_CHANGED
        # names it -- it is not redefined
        for name in dict.fromkeys(v.name for v in o.versions):
            if name in new_map:
                old_params, new_params = old_map[name].params, new_map[name].params
                if old_params == new_params and _typed(tuple(sorted(old_params.items()))) == _typed(
                    tuple(sorted(new_params.items()))
                ):
                    continue
            old_items = _version_items(o, name)
            if name not in new_map:
                out.append(self.change("VERSION_REMOVED", ("versions", name),
                                       f"version {name} is no longer published; creating with "
                                       f"version={name} fails",
                                       example=_version_example(o, name),
                                       old=format_options(old_items)))
                continue
            new_items = _version_items(n, name)
            if _typed(old_items) != _typed(new_items):
                old_text = format_options(old_items)
                new_text = format_options(new_items)
                out.append(self.change(
                    "VERSION_REDEFINED", ("versions", name),
                    f"version {name} changed meaning: {old_text!r} in OLD, {new_text!r} in NEW",
                    example=_version_example(o, name), old=old_text, new=new_text,
                ))
        for name in dict.fromkeys(v.name for v in n.versions):
            if name not in old_map:
                out.append(self.change("VERSION_ADDED", ("versions", name), f"new version {name}",
                                       new=format_options(_version_items(n, name))))
        return out


def _version_items(model: DeviceModel, name: str) -> tuple[tuple[str, Value], ...]:
    """Return a version's canonical configuration (from its own params: the rest is off)."""
    defs = model.params
    out = []
    for k, v in model.version_map[name].params.items():
        p = defs.get(k)
        if p is None or not (type(v) is type(off := p.__dict__["off"]) and v == off):
            out.append((k, v))
    out.sort()
    return tuple(out)


def _version_example(model: DeviceModel, name: str) -> Example:
    return format_options([("version", name)]), name
