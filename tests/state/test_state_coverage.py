"""Coverage grows with every record and shrinks with every discarded one (DESIGN §4)."""

from __future__ import annotations

import itertools

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from devmig.state import PAGE_SIZE
from devmig.state._coverage import IntervalSet, PageCoverage

SIZE = 5 * PAGE_SIZE + 100
_OFFSETS = st.one_of(
    st.integers(0, SIZE),
    st.sampled_from([0, PAGE_SIZE, 2 * PAGE_SIZE, 4 * PAGE_SIZE, 5 * PAGE_SIZE, SIZE]),
)
_OPS = st.lists(st.tuples(st.booleans(), _OFFSETS, _OFFSETS), max_size=30)


def _model_gap(model: np.ndarray) -> int | None:
    return None if model.all() else int(np.argmin(model))


@settings(max_examples=300, deadline=None)
@given(ops=_OPS)
def test_page_coverage_add_and_remove_equal_a_byte_map(ops):
    coverage = PageCoverage(SIZE)
    model = np.zeros(SIZE, dtype=bool)
    for add, a, b in ops:
        start, end = min(a, b), max(a, b)
        if add:
            coverage.add(start, end - start)
        else:
            coverage.remove(start, end - start)
        model[start:end] = add
        assert coverage.first_gap() == _model_gap(model)
        assert coverage.complete() == bool(model.all())


@settings(max_examples=300, deadline=None)
@given(ops=_OPS)
def test_interval_set_add_and_remove_equal_a_set(ops):
    intervals = IntervalSet()
    model: set[int] = set()
    for add, a, b in ops:
        start, end = min(a, b), max(a, b)
        if add:
            intervals.add(start, end)
            model |= set(range(start, end))
        else:
            intervals.remove(start, end)
            model -= set(range(start, end))
        got = intervals.intervals()
        assert sum(e - s for s, e in got) == len(model) == intervals.total()
        assert {i for s, e in got for i in range(s, e)} == model
        assert all(e1 < s2 for (_, e1), (s2, _) in itertools.pairwise(got))  # merged


def test_remove_uncovers_what_earlier_records_covered():
    coverage = PageCoverage(SIZE)
    coverage.add(0, SIZE)
    assert coverage.complete()
    coverage.remove(PAGE_SIZE + 10, 20)  # part of a whole page
    assert coverage.first_gap() == PAGE_SIZE + 10
    coverage.add(PAGE_SIZE, PAGE_SIZE)
    assert coverage.complete()
    coverage.remove(2 * PAGE_SIZE, 3 * PAGE_SIZE + 100)  # whole pages to the end
    assert coverage.first_gap() == 2 * PAGE_SIZE
