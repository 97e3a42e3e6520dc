"""Regions: buffer, dirty pages, reset, counters; large regions are lazily backed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from devmig import StreamError
from devmig.state import PAGE_SIZE, Region

DIRTY_CASES = [
    # offset, length, dirty pages
    (0, 1, [0]),
    (4095, 2, [0, 1]),
    (4096, 4096, [1]),
    (100, 3 * 4096, [0, 1, 2, 3]),
    (5 * 4096, 10, [5]),
    (0, 0, []),
]


@pytest.mark.parametrize(("offset", "length", "pages"), DIRTY_CASES)
def test_mark_dirty_pages(offset, length, pages):
    region = Region("r", 5 * 4096 + 10)
    region.mark_dirty(offset, length)
    assert np.flatnonzero(region.dirty).tolist() == pages
    assert region.dirty_pages == len(pages)


def test_write_stores_then_marks_and_counts():
    region = Region("r", 3 * 4096)
    region.write(4090, b"abcdefghij")
    assert region.data[4090:4100].tobytes() == b"abcdefghij"
    assert region.read(4090, 10).tobytes() == b"abcdefghij"
    assert np.flatnonzero(region.dirty).tolist() == [0, 1]
    assert (region.writes, region.bytes_written, region.marks) == (1, 10, 1)
    region.clear_dirty(0, 1)
    assert np.flatnonzero(region.dirty).tolist() == [1]


@pytest.mark.parametrize(("offset", "length"), [(-1, 1), (0, 3 * 4096 + 1), (3 * 4096, 1)])
def test_out_of_range(offset, length):
    region = Region("r", 3 * 4096)
    with pytest.raises(StreamError) as info:
        region.mark_dirty(offset, length)
    assert info.value.code == "BULK_OUT_OF_RANGE"
    with pytest.raises(StreamError):
        region.write(offset, b"x" * max(length, 0))


def test_reset_restores_creation_contents():
    def fill(data):
        data[:] = np.arange(data.size, dtype=np.uint64).astype(np.uint8)

    region = Region("r", 2 * 4096 + 3, fill=fill)
    created = region.data.tobytes()
    region.write(0, b"\xff" * 5000)
    region.reset()
    assert region.data.tobytes() == created
    assert not region.dirty.any() and region.resets == 1
    zero = Region("z", 100)
    zero.write(10, b"x")
    zero.reset()
    assert not zero.data.any()


def test_view_is_the_buffer_without_copy():
    region = Region("r", 8192)
    view = region.view
    view[5] = 7
    assert region.data[5] == 7 and view.obj is region.data and not view.readonly


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")
def test_several_gib_region_costs_only_what_is_touched():
    before = _rss_kib()
    region = Region("big", 4 << 30)
    region.write((4 << 30) - 10, b"end")
    region.mark_dirty(1 << 30, 1)
    assert region.page_count == (4 << 30) // PAGE_SIZE
    assert _rss_kib() - before < 64 * 1024  # dirty bitmap (1 MiB) plus a page or two
    del region
