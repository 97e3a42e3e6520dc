"""State declarations and layouts: maxima, conditions, region sizes, section validation."""

from __future__ import annotations

import numpy as np
import pytest
from state_helpers import DECL, FULL, FULL_OFF

from devmig import StreamError
from devmig.state import FieldSpec, RegionSpec, SectionSpec, StateDeclaration


def test_layout_resolves_maxima_sizes_and_active_sections():
    layout = DECL.layout(FULL)
    assert [s.name for s in layout.sections] == ["regs", "rss", "queues"]
    assert layout.section("rss").field("table").max == 8  # parameter name
    assert layout.section("queues").field("heads").max == 4  # callable
    assert layout.section("regs").field("name").max == 16  # constant
    assert layout.section("regs").field("head").max is None
    assert [(r.name, r.size, r.index) for r in layout.regions] == [
        ("mem", 5 * 4096 + 100, 0),
        ("ring", 16384, 1),
    ]
    assert layout.region_bytes == 5 * 4096 + 100 + 16384
    assert [s.position for s in layout.sections] == [0, 1, 2]
    off = DECL.layout(FULL_OFF)
    assert [s.name for s in off.sections] == ["regs", "queues"]
    assert off.inactive == frozenset({"rss"})


WHEN_CASES = [
    # when, config, active
    ({"rss": True}, {"rss": True}, True),
    ({"rss": True}, {"rss": False}, False),
    ({"rss": True}, {"rss": 1}, False),  # typed: 1 is not True
    ({"n": 1}, {"n": True}, False),
    ({"speed": "25G"}, {"speed": "25G"}, True),
    ({"a": 1, "b": "x"}, {"a": 1, "b": "y"}, False),
    (lambda c: c["n"] > 2, {"n": 3}, True),
    (lambda c: c["n"] > 2, {"n": 2}, False),
]


@pytest.mark.parametrize(("when", "config", "active"), WHEN_CASES)
def test_conditions(when, config, active):
    decl = StateDeclaration(sections=[SectionSpec("s", [FieldSpec("f", "u8")], when=when)])
    assert (decl.layout(config).section("s") is not None) is active


LAYOUT_ERRORS = [
    # declaration, config, number of problems
    (StateDeclaration(regions=[RegionSpec("r", "size")]), {}, 1),
    (StateDeclaration(regions=[RegionSpec("r", "size")]), {"size": True}, 1),  # bool is not an int
    (StateDeclaration(regions=[RegionSpec("r", "size")]), {"size": -1}, 1),
    (StateDeclaration(regions=[RegionSpec("r", lambda c: c["missing"])]), {}, 1),
    (StateDeclaration(regions=[RegionSpec("r", lambda c: "big")]), {}, 1),
    (
        StateDeclaration(
            sections=[
                SectionSpec("a", [FieldSpec("x", "bytes", max="m")], when={"p": True}),
                SectionSpec("b", [FieldSpec("x", "str", max="m")]),
            ],
            regions=[RegionSpec("r", "q")],
        ),
        {"m": 1},
        2,  # every problem, not just the first: a's condition and r's size
    ),
    (StateDeclaration(sections=[SectionSpec("s", [], when=lambda c: 1)]), {}, 1),
    (StateDeclaration(sections=[SectionSpec("s", [], when=lambda c: c["x"])]), {}, 1),
]


@pytest.mark.parametrize(("decl", "config", "count"), LAYOUT_ERRORS)
def test_layout_errors_collect_every_problem(decl, config, count):
    with pytest.raises(StreamError) as info:
        decl.layout(config)
    assert info.value.code == "LAYOUT_INVALID"
    assert len(info.value.problems) == count


def test_config_values_must_be_typed():
    with pytest.raises(StreamError) as info:
        DECL.layout({**FULL, "rss": 1.5})
    assert info.value.code == "CONFIG_INVALID"


DECLARATION_ERRORS = [
    lambda: FieldSpec("f", "u128"),
    lambda: FieldSpec("f", "bytes"),  # no maximum
    lambda: FieldSpec("f", "u8", max=3),  # fixed size takes no maximum
    lambda: FieldSpec("f", "str", max=-1),
    lambda: FieldSpec("f", "u8[]", max=True),
    lambda: FieldSpec("", "u8"),
    lambda: SectionSpec("s", [FieldSpec("a", "u8"), FieldSpec("a", "u16")]),
    lambda: SectionSpec("s", [], when={"p": 1.5}),
    lambda: StateDeclaration(sections=[SectionSpec("s", []), SectionSpec("s", [])]),
    lambda: StateDeclaration(regions=[RegionSpec("r", 1), RegionSpec("r", 2)]),
    lambda: RegionSpec("r", 1.5),
]


@pytest.mark.parametrize("build", DECLARATION_ERRORS)
def test_declaration_errors(build):
    with pytest.raises(StreamError) as info:
        build()
    assert info.value.code == "DECLARATION_INVALID"


LAYOUT = DECL.layout(FULL)
GOOD_REGS = {
    "ctrl": 1,
    "status": 2,
    "head": 3,
    "counter": 4,
    "delta": -5,
    "link": False,
    "name": "n",
    "mac": b"\x01",
}

INVALID_VALUES = [
    # field, bad value
    ("ctrl", 256),
    ("ctrl", -1),
    ("ctrl", True),
    ("ctrl", 1.0),
    ("status", 1 << 16),
    ("head", 1 << 32),
    ("counter", 1 << 64),
    ("delta", 1 << 63),
    ("delta", -(1 << 63) - 1),
    ("link", 1),
    ("link", "yes"),
    ("name", "x" * 17),
    ("name", "é" * 9),  # 18 UTF-8 bytes
    ("name", b"bytes"),
    ("mac", b"1234567"),
    ("mac", "str"),
    ("mac", [1, 2]),
]


@pytest.mark.parametrize(("field", "value"), INVALID_VALUES)
def test_section_invalid_names_the_field(field, value):
    with pytest.raises(StreamError) as info:
        LAYOUT.validate_section("regs", {**GOOD_REGS, field: value})
    err = info.value
    assert err.code == "SECTION_INVALID" and err.section == "regs"
    assert err.problems[0].loc == ("section", "regs", "field", field)


def test_section_invalid_collects_every_problem():
    bad = {**GOOD_REGS, "ctrl": 300, "link": 2, "unknown": 1}
    del bad["head"]
    with pytest.raises(StreamError) as info:
        LAYOUT.validate_section("regs", bad)
    fields = sorted(p.loc[3] for p in info.value.problems)
    assert fields == ["ctrl", "head", "link", "unknown"]


def test_array_validation_and_normalisation():
    values = LAYOUT.validate_section("rss", {"key": bytearray(b"k"), "table": (1, np.uint32(2), 3)})
    assert values == {"key": b"k", "table": [1, 2, 3]}
    assert type(values["table"][1]) is int
    assert LAYOUT.validate_section("rss", {"key": b"", "table": np.arange(3, dtype=np.uint32)})[
        "table"
    ] == [0, 1, 2]
    with pytest.raises(StreamError) as info:
        LAYOUT.validate_section("rss", {"key": b"", "table": [1, -1, 2, 1 << 40, "x"] + [0] * 5})
    locs = [p.loc for p in info.value.problems]
    assert ("section", "rss", "field", "table") in locs  # too long
    assert ("section", "rss", "field", "table", 1) in locs  # element out of range
    assert ("section", "rss", "field", "table", 4) in locs


def test_unknown_section():
    with pytest.raises(StreamError) as info:
        LAYOUT.validate_section("nope", {})
    assert info.value.code == "SECTION_UNKNOWN"


def test_section_size_bound_covers_the_largest_values():
    from devmig.state._records import encode_cbor

    layout = DECL.layout({**FULL, "rx-table-size": 64, "rx-queues": 16})
    biggest = {
        "regs": {
            **GOOD_REGS,
            "counter": (1 << 64) - 1,
            "delta": -(1 << 63),
            "name": "é" * 8,
            "mac": b"\xff" * 6,
        },
        "rss": {"key": b"\xff" * 40, "table": [(1 << 32) - 1] * 64},
        "queues": {"heads": [0xFFFF] * 16},
    }
    for spec in layout.sections:
        payload = encode_cbor(
            {"name": spec.name, "optional": spec.optional, "fields": biggest[spec.name]}
        )
        assert len(payload) <= spec.max_size
