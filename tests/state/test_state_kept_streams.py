"""A stream of every published major of the format, kept (DESIGN §4, last paragraph).

Until devmig's first tagged release the format may change in place, and it did:
major 2 (the framing trailer, ``LIVE``) replaced major 1, which no reader reads
any more. The major-1 stream is kept as its encoder wrote it and must be
refused cleanly; the major-2 stream must load, and must be exactly what the
encoder writes today (a change of the bytes is a change of the format: bump
the major, or regenerate the file with ``python tests/state/kept_streams.py``
while the format may still change in place).
"""

from __future__ import annotations

import pytest
from kept_streams import CONFIG, MODEL, SECTIONS, current_stream, layout, path
from state_helpers import decode, decoder_for

from devmig import StreamError
from devmig.state import (
    VERSION_MAJOR,
    Bulk,
    Discarded,
    Region,
    Trailer,
    inspect_stream,
    state_digest,
)

PUBLISHED = (1, 2)
"""Every major published so far; the last one is the one this release writes."""
REFUSED = {1: "major 1 was replaced in place before the first tagged release"}
"""Majors this release no longer reads, and why."""


def _created() -> list[Region]:
    return [Region.for_layout(r, fill=lambda a: a.fill(0x5A)) for r in layout().regions]


def test_a_stream_is_kept_for_every_published_major():
    assert PUBLISHED[-1] == VERSION_MAJOR
    for major in PUBLISHED:
        data = path(major).read_bytes()
        assert data[:4] == b"DVMG" and int.from_bytes(data[4:6], "big") == major


@pytest.mark.parametrize("zero_copy", [False, True], ids=["receive_data", "get_buffer"])
@pytest.mark.parametrize("major", sorted(REFUSED))
def test_refused_major_is_answered_version_unsupported(major, zero_copy):
    dst = _created()
    decoder = decoder_for(layout(), dst, config=CONFIG, model=MODEL)
    with pytest.raises(StreamError) as info:
        decode(decoder, path(major).read_bytes(), zero_copy=zero_copy)
    err = info.value
    assert err.code == "VERSION_UNSUPPORTED"
    assert err.problems[0].value == major and err.problems[0].allowed == VERSION_MAJOR
    assert f"reads major {VERSION_MAJOR}" in str(err)
    decoder.abort()
    assert all(bytes(r.view) == b"\x5a" * r.size for r in dst)  # as created
    with pytest.raises(StreamError) as info:
        inspect_stream(path(major).read_bytes())
    assert info.value.code == "VERSION_UNSUPPORTED"


@pytest.mark.parametrize("zero_copy", [False, True], ids=["receive_data", "get_buffer"])
def test_current_major_loads_with_the_source_digest(zero_copy):
    kept = path(VERSION_MAJOR).read_bytes()
    fresh, source = current_stream()
    assert kept == fresh, "the encoder's bytes changed: a format change (see the module doc)"
    dst = _created()
    decoder = decoder_for(layout(), dst, config=CONFIG, model=MODEL)
    events = decode(decoder, kept, zero_copy=zero_copy)
    assert isinstance(events[-1], Trailer) and decoder.done
    assert any(isinstance(e, Bulk) and e.live for e in events)  # pre-copy records are LIVE
    assert not any(isinstance(e, Discarded) for e in events)
    assert state_digest(layout(), decoder.staged_sections(), dst) == state_digest(
        layout(), SECTIONS, source
    )
    summary = inspect_stream(kept)
    assert summary.digest_ok is True and summary.major == VERSION_MAJOR
