"""Rule 6 of DESIGN §3 (published state layouts agree) in the check, placement, rollback sets,
baselines and upgrade plans — all through the same evaluator."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

from devmig._examples import example_text
from devmig.compat import (
    FleetSnapshot,
    HostState,
    Profile,
    RunningDevice,
    baseline,
    check,
    place,
    plan_upgrade,
    rollback_set,
)
from devmig.model import ModelDocument, expand, load_document

NIC = "example.org/devices/nic"
RAW = json.loads(example_text("acme-nic/3.0.0"))


def nic(edit: Callable[[dict[str, Any]], None] | None = None, release: str = "3.0.0") -> ModelDocument:
    raw = copy.deepcopy(RAW)
    raw["implementation"]["release"] = release
    if edit is not None:
        edit(raw["models"][0]["state"])
    return load_document(raw)


def _section(state: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in state["sections"] if s["name"] == name)


def narrowed(state: dict[str, Any]) -> None:
    _section(state, "queues")["fields"][0]["type"] = "u16[]"


V3 = nic()
SRC = V3.models[0]


def test_a_narrowed_field_is_refused_naming_it_and_both_types() -> None:
    verdict = check(SRC, expand(SRC, ""), nic(narrowed, "3.0.1"))
    assert not verdict.compatible
    assert verdict.codes == ["STATE_LAYOUT_MISMATCH"]
    reason = verdict.reasons[0]
    assert reason.loc == ("state", "section", "queues", "field", "rx_index")
    assert (reason.value, reason.allowed) == ("u32[]", "u16[]")
    assert "u32[]" in reason.message and "u16[]" in reason.message and "acme-nic 3.0.1" in reason.message
    assert reason.context["rule"] == 6


def test_only_configurations_whose_layouts_differ_are_refused() -> None:
    def table_plus_one(state: dict[str, Any]) -> None:
        _section(state, "rss")["fields"][1]["max"] = {"param": "rx-table-size", "plus": 1}

    dest = nic(table_plus_one, "3.0.1")
    assert check(SRC, expand(SRC, "version=1"), dest).compatible  # rss off: no rss section on either side
    verdict = check(SRC, expand(SRC, ""), dest)
    assert verdict.codes == ["STATE_LAYOUT_MISMATCH"]
    assert (verdict.reasons[0].value, verdict.reasons[0].allowed) == (128, 129)


def test_an_optional_section_only_one_side_has_is_ignored_but_compared_when_both_have_it() -> None:
    def no_stats(state: dict[str, Any]) -> None:
        state["sections"] = [s for s in state["sections"] if s["name"] != "stats"]

    def stats_field_renamed(state: dict[str, Any]) -> None:
        _section(state, "stats")["fields"][0]["name"] = "writes"

    def stats_required(state: dict[str, Any]) -> None:
        _section(state, "stats")["optional"] = False

    config = expand(SRC, "")
    assert check(SRC, config, nic(no_stats, "3.0.1")).compatible
    assert check(nic(no_stats).models[0], config, V3).compatible
    renamed = check(SRC, config, nic(stats_field_renamed, "3.0.1"))
    assert renamed.reasons[0].loc == ("state", "section", "stats", "field", "table_writes")
    required = check(SRC, config, nic(stats_required, "3.0.1"))
    assert required.reasons[0].loc == ("state", "section", "stats")
    assert required.reasons[0].context["what"] == "optional"


def test_rule_6_needs_a_layout_on_both_sides_and_stays_quiet_behind_other_reasons() -> None:
    raw = copy.deepcopy(RAW)
    del raw["models"][0]["state"]
    bare = load_document(raw)
    assert check(SRC, expand(SRC, ""), bare).compatible
    assert check(bare.models[0], expand(bare.models[0], ""), nic(narrowed)).compatible
    old = load_document(example_text("acme-nic/2.0.0"))
    verdict = check(SRC, expand(SRC, ""), old)  # tso=on: 2.0.0 has neither the parameter nor the section
    assert "PARAM_UNKNOWN" in verdict.codes and "STATE_LAYOUT_MISMATCH" not in verdict.codes
    assert check(SRC, expand(SRC, "version=3"), old).compatible  # the layouts agree where tso is off


def _fleet() -> FleetSnapshot:
    good = Profile.of([V3])
    bad = Profile.of([nic(narrowed, "3.0.1")])
    hosts = [
        HostState("good", good.fingerprint),
        HostState("bad", bad.fingerprint),
        HostState("home", good.fingerprint),
    ]
    return FleetSnapshot.build([good, bad], hosts)


def test_placement_rollback_baseline_and_upgrade_apply_rule_6() -> None:
    snapshot = _fleet()
    device = RunningDevice(NIC, expand(SRC, ""), SRC, "home")
    placement = place(snapshot, [device])
    assert placement.accepted == ["good"]
    assert [p.code for p in placement.rejected["bad"]] == ["STATE_LAYOUT_MISMATCH"]
    rollback = rollback_set(snapshot, device)
    assert rollback.hosts == ["good"]
    assert [p.code for p in rollback.rejected["bad"]] == ["STATE_LAYOUT_MISMATCH"]
    # every configuration has the queues section: no baseline; new devices are created on the
    # newest release (the narrowed one), so "good" blocks, by rule 6
    assert baseline(snapshot, ["good"], NIC).version == "4"
    pool = baseline(snapshot, ["good", "bad"], NIC)
    assert pool.version is None
    assert set(pool.blocking) == {"good"}
    assert {p.code for p in pool.blocking["good"]} == {"STATE_LAYOUT_MISMATCH"}
    # upgrading every host to the narrowed release strands the device: no host keeps its layout
    plan = plan_upgrade(snapshot, ["good", "home"], [nic(narrowed, "3.0.1")], {"home": [device]})
    assert [issue.device for issue in plan.stranded] == [device]
    assert {p.code for reasons in plan.stranded[0].reasons.values() for p in reasons} == {"STATE_LAYOUT_MISMATCH"}
