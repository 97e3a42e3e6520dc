"""Profiles and placement: fingerprints, the indexed evaluator against the pairwise check, ranking."""

from __future__ import annotations

from typing import Any

import pytest
from compat_fixtures import NIC_ID, canonical, example_documents, model_of, nic, report, variant
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from test_fleet_strategies import fleets, vms

from devmig import ConfigError
from devmig.compat import (
    FleetSnapshot,
    HostState,
    NewDevice,
    Placement,
    Profile,
    ProfileRegistry,
    RunningDevice,
    check,
    document_json,
    fingerprint_of,
    newest_definition,
    place,
    profile_fingerprint,
    profile_json,
)
from devmig.compat._index import fleet_index, model_key, published_configs
from devmig.compat._placement import resolve
from devmig.model import ModelDocument, expand

PROPS = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]
)


def docs() -> dict[str, ModelDocument]:
    out = {}
    for impl, releases in example_documents().items():
        for d in releases:
            if "broken" not in d.implementation.release:
                out[f"{impl}/{d.implementation.release}"] = d
    return out


EX = docs()


def fleet(*hosts: tuple[str, list[str], dict[str, Any]]) -> FleetSnapshot:
    registry = ProfileRegistry()
    for name, names, state in hosts:
        registry.register(report(name, *(EX[n] for n in names)), **state)
    return registry.snapshot()


# -- profiles ---------------------------------------------------------------------


def test_fingerprint_ignores_host_name_and_document_order() -> None:
    a = report("a", EX["acme-nic/3.0.0"], EX["acme-blk/2.0.0"])
    b = report("b", EX["acme-blk/2.0.0"], EX["acme-nic/3.0.0"])
    assert profile_fingerprint(a) == profile_fingerprint(b) == Profile.of(b).fingerprint
    assert len(profile_fingerprint(a)) == 32
    assert profile_fingerprint(a) != profile_fingerprint(report("a", EX["acme-nic/3.0.0"]))


def test_fingerprint_is_the_canonical_json_of_sorted_documents() -> None:
    import json

    import xxhash

    d1, d2 = EX["acme-nic/3.0.0"], EX["acme-blk/2.0.0"]
    text = json.dumps([d2.to_json(), d1.to_json()], sort_keys=True, separators=(",", ":"))
    assert profile_fingerprint([d1, d2]) == xxhash.xxh3_128_hexdigest(text.encode())
    assert profile_json([d1, d2]) == text and fingerprint_of(text) == profile_fingerprint([d1, d2])
    assert profile_json([d1, d2], render=document_json) == text


def test_any_content_change_changes_the_fingerprint() -> None:
    narrowed = variant(lambda m: m["params"]["rx-queues"]["allowed"][0].update(max=15))
    assert profile_fingerprint([nic()]) != profile_fingerprint([narrowed])


def test_registry_shares_profiles_and_validates_raw_reports() -> None:
    registry = ProfileRegistry()
    raw = report("x", EX["acme-nic/2.0.0"]).to_json()
    a = registry.register({**raw, "host": "a"}, load=3, pools=["p"])
    b = registry.register(__import__("json").dumps({**raw, "host": "b"}))
    c = registry.register(report("c", EX["acme-nic/2.0.0"]))
    assert a.fingerprint == b.fingerprint == c.fingerprint
    assert (a.load, a.pools) == (3, frozenset({"p"}))
    snap = registry.snapshot()
    assert len(snap.profiles) == 1 and sorted(snap.hosts) == ["a", "b", "c"]
    assert snap.hosts_in("p") == ["a"]
    with pytest.raises(Exception) as info:
        registry.register({**raw, "host": "d", "format": "nope"})
    assert "SCHEMA" in str(info.value)


def test_snapshot_refuses_unknown_profiles() -> None:
    with pytest.raises(ValueError):
        FleetSnapshot.build([], [HostState("a", "0" * 32)])


def test_newest_definition_uses_numeric_release_order() -> None:
    snap = fleet(("a", ["acme-nic/1.0.0"], {}), ("b", ["acme-nic/3.0.0"], {}), ("c", ["acme-nic/2.0.0"], {}))
    newest = newest_definition(snap, NIC_ID)
    assert newest is not None and newest[0].release == "3.0.0"
    assert newest_definition(snap, "example.org/none") is None


# -- placement: table ---------------------------------------------------------------

NIC3 = model_of(EX["acme-nic/3.0.0"])
NIC2 = model_of(EX["acme-nic/2.0.0"])
V4 = expand(NIC3, "version=4")
V2 = expand(NIC3, "version=2")

SNAP = fleet(
    ("old1", ["acme-nic/1.0.0"], {}),
    ("mid1", ["acme-nic/2.0.0"], {"load": 2}),
    ("mid2", ["acme-nic/2.0.0"], {"load": 1}),
    ("new1", ["acme-nic/3.0.0", "acme-blk/2.0.0"], {}),
    ("new2", ["acme-nic/3.0.0"], {"cordoned": True}),
    ("new3", ["acme-nic/3.0.0"], {"reachable": False}),
    ("new4", ["acme-nic/3.0.0"], {}),
    ("blk", ["acme-blk/2.0.0"], {}),
)


@pytest.mark.parametrize(
    ("vm", "accepted", "codes"),
    [
        (
            [RunningDevice(NIC_ID, V4, NIC3, "new4")],
            ["new1"],
            {
                "new4": ["SAME_HOST"],
                "new2": ["HOST_CORDONED"],
                "new3": ["HOST_UNREACHABLE"],
                "blk": ["MODEL_UNKNOWN"],
                "mid1": ["VALUE_NOT_ALLOWED", "VALUE_NOT_ALLOWED", "PARAM_UNKNOWN"],
                "old1": [
                    "VALUE_NOT_ALLOWED",
                    "VALUE_NOT_ALLOWED",
                    "PARAM_UNKNOWN",
                    "PARAM_UNKNOWN",
                    "VALUE_NOT_ALLOWED",
                ],
            },
        ),
        # version 2 runs everywhere a NIC is; 1.0.0 accepts fewest versions: ranked first, then
        # load; new1 also offers a block device: richest, last
        ([RunningDevice(NIC_ID, V2, NIC3)], ["old1", "mid2", "mid1", "new4", "new1"], {"blk": ["MODEL_UNKNOWN"]}),
        (
            [NewDevice(NIC_ID, "version=3")],
            ["mid2", "mid1", "new4", "new1"],
            {"old1": ["VALUE_NOT_ALLOWED", "PARAM_UNKNOWN", "VALUE_NOT_ALLOWED"]},
        ),
        (
            [NewDevice(NIC_ID, "version=2"), NewDevice("example.org/devices/blk", "")],
            ["new1"],
            {"mid1": ["MODEL_UNKNOWN"], "blk": ["MODEL_UNKNOWN"], "new2": ["HOST_CORDONED", "MODEL_UNKNOWN"]},
        ),
        ([NewDevice("example.org/devices/none")], [], {"new1": ["MODEL_UNKNOWN"]}),
        ([], ["old1", "mid2", "mid1", "blk", "new1", "new4"], {"new2": ["HOST_CORDONED"]}),
    ],
)
def test_placement_table(vm: list[Any], accepted: list[str], codes: dict[str, list[str]]) -> None:
    placement = place(SNAP, vm)
    if vm == []:
        assert sorted(placement.accepted) == sorted(accepted)
    else:
        assert placement.accepted == accepted
    for host, expected in codes.items():
        assert host in placement.rejected
        assert [p.code for p in placement.rejected[host]] == expected, host
    assert set(placement.rejected) == set(SNAP.hosts) - set(accepted)
    for host in accepted:
        assert host not in placement.rejected


def test_rejected_reasons_name_the_device_and_host() -> None:
    placement = place(SNAP, [NewDevice(NIC_ID, "version=2"), RunningDevice(NIC_ID, V4, NIC3, "new4")])
    reasons = placement.rejected["blk"]
    assert [(r.loc[:2], r.context["device"]) for r in reasons] == [(("devices", 0), 0), (("devices", 1), 1)]
    assert "host blk" in reasons[0].message
    with pytest.raises(KeyError):
        placement.rejected["new1"]
    data = placement.to_dict(limit=2)
    assert data["accepted"] == ["new1"] and len(data["rejected"]) == 2  # type: ignore[arg-type]


def test_new_device_with_a_bad_string_is_refused() -> None:
    with pytest.raises(ConfigError) as info:
        place(SNAP, [NewDevice(NIC_ID, "rss=maybe")])
    assert info.value.code == "TYPE_MISMATCH"


def test_new_device_is_expanded_on_the_newest_release() -> None:
    resolved = resolve(SNAP, NewDevice(NIC_ID, ""))
    assert resolved.source is not None and resolved.config == expand(NIC3, "")


def test_running_device_must_match_its_model() -> None:
    with pytest.raises(ValueError):
        RunningDevice("example.org/devices/blk", V4, NIC3)


def test_spare_capabilities_count_published_versions_accepted() -> None:
    index = fleet_index(SNAP)
    spare = {
        SNAP.profile_of(h).fingerprint: int(index.spare[index.position[SNAP.profile_of(h).fingerprint]])
        for h in SNAP.hosts
    }
    assert spare[SNAP.profile_of("old1").fingerprint] < spare[SNAP.profile_of("mid1").fingerprint]
    assert spare[SNAP.profile_of("mid1").fingerprint] < spare[SNAP.profile_of("new4").fingerprint]
    assert spare[SNAP.profile_of("new4").fingerprint] < spare[SNAP.profile_of("new1").fingerprint]


# -- placement: the indexed evaluator equals the pairwise check -------------------------


def pairwise(snapshot: FleetSnapshot, placement: Placement, host: str) -> tuple[bool, list[str]]:
    """The naive answer for one host: its own problems, then check() per device."""
    state = snapshot.hosts[host]
    codes = []
    if state.cordoned:
        codes.append("HOST_CORDONED")
    if not state.reachable:
        codes.append("HOST_UNREACHABLE")
    if host in placement.sources:
        codes.append("SAME_HOST")
    report_ = snapshot.report_of(host)
    ok = not codes
    for d in placement.devices:
        assert d.source is not None and d.config is not None
        verdict = check(d.source, d.config, report_)
        ok = ok and verdict.compatible
        codes += verdict.codes
    return ok, codes


def spare_naive(snapshot: FleetSnapshot, fingerprint: str) -> int:
    profile = snapshot.profiles[fingerprint]
    models = [m for fp in sorted(snapshot.profiles) for d in snapshot.profiles[fp].implementations for m in d.models]
    # distinct definitions in content-key order: a configuration's first publisher is its
    # source, and with state layouts (rule 6) which definition that is matters
    distinct = {model_key(m): m for m in reversed(models)}
    by_model: dict[str, list[Any]] = {}
    for key in sorted(distinct):
        m = distinct[key]
        by_model.setdefault(m.model, []).append(m)
    count = 0
    for defs in by_model.values():
        for source, config in published_configs(defs):
            count += check(source, config, profile.report()).compatible
    return count


@PROPS
@given(st.data())
def test_indexed_placement_equals_the_pairwise_check(data: st.DataObject) -> None:
    _placement_equals_the_pairwise_check(data, data.draw(fleets()))


@PROPS
@given(st.data())
def test_indexed_placement_equals_the_pairwise_check_across_state_changes(data: st.DataObject) -> None:
    """At least two releases, each a profile: their layouts differ often (rule 6 is exercised)."""
    _placement_equals_the_pairwise_check(data, data.draw(fleets(least_releases=2)))


def _placement_equals_the_pairwise_check(data: st.DataObject, snapshot: FleetSnapshot) -> None:
    vm = data.draw(vms(snapshot))
    placement = place(snapshot, vm)
    accepted = set(placement.accepted)
    for host in snapshot.hosts:
        ok, codes = pairwise(snapshot, placement, host)
        assert (host in accepted) == ok, host
        assert (host in placement.rejected) == (not ok)
        if not ok:
            assert [p.code for p in placement.rejected[host]] == codes, host
        if "STATE_LAYOUT_MISMATCH" in codes:
            event("a host refused by rule 6 alone")
    for fp in snapshot.profiles:
        verdicts = placement.by_profile[fp]
        assert placement.profile_accepts(fp) == all(v.compatible for v in verdicts)
        for d, v in zip(placement.devices, verdicts, strict=True):
            assert d.source is not None and d.config is not None
            expected = check(d.source, d.config, snapshot.profiles[fp].report())
            assert v == expected
    # ranking: fewest spare capabilities, then load, then name
    spare = {fp: spare_naive(snapshot, fp) for fp in snapshot.profiles}
    keys = [(spare[snapshot.hosts[h].fingerprint], snapshot.hosts[h].load, h) for h in placement.accepted]
    assert keys == sorted(keys)


def test_placement_agrees_with_check_on_example_configurations() -> None:
    for d in EX.values():
        for m in d.models:
            for v in m.versions:
                config = canonical(m, m.version_values(v))
                placement = place(SNAP, [RunningDevice(m.model, config, m)])
                for host in SNAP.hosts:
                    expected = SNAP.hosts[host].available and check(m, config, SNAP.report_of(host)).compatible
                    assert (host in placement.accepted) == expected
