"""Rule 6 of DESIGN §3: the source's and the destination's published state layouts agree.

Theory of operation: where both definitions of a model publish a layout,
each is resolved for its own full configuration (its off values, then the
canonical configuration) and the two are compared section by section, field
by field, region by region — an optional section only one side has is
ignored. The comparison depends only on the values of the parameters the two
layouts read, so for one ``(source, destination)`` pair it is made once per
distinct tuple of those values and remembered. Two equal layouts (the common
case: the same release, or a release that did not touch the state) always
agree — every parameter either reads is defined by both, and rules 2-5 make
its value the same on both sides — and cost nothing.

The check (:mod:`devmig.compat._check`) and the fleet index
(:mod:`devmig.compat._index`) both decide rule 6 through :func:`layout_rule`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from devmig._errors import Problem
from devmig.compat._compiled import IdentityCache
from devmig.compat._qemu_state import is_qemu_model, qemu_state_changes
from devmig.model import (
    DeviceModel,
    LayoutDifference,
    UnresolvableLayout,
    Value,
    layout_difference,
    layout_params,
    resolve_layout,
)

__all__ = ["LayoutRule", "QemuLayoutRule", "layout_rule", "state_problem"]

_OMITTED: Any = object()
_CACHE_LIMIT = 4096


class LayoutRule:
    """Rule 6 for one ``(source, destination)`` pair of definitions whose layouts differ as written.

    Args:
        source: the source's definition (with a layout).
        destination: the destination's definition (with a layout).
    """

    __slots__ = ("_answers", "_last", "destination", "params", "source")

    def __init__(self, source: DeviceModel, destination: DeviceModel) -> None:
        assert source.state is not None and destination.state is not None
        self.source = source
        self.destination = destination
        self.params = tuple(sorted(layout_params(source.state) | layout_params(destination.state)))
        self._answers: dict[tuple[Any, ...], LayoutDifference | None] = {}
        # the last configuration asked, by identity: a device is asked about again and again
        self._last: tuple[Sequence[tuple[str, Value]] | None, LayoutDifference | None] = (
            None,
            None,
        )

    def difference(self, items: Sequence[tuple[str, Value]]) -> LayoutDifference | None:
        """Return the first difference of the two layouts for a canonical configuration (``None``: they agree).

        A layout that cannot be resolved (a value of the wrong type for a
        parameter it reads) is a difference at ``("state",)``: conservative.
        """
        last = self._last
        if last[0] is items:  # the same tuple (immutable, held here: its identity stays its own)
            return last[1]
        given = dict(items)
        get = given.get
        key = tuple((type(v), v) for v in (get(p, _OMITTED) for p in self.params))
        answers = self._answers
        if key in answers:
            found = answers[key]
        else:
            found = self._compare(given)
            if len(answers) >= _CACHE_LIMIT:
                answers.clear()
            answers[key] = found
        if type(items) is tuple:
            self._last = (items, found)
        return found

    def agrees(self, items: Sequence[tuple[str, Value]]) -> bool:
        """Return whether the two layouts agree for a canonical configuration."""
        return self.difference(items) is None

    def _compare(self, given: dict[str, Value]) -> LayoutDifference | None:
        src, dst = self.source, self.destination
        assert src.state is not None and dst.state is not None
        src_full = {**src.off_values, **given}
        dst_full = dict(dst.off_values)
        dst_full.update((k, v) for k, v in given.items() if k in dst.params)
        try:
            left = resolve_layout(src.state, src_full)
        except UnresolvableLayout as exc:
            return LayoutDifference(("state",), f"unresolvable on the source: {exc}", None, None)
        try:
            right = resolve_layout(dst.state, dst_full)
        except UnresolvableLayout as exc:
            return LayoutDifference(
                ("state",), f"unresolvable at the destination: {exc}", None, None
            )
        return layout_difference(left, right)


class QemuLayoutRule(LayoutRule):
    """Rule 6 for two models imported from QEMU vmstate dumps: QEMU's one-directional rules.

    The source's stream loads at the destination unless the release diff from
    the source's definition to the destination's finds a change that breaks
    ``upgrade`` (:mod:`devmig.compat._qemu_state`); the models are
    parameterless, so the answer is the same for every configuration.
    """

    __slots__ = ()

    def _compare(self, given: dict[str, Value]) -> LayoutDifference | None:
        for change in qemu_state_changes(self.source, self.destination):
            if "upgrade" in change.breaks:
                return _qemu_difference(change.rule, change.loc, change.old, change.new)
        return None


def _qemu_difference(rule: str, loc: tuple[str, ...], old: Any, new: Any) -> LayoutDifference:
    """The first QEMU change that breaks loading the source's stream, as a :class:`LayoutDifference`."""
    section = loc[2] if len(loc) > 2 else ""
    if rule == "STATE_CONDITION_CHANGED":  # a version: the destination does not load the source's
        return LayoutDifference(
            ("state", "section", section), "version",
            f"{old['version_id']} (loads {old['minimum_version_id']}..{old['version_id']})",
            f"{new['version_id']} (loads {new['minimum_version_id']}..{new['version_id']})",
        )  # fmt: skip
    if rule in ("STATE_SECTION_ADDED", "STATE_SECTION_REMOVED"):
        return LayoutDifference(("state", "section", section), "section", old, new)
    where = ("state", "section", section, "field", loc[4])
    if rule == "STATE_FIELD_MAX_CHANGED":
        return LayoutDifference(where, "max", old, new)
    if rule == "STATE_FIELD_REMOVED":
        return LayoutDifference(where, "field", loc[4], None)
    return LayoutDifference(where, "field", None, loc[4])


def _make(source: DeviceModel, destination: DeviceModel) -> LayoutRule | None:
    if source.state is None or destination.state is None:
        return None
    if is_qemu_model(source) and is_qemu_model(destination):
        if source.state == destination.state and source.description == destination.description:
            return None
        return QemuLayoutRule(source, destination)
    if source.state == destination.state:
        return None
    return LayoutRule(source, destination)


_RULES: IdentityCache[LayoutRule | None] = IdentityCache()


def layout_rule(source: DeviceModel, destination: DeviceModel) -> LayoutRule | None:
    """Return rule 6 for a pair of definitions, or ``None`` when it always holds for them.

    It always holds when either side publishes no layout, or both publish the
    same one. Cached by the identity of both definitions.
    """
    return _RULES.get(source, destination, _make)


def state_problem(found: LayoutDifference, where: str) -> Problem:
    """Return the ``STATE_LAYOUT_MISMATCH`` reason for a difference (rule 6)."""
    if found.loc == ("state",):
        message = f"the state layout is {found.what}"
    else:
        message = found.describe("the source", where)
    return Problem(
        "STATE_LAYOUT_MISMATCH",
        found.loc,
        message,
        value=found.left,
        allowed=found.right,
        hint="the state differs although the parameters do not say so: the release that changed it "
        "should have put the change behind a new parameter whose off value keeps the old layout",
        context={"rule": 6, "what": found.what},
    )
