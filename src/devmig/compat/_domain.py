"""Value domains of parameters, split into classes that every condition treats alike.

Theory of operation: the constraint language only compares a parameter with
literals, sets and ``min``/``max`` bounds. So the values a parameter allows fall
into a few *classes* — for an integer, the elementary intervals between the
interesting points (range ends, condition bounds, listed values, off and init
values); for a string, each listed string and "any other" — and any two values
of one class satisfy exactly the same conditions. A search over one
representative per class is therefore exact.

Integer ranges with steps make "allowed by OLD but not by NEW" periodic rather
than interval-shaped; :func:`find_int` looks for such a value inside one
elementary interval by scanning one period (the least common multiple of the
steps involved). Should that period exceed :data:`SCAN_LIMIT` values, the
search gives up and answers "maybe" (``exact=False``): the caller then reports
a break conservatively, never hides one.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator
from math import lcm

from devmig.model import IntParam

__all__ = [
    "SCAN_LIMIT",
    "IntProg",
    "find_int",
    "in_progressions",
    "int_classes",
    "int_difference",
    "int_progressions",
    "iter_int_classes",
]

IntProg = tuple[int, int, int]
"""An arithmetic progression ``(first, last, step)``: ``first``, ``first+step``, ... ``last``."""

SCAN_LIMIT = 4096


def int_progressions(param: IntParam) -> tuple[IntProg, ...]:
    """Return an int parameter's allowed ranges as progressions (``last`` on the grid)."""
    out = []
    for r in param.__dict__["allowed"]:
        d = r.__dict__  # min, max, step: one attribute lookup, not five
        lo, hi = d["min"], d["max"]
        if hi < lo:
            continue
        step = d["step"] or 1
        out.append((lo, lo + (hi - lo) // step * step, step))
    return tuple(out)


def in_progressions(value: int, progs: Iterable[IntProg]) -> bool:
    """Return whether ``value`` lies on one of the progressions."""
    return any(lo <= value <= hi and (value - lo) % step == 0 for lo, hi, step in progs)


def find_int(a: int, b: int, include: Iterable[IntProg], exclude: Iterable[IntProg]) -> tuple[int | None, bool]:
    """Find an integer of ``[a, b]`` on some ``include`` progression and on no ``exclude`` one.

    ``[a, b]`` must be elementary: no progression of ``exclude`` starts or ends
    strictly inside it (its ``first`` and ``last + 1`` are not in ``(a, b]``).

    Returns:
        ``(value, True)`` when found; ``(None, True)`` when there is provably
        none; ``(None, False)`` when the scan limit was hit without finding one
        (there may be one).
    """
    excl = [(lo, step) for lo, hi, step in exclude if lo <= b and hi >= a]
    if any(step == 1 for _, step in excl):
        return None, True
    exact = True
    for lo, hi, step in include:
        top = min(b, hi)
        if lo > top:
            continue
        start = lo if lo >= a else lo + (a - lo + step - 1) // step * step
        if start > top:
            continue
        count = (top - start) // step + 1
        if excl:
            period = step
            for _, es in excl:
                period = lcm(period, es)
            count = min(count, period // step)
        if count > SCAN_LIMIT:
            count = SCAN_LIMIT
            exact = False
        for i in range(count):
            v = start + i * step
            for elo, es in excl:
                if (v - elo) % es == 0:
                    break
            else:
                return v, True
    return None, exact


def int_classes(
    include: tuple[IntProg, ...], exclude: tuple[IntProg, ...], points: Iterable[int]
) -> list[tuple[int, bool]]:
    """Return :func:`iter_int_classes` as a list."""
    return list(iter_int_classes(include, exclude, points))


def int_difference(include: tuple[IntProg, ...], exclude: tuple[IntProg, ...]) -> bool:
    """Return whether some value of ``include`` may lie outside ``exclude`` (``True`` when unsure)."""
    covered = True
    for a, b, s in include:
        # both ends are values of the progression: one outside ``exclude`` answers at once
        a_in = b_in = False
        inside = False
        for c, d, t in exclude:
            if not a_in and c <= a <= d and (a - c) % t == 0:
                a_in = True
                # a, a+s, ... b all lie on c, c+t, ... d exactly when both ends do and t divides s
                if b == a or (b <= d and s % t == 0):
                    inside = True
                    break
            if not b_in and c <= b <= d and (b - c) % t == 0:
                b_in = True
        if not inside:
            if not (a_in and b_in):
                return True
            covered = False
    if covered:
        return False
    return next(iter(iter_int_classes(include, exclude, ())), None) is not None


def iter_int_classes(
    include: tuple[IntProg, ...],
    exclude: tuple[IntProg, ...],
    points: Iterable[int],
    admits: Callable[[int], bool] | None = None,
) -> Iterator[tuple[int, bool]]:
    """Return one representative per class of the values of ``include`` not in ``exclude``.

    Args:
        include: the allowed progressions.
        exclude: progressions of values to leave out.
        points: values where a condition may change its answer (a bound ``m``
            of ``>= m`` and ``m+1`` of ``<= m``; ``v`` and ``v+1`` of ``= v``).
        admits: when given, a test that gives one answer for every integer of
            a class (its points are among ``points``): only the classes it
            admits are yielded, and the others are never searched for a value.

    Returns:
        ``(value, exact)`` pairs, by increasing value. ``exact=False`` marks a
        stand-in for a class that may or may not hold a value (see
        :func:`find_int`): its value satisfies the same conditions as the class
        but is not necessarily allowed.
    """
    if not include:
        return
    if len(include) == 1:
        lo_all, hi_all = include[0][0], include[0][1]
    else:
        lo_all = min(p[0] for p in include)
        hi_all = max(p[1] for p in include)
    cuts: set[int] = set(points)
    for lo, hi, _ in include:
        cuts.add(lo)
        cuts.add(hi + 1)
    for lo, hi, _ in exclude:
        cuts.add(lo)
        cuts.add(hi + 1)
    ordered = sorted(cuts)
    # the elementary intervals [a, b] between the cuts inside (lo_all, hi_all]
    inner = ordered[bisect_right(ordered, lo_all) : bisect_right(ordered, hi_all)]
    inner.append(hi_all + 1)
    a = lo_all
    for cut in inner:
        b = cut - 1
        if admits is None or admits(a):
            if exclude:
                value, exact = find_int(a, b, include, exclude)
                if value is not None:
                    yield value, True
                elif not exact:
                    yield a, False
            else:
                # find_int() without exclusions: the first progression's first value in [a, b]
                for lo, hi, step in include:
                    top = b if b < hi else hi
                    if lo > top:
                        continue
                    start = lo if lo >= a else lo + (a - lo + step - 1) // step * step
                    if start <= top:
                        yield start, True
                        break
        a = cut
