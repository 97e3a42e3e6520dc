"""Bulk regions: device memory with a dirty bit per 4 KiB page.

A :class:`Region` owns a numpy ``uint8`` buffer (allocated zeroed by numpy, so
untouched pages cost no memory; several GiB are fine) and a numpy ``bool``
dirty bitmap with one entry per :data:`PAGE_SIZE` page. Nothing here ever
copies the whole buffer.

Ordering rule for concurrent writers (what makes pre-copy safe, DESIGN §4): a
writer stores the data *first* and marks the pages dirty *after*
(:meth:`Region.write` does both in that order); the sender clears the dirty
bits *first* and reads the memory *after* — for the record digest and for the
send, which in pre-copy goes straight from region memory (a ``LIVE`` record).
Then any write that the read may have missed, or torn, leaves its page dirty,
and the page is sent again; the destination discards the torn record.

The clear must be ordered before the read as an atomic exchange or a full
fence would order it. Here the clear is a store made while holding the
interpreter lock, and every way a write can come between it and the read
passes through a full barrier: another Python thread only runs after the lock
changed hands (a lock release and acquire), and the transport reads the memory
only after the sender released the lock for the system call. A memory that a
client can write without the interpreter — a BAR the vfio-user client maps —
is created with ``tracked=False`` and is never sent ``LIVE``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import numpy as np
import numpy.typing as npt

from devmig._errors import StreamError
from devmig.state._declaration import RegionLayout

__all__ = ["PAGE_SIZE", "Region", "RegionFill"]

PAGE_SIZE: Final = 4096
"""The dirty-tracking granularity, in bytes."""

RegionFill = Callable[[npt.NDArray[np.uint8]], None]
"""Writes a region's creation contents in place into the (zeroed) array it is given."""


class Region:
    """One bulk region: a byte buffer plus a per-page dirty bitmap.

    Args:
        name: the region's name (from the declaration).
        size: bytes.
        fill: writes the creation contents into the zeroed buffer; ``None``
            leaves it zero. Called at creation and by :meth:`reset`.
        tracked: ``False`` when something can write the memory without
            marking its pages dirty (a client's mapping): the pre-copy source
            then copies its pages before sending them, never ``LIVE``.

    Attributes:
        data: the contents (``numpy.ndarray`` of ``uint8``).
        dirty: one ``bool`` per page; ``True`` = written since last sent.
        writes: how many :meth:`write` calls.
        bytes_written: bytes stored by :meth:`write`.
        marks: how many :meth:`mark_dirty` calls (direct or from a write).
        resets: how many :meth:`reset` calls.
    """

    def __init__(
        self, name: str, size: int, *, fill: RegionFill | None = None, tracked: bool = True
    ) -> None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise StreamError(
                "LAYOUT_INVALID", f"region {name!r}: size must be a non-negative int", value=size
            )
        self.name = name
        self.size = size
        self.page_count = -(-size // PAGE_SIZE)
        self.data: npt.NDArray[np.uint8] = np.zeros(size, dtype=np.uint8)
        self.dirty: npt.NDArray[np.bool_] = np.zeros(self.page_count, dtype=np.bool_)
        self._view = self.data.data.cast("B")
        self._fill = fill
        self.tracked = tracked
        self.writes = 0
        self.bytes_written = 0
        self.marks = 0
        self.resets = 0
        if fill is not None:
            fill(self.data)

    @classmethod
    def for_layout(
        cls, layout: RegionLayout, *, fill: RegionFill | None = None, tracked: bool = True
    ) -> Region:
        """Create the region a :class:`RegionLayout` describes."""
        return cls(layout.name, layout.size, fill=fill, tracked=tracked)

    def __repr__(self) -> str:
        return f"Region({self.name!r}, size={self.size}, dirty_pages={self.dirty_pages})"

    @property
    def view(self) -> memoryview:
        """A writable byte ``memoryview`` of the whole buffer (no copy)."""
        return self._view

    @property
    def dirty_pages(self) -> int:
        """How many pages are dirty now."""
        return int(np.count_nonzero(self.dirty))

    def _check(self, offset: int, length: int) -> None:
        if offset < 0 or length < 0 or offset + length > self.size:
            raise StreamError(
                "BULK_OUT_OF_RANGE",
                f"region {self.name!r}: bytes [{offset}, {offset + length}) are outside its "
                f"{self.size} bytes",
                offset=offset,
                value=length,
                allowed={"min": 0, "max": self.size},
            )

    def read(self, offset: int, length: int) -> memoryview:
        """Return a view of ``length`` bytes at ``offset`` (no copy; it sees later writes)."""
        self._check(offset, length)
        return self._view[offset : offset + length]

    def write(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        """Store ``data`` at ``offset``, then mark its pages dirty.

        Raises:
            StreamError: ``BULK_OUT_OF_RANGE`` when it does not fit.
        """
        src = memoryview(data).cast("B")
        self._check(offset, len(src))
        self._view[offset : offset + len(src)] = src
        self.writes += 1
        self.bytes_written += len(src)
        self.mark_dirty(offset, len(src))

    def mark_dirty(self, offset: int, length: int) -> None:
        """Mark every page overlapping ``[offset, offset + length)`` dirty.

        Call it *after* changing the bytes (see the module's ordering rule).

        Raises:
            StreamError: ``BULK_OUT_OF_RANGE`` when the range is outside the region.
        """
        self._check(offset, length)
        self.marks += 1
        if length:
            self.dirty[offset // PAGE_SIZE : (offset + length - 1) // PAGE_SIZE + 1] = True

    def clear_dirty(self, first_page: int, count: int) -> None:
        """Clear the dirty bits of ``count`` pages from ``first_page``.

        Call it *before* reading the pages for a send (see the module's
        ordering rule: the clear is ordered before that read).
        """
        self.dirty[first_page : first_page + count] = False

    def reset(self) -> None:
        """Restore the creation contents (zeros, then ``fill``) and clear every dirty bit."""
        self.data.fill(0)
        if self._fill is not None:
            self._fill(self.data)
        self.dirty.fill(False)
        self.resets += 1
