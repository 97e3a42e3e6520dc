"""The pre-copy source: turns live regions into BULK/ZERO records, round after round.

Theory of operation. Round 0 is one full pass over every region, chunk by
chunk. Each later round sends the pages dirtied since they were last sent,
coalescing runs of dirty pages into chunks of at most ``chunk_size``. A round
ends when its scan reaches the end of the last region; pages dirtied behind
the scan are left to the next round. :meth:`PrecopySource.next_records`
returns the records that fit in ``max_bytes``; when a round's data runs out it
appends a ROUND_END record, and the *next* call returns the :data:`ROUND_END`
sentinel (the kernel's ``ENOMSG``: no data for now).

Every chunk goes straight from region memory, in every phase (DESIGN §4).
While the device runs (PRE_COPY) the chunk's dirty bits are cleared first,
then its memory is checked for zeros, digested and handed out as a ``LIVE``
BULK record whose data *is* the region's memory. A write racing with the
digest or the send leaves its page dirty (writers mark dirty *after*
storing), so the page is sent again; a record the write tore arrives with a
wrong digest and the destination discards it, removing its range from the
coverage until the re-send covers it again. Once the device is stopped
(STOP_COPY) nothing changes any more and chunks go out unflagged: the rest of
the first pass, then every dirty page.

A LIVE record spans many pages, and the destination discards its *whole*
range when a write tore it, while only the written pages are dirty. So the
source remembers, per page, the LIVE record that last carried it; before a
dirty page is sent again, every page of that record is marked dirty too (the
record may have been torn, and all of its range must come again). At the
switch to STOP_COPY this is done for every dirty page at once, before the
one complete scan. After that,
:meth:`PrecopySource.finish` adds the sections and the trailer. A region
created with ``tracked=False`` (writable without marking pages dirty) is
never sent ``LIVE``: in PRE_COPY its chunks are copied first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from devmig._errors import StreamError
from devmig.state._encoder import Buffer, StreamEncoder
from devmig.state._events import ROUND_END, RoundEndSignal
from devmig.state._records import (
    BULK_HEAD,
    RECORD_OVERHEAD,
    ROUND_END_PAYLOAD,
    TRAILER_PAYLOAD_SIZE,
)
from devmig.state._region import PAGE_SIZE, Region

__all__ = ["PrecopySource"]

_BULK_OVERHEAD = RECORD_OVERHEAD + BULK_HEAD.size  # 31 bytes around each chunk


class PrecopySource:
    """Produce a device's bulk records for PRE_COPY rounds and STOP_COPY.

    Args:
        regions: the device's live regions, in layout order.
        encoder: the stream's encoder; its HEADER must already be encoded.
        chunk_size: the largest chunk (a multiple of 4096); default: the
            encoder's chunk size rounded down to whole pages.
        detect_zero: send an all-zero chunk as a ZERO record.

    Attributes:
        rounds: ROUND_END records emitted.
        chunks: BULK records emitted; zero_chunks: ZERO records emitted.
        copied_bytes: bytes copied into send buffers (PRE_COPY, untracked regions only).

    Raises:
        StreamError: ``LAYOUT_INVALID`` when the regions do not match the
            encoder's layout or ``chunk_size`` is not a positive multiple of 4096.
    """

    def __init__(
        self,
        regions: Sequence[Region],
        encoder: StreamEncoder,
        *,
        chunk_size: int | None = None,
        detect_zero: bool = True,
    ) -> None:
        layout = encoder.layout.regions
        if len(regions) != len(layout) or any(
            r.size != spec.size for r, spec in zip(regions, layout, strict=False)
        ):
            raise StreamError(
                "LAYOUT_INVALID",
                "regions do not match the layout",
                value=[r.size for r in regions],
                allowed=[s.size for s in layout],
            )
        chunk = (
            chunk_size if chunk_size is not None else encoder.chunk_size // PAGE_SIZE * PAGE_SIZE
        )
        if chunk <= 0 or chunk % PAGE_SIZE or chunk > encoder.chunk_size:
            raise StreamError(
                "LAYOUT_INVALID",
                "chunk_size must be a positive multiple of 4096, at most the encoder's",
                value=chunk,
            )
        self.regions = tuple(regions)
        self.encoder = encoder
        self.chunk_size = chunk
        self.detect_zero = detect_zero
        self._first = [0] * len(self.regions)  # first-pass cursor (bytes) per region
        self._scan_region = 0
        self._scan_page = 0
        self._stopped = False
        self._round_records = 0
        self._round_end_due = False  # the round ran dry; ROUND_END record not emitted yet
        self._signal_due = False  # ROUND_END record emitted; next call returns ROUND_END
        self.rounds = 0
        self.chunks = 0
        self.zero_chunks = 0
        self.copied_bytes = 0
        self.expanded_pages = 0
        """Pages marked dirty because a LIVE record that carried them may have been torn."""
        # per page: the first page of the LIVE record that last carried it (-1: none); per
        # record's first page: one past its last page
        self._live_first = [np.full(r.page_count, -1, dtype=np.int64) for r in self.regions]
        self._live_end = [np.zeros(r.page_count, dtype=np.int64) for r in self.regions]
        self._live_round = [np.zeros(r.page_count, dtype=np.int64) for r in self.regions]

    # -- sizes --------------------------------------------------------------

    @property
    def initial_bytes(self) -> int:
        """Bytes the first pass has not sent yet."""
        return sum(r.size - f for r, f in zip(self.regions, self._first, strict=True))

    @property
    def dirty_bytes(self) -> int:
        """Dirty pages already passed by the first pass (so still to re-send), times 4096."""
        pages = 0
        for r, f in zip(self.regions, self._first, strict=True):
            pages += int(np.count_nonzero(r.dirty[: -(-f // PAGE_SIZE)]))
        return pages * PAGE_SIZE

    def stop_copy_size(self) -> int:
        """Estimate the bytes STOP_COPY will still produce (bulk, framing, sections, trailer)."""
        bulk = self.initial_bytes + self.dirty_bytes
        chunks = -(-bulk // self.chunk_size) + len(self.regions)
        sections = sum(s.max_size + RECORD_OVERHEAD for s in self.encoder.layout.sections)
        return bulk + chunks * _BULK_OVERHEAD + sections + TRAILER_PAYLOAD_SIZE + RECORD_OVERHEAD

    @property
    def stopped(self) -> bool:
        """Whether STOP_COPY began (chunks are then sent without a copy)."""
        return self._stopped

    # -- records ------------------------------------------------------------

    def next_records(
        self, max_bytes: int, *, stopped: bool = False
    ) -> list[Buffer] | RoundEndSignal:
        """Return the next records to send, about ``max_bytes`` of them.

        Args:
            max_bytes: a target for the total size; at least one record is
                returned when there is data, even if it is larger.
            stopped: ``False`` in PRE_COPY (the device runs), ``True`` in
                STOP_COPY (the device is stopped). Once ``True``, always ``True``.

        Returns:
            A list of buffers (record heads, data, digests; hand them to
            ``writelines``). In PRE_COPY, :data:`ROUND_END` when the round has
            no more data; the ROUND_END record itself ended the previous list.
            In STOP_COPY, ``[]`` once every byte was sent: then call
            :meth:`finish`.

        Raises:
            StreamError: ``STREAM_ORDER`` when ``stopped`` goes back to ``False``
                or the encoder is not in its bulk phase.
        """
        if self._stopped and not stopped:
            raise StreamError("STREAM_ORDER", "cannot return to PRE_COPY after STOP_COPY")
        if stopped and not self._stopped:
            self._stopped = True
            for index in range(len(self.regions)):  # before the one complete scan
                self._expand(index, 0, self.regions[index].page_count)
            self._scan_region = self._scan_page = 0  # one complete scan of every dirty page
            self._round_end_due = self._signal_due = False
        if not stopped:
            if self._signal_due:
                self._signal_due = False
                self._start_round()
                return ROUND_END
            if self._round_end_due:
                self._round_end_due = False
                self._signal_due = True
                return [self._round_end()]
        out: list[Buffer] = []
        budget = max_bytes
        exhausted = False
        while not out or budget >= _BULK_OVERHEAD + PAGE_SIZE:
            produced = self._next_chunk(budget, stopped)
            if produced is None:
                exhausted = True
                break
            records, size = produced
            out += records
            budget -= size
        if not exhausted or stopped:
            return out
        if not out and self._round_records == 0:
            self._start_round()  # nothing at all this round: no ROUND_END record
            return ROUND_END
        record_size = RECORD_OVERHEAD + ROUND_END_PAYLOAD.size
        if not out or budget >= record_size:
            out.append(self._round_end())
            self._signal_due = True
        else:
            self._round_end_due = True
        return out

    def finish(self, sections: Mapping[str, Mapping[str, Any]]) -> bytes:
        """Return the SECTION records and the TRAILER that end the stream (after STOP_COPY).

        Raises:
            StreamError: ``STREAM_ORDER`` before every bulk byte was sent; what
                :meth:`StreamEncoder.sections` and :meth:`StreamEncoder.trailer` raise.
        """
        if not self._stopped or self.initial_bytes or self.dirty_bytes:
            raise StreamError(
                "STREAM_ORDER",
                "finish() needs STOP_COPY with every bulk byte sent",
                value={"initial_bytes": self.initial_bytes, "dirty_bytes": self.dirty_bytes},
            )
        return self.encoder.sections(sections) + self.encoder.trailer()

    # -- internals ----------------------------------------------------------

    def _round_end(self) -> bytes:
        self.rounds += 1
        return self.encoder.round_end()

    def _start_round(self) -> None:
        self._scan_region = self._scan_page = 0
        self._round_records = 0

    def _next_chunk(self, budget: int, stopped: bool) -> tuple[list[Buffer], int] | None:
        room = max(1, (budget - _BULK_OVERHEAD) // PAGE_SIZE) * PAGE_SIZE
        limit = min(self.chunk_size, room)
        for index, region in enumerate(self.regions):
            done = self._first[index]
            if done < region.size:
                length = min(limit, region.size - done)
                self._first[index] = done + length
                return self._emit(index, done, length, stopped)
        if not stopped and self.encoder.round == 0:
            return None  # the first pass is round 0
        while self._scan_region < len(self.regions):
            index = self._scan_region
            region = self.regions[index]
            sent_pages = -(-self._first[index] // PAGE_SIZE)
            page = self._scan_page
            window = region.dirty[page:sent_pages]
            hit = int(np.argmax(window)) if window.size else 0
            if window.size == 0 or not window[hit]:
                self._scan_region += 1
                self._scan_page = 0
                continue
            first = page + hit
            if not stopped:  # a LIVE record carried this page: all of it comes again
                back = self._expand(index, first, first + 1)
                if back is not None and back < first:
                    self._scan_page = back  # from its start, in one run
                    continue
            span = region.dirty[first : min(first + limit // PAGE_SIZE, sent_pages)]
            run = int(np.argmin(span)) if not span.all() else span.size
            self._scan_page = first + run
            offset = first * PAGE_SIZE
            length = min(run * PAGE_SIZE, region.size - offset)
            return self._emit(index, offset, length, stopped)
        return None

    def _emit(
        self, index: int, offset: int, length: int, stopped: bool
    ) -> tuple[list[Buffer], int]:
        region = self.regions[index]
        first_page = offset // PAGE_SIZE
        last_page = -(-(offset + length) // PAGE_SIZE)
        if not stopped:  # (STOP_COPY expanded every dirty page before its scan)
            back = self._expand(index, first_page, last_page)
            if back is not None and index == self._scan_region and back < self._scan_page:
                self._scan_page = back  # this round sends the rest of that record too
        region.clear_dirty(first_page, last_page - first_page)  # 1. clear
        data: Buffer = region.view[offset : offset + length]  # 2. read: zero-copy
        live = not stopped
        if live and not region.tracked:
            data = bytes(data)  # writes we cannot see: send a private copy, unflagged
            self.copied_bytes += length
            live = False
        self._round_records += 1
        if self.detect_zero and _all_zero(data):
            self.zero_chunks += 1
            if not stopped:
                self._live_first[index][first_page:last_page] = -1
            record = self.encoder.zero(index, offset, length)
            return [record], len(record)
        self.chunks += 1
        live_before = self.encoder.live_records
        records = self.encoder.bulk(index, offset, data, live=live)
        if stopped:
            pass  # nothing is torn any more (and nothing expanded during the one complete scan)
        elif self.encoder.live_records != live_before:  # sent raw from live memory: tearable
            self._live_first[index][first_page:last_page] = first_page
            self._live_end[index][first_page] = last_page
            self._live_round[index][first_page] = self.encoder.round
        else:
            self._live_first[index][first_page:last_page] = -1
        return records, sum(map(len, records))

    def _expand(self, index: int, first_page: int, last_page: int) -> int | None:
        """Mark dirty every page of the LIVE records that carried a dirty page of the span.

        Returns the first page of the earliest such record sent in an earlier
        round (the scan goes back there, so that this round sends all of it;
        a record of this round waits for the next, which bounds the rescans).
        """
        region = self.regions[index]
        dirty = region.dirty[first_page:last_page]
        back: int | None = None
        if not dirty.any():
            return back
        live_first = self._live_first[index]
        firsts = live_first[first_page:last_page][dirty]
        for start in np.unique(firsts[firsts >= 0]).tolist():
            end = int(self._live_end[index][start])
            span = region.dirty[start:end]
            self.expanded_pages += int(span.size - np.count_nonzero(span))
            span[:] = True
            carried = live_first[start:end]
            carried[carried == start] = -1  # every page of it comes again: no longer at risk
            if self._live_round[index][start] < self.encoder.round and (
                back is None or start < back
            ):
                back = start
        return back


def _all_zero(data: Buffer) -> bool:
    if not len(data):
        return True
    view = memoryview(data)
    if view[0] or view[-1]:
        return False
    return bool(np.frombuffer(view, dtype=np.uint8).max() == 0)
