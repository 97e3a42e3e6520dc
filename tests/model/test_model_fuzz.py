"""Fuzzing: whatever goes in, only ``DevmigError`` subclasses come out.

The loaders and ``expand`` are where untrusted input enters the core (an
agent's HTTP body, a user's option string, a file). Any other exception —
``ValueError``, ``TypeError``, ``KeyError``, ``RecursionError``, a pydantic
error — is a bug.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from model_fixtures import NIC_DOC, host_report, nic, nic_doc

from devmig import ConfigError, DevmigError, DocumentError
from devmig.model import (
    Config,
    ModelDocument,
    expand,
    load_any,
    load_document,
    load_host_report,
    parse_canonical,
    parse_json,
)

FUZZ = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
LOADERS: list[Callable[[Any], object]] = [load_document, load_host_report, load_any]
NIC = nic()


def only_devmig_errors(call: Callable[[], object], error: type[DevmigError]) -> object | None:
    """Run ``call``; it may return or raise ``error``, whose problems must render."""
    try:
        return call()
    except error as exc:
        assert exc.problems
        assert str(exc)
        assert exc.to_dicts()
        for problem in exc.problems:
            assert problem.code.isupper()
            assert isinstance(problem.loc, tuple)
            assert all(isinstance(part, (str, int)) for part in problem.loc)
        if isinstance(exc, DocumentError):
            # what a document error says can be sent on: JSON, UTF-8
            json.dumps(exc.to_dicts(), ensure_ascii=False).encode("utf-8")
        return None


# --------------------------------------------------------------------------- option strings

option_tokens = st.sampled_from(
    list(",=,=,=")
    + list("rsx-queuableszi0x1gG9+-on ")
    + ["é", "\x00", "\n", "version", *NIC.params]
)
option_texts = st.one_of(
    st.text(),
    st.lists(option_tokens, max_size=30).map("".join),
    st.lists(
        st.tuples(
            st.sampled_from([*NIC.params, "version", "", "x", "RSS"]),
            st.one_of(
                st.none(),
                st.text(max_size=10),
                st.sampled_from(["on", "0x10", "-1", "48", "2", "25G", "9" * 5000]),
            ),
        ),
        max_size=6,
    ).map(lambda items: ",".join(k if v is None else f"{k}={v}" for k, v in items)),
)


@FUZZ
@given(option_texts)
def test_expand_fuzz(text: str) -> None:
    config = only_devmig_errors(lambda: expand(NIC, text), ConfigError)
    if config is not None:
        assert isinstance(config, Config)
        assert parse_canonical(NIC, config.string) == config


@FUZZ
@given(option_texts)
def test_parse_canonical_fuzz(text: str) -> None:
    only_devmig_errors(lambda: parse_canonical(NIC, text), ConfigError)


json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=10**4400, max_value=10**4500),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(),
)
hashables = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(), st.tuples(st.integers())
)
json_ish = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.tuples(children),
        st.dictionaries(st.text(max_size=10), children, max_size=4),
        st.dictionaries(hashables, children, max_size=3),  # keys JSON cannot have
    ),
    max_leaves=20,
)


@FUZZ
@given(
    st.dictionaries(
        st.one_of(st.sampled_from([*NIC.params, "version"]), hashables), json_ish, max_size=5
    )
)
def test_expand_mapping_fuzz(config: dict[Any, Any]) -> None:
    only_devmig_errors(lambda: expand(NIC, config), ConfigError)
    only_devmig_errors(lambda: parse_canonical(NIC, config), ConfigError)


@FUZZ
@given(json_ish)
def test_expand_anything_fuzz(config: Any) -> None:
    only_devmig_errors(lambda: expand(NIC, config), ConfigError)
    only_devmig_errors(lambda: parse_canonical(NIC, config), ConfigError)


# --------------------------------------------------------------------------- documents


def check_loaders(source: Any) -> None:
    for load in LOADERS:
        only_devmig_errors(lambda load=load: load(source), DocumentError)


@FUZZ
@given(st.text())
def test_load_text_fuzz(text: str) -> None:
    check_loaders(text)


@FUZZ
@given(st.binary())
def test_load_bytes_fuzz(data: bytes) -> None:
    check_loaders(data)


@FUZZ
@given(json_ish)
def test_load_data_fuzz(data: Any) -> None:
    check_loaders(data)
    try:
        text = json.dumps(data)
    except (TypeError, ValueError):
        return
    check_loaders(text)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            out += _paths(value, (*prefix, index))
    return out


NIC_PATHS = _paths(NIC_DOC)[1:]


@st.composite
def mutated_documents(draw: st.DrawFn) -> Any:
    """The example document with a few nodes replaced, deleted, or given extra keys."""
    doc = nic_doc()
    for _ in range(draw(st.integers(1, 4))):
        path = draw(st.sampled_from(NIC_PATHS))
        node: Any = doc
        try:
            for part in path[:-1]:
                node = node[part]
            action = draw(st.sampled_from(["replace", "delete", "extra"]))
            if action == "replace":
                node[path[-1]] = draw(json_ish)
            elif action == "delete" and isinstance(node, dict):
                del node[path[-1]]
            elif isinstance(node, dict):
                node[draw(st.one_of(st.text(max_size=5), hashables))] = draw(json_ish)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation removed the path
    return doc


@FUZZ
@given(mutated_documents())
def test_mutated_documents_fuzz(doc: Any) -> None:
    result = only_devmig_errors(lambda: load_document(doc), DocumentError)
    if result is not None:
        assert isinstance(result, ModelDocument)
        # an accepted document loads again from its published form
        assert load_document(result.to_json()) == result
    only_devmig_errors(lambda: load_host_report(host_report(doc)), DocumentError)
    only_devmig_errors(lambda: load_any(copy.deepcopy(doc)), DocumentError)
    try:
        text = json.dumps(doc)
    except (TypeError, ValueError):
        return
    only_devmig_errors(lambda: load_any(text), DocumentError)


@FUZZ
@given(mutated_documents(), st.data())
def test_mutated_documents_reject_options_cleanly(doc: Any, data: st.DataObject) -> None:
    try:
        loaded = load_document(doc)
    except DocumentError:
        return
    for model in loaded.models:
        text = data.draw(option_texts)
        only_devmig_errors(lambda model=model, text=text: expand(model, text), ConfigError)


# --------------------------------------------------------------------------- edges, by hand


def _nest(depth: int, open_: str, close: str) -> str:
    return open_ * depth + close * depth


EDGE_TEXTS = [
    pytest.param(_nest(100_000, "[", "]"), id="deep-arrays"),
    pytest.param(_nest(100_000, '{"a":', "}").replace("}", "1}", 1), id="deep-objects"),
    pytest.param('{"format": ' + _nest(5000, "[", "]") + "}", id="deep-format"),
    pytest.param("1" * 5000, id="huge-int"),
    pytest.param("-" + "1" * 100_000, id="huger-int"),
    pytest.param("1e999999", id="float-overflow"),
    pytest.param('{"format": NaN}', id="nan"),
    pytest.param("Infinity", id="infinity"),
    pytest.param('"\\ud800"', id="lone-surrogate"),
    pytest.param('{"\\ud800": 1}', id="lone-surrogate-key"),
    pytest.param("\ufeff{}", id="bom"),
    pytest.param('{"a": 1, "a": 2}', id="duplicate-key"),
    pytest.param("\x00", id="nul"),
    pytest.param("", id="empty"),
]


@pytest.mark.parametrize("text", EDGE_TEXTS)
def test_edge_texts(text: str) -> None:
    check_loaders(text)
    check_loaders(text.encode("utf-8", "surrogatepass"))


def _deep_list(depth: int) -> Any:
    node: Any = []
    for _ in range(depth):
        node = [node]
    return node


def _deep_dict(depth: int) -> Any:
    node: Any = {}
    for _ in range(depth):
        node = {"a": node}
    return node


def _with(path: tuple[Any, ...], value: Any) -> Any:
    doc = nic_doc()
    node: Any = doc
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return doc


P = ("models", 0, "params")
EDGE_DATA = [
    pytest.param(_deep_list(50_000), id="deep-list"),
    pytest.param(_deep_dict(50_000), id="deep-dict"),
    pytest.param(_with(("models",), _deep_list(50_000)), id="deep-models"),
    pytest.param(_with((*P, "rss"), _deep_dict(50_000)), id="deep-param"),
    pytest.param(
        _with(("models", 0, "constraints", 0, "when", "rss"), _deep_dict(50_000)),
        id="deep-condition",
    ),
    pytest.param(_with(("models", 0, "description"), _deep_list(50_000)), id="deep-description"),
    pytest.param(_with((*P, "rx-queues", "init"), 10**5000), id="huge-init"),
    pytest.param(
        _with((*P, "rx-queues", "allowed"), [{"min": -(10**5000), "max": 10**5000}]),
        id="huge-range",
    ),
    pytest.param(_with((*P, "rx-queues", "off"), math.nan), id="nan-off"),
    pytest.param(_with((*P, "rx-queues", "init"), math.inf), id="inf-init"),
    pytest.param(
        _with(("models", 0, "versions", 1, "params", "rx-queues"), 10**5000),
        id="huge-version-value",
    ),
    pytest.param(
        _with(("models", 0, "constraints", 0, "require", "rx-queues"), {"min": 10**5000}),
        id="huge-bound",
    ),
    pytest.param(_with(("models", 0, "params", "rss", "off"), b"\xff"), id="bytes-value"),
    pytest.param(_with(("models", 0, "params", "rss", "off"), object()), id="object-value"),
    pytest.param(
        _with(("models", 0, "params", 1), {"type": "bool", "off": False, "init": True}),
        id="int-param-name",
    ),
    pytest.param(_with(("models", 0, "params", None), {}), id="none-param-name"),
    pytest.param(_with(("models", 0, (1, 2)), 1), id="tuple-key"),
    pytest.param(_with(("models", 0, "description"), "\ud800"), id="surrogate-description"),
    pytest.param(_with(("models", 0, "params", "\ud800"), {}), id="surrogate-param-name"),
    pytest.param(_with(("format",), ["devmig/model-document/1"]), id="unhashable-format"),
    pytest.param({1: 2, None: 3, (4,): 5, 1.5: 6}, id="non-string-keys"),
    pytest.param(host_report(_deep_dict(50_000)), id="deep-in-report"),
    pytest.param(
        {
            "format": "devmig/host-report/1",
            "host": "h",
            "implementations": [1, "x", None, [], nic_doc()],
        },
        id="mixed-implementations",
    ),
]


@pytest.mark.parametrize("data", EDGE_DATA)
def test_edge_data(data: Any) -> None:
    check_loaders(data)


def test_huge_values_in_a_valid_document() -> None:
    doc = _with((*P, "rx-queues", "allowed"), [{"min": 1, "max": 10**4000}])
    model = load_document(doc).models[0]
    config = expand(model, "rx-queues=" + "9" * 4000)
    assert parse_canonical(model, config.string) == config
    assert config.string.startswith("link-speed=25G,rss=on,rx-queues=9999")
    with pytest.raises(ConfigError) as info:
        expand(model, "rx-queues=" + "9" * 5000)
    assert info.value.codes == ["VALUE_NOT_ALLOWED"]
    assert "rx-queues=0x" in str(info.value)  # rendered in hex, beyond decimal's limit


@pytest.mark.parametrize(
    ("data", "loc"),
    [
        (_with((*P, "rx-queues", "init"), 10**5000), (*P, "rx-queues", "init")),
        (
            _with((*P, "rx-queues", "allowed"), [{"min": -(10**4300), "max": 1}]),
            (*P, "rx-queues", "allowed", 0, "min"),
        ),
        (_with((*P, "rx-queues", "type"), 10**5000), (*P, "rx-queues", "type")),
        (_with((*P, 7), {}), (*P, "7")),
        (_with((*P, "rss", "allowed"), {True: 1}), (*P, "rss", "allowed", "True")),
        (
            host_report(_with(("models", 0, "model"), -(10**5000))),
            ("implementations", 0, "models", 0, "model"),
        ),
    ],
)
def test_data_that_json_cannot_hold_is_refused(data: Any, loc: tuple[Any, ...]) -> None:
    load = load_host_report if "host" in data else load_document
    for loader in (load, load_any):
        with pytest.raises(DocumentError) as info:
            loader(data)
        assert [(p.code, p.loc) for p in info.value.problems] == [("SCHEMA", loc)]
        assert str(info.value)


@pytest.mark.parametrize("text", ["{", "[1,]", '{"a": NaN}', "1" * 5000])
def test_parse_json_raises_document_errors(text: str) -> None:
    with pytest.raises(DocumentError) as info:
        parse_json(text)
    assert info.value.codes == ["JSON_SYNTAX"]
