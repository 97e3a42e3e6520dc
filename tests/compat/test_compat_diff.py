"""Tests of the release diff: a table row per rule id, examples that really break, data shape."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from compat_fixtures import NIC, NIC_ID, model_of, nic, variant

from devmig.compat import BREAKS, RULES, Change, ReleaseDiff, check, diff
from devmig.model import ModelDocument, expand

OLD = nic("3.0.0")


def _set(path: str, value: Any) -> Any:
    """An edit setting ``params.<name>.<key>`` (``path`` = ``name.key``)."""
    name, key = path.split(".")

    def edit(m: dict[str, Any]) -> None:
        m["params"][name][key] = value

    return edit


def _without_table(m: dict[str, Any]) -> None:
    del m["params"]["rx-table-size"]
    for v in m["versions"]:
        v["params"].pop("rx-table-size", None)


def _rx_queues_max_8(m: dict[str, Any]) -> None:
    m["params"]["rx-queues"]["allowed"] = [{"min": 1, "max": 8}]


def _table_set(m: dict[str, Any]) -> None:
    """Every version sets rx-table-size (for a NEW that refuses its off value)."""
    for v in m["versions"]:
        v["params"].setdefault("rx-table-size", 16)


def _rename(m: dict[str, Any]) -> None:
    m["model"] = "example.org/devices/other"


def _add_svm(m: dict[str, Any]) -> None:
    m["params"]["svm"] = {"type": "bool", "allowed": [True], "off": False, "init": True}
    for v in m["versions"]:
        v["params"]["svm"] = True


def _add_param(m: dict[str, Any]) -> None:
    m["params"]["tso"] = {"type": "bool", "off": False, "init": True}


STATE: dict[str, Any] = {
    "sections": [
        {"name": "queues", "fields": [{"name": "rx_index", "type": "u32[]", "max": "rx-queues"}]},
        {"name": "rss", "when": {"rss": True}, "fields": [
            {"name": "key", "type": "bytes", "max": 40},
            {"name": "table", "type": "u8[]", "max": "rx-table-size"},
        ]},
        {"name": "stats", "optional": True, "fields": [{"name": "hits", "type": "u64"}]},
    ],
    "regions": [{"name": "ring", "size": {"param": "rx-queues", "times": 4096}}],
}  # fmt: skip


def _state(m: dict[str, Any]) -> None:
    m["state"] = copy.deepcopy(STATE)


def _in_state(edit: Any) -> Any:
    def apply(m: dict[str, Any]) -> None:
        edit({s["name"]: s for s in m["state"]["sections"]}, m["state"])

    return apply


_drop_rss = _in_state(lambda s, st: st["sections"].remove(s["rss"]))
_extra_section = _in_state(
    lambda s, st: st["sections"].append({"name": "extra", "fields": [{"name": "n", "type": "u8"}]})
)
_rename_rx = _in_state(lambda s, st: s["queues"]["fields"][0].update(name="rx_head"))
_narrow_rx = _in_state(lambda s, st: s["queues"]["fields"][0].update(type="u16[]"))
_table_plus_one = _in_state(lambda s, st: s["rss"]["fields"][1].update(max={"param": "rx-table-size", "plus": 1}))
_bigger_ring = _in_state(lambda s, st: st["regions"][0].update(size={"param": "rx-queues", "times": 8192}))
_rss_always = _in_state(lambda s, st: s["rss"].pop("when"))
_tso_section = _in_state(
    lambda s, st: st["sections"].append(
        {"name": "tso", "when": {"tso": True}, "fields": [{"name": "n", "type": "u64"}]}
    )
)


def _constraint(when: dict[str, Any], require: dict[str, Any]) -> Any:
    def edit(m: dict[str, Any]) -> None:
        m["constraints"].append({"when": when, "require": require})

    return edit


def _drop_constraint(m: dict[str, Any]) -> None:
    m["constraints"] = []


def _speed_as_int(m: dict[str, Any]) -> None:
    m["params"]["link-speed"] = {"type": "int", "allowed": [{"min": 1, "max": 25}], "off": 1, "init": 25}
    m["versions"][2]["params"]["link-speed"] = 25


def _redefine_2(m: dict[str, Any]) -> None:
    m["versions"][1]["params"]["rx-queues"] = 6


def _drop_version_1(m: dict[str, Any]) -> None:
    del m["versions"][0]


def _add_version(m: dict[str, Any]) -> None:
    m["versions"].append({"name": "4", "params": {"rss": True, "rx-queues": 16}})


def _describe(m: dict[str, Any]) -> None:
    m["description"] = "a better description"


def _legacy(m: dict[str, Any]) -> None:
    """OLD-only: a parameter allowed at its off value only, and one forced off by a constraint."""
    m["params"]["legacy"] = {"type": "int", "allowed": [{"min": 0, "max": 0}], "off": 0, "init": 0}
    m["params"]["forced"] = {"type": "int", "allowed": [{"min": 0, "max": 4}], "off": 0, "init": 0}
    m["constraints"].append({"when": {}, "require": {"forced": 0}})


def _cap_queues(m: dict[str, Any]) -> None:
    """OLD-only: a constraint that keeps rx-queues at 8 or less."""
    m["constraints"].append({"when": {}, "require": {"rx-queues": {"max": 8}}})


def _remove(*names: str) -> Any:
    def edit(m: dict[str, Any]) -> None:
        for n in names:
            del m["params"][n]
        m["constraints"] = [k for k in m["constraints"] if not set(k["require"]) & set(names)]

    return edit


# (id, edits of OLD, edits of NEW, rule, loc, breaks)
CASES: list[tuple[str, list[Any], list[Any], str, tuple[Any, ...], tuple[str, ...]]] = [
    ("model-removed", [], [_rename], "MODEL_REMOVED", (), ("upgrade", "instantiate")),
    ("model-added", [], [_rename], "MODEL_ADDED", (), ()),
    ("param-removed", [], [_without_table], "PARAM_REMOVED", ("params", "rx-table-size"), ("upgrade",)),
    ("param-removed-only-off", [_legacy], [_remove("legacy")], "PARAM_REMOVED", ("params", "legacy"), ()),
    ("param-removed-forced-off", [_legacy], [_remove("forced")], "PARAM_REMOVED", ("params", "forced"), ()),
    ("param-added", [], [_add_param], "PARAM_ADDED", ("params", "tso"), ()),
    ("allowed-narrowed", [], [_rx_queues_max_8], "ALLOWED_NARROWED", ("params", "rx-queues", "allowed"),
     ("upgrade",)),
    ("allowed-narrowed-unused", [_cap_queues], [_cap_queues, _rx_queues_max_8], "ALLOWED_NARROWED",
     ("params", "rx-queues", "allowed"), ()),
    ("allowed-narrowed-off", [], [_set("rx-table-size.allowed", [{"min": 16, "max": 64, "step": 16}]), _table_set],
     "ALLOWED_NARROWED", ("params", "rx-table-size", "allowed"), ("upgrade",)),
    ("allowed-narrowed-step", [], [_set("rx-table-size.allowed", [{"min": 0, "max": 64, "step": 32}])],
     "ALLOWED_NARROWED", ("params", "rx-table-size", "allowed"), ("upgrade",)),
    ("allowed-widened", [], [_set("rx-queues.allowed", [{"min": 1, "max": 32}])], "ALLOWED_WIDENED",
     ("params", "rx-queues", "allowed"), ()),
    ("allowed-widened-str", [], [_set("link-speed.allowed", ["1G", "10G", "25G", "100G"])],
     "ALLOWED_WIDENED", ("params", "link-speed", "allowed"), ()),
    ("off-not-allowed", [], [_add_svm], "OFF_NOT_ALLOWED", ("params", "svm", "off"), ("upgrade",)),
    ("constraint-added", [], [_constraint({"link-speed": "25G"}, {"rx-queues": {"min": 4}})],
     "CONSTRAINT_ADDED", ("constraints", 1), ("upgrade",)),
    ("constraint-added-implied", [], [_constraint({"rss": True}, {"rx-queues": {"min": 2, "max": 16}})],
     "CONSTRAINT_ADDED", ("constraints", 1), ()),
    ("constraint-added-on-new-param-off", [], [_add_param, _constraint({"tso": True}, {"rx-queues": {"min": 2}})],
     "CONSTRAINT_ADDED", ("constraints", 1), ()),
    ("constraint-removed", [], [_drop_constraint], "CONSTRAINT_REMOVED", ("constraints", 0), ()),
    ("type-changed", [], [_speed_as_int], "TYPE_CHANGED", ("params", "link-speed", "type"), ("upgrade",)),
    ("off-value-changed", [], [_set("rx-table-size.off", 16)], "OFF_VALUE_CHANGED",
     ("params", "rx-table-size", "off"), ("upgrade", "rollback")),
    ("type-changes-off-too", [], [_speed_as_int], "OFF_VALUE_CHANGED", ("params", "link-speed", "off"),
     ("upgrade", "rollback")),
    ("state-section-removed", [_state], [_drop_rss], "STATE_SECTION_REMOVED", ("state", "sections", "rss"),
     ("upgrade", "rollback")),
    ("state-section-added", [_state], [_extra_section], "STATE_SECTION_ADDED", ("state", "sections", "extra"),
     ("upgrade", "rollback")),
    ("state-section-added-behind-new-param", [_state], [_add_param, _tso_section], "STATE_SECTION_ADDED",
     ("state", "sections", "tso"), ()),
    ("state-field-removed", [_state], [_rename_rx], "STATE_FIELD_REMOVED",
     ("state", "sections", "queues", "fields", "rx_index"), ("upgrade", "rollback")),
    ("state-field-added", [_state], [_rename_rx], "STATE_FIELD_ADDED",
     ("state", "sections", "queues", "fields", "rx_head"), ("upgrade", "rollback")),
    ("state-field-type-changed", [_state], [_narrow_rx], "STATE_FIELD_TYPE_CHANGED",
     ("state", "sections", "queues", "fields", "rx_index"), ("upgrade", "rollback")),
    ("state-field-max-changed", [_state], [_table_plus_one], "STATE_FIELD_MAX_CHANGED",
     ("state", "sections", "rss", "fields", "table"), ("upgrade", "rollback")),
    ("state-region-changed", [_state], [_bigger_ring], "STATE_REGION_CHANGED", ("state", "regions", "ring"),
     ("upgrade", "rollback")),
    ("state-condition-changed", [_state], [_rss_always], "STATE_CONDITION_CHANGED", ("state", "sections", "rss"),
     ("upgrade", "rollback")),
    ("version-redefined", [], [_redefine_2], "VERSION_REDEFINED", ("versions", "2"), ("upgrade", "rollback")),
    ("version-removed", [], [_drop_version_1], "VERSION_REMOVED", ("versions", "1"), ("instantiate",)),
    ("version-added", [], [_add_version], "VERSION_ADDED", ("versions", "4"), ()),
    ("init-changed", [], [_set("rx-queues.init", 4)], "INIT_CHANGED", ("params", "rx-queues", "init"), ()),
    ("description-changed", [], [_describe], "DESCRIPTION_CHANGED", ("description",), ()),
    ("param-description-changed", [], [_set("rss.description", "RSS")], "DESCRIPTION_CHANGED",
     ("params", "rss", "description"), ()),
]


def _find(d: ReleaseDiff, rule: str, loc: tuple[Any, ...]) -> Change:
    found = [c for c in d.changes if c.rule == rule and c.loc == loc]
    assert len(found) == 1, d.render()
    return found[0]


@pytest.mark.parametrize(
    ("old_edits", "new_edits", "rule", "loc", "breaks"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_diff_rule(
    old_edits: list[Any], new_edits: list[Any], rule: str, loc: tuple[Any, ...], breaks: tuple[str, ...]
) -> None:
    old = variant(*old_edits, release="3.0.0")
    new = variant(*old_edits, *new_edits, release="4.0.0")
    d = diff(old, new)
    change = _find(d, rule, loc)
    assert change.breaks == breaks
    assert change.exact
    assert rule in RULES
    if breaks:
        assert set(breaks) == set(BREAKS[rule])
        assert d.breaking
    _assert_example_breaks(old, new, change)


def _assert_example_breaks(old: ModelDocument, new: ModelDocument, change: Change) -> None:
    """A breaking change's example is a configuration OLD accepts that NEW refuses."""
    if "upgrade" not in change.breaks or change.rule.startswith("VERSION_"):
        return
    assert change.example is not None, change
    om = model_of(old, change.model)
    config = expand(om, change.example)  # OLD accepts it...
    assert not check(om, config, new).compatible, change  # ...NEW refuses it


def test_every_rule_has_a_row() -> None:
    assert {c[3] for c in CASES} == set(RULES)


def test_examples_are_specific() -> None:
    d = diff(OLD, variant(_rx_queues_max_8))
    (change,) = [c for c in d.changes if c.rule == "ALLOWED_NARROWED"]
    assert change.example is not None
    value = dict(expand(model_of(OLD), change.example).items)["rx-queues"]
    assert isinstance(value, int) and value > 8
    added = _find(diff(OLD, variant(_constraint({"link-speed": "25G"}, {"rx-queues": {"min": 4}}))),
                  "CONSTRAINT_ADDED", ("constraints", 1))
    values = expand(model_of(OLD), added.example or "").values
    assert values.get("link-speed") == "25G" and values.get("rx-queues", 1) < 4
    redefined = _find(diff(OLD, variant(_redefine_2)), "VERSION_REDEFINED", ("versions", "2"))
    assert (redefined.example, redefined.example_version) == ("version=2", "2")
    assert redefined.old == "rss=on,rx-queues=4,rx-table-size=32"
    assert redefined.new == "rss=on,rx-queues=6,rx-table-size=32"


def test_example_prefers_a_published_version() -> None:
    def narrow(m: dict[str, Any]) -> None:
        m["params"]["rx-table-size"].update(allowed=[{"min": 0, "max": 32, "step": 16}], init=32)
        m["versions"][2]["params"]["rx-table-size"] = 32

    change = _find(diff(OLD, variant(narrow)), "ALLOWED_NARROWED", ("params", "rx-table-size", "allowed"))
    assert (change.example, change.example_version) == ("version=3", "3")


def test_identical_documents_have_no_changes() -> None:
    d = diff(OLD, nic("3.0.0"))
    assert d.changes == () and not d.breaking
    assert diff(OLD, OLD).to_dict() == {"breaking": False, "changes": []}


def test_equivalent_ranges_are_no_change() -> None:
    split = variant(_set("rx-queues.allowed", [{"min": 1, "max": 8}, {"min": 9, "max": 16}]))
    assert diff(OLD, split).changes == ()


def test_to_dict_shape() -> None:
    d = diff(OLD, variant(_rx_queues_max_8, _add_param))
    data = d.to_dict()
    assert data["breaking"] is True
    assert [c["rule"] for c in data["changes"]] == ["ALLOWED_NARROWED", "PARAM_ADDED"]
    first = data["changes"][0]
    assert {"rule", "model", "loc", "breaks", "message", "example"} <= set(first)
    assert first["model"] == NIC_ID and first["loc"] == ["params", "rx-queues", "allowed"]
    assert first["breaks"] == ["upgrade"]
    assert first["old"] == [{"min": 1, "max": 16}] and first["new"] == [{"min": 1, "max": 8}]
    assert d.breaks == frozenset({"upgrade"})
    assert "ALLOWED_NARROWED" in d.render()


def test_several_changes_in_one_release() -> None:
    new = variant(_without_table, _rx_queues_max_8, _add_svm, _drop_version_1, release="4.0.0")
    d = diff(OLD, new)
    assert set(d.rules()) >= {"PARAM_REMOVED", "ALLOWED_NARROWED", "OFF_NOT_ALLOWED", "VERSION_REMOVED"}
    assert d.breaks == frozenset({"upgrade", "rollback", "instantiate"})  # v2, v3 redefined too


def test_multi_model_documents() -> None:
    raw = copy.deepcopy(NIC)
    second = copy.deepcopy(raw["models"][0])
    second["model"] = "example.org/devices/nic2"
    raw["models"].append(second)
    old = variant(base=raw)
    new = variant(_rx_queues_max_8, base=raw)  # edits the first model only
    d = diff(old, new)
    assert [c.model for c in d.changes] == [NIC_ID]


def test_a_diff_keeps_no_document_alive() -> None:
    """The solver spaces live for one call: a module cache keyed by model identity kept every diffed model
    alive (a space holds its model), until it was cleared all at once."""
    import gc
    import weakref

    def narrowed(m: dict[str, Any]) -> None:
        m["params"]["rx-queues"]["allowed"] = [{"min": 1, "max": 4}]
        m["params"]["rx-queues"]["init"] = 4
        m["versions"] = m["versions"][:2]

    old, new = nic("3.0.0"), variant(narrowed, release="3.1.0")
    result = diff(old, new)
    assert result.breaking  # the solver ran (a narrowed range that OLD's versions use)
    refs = [weakref.ref(model_of(old)), weakref.ref(model_of(new))]
    del old, new
    gc.collect()
    assert [r() for r in refs] == [None, None]


@pytest.mark.parametrize("enabled", [True, False])
def test_a_diff_leaves_the_collector_as_it_found_it(enabled: bool) -> None:
    """diff() pauses the cyclic collector while it runs (it forms no cycles); it re-enables only what it paused,
    also when the diff fails."""
    import gc

    was = gc.isenabled()
    try:
        (gc.enable if enabled else gc.disable)()
        assert diff(OLD, variant(_rx_queues_max_8)).breaking
        assert gc.isenabled() is enabled
        with pytest.raises(AttributeError):
            diff(OLD, None)  # type: ignore[arg-type]
        assert gc.isenabled() is enabled
    finally:
        (gc.enable if was else gc.disable)()


def test_a_diff_forms_no_reference_cycle() -> None:
    """What makes pausing the collector safe: everything a diff allocates is freed by reference counting."""
    import gc

    new = variant(_without_table, _rx_queues_max_8, _add_svm, _drop_version_1, release="4.0.0")
    was = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        result = diff(OLD, new)
        assert result.breaking
        del result
        assert gc.collect() == 0
    finally:
        if was:
            gc.enable()
