"""Model documents and host reports (DESIGN §7): every document code with its ``loc``."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from model_fixtures import (
    EXAMPLES_DIR,
    NIC_DOC,
    NIC_ID,
    host_report,
    locs,
    nic_doc,
    one,
    problems,
)

from devmig import DevmigError, DocumentError
from devmig.model import (
    HOST_REPORT_FORMAT,
    MODEL_DOCUMENT_FORMAT,
    BoolParam,
    HostReport,
    InSet,
    IntParam,
    ModelDocument,
    Range,
    StrParam,
    load_any,
    load_document,
    load_host_report,
    parse_json,
)

M0 = ("models", 0)
P = (*M0, "params")
C0 = (*M0, "constraints", 0)
V = (*M0, "versions")
NAMES = ["link-speed", "rss", "rx-queues", "rx-table-size"]

Doc = dict[str, Any]


def edit(change: Callable[[Doc], object]) -> Doc:
    """Return a copy of the example document changed by ``change``."""
    doc = nic_doc()
    change(doc)
    return doc


def model(doc: Doc, index: int = 0) -> Doc:
    result: Doc = doc["models"][index]
    return result


# --------------------------------------------------------------------------- valid documents


def test_design_example_loads() -> None:
    doc = load_document(json.dumps(NIC_DOC))
    assert isinstance(doc, ModelDocument)
    assert doc.format == MODEL_DOCUMENT_FORMAT
    assert doc.implementation.render() == "acme-nic 3.0.0"
    nic = doc.find(NIC_ID)
    assert nic is not None and nic is doc.models[0]
    assert doc.find("nope") is None
    assert isinstance(nic.params["rss"], BoolParam)
    assert isinstance(nic.params["rx-queues"], IntParam)
    assert isinstance(nic.params["link-speed"], StrParam)
    assert nic.params["rss"].allowed == (False, True)  # both when omitted
    assert [v.name for v in nic.versions] == ["1", "2", "3"]
    assert nic.latest is not None and nic.latest.name == "3"
    cond = nic.constraints[0].require["rx-queues"]
    assert isinstance(cond, Range) and cond.min == 2 and cond.max is None
    # the published form is the input (with the defaults filled in)
    again = load_document(doc.to_json())
    assert again == doc


@pytest.mark.parametrize("source", ["text", "bytes", "bytearray", "mapping"])
def test_load_document_accepts_text_bytes_and_data(source: str) -> None:
    text = json.dumps(NIC_DOC)
    arg: Any = {
        "text": text,
        "bytes": text.encode(),
        "bytearray": bytearray(text.encode()),
        "mapping": nic_doc(),
    }[source]
    assert load_document(arg).models[0].model == NIC_ID


@pytest.mark.parametrize(
    "path", sorted(EXAMPLES_DIR.glob("*/*.json")), ids=lambda p: f"{p.parent.name}/{p.name}"
)
def test_every_example_document_loads(path: Any) -> None:
    doc = load_document(path.read_bytes())
    assert doc.models
    assert load_any(path.read_text()) == doc


def test_documents_are_frozen() -> None:
    doc = load_document(NIC_DOC)
    with pytest.raises(Exception) as info:
        doc.models[0].params["rss"].off = True  # type: ignore[misc]
    assert "frozen" in str(info.value).lower()


def test_condition_kinds() -> None:
    doc = edit(
        lambda d: model(d)["constraints"].append(
            {
                "when": {
                    "link-speed": {"in": ["10G", "25G"]},
                    "rx-table-size": {"min": 16, "max": 64},
                },
                "require": {"rss": True, "rx-queues": {"max": 16}},
            }
        )
    )
    constraint = load_document(doc).models[0].constraints[1]
    assert isinstance(constraint.when["link-speed"], InSet)
    assert constraint.when["link-speed"].in_ == ("10G", "25G")
    assert isinstance(constraint.when["rx-table-size"], Range)
    assert constraint.require["rss"] is True
    assert (
        constraint.render()
        == "link-speed in {10G, 25G} and 16<=rx-table-size<=64 requires rss=on and rx-queues<=16"
    )


# --------------------------------------------------------------------------- JSON_SYNTAX


@pytest.mark.parametrize(
    ("text", "line", "column"),
    [
        ("", 1, 1),
        ("{", 1, 2),
        ('{\n  "format": 1,\n}', 3, 1),
        ('{"a": [1, 2,]}', 1, 13),
        ("{'a': 1}", 1, 2),
        ('{"a": 1} x', 1, 10),
        ('{\n"a": NaN}', 2, 6),
        ('{"a": -Infinity}', 1, 7),
        ('{"NaN": "NaN", "b": Infinity}', 1, 21),
        ('{"a":\n  ' + "1" * 5000 + "}", 2, 3),
        ('{"a": "' + "1" * 5000 + '", "b": -' + "2" * 5000 + "}", 1, 5016),
    ],
    ids=lambda v: v[:20] if isinstance(v, str) else str(v),
)
def test_json_syntax_has_line_and_column(text: str, line: int, column: int) -> None:
    for load in (load_document, load_host_report, load_any, parse_json):
        problem = one(problems(DocumentError, lambda load=load: load(text)), "JSON_SYNTAX")
        assert problem.loc == ()
        assert problem.context == {"line": line, "column": column}
        assert f"line {line} column {column}" in problem.message
        assert problem.hint


@pytest.mark.parametrize("data", [b"\xff{}", b'{"a": "\xc3"}', "{}".encode("utf-16")])
def test_json_syntax_for_bytes_that_are_not_utf8(data: bytes) -> None:
    problem = one(problems(DocumentError, lambda: load_document(data)), "JSON_SYNTAX")
    assert "byte" in problem.context
    assert "UTF-8" in problem.message


def test_json_syntax_for_deep_nesting() -> None:
    problem = one(
        problems(DocumentError, lambda: load_document("[" * 100_000 + "]" * 100_000)), "JSON_SYNTAX"
    )
    assert "deep" in problem.message


# --------------------------------------------------------------------------- SCHEMA


def _set(path: tuple[Any, ...], value: Any) -> Callable[[Doc], None]:
    def change(doc: Doc) -> None:
        node: Any = doc
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = value

    return change


def _drop(path: tuple[Any, ...]) -> Callable[[Doc], None]:
    def change(doc: Doc) -> None:
        node: Any = doc
        for part in path[:-1]:
            node = node[part]
        del node[path[-1]]

    return change


def _rename_param(old: str, new: str) -> Callable[[Doc], None]:
    def change(doc: Doc) -> None:
        params = model(doc)["params"]
        params[new] = params.pop(old)

    return change


SCHEMA_ROWS: list[tuple[str, Callable[[Doc], object], tuple[Any, ...]]] = [
    # unknown keys, anywhere
    ("unknown top key", _set(("extra",), 1), ("extra",)),
    (
        "unknown implementation key",
        _set(("implementation", "vendor"), "acme"),
        ("implementation", "vendor"),
    ),
    ("unknown model key", _set((*M0, "latest"), "3"), (*M0, "latest")),
    ("unknown param key", _set((*P, "rss", "default"), True), (*P, "rss", "default")),
    (
        "unknown range key",
        _set((*P, "rx-queues", "allowed", 0, "stride"), 2),
        (*P, "rx-queues", "allowed", 0, "stride"),
    ),
    ("unknown constraint key", _set((*C0, "why"), "x"), (*C0, "why")),
    (
        "unknown range-condition key",
        _set((*C0, "require", "rx-queues", "minimum"), 2),
        (*C0, "require", "rx-queues", "minimum"),
    ),
    (
        "unknown in-condition key",
        _set((*C0, "when", "rss"), {"in": [True], "not": [False]}),
        (*C0, "when", "rss", "not"),
    ),
    (
        "python field name in_",
        _set((*C0, "when", "rss"), {"in_": [True]}),
        (*C0, "when", "rss", "in_"),
    ),
    ("unknown version key", _set((*V, 1, "date"), "2024"), (*V, 1, "date")),
    # format
    ("other format", _set(("format",), "devmig/model-document/2"), ("format",)),
    ("format not a string", _set(("format",), 1), ("format",)),
    ("no format", _drop(("format",)), ("format",)),
    # missing and malformed fields
    ("no implementation", _drop(("implementation",)), ("implementation",)),
    ("no release", _drop(("implementation", "release")), ("implementation", "release")),
    ("empty release", _set(("implementation", "release"), ""), ("implementation", "release")),
    ("no models", _drop(("models",)), ("models",)),
    ("models not a list", _set(("models",), {}), ("models",)),
    ("model not an object", _set(M0, "nic"), M0),
    ("no model id", _drop((*M0, "model")), (*M0, "model")),
    ("empty model id", _set((*M0, "model"), ""), (*M0, "model")),
    ("description not a string", _set((*M0, "description"), 1), (*M0, "description")),
    ("params not an object", _set((*M0, "params"), []), (*M0, "params")),
    # params: types
    ("unknown type", _set((*P, "rss", "type"), "float"), (*P, "rss")),
    ("no type", _drop((*P, "rss", "type")), (*P, "rss")),
    ("bool off not a bool", _set((*P, "rss", "off"), 0), (*P, "rss", "off")),
    ("bool off null", _set((*P, "rss", "off"), None), (*P, "rss", "off")),
    ("bool init a string", _set((*P, "rss", "init"), "on"), (*P, "rss", "init")),
    ("int off a bool", _set((*P, "rx-queues", "off"), True), (*P, "rx-queues", "off")),
    ("int off a string", _set((*P, "rx-queues", "off"), "1"), (*P, "rx-queues", "off")),
    ("int off a float", _set((*P, "rx-queues", "off"), 1.0), (*P, "rx-queues", "off")),
    ("str off an int", _set((*P, "link-speed", "off"), 1), (*P, "link-speed", "off")),
    ("no off", _drop((*P, "link-speed", "off")), (*P, "link-speed", "off")),
    ("no init", _drop((*P, "rx-queues", "init")), (*P, "rx-queues", "init")),
    # params: allowed
    ("int without allowed", _drop((*P, "rx-queues", "allowed")), (*P, "rx-queues", "allowed")),
    ("str without allowed", _drop((*P, "link-speed", "allowed")), (*P, "link-speed", "allowed")),
    ("empty allowed", _set((*P, "link-speed", "allowed"), []), (*P, "link-speed", "allowed")),
    ("bool allowed empty", _set((*P, "rss", "allowed"), []), (*P, "rss", "allowed")),
    ("bool allowed an int", _set((*P, "rss", "allowed"), [0]), (*P, "rss", "allowed", 0)),
    (
        "str allowed an int",
        _set((*P, "link-speed", "allowed"), ["1G", 10]),
        (*P, "link-speed", "allowed", 1),
    ),
    (
        "int allowed a number",
        _set((*P, "rx-queues", "allowed"), [4]),
        (*P, "rx-queues", "allowed", 0),
    ),
    (
        "range without max",
        _drop((*P, "rx-queues", "allowed", 0, "max")),
        (*P, "rx-queues", "allowed", 0, "max"),
    ),
    (
        "step zero",
        _set((*P, "rx-table-size", "allowed", 0, "step"), 0),
        (*P, "rx-table-size", "allowed", 0, "step"),
    ),
    (
        "step negative",
        _set((*P, "rx-table-size", "allowed", 0, "step"), -16),
        (*P, "rx-table-size", "allowed", 0, "step"),
    ),
    # parameter names
    (
        "'version' as a param name",
        _set((*P, "version"), {"type": "bool", "off": False, "init": False}),
        (*P, "version"),
    ),
    ("param name with a space", _rename_param("rss", "r ss"), (*P, "r ss")),
    ("param name with a comma", _rename_param("rss", "r,ss"), (*P, "r,ss")),
    ("param name with =", _rename_param("rss", "r=ss"), (*P, "r=ss")),
    ("param name with a newline", _rename_param("rss", "rss\n"), (*P, "rss\n")),
    ("empty param name", _rename_param("rss", ""), (*P, "")),
    ("param name too long", _rename_param("rss", "r" * 129), (*P, "r" * 129)),
    # constraints
    ("constraints not a list", _set((*M0, "constraints"), {}), (*M0, "constraints")),
    ("no require", _drop((*C0, "require")), (*C0, "require")),
    ("empty require", _set((*C0, "require"), {}), (*C0, "require")),
    ("condition a list", _set((*C0, "when", "rss"), [True]), (*C0, "when", "rss")),
    ("condition null", _set((*C0, "when", "rss"), None), (*C0, "when", "rss")),
    ("condition a float", _set((*C0, "require", "rx-queues"), 2.5), (*C0, "require", "rx-queues")),
    ("empty in", _set((*C0, "when", "rss"), {"in": []}), (*C0, "when", "rss", "in")),
    (
        "range bound a string",
        _set((*C0, "require", "rx-queues"), {"min": "2"}),
        (*C0, "require", "rx-queues", "min"),
    ),
    ("literal of the wrong type", _set((*C0, "when", "rss"), 1), (*C0, "when", "rss")),
    (
        "in of the wrong type",
        _set((*C0, "when", "rss"), {"in": [True, "yes"]}),
        (*C0, "when", "rss"),
    ),
    ("range on a bool", _set((*C0, "when", "rss"), {"min": 1}), (*C0, "when", "rss")),
    (
        "range on a str",
        _set((*C0, "require"), {"link-speed": {"max": 3}}),
        (*C0, "require", "link-speed"),
    ),
    # versions
    ("versions not a list", _set((*M0, "versions"), {}), (*M0, "versions")),
    ("version without name", _drop((*V, 0, "name")), (*V, 0, "name")),
    ("empty version name", _set((*V, 0, "name"), ""), (*V, 0, "name")),
    ("version name an int", _set((*V, 0, "name"), 1), (*V, 0, "name")),
    ("version value a list", _set((*V, 1, "params", "rss"), [True]), (*V, 1, "params", "rss")),
    ("version value null", _set((*V, 1, "params", "rss"), None), (*V, 1, "params", "rss")),
    # duplicates a JSON object cannot express
    (
        "a model listed twice",
        lambda d: d["models"].append(nic_doc()["models"][0]),
        ("models", 1, "model"),
    ),
]


@pytest.mark.parametrize(
    ("change", "loc"), [r[1:] for r in SCHEMA_ROWS], ids=[r[0] for r in SCHEMA_ROWS]
)
def test_schema_problems(change: Callable[[Doc], object], loc: tuple[Any, ...]) -> None:
    found = problems(DocumentError, lambda: load_document(edit(change)))
    assert [(p.code, p.loc) for p in found] == [("SCHEMA", loc)], [p.render() for p in found]
    assert found[0].message


def test_format_problem_data() -> None:
    problem = one(
        problems(DocumentError, lambda: load_document(edit(_set(("format",), "x/2")))), "SCHEMA"
    )
    assert problem.value == "x/2"
    assert problem.allowed == [MODEL_DOCUMENT_FORMAT]
    # a host report given as a document says so
    found = problems(DocumentError, lambda: load_document(host_report(nic_doc())))
    problem = next(p for p in found if p.loc == ("format",))
    assert problem.hint is not None and "host report" in problem.hint
    assert {p.code for p in found} == {"SCHEMA"}


def test_unknown_key_message_names_the_key() -> None:
    problem = one(
        problems(DocumentError, lambda: load_document(edit(_set((*P, "rss", "dflt"), 1)))), "SCHEMA"
    )
    assert "unknown key 'dflt'" in problem.message
    assert problem.value == 1


@pytest.mark.parametrize("raw", [[], "text", 1, None, True, 1.5, [NIC_DOC]])
def test_a_document_is_an_object(raw: Any) -> None:
    for load in (load_document, load_host_report, load_any):
        if not isinstance(raw, str):  # a str is JSON text; anything else is parsed data
            found = problems(DocumentError, lambda load=load: load(raw))
            assert [(p.code, p.loc) for p in found] == [("SCHEMA", ())]
        found = problems(DocumentError, lambda load=load: load(json.dumps(raw)))
        assert [(p.code, p.loc) for p in found] == [("SCHEMA", ())]


# --------------------------------------------------------------------------- consistency codes


def _add_version(name: str, params: dict[str, Any]) -> Callable[[Doc], None]:
    return lambda d: model(d)["versions"].append({"name": name, "params": params})


# (id, change, code, loc, value, allowed, hint)
CODE_ROWS: list[tuple[str, Callable[[Doc], object], str, tuple[Any, ...], Any, Any, str | None]] = [
    (
        "init off the grid",
        _set((*P, "rx-table-size", "init"), 40),
        "INIT_NOT_ALLOWED",
        (*P, "rx-table-size", "init"),
        40,
        [{"min": 0, "max": 64, "step": 16}],
        "nearest allowed values: 32, 48",
    ),
    (
        "init above max",
        _set((*P, "rx-queues", "init"), 17),
        "INIT_NOT_ALLOWED",
        (*P, "rx-queues", "init"),
        17,
        [{"min": 1, "max": 16}],
        "nearest allowed values: 16",
    ),
    (
        "bool init not allowed",
        _set((*P, "tso"), {"type": "bool", "allowed": [False], "off": False, "init": True}),
        "INIT_NOT_ALLOWED",
        (*P, "tso", "init"),
        True,
        [False],
        "nearest allowed values: off",
    ),
    (
        "str init not allowed",
        _set((*P, "link-speed", "init"), "100G"),
        "INIT_NOT_ALLOWED",
        (*P, "link-speed", "init"),
        "100G",
        ["1G", "10G", "25G"],
        "nearest allowed values: 10G, 1G",
    ),
    (
        "init violates a constraint",
        _set((*P, "rx-queues", "init"), 1),
        "INIT_CONSTRAINT_VIOLATED",
        C0,
        {"rss": True, "rx-queues": 1},
        {"rx-queues": {"min": 2}},
        "set rx-queues>=2",
    ),
    (
        "a version listed twice",
        _add_version("2", {}),
        "VERSION_DUPLICATE",
        (*V, 3, "name"),
        "2",
        None,
        "a published version never changes: publish a new name",
    ),
    (
        "a version names an unknown parameter",
        _set((*V, 1, "params", "rx-queue"), 4),
        "VERSION_PARAM_UNKNOWN",
        (*V, 1, "params", "rx-queue"),
        4,
        NAMES,
        None,
    ),
    (
        "a version names version",
        _set((*V, 1, "params", "version"), "1"),
        "VERSION_PARAM_UNKNOWN",
        (*V, 1, "params", "version"),
        "1",
        NAMES,
        None,
    ),
    (
        "a version value off the grid",
        _set((*V, 1, "params", "rx-table-size"), 40),
        "VERSION_VALUE_NOT_ALLOWED",
        (*V, 1, "params", "rx-table-size"),
        40,
        [{"min": 0, "max": 64, "step": 16}],
        "nearest allowed values: 32, 48",
    ),
    (
        "a version value of the wrong type",
        _set((*V, 1, "params", "rx-queues"), True),
        "VERSION_VALUE_NOT_ALLOWED",
        (*V, 1, "params", "rx-queues"),
        True,
        [{"min": 1, "max": 16}],
        None,
    ),
    (
        "a version left at an off value that is not allowed",
        _set((*P, "rx-table-size", "allowed"), [{"min": 16, "max": 64, "step": 16}]),
        "VERSION_VALUE_NOT_ALLOWED",
        (*V, 0, "params", "rx-table-size"),
        0,
        [{"min": 16, "max": 64, "step": 16}],
        "nearest allowed values: 16",
    ),
    (
        "a version violates a constraint",
        _set((*V, 1, "params", "rx-queues"), 1),
        "VERSION_CONSTRAINT_VIOLATED",
        (*V, 1, "params", "rx-queues"),
        {"rss": True, "rx-queues": 1},
        {"rx-queues": {"min": 2}},
        "set rx-queues>=2",
    ),
    (
        "a constraint's when names an unknown parameter",
        _set((*C0, "when"), {"rsss": True}),
        "CONSTRAINT_PARAM_UNKNOWN",
        (*C0, "when", "rsss"),
        "rsss",
        NAMES,
        None,
    ),
    (
        "a constraint's require names an unknown parameter",
        _set((*C0, "require"), {"rx-queues": {"min": 2}, "tx-queues": {"min": 2}}),
        "CONSTRAINT_PARAM_UNKNOWN",
        (*C0, "require", "tx-queues"),
        "tx-queues",
        NAMES,
        None,
    ),
]


@pytest.mark.parametrize(
    ("change", "code", "loc", "value", "allowed", "hint"),
    [r[1:] for r in CODE_ROWS],
    ids=[r[0] for r in CODE_ROWS],
)
def test_document_codes(
    change: Callable[[Doc], object],
    code: str,
    loc: tuple[Any, ...],
    value: Any,
    allowed: Any,
    hint: str | None,
) -> None:
    found = problems(DocumentError, lambda: load_document(edit(change)))
    assert [(p.code, p.loc) for p in found] == [(code, loc)], [p.render() for p in found]
    problem = found[0]
    assert problem.value == value
    assert type(problem.value) is type(value)
    assert problem.allowed == allowed
    if hint is not None:
        assert problem.hint == hint
    assert problem.message
    assert code in str(DocumentError(found))


@pytest.mark.parametrize(
    ("change", "code", "loc"),
    [(r[1], r[2], r[3]) for r in CODE_ROWS],
    ids=[r[0] for r in CODE_ROWS],
)
def test_host_report_codes_are_located_under_implementations(
    change: Callable[[Doc], object], code: str, loc: tuple[Any, ...]
) -> None:
    report = host_report(nic_doc(), edit(change))
    report["implementations"][0]["implementation"]["release"] = "2.0.0"
    found = problems(DocumentError, lambda: load_host_report(report))
    assert [(p.code, p.loc) for p in found] == [(code, ("implementations", 1, *loc))]
    found = problems(DocumentError, lambda: load_any(json.dumps(report)))
    assert [(p.code, p.loc) for p in found] == [(code, ("implementations", 1, *loc))]


@pytest.mark.parametrize(
    ("change", "loc"), [r[1:] for r in SCHEMA_ROWS[:12]], ids=[r[0] for r in SCHEMA_ROWS[:12]]
)
def test_host_report_schema_problems(change: Callable[[Doc], object], loc: tuple[Any, ...]) -> None:
    found = problems(DocumentError, lambda: load_host_report(host_report(edit(change))))
    assert [(p.code, p.loc) for p in found] == [("SCHEMA", ("implementations", 0, *loc))]


def test_init_not_allowed_hides_no_version_problem() -> None:
    def change(doc: Doc) -> None:
        _set((*P, "rx-queues", "init"), 17)(doc)
        _set((*V, 1, "params", "rx-table-size"), 40)(doc)
        _set((*V, 2, "params", "rx-queues"), 1)(doc)

    found = problems(DocumentError, lambda: load_document(edit(change)))
    assert locs(found) == {
        ("INIT_NOT_ALLOWED", (*P, "rx-queues", "init")),
        ("VERSION_VALUE_NOT_ALLOWED", (*V, 1, "params", "rx-table-size")),
        ("VERSION_CONSTRAINT_VIOLATED", (*V, 2, "params", "rx-queues")),
    }


def test_an_unknown_constraint_parameter_hides_no_other_constraint() -> None:
    def change(doc: Doc) -> None:
        model(doc)["constraints"].append({"when": {"nope": 1}, "require": {"rss": False}})
        _set((*P, "rx-queues", "init"), 1)(doc)
        _set((*V, 1, "params", "rx-queues"), 1)(doc)

    found = problems(DocumentError, lambda: load_document(edit(change)))
    assert locs(found) == {
        ("CONSTRAINT_PARAM_UNKNOWN", (*M0, "constraints", 1, "when", "nope")),
        ("INIT_CONSTRAINT_VIOLATED", C0),
        ("VERSION_CONSTRAINT_VIOLATED", (*V, 1, "params", "rx-queues")),
    }


def _broken_doc() -> Doc:
    """Three models, each with several problems, plus a broken envelope."""
    doc = nic_doc()
    doc["implementation"]["extra"] = 1
    first = doc["models"][0]
    first["params"]["rx-table-size"]["init"] = 40
    first["constraints"].append({"when": {"speed": "25G"}, "require": {"rss": True}})
    first["versions"][1]["params"]["rx-queues"] = 99
    second = nic_doc()["models"][0]
    second["model"] = "example.org/devices/nic2"
    second["params"]["rss"]["off"] = "no"
    second["params"]["rx-queues"]["allowed"][0]["step"] = 0
    third = nic_doc()["models"][0]
    third["model"] = "example.org/devices/nic3"
    third["versions"].append({"name": "1", "params": {"turbo": True}})
    third["versions"].append({"name": "4", "params": {"rss": True}})
    doc["models"] += [second, third]
    return doc


BROKEN_PROBLEMS = {
    ("SCHEMA", ("implementation", "extra")),
    ("INIT_NOT_ALLOWED", ("models", 0, "params", "rx-table-size", "init")),
    ("CONSTRAINT_PARAM_UNKNOWN", ("models", 0, "constraints", 1, "when", "speed")),
    ("VERSION_VALUE_NOT_ALLOWED", ("models", 0, "versions", 1, "params", "rx-queues")),
    ("SCHEMA", ("models", 1, "params", "rss", "off")),
    ("SCHEMA", ("models", 1, "params", "rx-queues", "allowed", 0, "step")),
    ("VERSION_DUPLICATE", ("models", 2, "versions", 3, "name")),
    ("VERSION_PARAM_UNKNOWN", ("models", 2, "versions", 3, "params", "turbo")),
    ("VERSION_CONSTRAINT_VIOLATED", ("models", 2, "versions", 4, "params", "rx-queues")),
}


def test_a_document_with_many_problems_reports_them_all() -> None:
    found = problems(DocumentError, lambda: load_document(json.dumps(_broken_doc())))
    assert locs(found) == BROKEN_PROBLEMS
    assert len(found) == len(BROKEN_PROBLEMS)
    error = DocumentError(found)
    assert str(error).startswith(f"{len(found)} problems:")
    assert [d["loc"] for d in error.to_dicts()] == [list(p.loc) for p in found]


def test_a_host_report_with_many_problems_reports_them_all() -> None:
    report = host_report(nic_doc(), _broken_doc(), nic_doc())
    report["implementations"][1]["implementation"]["release"] = "2"
    report["owner"] = "ops"
    found = problems(DocumentError, lambda: load_host_report(report))
    expected = {(code, ("implementations", 1, *loc)) for code, loc in BROKEN_PROBLEMS}
    expected |= {
        ("SCHEMA", ("owner",)),
        ("SCHEMA", ("implementations", 2, "implementation")),  # acme-nic 3.0.0 twice
    }
    assert locs(found) == expected


# --------------------------------------------------------------------------- host reports


def test_host_report_loads() -> None:
    other = nic_doc()
    other["implementation"] = {"name": "acme-nic", "release": "2.0.0"}
    report = load_host_report(json.dumps(host_report(nic_doc(), other)))
    assert isinstance(report, HostReport)
    assert report.host == "host-a"
    assert [d.implementation.release for d in report.implementations] == ["3.0.0", "2.0.0"]
    assert [impl.release for impl, _ in report.candidates(NIC_ID)] == ["3.0.0", "2.0.0"]
    assert report.candidates("nope") == []
    assert load_host_report(report.to_json()) == report
    assert load_host_report({"format": HOST_REPORT_FORMAT, "host": "h"}).implementations == ()


@pytest.mark.parametrize(
    ("change", "loc"),
    [
        (_drop(("host",)), ("host",)),
        (_set(("host",), ""), ("host",)),
        (_set(("host",), 1), ("host",)),
        (_set(("format",), MODEL_DOCUMENT_FORMAT), ("format",)),
        (_drop(("format",)), ("format",)),
        (_set(("extra",), True), ("extra",)),
        (_set(("implementations",), {}), ("implementations",)),
        (_set(("implementations",), "acme"), ("implementations",)),
        (_set(("implementations", 0), []), ("implementations", 0)),
        (
            lambda r: r["implementations"].append(nic_doc()),
            ("implementations", 1, "implementation"),
        ),
    ],
)
def test_host_report_envelope_problems(
    change: Callable[[Doc], object], loc: tuple[Any, ...]
) -> None:
    report = host_report(nic_doc())
    change(report)
    found = problems(DocumentError, lambda: load_host_report(report))
    assert [(p.code, p.loc) for p in found] == [("SCHEMA", loc)], [p.render() for p in found]


def test_host_report_envelope_and_format_problems_together() -> None:
    report = {"format": "devmig/host-report/2", "owner": 1, "implementations": [[]]}
    found = problems(DocumentError, lambda: load_host_report(report))
    assert locs(found) == {
        ("SCHEMA", ("format",)),
        ("SCHEMA", ("host",)),
        ("SCHEMA", ("owner",)),
        ("SCHEMA", ("implementations", 0)),
    }


def test_a_document_given_as_a_host_report_says_so() -> None:
    found = problems(DocumentError, lambda: load_host_report(nic_doc()))
    problem = next(p for p in found if p.loc == ("format",))
    assert problem.allowed == [HOST_REPORT_FORMAT]
    assert problem.hint is not None and "model document" in problem.hint


@pytest.mark.parametrize(
    ("text", "loc"),
    [
        ('{"format": "\\ud800"}', ("format",)),
        ('{"models": [{"description": "x\\udfff"}]}', ("models", 0, "description")),
        ('{"models": [{"params": {"a\\ud800b": {}}}]}', ("models", 0, "params", "a\\ud800b")),
    ],
)
def test_lone_surrogates_are_refused(text: str, loc: tuple[Any, ...]) -> None:
    # "\ud800" is valid JSON syntax but no Unicode text: it could never be sent on as UTF-8
    for load in (load_document, load_host_report, load_any):
        found = problems(DocumentError, lambda load=load: load(text))
        assert [(p.code, p.loc) for p in found] == [("SCHEMA", loc)]
        json.dumps(DocumentError(found).to_dicts(), ensure_ascii=False).encode("utf-8")
    # a complete pair is fine
    assert (
        load_document(json.dumps(nic_doc()).replace("Example NIC", "\\ud83d\\ude00 NIC"))
        .models[0]
        .description.startswith("\U0001f600")
    )


# --------------------------------------------------------------------------- load_any


def test_load_any_tells_documents_and_reports_apart() -> None:
    doc = load_any(json.dumps(NIC_DOC))
    assert isinstance(doc, ModelDocument)
    report = load_any(json.dumps(host_report(nic_doc())).encode())
    assert isinstance(report, HostReport)
    assert report.implementations[0] == doc


@pytest.mark.parametrize("fmt", ["devmig/model-document/2", "", 1, None, ["devmig/host-report/1"]])
def test_load_any_refuses_other_formats(fmt: Any) -> None:
    raw = nic_doc()
    if fmt is None:
        del raw["format"]
    else:
        raw["format"] = fmt
    found = problems(DocumentError, lambda: load_any(raw))
    assert [(p.code, p.loc) for p in found] == [("SCHEMA", ("format",))]
    assert found[0].allowed == [MODEL_DOCUMENT_FORMAT, HOST_REPORT_FORMAT]


def test_load_any_parses_once() -> None:
    # A JSON string holding a document is a string, not a document.
    found = problems(DocumentError, lambda: load_any(json.dumps(json.dumps(NIC_DOC))))
    assert [(p.code, p.loc) for p in found] == [("SCHEMA", ())]


def test_errors_are_devmig_errors() -> None:
    with pytest.raises(DevmigError):
        load_any("{")
