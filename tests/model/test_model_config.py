"""Expansion order, the canonical form, versions and the wire form (DESIGN §2, §7)."""

from __future__ import annotations

from typing import Any

import pytest
from model_fixtures import NIC_ID, load_model, nic, nic_doc, problems

from devmig import ConfigError
from devmig.model import (
    Config,
    Constraint,
    DeviceModel,
    InSet,
    Range,
    check_full,
    condition_holds,
    constraint_problems,
    expand,
    load_document,
    parse_canonical,
    version_of,
)

# Every parameter has distinct off, init and version values, so the layer a
# value came from is visible: off < version < init < explicit.
LAYERED: dict[str, Any] = {
    "model": "example.org/layers",
    "params": {
        "a": {"type": "int", "allowed": [{"min": 0, "max": 9}], "off": 0, "init": 2},
        "b": {"type": "str", "allowed": ["off", "v", "init", "x"], "off": "off", "init": "init"},
        "c": {"type": "bool", "off": False, "init": True},
        "d": {"type": "int", "allowed": [{"min": -5, "max": 5}], "off": -1, "init": -1},
    },
    "versions": [
        {"name": "old", "params": {}},
        {"name": "v", "params": {"a": 1, "b": "v"}},
        {"name": "v-again", "params": {"a": 1, "b": "v", "c": False}},  # same as v
        {"name": "newest", "params": {"a": 3, "c": True, "d": 4}},
        {"name": "off-again", "params": {"d": -1}},  # same as old
    ],
}


def layered() -> DeviceModel:
    return load_model(LAYERED, "layers")


@pytest.mark.parametrize(
    ("text", "full"),
    [
        # no version: off values, then init values
        ("", {"a": 2, "b": "init", "c": True, "d": -1}),
        # a version: off values, then the version (init values are NOT applied)
        ("version=v", {"a": 1, "b": "v", "c": False, "d": -1}),
        ("version=old", {"a": 0, "b": "off", "c": False, "d": -1}),
        ("version=newest", {"a": 3, "b": "off", "c": True, "d": 4}),
        # explicit values last, over either
        ("version=v,b=x", {"a": 1, "b": "x", "c": False, "d": -1}),
        ("b=x,version=v", {"a": 1, "b": "x", "c": False, "d": -1}),  # order of items is irrelevant
        ("a=0", {"a": 0, "b": "init", "c": True, "d": -1}),
        ("version=newest,a=0,c=off,d=-1", {"a": 0, "b": "off", "c": False, "d": -1}),
    ],
)
def test_expansion_order(text: str, full: dict[str, Any]) -> None:
    model = layered()
    config = expand(model, text)
    assert config.full(model) == full
    assert all(type(config.full(model)[k]) is type(v) for k, v in full.items())
    # canonical: off values dropped, sorted by name
    off = {"a": 0, "b": "off", "c": False, "d": -1}
    expected = tuple(sorted((k, v) for k, v in full.items() if v != off[k]))
    assert config.items == expected
    assert config.values == dict(expected)
    assert config.model == "example.org/layers"


@pytest.mark.parametrize(
    ("text", "string"),
    [
        ("", "a=2,b=init,c=on"),
        ("version=v", "a=1,b=v"),
        ("version=old", ""),
        ("version=newest", "a=3,c=on,d=4"),
        ("c=off,a=0,b=off", ""),
    ],
)
def test_config_string(text: str, string: str) -> None:
    config = expand(layered(), text)
    assert config.string == string
    assert str(config) == string
    assert list(config) == list(config.items)


def test_config_string_escapes_commas_and_renders_booleans() -> None:
    model = load_model(
        {
            "model": "m",
            "params": {
                "s": {
                    "type": "str",
                    "allowed": ["", "a,b", ",", "plain"],
                    "off": "",
                    "init": "a,b",
                },
                "t": {"type": "bool", "off": True, "init": False},
            },
        }
    )
    config = expand(model, "")
    assert config.string == "s=a,,b,t=off"
    assert expand(model, "s=,,").string == "s=,,,t=off"
    assert parse_canonical(model, config.string) == config
    assert parse_canonical(model, "s=,,,t=off") == expand(model, "s=,,")


def test_design_examples() -> None:
    model = nic()
    config = expand(model, "version=2,rx-table-size=48")
    assert config.string == "rss=on,rx-queues=4,rx-table-size=48"
    assert version_of(model, config) is None
    assert version_of(model, expand(model, "version=2")) == "2"
    assert expand(model, "version=2").string == "rss=on,rx-queues=4,rx-table-size=32"
    # the init configuration is what version 3 names
    assert version_of(model, expand(model, "")) == "3"
    assert version_of(model, expand(model, "version=1")) == "1"
    assert expand(model, "version=1").items == ()


@pytest.mark.parametrize(
    ("text", "version"),
    [
        ("version=v", "v-again"),  # two versions, same configuration: the newest names it
        ("version=v-again", "v-again"),
        ("version=old", "off-again"),
        ("version=off-again", "off-again"),
        ("version=newest", "newest"),
        ("a=1,b=v,c=off", "v-again"),
        ("", None),
        ("version=v,a=2", None),
    ],
)
def test_version_of_names_the_newest(text: str, version: str | None) -> None:
    model = layered()
    assert version_of(model, expand(model, text)) == version


def test_version_of_is_typed_and_per_model() -> None:
    model = layered()
    assert version_of(model, Config("example.org/layers", (("a", 3), ("c", 1), ("d", 4)))) is None
    assert (
        version_of(model, Config("example.org/layers", (("a", 3), ("c", True), ("d", 4))))
        == "newest"
    )
    assert version_of(model, Config("other", (("a", 3), ("c", True), ("d", 4)))) is None


# --------------------------------------------------------------------------- the wire form


def test_wire_form_round_trip() -> None:
    model = nic()
    for text in ("", "version=1", "version=2", "version=2,link-speed=10G", "rss=off,rx-queues=1"):
        config = expand(model, text)
        wire = config.to_dict()
        assert wire == {"model": NIC_ID, "config": dict(config.items)}
        assert parse_canonical(model, wire["config"]) == config
        assert parse_canonical(model, config.string) == config


def test_omitted_parameters_are_off_on_the_wire_but_init_in_expand() -> None:
    model = nic()
    assert parse_canonical(model, {}).items == ()
    assert parse_canonical(model, "").items == ()
    assert expand(model, "").string == "link-speed=25G,rss=on,rx-queues=8,rx-table-size=64"
    # so a canonical string given to expand names another configuration when
    # it leaves out a parameter whose init value differs from its off value
    config = expand(model, "rss=off,rx-queues=1,rx-table-size=0")
    assert config.string == "link-speed=25G"
    assert expand(model, config.string) != config
    assert parse_canonical(model, config.string) == config


def test_parse_canonical_accepts_off_values_and_drops_them() -> None:
    model = nic()
    assert parse_canonical(model, {"rss": False, "link-speed": "10G"}).items == (
        ("link-speed", "10G"),
    )


@pytest.mark.parametrize(
    ("canonical", "code", "loc"),
    [
        ({"version": "2"}, "PARAM_UNKNOWN", ("config", "version")),
        ("version=2", "PARAM_UNKNOWN", ("config", "version")),
        ({"nope": 1}, "PARAM_UNKNOWN", ("config", "nope")),
        ({1: 1}, "PARAM_UNKNOWN", ("config", "1")),
        ({"rss": 1}, "TYPE_MISMATCH", ("config", "rss")),
        ({"rx-queues": True}, "TYPE_MISMATCH", ("config", "rx-queues")),
        ({"rx-queues": 4.0}, "TYPE_MISMATCH", ("config", "rx-queues")),
        ({"rx-queues": [4]}, "TYPE_MISMATCH", ("config", "rx-queues")),
        ("rx-queues=four", "TYPE_MISMATCH", ("config", "rx-queues")),
        ({"rx-table-size": 40}, "VALUE_NOT_ALLOWED", ("config", "rx-table-size")),
        ("rx-table-size=40", "VALUE_NOT_ALLOWED", ("config", "rx-table-size")),
        # rss=on with rx-queues omitted: rx-queues is at its off value 1
        ({"rss": True}, "CONSTRAINT_VIOLATED", ("config", "rx-queues")),
        ("rss", "CONSTRAINT_VIOLATED", ("config", "rx-queues")),
        ("rss=on,rss=on", "DUPLICATE_PARAM", ("config", "rss")),
        ("rss=on,", "SYNTAX", ("config",)),
        (["rss"], "SYNTAX", ("config",)),
        (5, "SYNTAX", ("config",)),
        (b"rss=on", "SYNTAX", ("config",)),
    ],
)
def test_parse_canonical_codes(canonical: Any, code: str, loc: tuple[Any, ...]) -> None:
    found = problems(ConfigError, lambda: parse_canonical(nic(), canonical))
    assert [(p.code, p.loc) for p in found] == [(code, loc)]


# --------------------------------------------------------------------------- typed values


def test_config_equality_is_typed() -> None:
    a = Config("m", (("x", True),))
    b = Config("m", (("x", 1),))
    assert a != b
    assert not a.same_as(b)
    assert a == Config("m", (("x", True),))
    assert hash(a) == hash(Config("m", (("x", True),)))
    assert len({a, b}) == 2
    assert Config("m", ()) != Config("n", ())
    assert a != ("m", (("x", True),))


def test_config_is_frozen() -> None:
    config = expand(nic(), "")
    with pytest.raises(AttributeError):
        config.model = "x"  # type: ignore[misc]
    values = config.values
    values["rss"] = False
    assert config.values["rss"] is True


def test_model_helpers_return_copies() -> None:
    model = nic()
    full = expand(model, "").full(model)
    full["rss"] = False
    assert expand(model, "").full(model)["rss"] is True


# --------------------------------------------------------------------------- constraints


@pytest.mark.parametrize(
    ("cond", "value", "holds"),
    [
        (True, True, True),
        (True, False, False),
        (True, 1, False),  # a literal is typed
        (1, True, False),
        (1, 1, True),
        ("25G", "25G", True),
        ("25G", "25g", False),
        (Range(min=2), 2, True),
        (Range(min=2), 1, False),
        (Range(max=2), 2, True),
        (Range(max=2), 3, False),
        (Range(min=1, max=3), 0, False),
        (Range(min=1, max=3), 4, False),
        (Range(), -(10**30), True),
        (Range(min=0), True, False),  # a bool is no int
        (Range(min=0), "1", False),
        (InSet.model_validate({"in": [1, 2]}), 2, True),
        (InSet.model_validate({"in": [1, 2]}), 3, False),
        (InSet.model_validate({"in": [1, 2]}), True, False),
        (InSet.model_validate({"in": [True]}), 1, False),
        (InSet.model_validate({"in": ["a", "b"]}), "b", True),
    ],
)
def test_condition_holds(cond: Any, value: Any, holds: bool) -> None:
    assert condition_holds(cond, value) is holds


CONSTRAINT = Constraint.model_validate(
    {"when": {"a": {"min": 1}, "b": "x"}, "require": {"c": True, "d": {"in": [1, 2]}}}
)


@pytest.mark.parametrize(
    ("config", "failing"),
    [
        ({"a": 0, "b": "x", "c": False, "d": 0}, []),  # one when fails: no requirement
        ({"a": 1, "b": "y", "c": False, "d": 0}, []),
        ({"a": 1, "b": "x", "c": True, "d": 1}, []),
        ({"a": 1, "b": "x", "c": False, "d": 1}, ["c"]),
        ({"a": 1, "b": "x", "c": True, "d": 3}, ["d"]),
        ({"a": 5, "b": "x", "c": False, "d": 3}, ["c", "d"]),
        ({"a": 5, "b": "x"}, ["c", "d"]),  # a missing parameter fails its requirement
        ({"b": "x", "c": False}, []),  # and never satisfies a when
    ],
)
def test_constraint_semantics(config: dict[str, Any], failing: list[str]) -> None:
    assert CONSTRAINT.applies(config) is (config.get("a", 0) >= 1 and config.get("b") == "x")
    assert CONSTRAINT.failing(config) == failing


def test_constraint_without_when_always_applies() -> None:
    constraint = Constraint.model_validate({"require": {"a": {"max": 3}}})
    assert constraint.failing({"a": 4}) == ["a"]
    assert constraint.render() == "requires a<=3"


def test_check_full_and_constraint_problems() -> None:
    model = nic()
    full = {"rss": True, "rx-queues": 1, "rx-table-size": 40, "link-speed": "25G"}
    found = check_full(model, full)
    assert [(p.code, p.loc) for p in found] == [
        ("VALUE_NOT_ALLOWED", ("config", "rx-table-size")),
        ("CONSTRAINT_VIOLATED", ("config", "rx-queues")),
    ]
    found = check_full(model, full, only={"rss"}, value_code="V", constraint_code="C", loc=("x",))
    assert [(p.code, p.loc) for p in found] == [("C", ("x", "rx-queues"))]
    found = constraint_problems(model, full, loc=("constraints",), by_constraint=True)
    assert [(p.code, p.loc, p.context) for p in found] == [
        ("CONSTRAINT_VIOLATED", ("constraints", 0), {"constraint": 0})
    ]


def test_expand_does_not_change_the_model() -> None:
    doc = nic_doc()
    model = load_document(doc).models[0]
    before = model.model_dump()
    expand(model, "version=2,rx-table-size=48")
    parse_canonical(model, {"rss": True, "rx-queues": 4})
    assert model.model_dump() == before
    assert model.off_values == {
        "rss": False,
        "rx-queues": 1,
        "rx-table-size": 0,
        "link-speed": "1G",
    }
