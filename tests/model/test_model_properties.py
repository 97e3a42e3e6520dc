"""Hypothesis properties over random valid models and accepted configurations."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from model_fixtures import SCHEMA_DIR, load_model
from model_strategies import (
    allowed_values,
    documents,
    host_reports,
    model_and_raw,
    option_strings,
)

from devmig import ConfigError
from devmig.model import (
    Config,
    DeviceModel,
    convert_value,
    expand,
    format_options,
    format_value,
    load_any,
    load_document,
    load_host_report,
    parse_canonical,
    same_value,
    split_options,
    version_of,
)

PROPERTY = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.data_too_large,
    ],
)

DOC_VALIDATOR = jsonschema.Draft202012Validator(
    json.loads((SCHEMA_DIR / "model-document.json").read_text())
)
REPORT_VALIDATOR = jsonschema.Draft202012Validator(
    json.loads((SCHEMA_DIR / "host-report.json").read_text())
)


def accepted(model: DeviceModel, text: str) -> Config:
    """Expand ``text``; skip the example when it violates a constraint (values are allowed)."""
    try:
        return expand(model, text)
    except ConfigError as exc:
        assert set(exc.codes) == {"CONSTRAINT_VIOLATED"}, exc
        assume(False)
        raise  # pragma: no cover


def full_string(model: DeviceModel, config: Config) -> str:
    """Name every parameter explicitly: no value comes from init or a version."""
    return format_options(sorted(config.full(model).items()))


# --------------------------------------------------------------------------- documents


@PROPERTY
@given(documents())
def test_generated_documents_load_and_pass_the_schema(raw: dict[str, Any]) -> None:
    DOC_VALIDATOR.validate(raw)
    doc = load_document(json.dumps(raw))
    assert load_any(raw) == doc
    # the published form is valid too and loads back to the same document
    published = doc.to_json()
    DOC_VALIDATOR.validate(published)
    assert load_document(published) == doc
    assert [m.model for m in doc.models] == [m["model"] for m in raw["models"]]


@settings(PROPERTY, max_examples=40)
@given(host_reports())
def test_generated_host_reports_load_and_pass_the_schema(raw: dict[str, Any]) -> None:
    REPORT_VALIDATOR.validate(raw)
    report = load_host_report(json.dumps(raw).encode())
    assert load_any(raw) == report
    REPORT_VALIDATOR.validate(report.to_json())
    assert len(report.implementations) == len(raw["implementations"])


# --------------------------------------------------------------------------- values


@PROPERTY
@given(st.one_of(st.booleans(), st.integers(), st.integers(-(2**20000), 2**20000), st.text()))
def test_format_value_round_trips(value: bool | int | str) -> None:
    kind = "bool" if isinstance(value, bool) else "int" if isinstance(value, int) else "str"
    text = format_value(value)
    items, found = split_options(f"k={text}")
    assert found == []
    assert len(items) == 1
    back = convert_value(kind, items[0].value)
    assert same_value(back, value)


@PROPERTY
@given(st.lists(st.tuples(st.sampled_from("abcde"), st.text()), unique_by=lambda t: t[0]))
def test_format_options_round_trips_strings(pairs: list[tuple[str, str]]) -> None:
    items, found = split_options(format_options(pairs))
    assert found == []
    assert [(i.key, i.value) for i in items] == pairs or pairs == []


# --------------------------------------------------------------------------- configurations


@PROPERTY
@given(st.data())
def test_canonical_string_round_trips(data: st.DataObject) -> None:
    model, raw = data.draw(model_and_raw())
    config = accepted(model, data.draw(option_strings(raw)))
    event(f"a value with a comma: {any(isinstance(v, str) and ',' in v for _, v in config.items)}")
    event(f"parameters named: {min(len(config.items), 3)}")
    # canonical: sorted, off values dropped
    assert [k for k, _ in config.items] == sorted(k for k, _ in config.items)
    assert all(not same_value(v, model.params[k].off) for k, v in config.items)
    # parse(format(c)) == c, as typed values, on the string and on the wire
    assert parse_canonical(model, config.string) == config
    assert parse_canonical(model, json.loads(json.dumps(config.to_dict()))["config"]) == config
    # expanding a string that names every parameter gives the same configuration again
    again = expand(model, full_string(model, config))
    assert again == config
    assert expand(model, full_string(model, again)) == again


@PROPERTY
@given(st.data())
def test_expand_of_the_canonical_string(data: st.DataObject) -> None:
    """``expand`` reads a canonical string back as the same configuration exactly
    when every parameter it leaves out has an init value equal to its off value
    (DESIGN §2: without a version, omitted parameters take their init values)."""
    model, raw = data.draw(model_and_raw())
    config = accepted(model, data.draw(option_strings(raw)))
    named = {k for k, _ in config.items}
    omitted_init_is_off = all(
        same_value(p.init, p.off) for name, p in model.params.items() if name not in named
    )
    try:
        again: Config | None = expand(model, config.string)
    except ConfigError:
        again = None
    event(f"expand reads the canonical string back: {omitted_init_is_off}")
    assert (again == config) is omitted_init_is_off
    if again is not None:
        assert expand(model, again.string) == again  # idempotent from the first expansion on


@PROPERTY
@given(st.data())
def test_versions_expand_to_their_configuration(data: st.DataObject) -> None:
    model, _ = data.draw(model_and_raw())
    assume(model.versions)
    version = data.draw(st.sampled_from(model.versions))
    config = expand(model, {"version": version.name})
    assert expand(model, "version=" + version.name.replace(",", ",,")) == config
    expected = {**model.off_values, **version.params}
    assert config.full(model) == expected
    assert all(same_value(config.full(model)[k], v) for k, v in expected.items())
    assert config == Config(model.model, model.canonical_items(expected))
    # the version that names it is the newest with that configuration
    newest = [
        v.name
        for v in model.versions
        if Config(model.model, model.canonical_items(model.version_values(v))) == config
    ]
    event(f"versions with this configuration: {min(len(newest), 2)}")
    assert version_of(model, config) == newest[-1]
    assert parse_canonical(model, config.string) == config


@PROPERTY
@given(st.data())
def test_explicit_values_win(data: st.DataObject) -> None:
    model, raw = data.draw(model_and_raw())
    name = data.draw(st.sampled_from(sorted(raw["params"])))
    value = data.draw(allowed_values(raw["params"][name]))
    prefix = ""
    if model.versions and data.draw(st.booleans()):
        prefix = (
            "version=" + data.draw(st.sampled_from(model.versions)).name.replace(",", ",,") + ","
        )
    config = accepted(model, prefix + format_options([(name, value)]))
    assert same_value(config.full(model)[name], value)


@PROPERTY
@given(st.data())
def test_init_configuration(data: st.DataObject) -> None:
    model, _ = data.draw(model_and_raw())
    config = expand(model, "")
    assert config.full(model) == model.init_values
    assert config == expand(model, None) == expand(model, {})


@PROPERTY
@given(st.data())
def test_a_value_outside_allowed_is_named(data: st.DataObject) -> None:
    model, raw = data.draw(model_and_raw())
    ints = [n for n, p in raw["params"].items() if p["type"] == "int"]
    assume(ints)
    name = data.draw(st.sampled_from(ints))
    param = model.params[name]
    value = data.draw(st.integers(-3000, 3000).filter(lambda v: not param.allows(v)))
    with pytest.raises(ConfigError) as info:
        expand(model, f"{name}={value}")
    problem = next(p for p in info.value.problems if p.code == "VALUE_NOT_ALLOWED")
    assert problem.loc == ("config", name)
    assert problem.value == value
    assert problem.allowed == param.allowed_json()
    near = [
        int(v) for v in (problem.hint or "").removeprefix("nearest allowed values: ").split(", ")
    ]
    assert near and all(param.allows(v) for v in near)
    # nothing allowed is nearer than the nearest named
    best = min(abs(v - value) for v in near)
    for r in param.allowed:
        for candidate in r.nearest(value):
            assert abs(candidate - value) >= best


@PROPERTY
@given(
    st.lists(st.text(",=a é", max_size=6), min_size=1, max_size=5, unique=True),
    st.data(),
)
def test_string_values_with_commas_round_trip(allowed: list[str], data: st.DataObject) -> None:
    off = data.draw(st.sampled_from(allowed))
    init = data.draw(st.sampled_from(allowed))
    model = load_model(
        {
            "model": "m",
            "params": {
                "s": {"type": "str", "allowed": allowed, "off": off, "init": init},
                "t": {"type": "str", "allowed": allowed, "off": off, "init": init},
            },
        }
    )
    s, t = data.draw(st.sampled_from(allowed)), data.draw(st.sampled_from(allowed))
    config = expand(model, format_options([("s", s), ("t", t)]))
    assert config.full(model) == {"s": s, "t": t}
    assert parse_canonical(model, config.string) == config
    assert expand(model, full_string(model, config)) == config
