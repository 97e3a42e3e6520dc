"""Option strings (DESIGN §2): splitting, value conversion and every option-string code."""

from __future__ import annotations

from typing import Any

import pytest
from model_fixtures import NIC_ID, nic, one, problems

from devmig import ConfigError, DevmigError
from devmig.model import OptionItem, convert_value, expand, format_options, split_options

NIC_NAMES = ["link-speed", "rss", "rx-queues", "rx-table-size"]


# --------------------------------------------------------------------------- splitting


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", []),
        ("rss", [("rss", None)]),
        ("rss=on", [("rss", "on")]),
        ("a=1,b=2", [("a", "1"), ("b", "2")]),
        ("a=x,,y", [("a", "x,y")]),  # ,, is a comma inside the value
        ("a=,,", [("a", ",")]),
        ("a=,,,,", [("a", ",,")]),
        ("a=1,,,b", [("a", "1,"), ("b", None)]),  # ,, then a separator
        ("a=1,,,,b=2", [("a", "1,,b=2")]),
        ("a=", [("a", "")]),
        ("a==b", [("a", "=b")]),  # the first = splits
        ("a=b=c,d", [("a", "b=c"), ("d", None)]),
        (",,a=1", [(",a", "1")]),  # a leading ,, is a comma in the key
        ("k=é,ü=ö", [("k", "é"), ("ü", "ö")]),
        ("version=2,rx-table-size=48", [("version", "2"), ("rx-table-size", "48")]),
    ],
)
def test_split_options(text: str, expected: list[tuple[str, str | None]]) -> None:
    items, found = split_options(text)
    assert found == []
    assert [(i.key, i.value) for i in items] == expected


def test_split_options_positions() -> None:
    items, _ = split_options("a=1,,x,bb=2,c")
    assert items == [OptionItem("a", "1,x", 0), OptionItem("bb", "2", 7), OptionItem("c", None, 12)]


@pytest.mark.parametrize(
    ("text", "positions", "kept"),
    [
        (",", [0, 1], []),
        (",a", [0], ["a"]),
        ("a,", [2], ["a"]),
        ("a=1,,,", [6], ["a"]),  # "1," then an empty last item
        ("a,,,,,b", [], ["a,,", "b"]),  # two literal commas, then a separator
        ("=1", [0], []),  # no key
        ("a=1,=2,b", [4], ["a", "b"]),
        (",,,", [3], [","]),
    ],
)
def test_split_options_syntax(text: str, positions: list[int], kept: list[str]) -> None:
    items, found = split_options(text)
    assert [p.code for p in found] == ["SYNTAX"] * len(positions)
    assert [p.context["position"] for p in found] == positions
    assert all(p.loc == ("config",) for p in found)
    assert all(p.hint for p in found)
    assert [i.key for i in items] == kept


# --------------------------------------------------------------------------- conversion


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, True),  # bare key
        *[(w, True) for w in ("on", "ON", "On", "true", "TRUE", "True", "yes", "YES", "yEs")],
        *[(w, False) for w in ("off", "OFF", "Off", "false", "FALSE", "no", "NO", "nO")],
        *[(w, None) for w in ("", "1", "0", "y", "n", " on", "on ", "enabled", "onn", "tru")],
    ],
)
def test_convert_bool(raw: str | None, expected: bool | None) -> None:
    assert convert_value("bool", raw) is expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("0", 0),
        ("7", 7),
        ("+7", 7),
        ("-7", -7),
        ("-0", 0),
        ("007", 7),
        ("0x10", 16),
        ("0X1f", 31),
        ("0xFF", 255),
        ("-0x10", -16),
        ("+0x10", 16),
        # beyond Python's str->int digit limit
        pytest.param("9" * 5000, 10**5000 - 1, id="5000-digits"),
        pytest.param("0x" + "f" * 5000, 16**5000 - 1, id="5000-hex-digits"),
        *[
            (w, None)
            for w in (
                None,
                "",
                "+",
                "-",
                "0x",
                "-0x",
                "1.0",
                "1e3",
                "0b1",
                "0o7",
                "1_000",
                "0x1g",
                "--1",
                "+-1",
                "0x-1",
                " 5",
                "5 ",
                "\u0663",
                "\uff11",
                "\u00b2",
                "on",
                "x10",
            )
        ],
    ],
)
def test_convert_int(raw: str | None, expected: int | None) -> None:
    value = convert_value("int", raw)
    assert value == expected
    assert type(value) is (int if expected is not None else type(None))


@pytest.mark.parametrize(
    ("raw", "expected"), [("", ""), ("25G", "25G"), ("a,b", "a,b"), ("on", "on"), (None, None)]
)
def test_convert_str(raw: str | None, expected: str | None) -> None:
    assert convert_value("str", raw) == expected


def test_format_options_escapes_commas() -> None:
    assert format_options([("a", "x,y"), ("b", True), ("c", False), ("d", -3), ("e", "")]) == (
        "a=x,,y,b=on,c=off,d=-3,e="
    )
    items, found = split_options(format_options([("a", "x,,y,"), ("b", ",")]))
    assert found == []
    assert [(i.key, i.value) for i in items] == [("a", "x,,y,"), ("b", ",")]


# --------------------------------------------------------------------------- expansion of option strings


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "link-speed=25G,rss=on,rx-queues=8,rx-table-size=64"),
        ("rss=on,rx-table-size=0", "link-speed=25G,rss=on,rx-queues=8"),
        ("version=2,rx-table-size=48", "rss=on,rx-queues=4,rx-table-size=48"),
        ("version=1", ""),
        ("version=3", "link-speed=25G,rss=on,rx-queues=8,rx-table-size=64"),
        ("rss", "link-speed=25G,rss=on,rx-queues=8,rx-table-size=64"),
        ("rss=Off,rx-queues=1", "link-speed=25G,rx-table-size=64"),
        ("rss=NO,rx-queues=0x1", "link-speed=25G,rx-table-size=64"),
        ("rss=FALSE,rx-queues=+1", "link-speed=25G,rx-table-size=64"),
        ("rx-queues=0x10", "link-speed=25G,rss=on,rx-queues=16,rx-table-size=64"),
        ("rx-queues=+016", "link-speed=25G,rss=on,rx-queues=16,rx-table-size=64"),
        ("link-speed=1G", "rss=on,rx-queues=8,rx-table-size=64"),
        ("version=2,link-speed=10G,rss=yes", "link-speed=10G,rss=on,rx-queues=4,rx-table-size=32"),
    ],
)
def test_expand_strings(text: str, expected: str) -> None:
    config = expand(nic(), text)
    assert config.model == NIC_ID
    assert config.string == expected


def test_empty_string_and_none_are_the_init_values() -> None:
    model = nic()
    init = expand(model, "")
    assert expand(model, None).same_as(init)
    assert init.values == {"rss": True, "rx-queues": 8, "rx-table-size": 64, "link-speed": "25G"}


def test_expand_mapping() -> None:
    model = nic()
    config = expand(model, {"version": "2", "rx-table-size": 48})
    assert config.string == "rss=on,rx-queues=4,rx-table-size=48"
    assert expand(model, {}).same_as(expand(model, ""))


def test_keys_are_case_sensitive() -> None:
    found = problems(ConfigError, lambda: expand(nic(), "RSS=off"))
    assert [(p.code, p.loc, p.hint) for p in found] == [
        ("PARAM_UNKNOWN", ("config", "RSS"), "did you mean rss?")
    ]


# One row per option-string code: (text, code, loc, value, allowed, hint).
CODE_ROWS: list[tuple[str, str, tuple[str, ...], Any, Any, str | None]] = [
    (
        ",rss",
        "SYNTAX",
        ("config",),
        ",rss",
        None,
        "items are key=value separated by one comma; write ',,' for a comma in a value",
    ),
    ("=5", "SYNTAX", ("config",), "=5", None, "items are key=value"),
    (
        "version",
        "SYNTAX",
        ("config", "version"),
        None,
        ["1", "2", "3"],
        "write version=NAME; published versions: 1, 2, 3",
    ),
    (
        "version=",
        "SYNTAX",
        ("config", "version"),
        "",
        ["1", "2", "3"],
        "write version=NAME; published versions: 1, 2, 3",
    ),
    (
        "rss=on,rss=off",
        "DUPLICATE_PARAM",
        ("config", "rss"),
        "off",
        None,
        "name each parameter at most once",
    ),
    (
        "version=1,version=2",
        "DUPLICATE_PARAM",
        ("config", "version"),
        "2",
        None,
        "name each parameter at most once",
    ),
    (
        "version=9",
        "VERSION_UNKNOWN",
        ("config", "version"),
        "9",
        ["1", "2", "3"],
        "published versions: 1, 2, 3",
    ),
    (
        "rx-queue=4",
        "PARAM_UNKNOWN",
        ("config", "rx-queue"),
        "4",
        NIC_NAMES,
        "did you mean rx-queues?",
    ),
    ("zzz", "PARAM_UNKNOWN", ("config", "zzz"), None, NIC_NAMES, None),
    (
        "rx-queues=four",
        "TYPE_MISMATCH",
        ("config", "rx-queues"),
        "four",
        [{"min": 1, "max": 16}],
        "write a decimal integer or 0x hexadecimal",
    ),
    (
        "rx-queues",
        "TYPE_MISMATCH",
        ("config", "rx-queues"),
        None,
        [{"min": 1, "max": 16}],
        "write a decimal integer or 0x hexadecimal",
    ),
    (
        "rss=maybe",
        "TYPE_MISMATCH",
        ("config", "rss"),
        "maybe",
        [False, True],
        "write on/off, true/false or yes/no",
    ),
    (
        "rss=1",
        "TYPE_MISMATCH",
        ("config", "rss"),
        "1",
        [False, True],
        "write on/off, true/false or yes/no",
    ),
    (
        "link-speed",
        "TYPE_MISMATCH",
        ("config", "link-speed"),
        None,
        ["1G", "10G", "25G"],
        "write a string value: key=value",
    ),
    (
        "rx-table-size=40",
        "VALUE_NOT_ALLOWED",
        ("config", "rx-table-size"),
        40,
        [{"min": 0, "max": 64, "step": 16}],
        "nearest allowed values: 32, 48",
    ),
    (
        "rx-table-size=0x50",
        "VALUE_NOT_ALLOWED",
        ("config", "rx-table-size"),
        80,
        [{"min": 0, "max": 64, "step": 16}],
        "nearest allowed values: 64",
    ),
    (
        "rss=off,rx-queues=-3",
        "VALUE_NOT_ALLOWED",
        ("config", "rx-queues"),
        -3,
        [{"min": 1, "max": 16}],
        "nearest allowed values: 1",
    ),
    (
        "link-speed=40G",
        "VALUE_NOT_ALLOWED",
        ("config", "link-speed"),
        "40G",
        ["1G", "10G", "25G"],
        None,  # a string hint: checked to name allowed values below
    ),
    (
        "link-speed=",
        "VALUE_NOT_ALLOWED",
        ("config", "link-speed"),
        "",
        ["1G", "10G", "25G"],
        None,
    ),
    (
        "rx-queues=1",
        "CONSTRAINT_VIOLATED",
        ("config", "rx-queues"),
        {"rss": True, "rx-queues": 1},
        {"rx-queues": {"min": 2}},
        "set rx-queues>=2",
    ),
    (
        "version=1,rss",
        "CONSTRAINT_VIOLATED",
        ("config", "rx-queues"),
        {"rss": True, "rx-queues": 1},
        {"rx-queues": {"min": 2}},
        "set rx-queues>=2",
    ),
]


@pytest.mark.parametrize(("text", "code", "loc", "value", "allowed", "hint"), CODE_ROWS)
def test_option_string_codes(
    text: str, code: str, loc: tuple[str, ...], value: Any, allowed: Any, hint: str | None
) -> None:
    found = problems(ConfigError, lambda: expand(nic(), text))
    assert [p.code for p in found] == [code]
    problem = found[0]
    assert problem.loc == loc
    assert problem.value == value
    assert type(problem.value) is type(value)
    assert problem.allowed == allowed
    if hint is not None:
        assert problem.hint == hint
    elif code == "VALUE_NOT_ALLOWED":
        assert problem.hint is not None and problem.hint.startswith("nearest allowed values: ")
        named = problem.hint.removeprefix("nearest allowed values: ").split(", ")
        assert named and set(named) <= {"1G", "10G", "25G"}
    assert problem.message
    # The error is data first, and renders it.
    assert code in str(ConfigError(found))
    assert problem.to_dict()["code"] == code


def test_constraint_problem_names_its_constraint() -> None:
    problem = one(
        problems(ConfigError, lambda: expand(nic(), "rx-queues=1")), "CONSTRAINT_VIOLATED"
    )
    assert problem.context == {"constraint": 0}
    assert "RSS needs at least two receive queues" in problem.message


def test_several_problems_are_collected() -> None:
    text = ",rss=maybe,foo=1,rx-table-size=40,rx-queues=2,rx-queues=3,link-speed=9G,version=7"
    found = problems(ConfigError, lambda: expand(nic(), text))
    assert sorted((p.code, p.loc) for p in found) == sorted(
        [
            ("SYNTAX", ("config",)),
            ("TYPE_MISMATCH", ("config", "rss")),
            ("PARAM_UNKNOWN", ("config", "foo")),
            ("VALUE_NOT_ALLOWED", ("config", "rx-table-size")),
            ("DUPLICATE_PARAM", ("config", "rx-queues")),
            ("VALUE_NOT_ALLOWED", ("config", "link-speed")),
            ("VERSION_UNKNOWN", ("config", "version")),
        ]
    )


def test_constraints_are_not_judged_on_a_broken_configuration() -> None:
    # rx-queues=1 with rss=on (init) violates the constraint, but the string is
    # already wrong in shape: only the shape problem is reported.
    found = problems(ConfigError, lambda: expand(nic(), "rx-queues=1,bogus=1"))
    assert [p.code for p in found] == ["PARAM_UNKNOWN"]


def test_a_constraint_and_a_value_problem_are_both_reported() -> None:
    found = problems(ConfigError, lambda: expand(nic(), "rx-queues=1,rx-table-size=40"))
    assert sorted(p.code for p in found) == ["CONSTRAINT_VIOLATED", "VALUE_NOT_ALLOWED"]


def test_huge_decimal_is_a_value_problem_not_a_crash() -> None:
    text = "rx-queues=" + "9" * 5000
    problem = one(problems(ConfigError, lambda: expand(nic(), text)), "VALUE_NOT_ALLOWED")
    assert problem.value == 10**5000 - 1
    assert problem.hint == "nearest allowed values: 16"
    assert str(ConfigError([problem]))  # renders without hitting the int->str limit


@pytest.mark.parametrize(
    ("config", "code", "loc"),
    [
        ({"rss": 1}, "TYPE_MISMATCH", ("config", "rss")),
        ({"rx-queues": True}, "TYPE_MISMATCH", ("config", "rx-queues")),  # a bool is no int
        ({"rx-queues": "4"}, "TYPE_MISMATCH", ("config", "rx-queues")),
        ({"link-speed": None}, "TYPE_MISMATCH", ("config", "link-speed")),
        ({"rx-queues": 4.0}, "TYPE_MISMATCH", ("config", "rx-queues")),
        ({"version": 2}, "TYPE_MISMATCH", ("config", "version")),
        ({"version": ""}, "TYPE_MISMATCH", ("config", "version")),
        ({"version": "4"}, "VERSION_UNKNOWN", ("config", "version")),
        ({"nope": 1}, "PARAM_UNKNOWN", ("config", "nope")),
        ({"rx-table-size": 40}, "VALUE_NOT_ALLOWED", ("config", "rx-table-size")),
        ({"rx-queues": 1}, "CONSTRAINT_VIOLATED", ("config", "rx-queues")),
    ],
)
def test_expand_mapping_codes(config: dict[str, Any], code: str, loc: tuple[str, ...]) -> None:
    found = problems(ConfigError, lambda: expand(nic(), config))
    assert [(p.code, p.loc) for p in found] == [(code, loc)]


def test_expand_loc_prefix() -> None:
    found = problems(
        ConfigError, lambda: expand(nic(), "rx-table-size=40", loc=("devices", 0, "config"))
    )
    assert found[0].loc == ("devices", 0, "config", "rx-table-size")


@pytest.mark.parametrize("config", [5, 1.5, ["rss"], b"rss=on", object()])
def test_expand_refuses_other_types(config: Any) -> None:
    with pytest.raises(ConfigError) as info:
        expand(nic(), config)
    assert info.value.codes == ["SYNTAX"]
    assert isinstance(info.value, DevmigError)
