"""Tests of the pairwise check: every code, every reason, host reports, hints, verdict data."""

from __future__ import annotations

from typing import Any

import pytest
from compat_fixtures import NIC_ID, canonical, model_of, nic, report, variant
from compat_strategies import accepted_configs, documents, release_pairs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devmig import CompatibilityError
from devmig.compat import ReleaseHistory, Verdict, check
from devmig.compat._check import reasons_for
from devmig.model import Config, DeviceModel, ModelDocument, expand

SOURCE = nic()
SRC = model_of(SOURCE)


def _without_table(m: dict[str, Any]) -> None:
    del m["params"]["rx-table-size"]
    for v in m["versions"]:
        v["params"].pop("rx-table-size", None)


def _rx_queues_max(n: int) -> Any:
    def edit(m: dict[str, Any]) -> None:
        m["params"]["rx-queues"]["allowed"] = [{"min": 1, "max": n}]
        m["params"]["rx-queues"]["init"] = min(m["params"]["rx-queues"]["init"], n)
        for v in m["versions"]:
            if "rx-queues" in v["params"]:
                v["params"]["rx-queues"] = min(v["params"]["rx-queues"], n)

    return edit


def _speeds(*speeds: str) -> Any:
    def edit(m: dict[str, Any]) -> None:
        m["params"]["link-speed"]["allowed"] = list(speeds)
        m["params"]["link-speed"]["init"] = speeds[-1]
        for v in m["versions"]:
            v["params"].pop("link-speed", None)

    return edit


def _rx_queues_bool(m: dict[str, Any]) -> None:
    m["params"]["rx-queues"] = {"type": "bool", "off": False, "init": True}
    m["constraints"] = []
    for v in m["versions"]:
        v["params"].pop("rx-queues", None)


def _add_svm(m: dict[str, Any]) -> None:
    m["params"]["svm"] = {"type": "bool", "allowed": [True], "off": False, "init": True}
    for v in m["versions"]:
        v["params"]["svm"] = True


def _add_constraint(m: dict[str, Any]) -> None:
    m["constraints"].append({"when": {"link-speed": "25G"}, "require": {"rx-queues": {"min": 4}}})


def _table_off_16(m: dict[str, Any]) -> None:
    m["params"]["rx-table-size"]["off"] = 16


def _rename(m: dict[str, Any]) -> None:
    m["model"] = "example.org/devices/other"


# (id, edits of the destination, configuration of the source, [(code, loc, rule)])
CASES: list[tuple[str, list[Any], str, list[tuple[str, tuple[Any, ...], int]]]] = [
    ("compatible", [], "version=3", []),
    ("model-unknown", [_rename], "", [("MODEL_UNKNOWN", ("model",), 1)]),
    ("param-unknown", [_without_table], "version=2",
     [("PARAM_UNKNOWN", ("config", "rx-table-size"), 2)]),
    ("param-at-off-is-fine", [_without_table], "rss=on,rx-queues=4,rx-table-size=0", []),
    ("value-not-allowed", [_rx_queues_max(8)], "rx-queues=12",
     [("VALUE_NOT_ALLOWED", ("config", "rx-queues"), 2)]),
    ("off-value-refused", [_add_svm], "", [("VALUE_NOT_ALLOWED", ("config", "svm"), 3)]),
    ("constraint-violated", [_add_constraint], "link-speed=25G,rx-queues=2,rss=off,rx-table-size=0",
     [("CONSTRAINT_VIOLATED", ("config", "rx-queues"), 4)]),
    ("off-value-mismatch", [_table_off_16], "", [("OFF_VALUE_MISMATCH", ("config", "rx-table-size"), 5)]),
    ("type-change-set", [_rx_queues_bool], "rx-queues=4,rss=off,rx-table-size=0,link-speed=1G",
     [("VALUE_NOT_ALLOWED", ("config", "rx-queues"), 2), ("OFF_VALUE_MISMATCH", ("config", "rx-queues"), 5)]),
    ("type-change-off", [_rx_queues_bool], "rss=off,rx-queues=1,rx-table-size=0,link-speed=1G",
     [("OFF_VALUE_MISMATCH", ("config", "rx-queues"), 5)]),
    ("every-reason", [_without_table, _rx_queues_max(8), _speeds("1G", "10G"), _add_svm],
     "rss=on,rx-queues=16,rx-table-size=32,link-speed=25G",
     [("VALUE_NOT_ALLOWED", ("config", "link-speed"), 2), ("VALUE_NOT_ALLOWED", ("config", "rx-queues"), 2),
      ("PARAM_UNKNOWN", ("config", "rx-table-size"), 2), ("VALUE_NOT_ALLOWED", ("config", "svm"), 3)]),
]


@pytest.mark.parametrize(("edits", "config", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_check_reports_every_reason(
    edits: list[Any], config: str, expected: list[tuple[str, tuple[Any, ...], int]]
) -> None:
    dest = variant(*edits, release="9.0.0")
    verdict = check(SRC, expand(SRC, config), dest)
    got = [(p.code, p.loc, p.context["rule"]) for p in verdict.reasons]
    assert got == expected
    assert verdict.compatible is (not expected)
    if expected and expected[0][0] == "MODEL_UNKNOWN":
        assert verdict.implementation is None
    else:
        assert verdict.implementation == dest.implementation
    for p in verdict.reasons:
        assert p.message and p.hint
        assert "allowed" in p.to_dict()


def test_reasons_carry_value_allowed_and_nearest_hint() -> None:
    dest = variant(_rx_queues_max(8), release="9.0.0")
    (reason,) = check(SRC, expand(SRC, "rx-queues=12"), dest).reasons
    assert reason.value == 12
    assert reason.allowed == [{"min": 1, "max": 8}]
    assert reason.hint is not None and "nearest allowed values: 8" in reason.hint


def test_off_value_mismatch_names_both_values() -> None:
    (reason,) = check(SRC, expand(SRC, ""), variant(_table_off_16)).reasons
    assert (reason.value, reason.allowed) == (0, 16)


def test_type_change_is_not_a_crash_and_values_stay_typed() -> None:
    dest = variant(_rx_queues_bool)
    verdict = check(SRC, expand(SRC, "rss=off,rx-queues=1,rx-table-size=0"), dest)
    assert verdict.codes == ["OFF_VALUE_MISMATCH"]
    # the source's off value 1 is not the destination's True/False
    assert verdict.reasons[0].value == 1 and verdict.reasons[0].value is not True


def test_bool_is_not_int() -> None:
    """A destination whose int parameter allows 1 does not accept the bool ``True`` for it."""
    src = variant(_rx_queues_bool)
    m = model_of(src)
    verdict = check(m, expand(m, "rx-queues=on,rss=off"), SOURCE)  # SOURCE allows the int 1
    assert verdict.codes == ["VALUE_NOT_ALLOWED", "OFF_VALUE_MISMATCH"]
    assert verdict.reasons[0].value is True


def test_several_failures_give_several_reasons_with_constraints() -> None:
    def two_constraints(m: dict[str, Any]) -> None:
        m["constraints"] += [
            {"when": {"link-speed": "25G"}, "require": {"rx-queues": {"min": 4}}},
            {"when": {}, "require": {"rx-table-size": {"max": 32}}},
        ]
        m["params"]["rx-table-size"]["init"] = 32
        m["versions"] = m["versions"][:2]

    verdict = check(SRC, expand(SRC, "link-speed=25G,rx-queues=2,rss=on,rx-table-size=64"), variant(two_constraints))
    assert verdict.codes == ["CONSTRAINT_VIOLATED", "CONSTRAINT_VIOLATED"]
    assert {p.context["constraint"] for p in verdict.reasons} == {1, 2}


# -- destinations ----------------------------------------------------------------


def test_host_report_any_accepting_implementation_is_enough() -> None:
    refusing = variant(_rx_queues_max(8), release="1.0.0")
    accepting = nic("3.0.0")
    host = report("host-a", refusing, accepting)
    verdict = check(SRC, expand(SRC, "rx-queues=12"), host)
    assert verdict.compatible
    assert verdict.implementation == accepting.implementation


def test_host_report_none_accepting_names_fewest_reasons_candidate() -> None:
    many = variant(_without_table, _rx_queues_max(8), _speeds("1G", "10G"), release="1.0.0")
    few = variant(_rx_queues_max(8), release="2.0.0")
    host = report("host-a", many, few)
    verdict = check(SRC, expand(SRC, "rss=on,rx-queues=16,rx-table-size=32,link-speed=25G"), host)
    assert not verdict.compatible
    assert verdict.implementation == few.implementation
    assert verdict.codes == ["VALUE_NOT_ALLOWED"]
    # ties go to the first candidate listed
    tie = check(SRC, expand(SRC, "rx-queues=16"), report("h", few, variant(_rx_queues_max(4), release="2.5")))
    assert tie.implementation == few.implementation


def test_host_report_without_the_model() -> None:
    other = variant(_rename)
    verdict = check(SRC, expand(SRC, ""), report("host-b", other))
    assert verdict.codes == ["MODEL_UNKNOWN"]
    assert verdict.implementation is None
    assert verdict.reasons[0].allowed == ["example.org/devices/other"]
    assert "host-b" in verdict.reasons[0].message
    assert check(SRC, expand(SRC, ""), report("empty")).codes == ["MODEL_UNKNOWN"]


def test_bare_device_model_destination() -> None:
    assert check(SRC, expand(SRC, "version=2"), SRC) == Verdict(True, None, ())
    dest = model_of(variant(_rx_queues_max(8)))
    verdict = check(SRC, expand(SRC, "rx-queues=12"), dest)
    assert verdict.codes == ["VALUE_NOT_ALLOWED"] and verdict.implementation is None
    assert check(SRC, expand(SRC, ""), variant(_rename).models[0]).codes == ["MODEL_UNKNOWN"]


def test_config_of_another_model_is_a_caller_error() -> None:
    with pytest.raises(ValueError, match="model"):
        check(SRC, Config("example.org/devices/other", ()), SOURCE)


# -- history ------------------------------------------------------------------


def test_history_hint_names_the_release_that_added_a_parameter() -> None:
    old = variant(_without_table, release="1.0.0")
    new = nic("2.0.0")
    verdict = check(SRC, expand(SRC, "version=2"), old, history=[old, new])
    assert verdict.reasons[0].hint == "rx-table-size is introduced in acme-nic 2.0.0"
    history = ReleaseHistory.learn([old, new])
    assert history.added_in(NIC_ID, "rx-table-size", "acme-nic") == new.implementation
    assert history.added_in(NIC_ID, "rx-table-size") == new.implementation
    assert history.added_in(NIC_ID, "nope") is None
    assert (
        check(SRC, expand(SRC, "version=2"), old, history=history).reasons[0].hint
        == "rx-table-size is introduced in acme-nic 2.0.0"
    )
    # without history the hint still says what would work
    plain = check(SRC, expand(SRC, "version=2"), old).reasons[0].hint
    assert plain is not None and "off value" in plain


def test_history_hint_names_the_release_that_allows_a_value() -> None:
    old = variant(_rx_queues_max(8), release="1.0.0")
    new = nic("2.0.0")
    (reason,) = check(SRC, expand(SRC, "rx-queues=12"), old, history=[old, new]).reasons
    assert reason.hint is not None and "first allowed in acme-nic 2.0.0" in reason.hint
    assert ReleaseHistory.learn([old, new]).allowed_since(NIC_ID, "rx-queues", 12) == new.implementation


# -- the verdict as data -------------------------------------------------------


def test_verdict_to_dict_and_raise_for() -> None:
    ok = check(SRC, expand(SRC, ""), SOURCE)
    assert ok.to_dict() == {
        "compatible": True,
        "implementation": {"name": "acme-nic", "release": "3.0.0"},
        "reasons": [],
    }
    ok.raise_for()
    bad = check(SRC, expand(SRC, "rx-queues=12"), variant(_rx_queues_max(8)))
    data = bad.to_dict()
    assert data["compatible"] is False
    assert data["reasons"][0]["code"] == "VALUE_NOT_ALLOWED"
    assert data["reasons"][0]["loc"] == ["config", "rx-queues"]
    with pytest.raises(CompatibilityError) as info:
        bad.raise_for()
    assert info.value.problems == bad.reasons
    assert info.value.code == "VALUE_NOT_ALLOWED"
    assert "incompatible" in bad.render() and "compatible" in ok.render()
    gone = check(SRC, expand(SRC, ""), variant(_rename)).to_dict()
    assert gone["implementation"] is None


def test_examples_history_hint() -> None:
    from compat_fixtures import example_documents

    docs = example_documents().get("acme-nic")
    if not docs or len(docs) < 2:
        pytest.skip("acme-nic examples not shipped")
    by_release = {d.implementation.release: d for d in docs}
    if not {"2.0.0", "3.0.0"} <= set(by_release):
        pytest.skip("acme-nic 2.0.0 and 3.0.0 not shipped")
    m = model_of(by_release["3.0.0"])
    verdict = check(m, expand(m, "version=1,tso=on"), by_release["2.0.0"], history=docs)
    assert verdict.codes == ["PARAM_UNKNOWN"]
    assert verdict.reasons[0].hint == "tso is introduced in acme-nic 3.0.0"


# -- properties ---------------------------------------------------------------

PROPS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPS
@given(st.data())
def test_reflexive_every_accepted_configuration_is_compatible(data: st.DataObject) -> None:
    doc: ModelDocument = data.draw(documents())
    m = doc.models[0]
    config = data.draw(accepted_configs(m))
    verdict = check(m, config, doc)
    assert verdict.compatible, verdict.render()
    assert verdict.implementation == doc.implementation
    # against a copy (equal but not identical objects) and inside a host report
    twin = ModelDocument.model_validate(doc.to_json())
    assert check(m, config, twin).compatible
    assert check(m, config, report("h", twin)).compatible
    for name, v in ((v.name, v) for v in m.versions):
        assert check(m, canonical(m, m.version_values(v)), doc).compatible, name


@PROPS
@given(st.data())
def test_fast_path_agrees_with_the_reasons(data: st.DataObject) -> None:
    old, new = data.draw(release_pairs())
    om = old.models[0]
    config = data.draw(accepted_configs(om))
    verdict = check(om, config, new)
    nm: DeviceModel | None = new.find(om.model)
    assert nm is not None
    slow = reasons_for(om, config, new.implementation, nm)
    assert verdict.compatible is (not slow)
    assert verdict.reasons == slow
    codes = {p.code for p in slow}
    assert codes <= {
        "PARAM_UNKNOWN",
        "VALUE_NOT_ALLOWED",
        "CONSTRAINT_VIOLATED",
        "OFF_VALUE_MISMATCH",
        "STATE_LAYOUT_MISMATCH",
    }
