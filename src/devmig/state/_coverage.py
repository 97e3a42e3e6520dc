"""Which bytes of a region a stream has covered so far.

:class:`PageCoverage` keeps one ``bool`` per 4 KiB page for whole pages and a
short sorted interval list only for pages covered partially, so a record costs
O(1) numpy slice work plus at most two small list merges, whatever its size.
Coverage can also shrink: a LIVE record discarded by the destination removes
its range, even where earlier records had covered it (DESIGN §4).
:class:`IntervalSet` merges arbitrary intervals (used where region sizes are not
known, e.g. when inspecting a saved stream).
"""

from __future__ import annotations

import bisect

import numpy as np
import numpy.typing as npt

from devmig.state._region import PAGE_SIZE

__all__ = ["IntervalSet", "PageCoverage"]


class IntervalSet:
    """A set of byte offsets kept as sorted, disjoint, non-adjacent ``[start, end)`` intervals."""

    def __init__(self) -> None:
        self._starts: list[int] = []
        self._ends: list[int] = []

    def add(self, start: int, end: int) -> None:
        """Add ``[start, end)``, merging with overlapping or adjacent intervals."""
        if end <= start:
            return
        i = bisect.bisect_left(self._ends, start)  # first interval that ends at/after start
        j = bisect.bisect_right(self._starts, end)  # first interval that starts after end
        if i < j:
            start = min(start, self._starts[i])
            end = max(end, self._ends[j - 1])
        self._starts[i:j] = [start]
        self._ends[i:j] = [end]

    def remove(self, start: int, end: int) -> None:
        """Remove ``[start, end)``, cutting the intervals that overlap it."""
        if end <= start:
            return
        i = bisect.bisect_right(self._ends, start)  # first interval that ends after start
        j = bisect.bisect_left(self._starts, end)  # first interval that starts at/after end
        if i >= j:
            return
        starts: list[int] = []
        ends: list[int] = []
        if self._starts[i] < start:
            starts.append(self._starts[i])
            ends.append(start)
        if self._ends[j - 1] > end:
            starts.append(end)
            ends.append(self._ends[j - 1])
        self._starts[i:j] = starts
        self._ends[i:j] = ends

    def intervals(self) -> list[tuple[int, int]]:
        """Return the intervals, sorted."""
        return list(zip(self._starts, self._ends, strict=True))

    def total(self) -> int:
        """Return how many offsets are in the set."""
        return sum(e - s for s, e in zip(self._starts, self._ends, strict=True))

    def first_gap(self, start: int, end: int) -> int | None:
        """Return the first offset of ``[start, end)`` not in the set, or ``None``."""
        pos = start
        i = bisect.bisect_right(self._starts, pos) - 1
        if i >= 0 and self._ends[i] > pos:
            pos = self._ends[i]
        return pos if pos < end else None

    def __len__(self) -> int:
        return len(self._starts)


class PageCoverage:
    """Coverage of one region of ``size`` bytes: a page bitmap plus partial pages.

    Attributes:
        covered_bytes_hint: bytes added so far, counting overlaps (a statistic).
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.page_count = -(-size // PAGE_SIZE)
        self._full: npt.NDArray[np.bool_] = np.zeros(self.page_count, dtype=np.bool_)
        self._partial: dict[int, IntervalSet] = {}
        self.covered_bytes_hint = 0

    def _page_end(self, page: int) -> int:
        return min((page + 1) * PAGE_SIZE, self.size)

    def add(self, offset: int, length: int) -> None:
        """Record that ``[offset, offset + length)`` (inside the region) was written."""
        end = offset + length
        self.covered_bytes_hint += length
        if not offset % PAGE_SIZE and (not end % PAGE_SIZE or end == self.size):
            self._full[offset // PAGE_SIZE : -(-end // PAGE_SIZE)] = True  # whole pages: fast path
            return
        pos = offset
        while pos < end:
            page = pos // PAGE_SIZE
            start = page * PAGE_SIZE
            if pos == start and end >= self._page_end(page):
                last = self.page_count if end >= self.size else end // PAGE_SIZE
                self._full[page:last] = True
                pos = min(last * PAGE_SIZE, self.size)
                continue
            stop = min(end, self._page_end(page))
            if not self._full[page]:
                part = self._partial.setdefault(page, IntervalSet())
                part.add(pos, stop)
                if part.first_gap(start, self._page_end(page)) is None:
                    self._full[page] = True
                    del self._partial[page]
            pos = stop

    def remove(self, offset: int, length: int) -> None:
        """Forget that ``[offset, offset + length)`` (inside the region) was covered."""
        end = offset + length
        pos = offset
        while pos < end:
            page = pos // PAGE_SIZE
            start = page * PAGE_SIZE
            page_end = self._page_end(page)
            if pos == start and end >= page_end:
                last = self.page_count if end >= self.size else end // PAGE_SIZE
                self._full[page:last] = False
                if self._partial:
                    for gone in [p for p in self._partial if page <= p < last]:
                        del self._partial[gone]
                pos = min(last * PAGE_SIZE, self.size)
                continue
            stop = min(end, page_end)
            part = self._partial.get(page)
            if self._full[page]:
                self._full[page] = False
                part = self._partial[page] = IntervalSet()
                part.add(start, page_end)
            if part is not None:
                part.remove(pos, stop)
                if not len(part):
                    del self._partial[page]
            pos = stop

    def first_gap(self) -> int | None:
        """Return the first offset not covered yet, or ``None`` when all is covered."""
        if self.page_count == 0:
            return None
        page = int(np.argmin(self._full))
        if self._full[page]:
            return None
        part = self._partial.get(page)
        start = page * PAGE_SIZE
        if part is None:
            return start
        return part.first_gap(start, self._page_end(page))

    def complete(self) -> bool:
        """Return whether every byte is covered."""
        return bool(self._full.all())

    def reset(self) -> None:
        """Forget everything covered."""
        self._full.fill(False)
        self._partial.clear()
        self.covered_bytes_hint = 0
