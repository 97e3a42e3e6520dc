"""Tests of the diff's solver: value classes, periodic step patterns, search, conservative limits."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from compat_fixtures import NIC, model_of, variant
from hypothesis import given, settings
from hypothesis import strategies as st

from devmig.compat import _solver as solver
from devmig.compat import check, diff
from devmig.compat._domain import find_int, in_progressions, int_classes, int_difference
from devmig.compat._solver import Restriction, Space
from devmig.model import expand

# (a, b, include, exclude, expected)
FIND: list[tuple[int, int, list[tuple[int, int, int]], list[tuple[int, int, int]], tuple[int | None, bool]]] = [
    (0, 10, [(0, 10, 1)], [], (0, True)),
    (3, 10, [(0, 10, 4)], [], (4, True)),
    (0, 10, [(0, 10, 1)], [(0, 10, 1)], (None, True)),
    (0, 96, [(0, 96, 3)], [(0, 96, 6)], (3, True)),
    (0, 96, [(0, 96, 6)], [(0, 96, 3)], (None, True)),
    (0, 20, [(0, 20, 2)], [(0, 20, 4), (2, 18, 4)], (None, True)),
    (0, 20, [(0, 20, 1)], [(0, 20, 4), (2, 18, 4)], (1, True)),
    (11, 11, [(0, 20, 2)], [], (None, True)),
]


@pytest.mark.parametrize(("a", "b", "include", "exclude", "expected"), FIND)
def test_find_int(a: int, b: int, include: Any, exclude: Any, expected: Any) -> None:
    assert find_int(a, b, include, exclude) == expected


progression = st.tuples(st.integers(-10, 30), st.integers(0, 40), st.integers(1, 6)).map(
    lambda t: (t[0], t[0] + t[1] // t[2] * t[2], t[2])
)


@settings(max_examples=300, deadline=None)
@given(st.lists(progression, min_size=1, max_size=3), st.lists(progression, max_size=3),
       st.lists(st.integers(-12, 75), max_size=4))
def test_int_classes_match_brute_force(include: Any, exclude: Any, points: list[int]) -> None:
    wanted = {v for v in range(-20, 80) if in_progressions(v, include) and not in_progressions(v, exclude)}
    classes = int_classes(tuple(include), tuple(exclude), points)
    assert all(exact for _, exact in classes)
    values = [v for v, _ in classes]
    assert set(values) <= wanted
    assert bool(values) == bool(wanted)
    # one representative per class: every wanted value shares its interval with a representative
    cuts = sorted({*points, *(p[0] for p in (*include, *exclude)), *(p[1] + 1 for p in (*include, *exclude))})
    def cls(v: int) -> int:
        return sum(1 for c in cuts if c <= v)
    assert {cls(v) for v in wanted} == {cls(v) for v in values}


def test_period_longer_than_the_scan_limit_is_a_conservative_maybe() -> None:
    """NEW allows every value but those = 8191 mod 8192: the first is beyond the scan limit."""
    big = 100_000

    def old(m: dict[str, Any]) -> None:
        m["params"]["rx-table-size"]["allowed"] = [{"min": 0, "max": big}]

    def new(m: dict[str, Any]) -> None:
        old(m)
        m["params"]["rx-table-size"]["allowed"] = [  # each reaches past OLD's max
            {"min": 2**k - 1, "max": big + 2**14, "step": 2 ** (k + 1)} for k in range(13)
        ]
        m["params"]["rx-table-size"]["init"] = 64
        m["versions"][1]["params"]["rx-table-size"] = 30
        m["versions"][2]["params"]["rx-table-size"] = 64

    d = diff(variant(old), variant(new))
    (change,) = [c for c in d.changes if c.rule == "ALLOWED_NARROWED"]
    assert change.breaks == ("upgrade",)
    assert not change.exact and change.example is None
    # the break is real: 8191 is allowed by OLD, refused by NEW
    om = model_of(variant(old))
    assert not check(om, expand(om, "rx-table-size=8191"), variant(new)).compatible


def test_node_limit_gives_a_conservative_maybe(monkeypatch: pytest.MonkeyPatch) -> None:
    def narrow_a(m: dict[str, Any]) -> None:
        _chain(m)
        m["params"]["a"]["allowed"] = [{"min": 0, "max": 0}]

    monkeypatch.setattr(solver, "NODE_LIMIT", 0)
    d = diff(variant(_chain, release="x"), variant(narrow_a, release="y"))
    (change,) = [c for c in d.changes if c.rule == "ALLOWED_NARROWED"]
    assert change.breaks == ("upgrade",) and not change.exact and change.example is None


def _chain(m: dict[str, Any]) -> None:
    """a=1 needs b in {2, 3}; b=2 needs c=5, which c never allows: only b=3 works."""
    m["params"].update(
        a={"type": "int", "allowed": [{"min": 0, "max": 1}], "off": 0, "init": 0},
        b={"type": "int", "allowed": [{"min": 0, "max": 4}], "off": 0, "init": 0},
        c={"type": "int", "allowed": [{"min": 0, "max": 4}], "off": 0, "init": 0},
    )
    m["constraints"] += [
        {"when": {"a": 1}, "require": {"b": {"in": [2, 3]}}},
        {"when": {"b": 2}, "require": {"c": 5}},
    ]


def test_search_backtracks_past_the_first_consistent_value() -> None:
    def narrow_a(m: dict[str, Any]) -> None:
        _chain(m)
        m["params"]["a"]["allowed"] = [{"min": 0, "max": 0}]

    d = diff(variant(_chain), variant(narrow_a))
    (change,) = [c for c in d.changes if c.rule == "ALLOWED_NARROWED"]
    assert change.breaks == ("upgrade",)
    assert change.example is not None
    values = expand(model_of(variant(_chain)), change.example).values
    assert values["a"] == 1 and values["b"] == 3


def test_unsatisfiable_question_is_none() -> None:
    space = Space(model_of(variant(_chain)))
    # b=2 can never be part of an accepted configuration
    only_two = Restriction(exclude=((0, 1, 1), (3, 4, 1)))
    assert space.solve({"b": only_two}).status == "none"
    # b=3 with a=1 can
    sol = space.solve({"b": Restriction(exclude=((0, 2, 1), (4, 4, 1))), "a": Restriction(exclude=((0, 0, 1),))})
    assert sol.status == "found" and sol.witness is not None
    assert (sol.witness["a"], sol.witness["b"]) == (1, 3)


def test_base_configuration_is_the_accepted_init_configuration() -> None:
    raw = copy.deepcopy(NIC)
    m = model_of(variant(base=raw))
    space = Space(m)
    assert dict(space.base) == dict(m.init_values)
    assert space.valid(space.base)


@settings(max_examples=300, deadline=None)
@given(st.lists(progression, min_size=1, max_size=2), st.lists(progression, min_size=1, max_size=2))
def test_int_difference_matches_brute_force(include: Any, exclude: Any) -> None:
    values = [v for lo, hi, step in include for v in range(lo, hi + 1, step)]
    assert int_difference(tuple(include), tuple(exclude)) == any(not in_progressions(v, exclude) for v in values)
