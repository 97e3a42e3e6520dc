"""The release diff pairs NEW's constraints with OLD's exactly as a dict of constraint keys would.

``_pair_constraints`` answers with :func:`_same_constraint` (no keys built);
the reference below is the key-based pairing it replaced, with the key as the
specification of "equal constraints". Both must agree on every pair, every
added and every removed constraint, and their order.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from devmig.compat._diff import _pair_constraints, _same_constraint
from devmig.model import Constraint, InSet, Range

NAMES = ["a", "b", "c"]
SCALARS = st.one_of(st.booleans(), st.integers(-2, 2), st.sampled_from(["x", "y"]))
CONDITIONS = st.one_of(
    SCALARS,
    st.lists(SCALARS, min_size=1, max_size=3).map(lambda v: {"in": v}),
    st.fixed_dictionaries({}, optional={"min": st.integers(-2, 2), "max": st.integers(-2, 2)}).filter(bool),
)
PARTS = st.dictionaries(st.sampled_from(NAMES), CONDITIONS, max_size=2)
RAW = st.builds(
    lambda when, require, message: {"when": when, "require": require, "message": message},
    PARTS,
    st.dictionaries(st.sampled_from(NAMES), CONDITIONS, min_size=1, max_size=2),
    st.sampled_from(["", "m"]),
)


def _constraint_key(k: Constraint) -> tuple[Any, ...]:
    """Equal for equal constraints: typed (``True`` is not ``1``); the order of the parameters, and the
    order or repetition of an ``in`` condition's values, do not matter."""

    def condition(n: str, c: Any) -> tuple[Any, ...]:
        if isinstance(c, InSet):
            return (n, "in", frozenset((type(v), v) for v in c.in_))
        if isinstance(c, Range):
            return (n, "range", c.min, c.max)
        return (n, type(c), c)

    return tuple(tuple(sorted(condition(n, c) for n, c in part.items())) for part in (k.when, k.require))


def reference(olds: list[Constraint], news: list[Constraint]) -> tuple[list[tuple[int, int]], list[int], list[int]]:
    unmatched: dict[Any, list[int]] = defaultdict(list)
    for index, k in enumerate(olds):
        unmatched[_constraint_key(k)].append(index)
    pairs, added = [], []
    for index, k in enumerate(news):
        pool = unmatched.get(_constraint_key(k))
        if pool:
            pairs.append((index, pool.pop(0)))
        else:
            added.append(index)
    removed = [i for indices in unmatched.values() for i in indices]
    return pairs, added, removed


@settings(max_examples=400, deadline=None)
@given(st.lists(RAW, max_size=6), st.data())
def test_pairing_equals_the_key_based_pairing(old_raw: list[dict[str, Any]], data: st.DataObject) -> None:
    # NEW: a shuffled pick of OLD's constraints (some twice), plus new ones
    picked = data.draw(st.lists(st.sampled_from(old_raw), max_size=6)) if old_raw else []
    new_raw = data.draw(st.permutations(picked + data.draw(st.lists(RAW, max_size=3))))
    olds = [Constraint.model_validate(r) for r in old_raw]
    news = [Constraint.model_validate(r) for r in new_raw]
    added: list[int] = []
    pairs, removed = _pair_constraints(olds, news, added)
    assert (pairs, added, removed) == reference(olds, news)


def test_same_constraint_is_typed_and_ignores_order() -> None:
    one = Constraint.model_validate({"when": {"a": 1}, "require": {"b": {"in": [1, 2]}}})
    true = Constraint.model_validate({"when": {"a": True}, "require": {"b": {"in": [1, 2]}}})
    reordered = Constraint.model_validate({"when": {"a": 1}, "require": {"b": {"in": [2, 1, 2]}}})
    typed_set = Constraint.model_validate({"when": {"a": 1}, "require": {"b": {"in": [True, 2]}}})
    assert _same_constraint(one, reordered)
    assert not _same_constraint(one, true)
    assert not _same_constraint(one, typed_set)
    assert (_constraint_key(one) == _constraint_key(reordered)) and _constraint_key(one) != _constraint_key(true)
