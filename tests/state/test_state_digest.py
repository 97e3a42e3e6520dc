"""The state digest: what it covers and what it ignores."""

from __future__ import annotations

import pytest
from state_helpers import (
    CANON,
    DECL,
    DECL_WITH_STATS,
    FULL,
    blank_regions,
    decode_all,
    decoder_for,
    encode_stream,
    make_regions,
    sections_for,
)

from devmig import StreamError
from devmig.state import state_digest


def test_digest_is_16_bytes_and_deterministic():
    layout = DECL.layout(FULL)
    regions = make_regions(layout, seed=1)
    sections = sections_for(layout)
    d = state_digest(layout, sections, regions)
    assert len(d) == 16
    assert d == state_digest(layout, sections, [r.data.tobytes() for r in regions])
    assert d == state_digest(layout, {k: dict(v) for k, v in reversed(sections.items())}, regions)


def test_digest_covers_every_region_byte_and_every_required_field():
    layout = DECL.layout(FULL)
    regions = make_regions(layout, seed=1)
    sections = sections_for(layout)
    base = state_digest(layout, sections, regions)
    regions[1].write(regions[1].size - 1, bytes([regions[1].data[-1] ^ 1]))
    assert state_digest(layout, sections, regions) != base
    regions[1].write(regions[1].size - 1, bytes([regions[1].data[-1] ^ 1]))
    assert state_digest(layout, sections, regions) == base
    changed = {**sections, "rss": {**sections["rss"], "table": [9] * 8}}
    assert state_digest(layout, changed, regions) != base


def test_digest_ignores_optional_sections():
    layout = DECL_WITH_STATS.layout(FULL)
    regions = make_regions(layout, seed=1)
    with_stats = sections_for(layout, stats=True)
    without = sections_for(layout)
    assert state_digest(layout, with_stats, regions) == state_digest(layout, without, regions)
    assert state_digest(layout, without, regions) == state_digest(
        DECL.layout(FULL), without, regions
    )


def test_digest_independent_of_rounds_and_compression():
    layout = DECL.layout(FULL)
    digests = {}
    for compress, rounds in ((False, 0), (True, 0), (False, 3), (True, 2)):
        src = make_regions(layout, seed=2)
        data = encode_stream(
            layout, src, sections_for(layout), compress=compress, rounds=rounds, seed=9
        )
        dst = blank_regions(layout)
        decoder = decoder_for(layout, dst, config=CANON)
        decode_all(decoder, data)
        got = state_digest(layout, decoder.staged_sections(), dst)
        assert got == state_digest(layout, sections_for(layout), src)
        digests[compress, rounds] = got
    # Same state, different encodings: same digest.
    assert digests[False, 0] == digests[True, 0]


@pytest.mark.parametrize(
    ("sections", "code"),
    [
        ({"regs": sections_for(DECL.layout(FULL))["regs"]}, "SECTION_MISSING"),
        ({"regs": {}}, "SECTION_INVALID"),
        ({"nope": {}}, "SECTION_UNKNOWN"),
    ],
)
def test_digest_refusals(sections, code):
    layout = DECL.layout(FULL)
    with pytest.raises(StreamError) as info:
        state_digest(layout, sections, make_regions(layout))
    assert info.value.code == code


def test_digest_refuses_wrong_regions():
    layout = DECL.layout(FULL)
    with pytest.raises(StreamError) as info:
        state_digest(layout, sections_for(layout), [b"abc"])
    assert info.value.code == "LAYOUT_INVALID"
