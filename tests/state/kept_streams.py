"""The stream kept for every published major of the format (DESIGN §4, last paragraph).

``python tests/state/kept_streams.py`` writes ``streams/major-<N>.dvmg`` for the
current major from :func:`current_stream`; the file of every earlier major stays
as it was written by the release that had it. ``test_state_kept_streams`` reads
them all.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Final

import numpy as np

from devmig.state import (
    ROUND_END,
    VERSION_MAJOR,
    FieldSpec,
    PrecopySource,
    Region,
    RegionSpec,
    SectionSpec,
    StateDeclaration,
    StateLayout,
    StreamEncoder,
)

STREAMS: Final = Path(__file__).parent / "streams"
MODEL: Final = "example.org/devices/kept"
CONFIG: Final[dict[str, bool | int | str]] = {"pages": 3}
DECL: Final = StateDeclaration(
    sections=[
        SectionSpec("regs", [FieldSpec("ctrl", "u32"), FieldSpec("name", "str", max=16)]),
        SectionSpec("stats", [FieldSpec("hits", "u64")], optional=True),
    ],
    regions=[RegionSpec("mem", lambda c: 4096 * int(c["pages"]) + 100)],
)
SECTIONS: Final[dict[str, dict[str, Any]]] = {
    "regs": {"ctrl": 0xC0FFEE, "name": "kept"},
    "stats": {"hits": 42},
}


def layout() -> StateLayout:
    return DECL.layout(CONFIG)


def source_regions() -> list[Region]:
    """The source's memory: a pattern, the second page zero."""
    regions = [Region.for_layout(r) for r in layout().regions]
    data = regions[0].data
    data[:] = (np.arange(data.size, dtype=np.uint32) * 2654435761 >> 13).astype(np.uint8)
    data[4096:8192] = 0
    return regions


def current_stream() -> tuple[bytes, list[Region]]:
    """One pre-copy round, a write during it, stop-copy, sections, trailer; and the source."""
    regions = source_regions()
    encoder = StreamEncoder(MODEL, CONFIG, layout(), {"implementation": "kept"}, chunk_size=4096)
    out = [encoder.header()]
    source = PrecopySource(regions, encoder)
    while (records := source.next_records(4096 + 64)) is not ROUND_END:
        assert isinstance(records, list)
        out += [bytes(b) for b in records]
    regions[0].write(10, b"written while pre-copy ran")
    while records := source.next_records(1 << 16, stopped=True):
        assert isinstance(records, list)
        out += [bytes(b) for b in records]
    out.append(source.finish(SECTIONS))
    return b"".join(out), regions


def path(major: int) -> Path:
    return STREAMS / f"major-{major}.dvmg"


if __name__ == "__main__":
    data, _ = current_stream()
    path(VERSION_MAJOR).write_bytes(data)
    print(f"wrote {path(VERSION_MAJOR)} ({len(data)} bytes)", file=sys.stderr)
