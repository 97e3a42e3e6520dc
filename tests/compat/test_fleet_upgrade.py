"""Rollback sets and upgrade plans, the plan's order compared with exhaustive search."""

from __future__ import annotations

import itertools

from compat_fixtures import NIC_ID, canonical, model_of, report, variant
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_fleet_placement import EX

from devmig.compat import (
    FleetSnapshot,
    Profile,
    ProfileRegistry,
    RunningDevice,
    UpgradePlan,
    check,
    plan_upgrade,
    planned_profile,
    return_targets,
    rollback_set,
)
from devmig.model import ModelDocument, expand

PROPS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

NIC1, NIC2, NIC3 = EX["acme-nic/1.0.0"], EX["acme-nic/2.0.0"], EX["acme-nic/3.0.0"]
BLK = EX["acme-blk/2.0.0"]
# a 4.0.0 that narrows rx-queues (version 3 and 4 no longer fit) and refuses tso off
NIC4 = variant(
    lambda m: m["params"]["rx-queues"].update(allowed=[{"min": 1, "max": 8}], init=8),
    lambda m: m["params"]["tx-queues"].update(allowed=[{"min": 1, "max": 8}], init=8),
    lambda m: m.update(versions=m["versions"][:2]),
    base=NIC3.to_json(),
    release="4.0.0",
)


def fleet(hosts: dict[str, list[ModelDocument]], cordoned: tuple[str, ...] = ()) -> FleetSnapshot:
    registry = ProfileRegistry()
    for name, docs in hosts.items():
        registry.register(report(name, *docs), cordoned=name in cordoned)
    return registry.snapshot()


def device(doc: ModelDocument, config: str, host: str | None = None) -> RunningDevice:
    m = model_of(doc)
    return RunningDevice(NIC_ID, expand(m, config), m, host)


# -- rollback sets ----------------------------------------------------------------------


def test_rollback_set_needs_a_way_back() -> None:
    snap = fleet({"a": [NIC2], "b": [NIC3], "c": [NIC2], "d": [NIC1], "e": [BLK], "f": [NIC3]}, cordoned=("f",))
    # created on 2.0.0 with rx-table-size: 3.0.0 accepts it and can send it back; 1.0.0 cannot take it
    rs = rollback_set(snap, device(NIC2, "version=3", "a"))
    assert sorted(rs.hosts) == ["b", "c"]
    assert set(rs.rejected) == {"a", "d", "e", "f"}
    assert [p.code for p in rs.rejected["a"]] == ["SAME_HOST"]
    assert [p.code for p in rs.rejected["f"]] == ["HOST_CORDONED"]
    assert [p.code for p in rs.rejected["e"]] == ["MODEL_UNKNOWN"]
    # with 1.0.0 in its history, no host offers a way back to 1.0.0 for a table-size device
    rs = rollback_set(snap, device(NIC2, "version=3", "a"), [snap.profile_of("d").fingerprint])
    assert rs.hosts == [] and set(rs.one_way) == {"b", "c"}
    assert all(fp == snap.profile_of("d").fingerprint for fp in rs.one_way["b"])
    # a version-2 device can go everywhere a NIC is, and come back to 1.0.0
    rs = rollback_set(snap, device(NIC2, "version=2", "a"), [snap.profile_of("d").fingerprint])
    assert sorted(rs.hosts) == ["b", "c", "d"]


def test_window_adds_previous_releases_transitively() -> None:
    catalogue = [NIC1, NIC2, NIC3, BLK]
    base = Profile.of([NIC3])
    assert [p.implementations[0].implementation.release for p in return_targets([base], 0, catalogue)] == ["3.0.0"]
    assert [p.implementations[0].implementation.release for p in return_targets([base], 2, catalogue)] == [
        "3.0.0", "2.0.0", "1.0.0",
    ]
    snap = fleet({"a": [NIC3], "b": [NIC3], "c": [NIC2]})
    d = device(NIC3, "version=3", "a")
    assert sorted(rollback_set(snap, d).hosts) == ["b", "c"]
    assert sorted(rollback_set(snap, d, window=1, catalogue=catalogue).hosts) == ["b", "c"]
    assert rollback_set(snap, d, window=2, catalogue=catalogue).hosts == []


# -- upgrade plans ----------------------------------------------------------------------------


def test_planned_profile_replaces_only_named_implementations() -> None:
    p = planned_profile(Profile.of([NIC2, BLK]), [NIC3])
    assert p == Profile.of([NIC3, BLK])
    assert planned_profile(Profile.of([BLK]), [NIC3]) == Profile.of([BLK])


def test_upgrade_order_drains_onto_upgraded_hosts() -> None:
    # v4 devices only run on 3.0.0; a and b run 3.0.0 -> 4.0.0 narrows it away. c is 3.0.0 outside the pool.
    snap = fleet({"a": [NIC2], "b": [NIC2], "c": [NIC1]})
    running = {"a": [device(NIC2, "version=3", "a")], "b": [device(NIC2, "version=2", "b")]}
    plan = plan_upgrade(snap, ["a", "b"], [NIC3], running)
    # a's version-3 device needs a 2.0.0/3.0.0 host other than a: b (old) first, so a goes first
    assert plan.order == ["a", "b"]
    assert plan.stranded == [] and plan.one_way == []


def test_upgrade_reports_stranded_and_one_way_devices() -> None:
    snap = fleet({"a": [NIC3], "b": [NIC3]})
    running = {"a": [device(NIC3, "version=4", "a"), device(NIC3, "version=2,tso=on", "a")], "b": []}
    plan = plan_upgrade(snap, ["a", "b"], [NIC4], running)
    assert [(i.host, i.index) for i in plan.stranded] == [("a", 0)]
    assert set(plan.stranded[0].reasons) == {Profile.of([NIC4]).fingerprint}
    # drained onto b while b still runs 3.0.0, it has a destination at every step (a, then b)
    assert plan.order == ["a", "b"]
    # a release that accepts the device and lets it return is neither stranded nor one-way
    back_refused = variant(lambda m: m["params"]["tso"].update(allowed=[True], init=True),
                           lambda m: m.update(versions=[]), base=NIC3.to_json(), release="4.1.0")
    plan = plan_upgrade(snap, ["a", "b"], [back_refused], {"a": [device(NIC3, "version=2,tso=on", "a")]})
    assert plan.one_way == [] and plan.order == ["a", "b"]


def test_hosts_that_do_not_change_are_left_out() -> None:
    snap = fleet({"a": [NIC3], "b": [BLK]})
    plan = plan_upgrade(snap, ["a", "b"], [NIC3], {})
    assert plan.order == [] and plan.unchanged == ["a", "b"]


# -- the order against exhaustive search ------------------------------------------------------------


def simulate(
    snap: FleetSnapshot, plan_profiles: dict[str, Profile], order: list[str], running: dict[str, list[RunningDevice]]
) -> bool:
    upgraded: set[str] = set()
    for h in order:
        for d in running.get(h, ()):
            ok = False
            for other, state in snap.hosts.items():
                if other == h or not state.available:
                    continue
                profile = plan_profiles[other] if other in upgraded else snap.profile_of(other)
                if check(d.source_model, d.config, profile.report()).compatible:
                    ok = True
                    break
            if not ok:
                return False
        upgraded.add(h)
    return True


DOCS = [NIC1, NIC2, NIC3, NIC4]


@PROPS
@given(st.data())
def test_an_order_is_found_whenever_one_exists(data: st.DataObject) -> None:
    n = data.draw(st.integers(2, 5))
    hosts = {f"h{i}": [data.draw(st.sampled_from(DOCS))] for i in range(n)}
    cordoned = tuple(h for h in hosts if data.draw(st.integers(0, 4)) == 0)
    snap = fleet(hosts, cordoned)
    pool = data.draw(st.lists(st.sampled_from(sorted(hosts)), min_size=1, max_size=n, unique=True))
    target = data.draw(st.sampled_from(DOCS))
    running: dict[str, list[RunningDevice]] = {}
    for h in pool:
        m = model_of(hosts[h][0])
        names = [v.name for v in m.versions]
        running[h] = [
            RunningDevice(NIC_ID, canonical(m, m.version_values(m.version_map[v])), m, h)
            for v in data.draw(st.lists(st.sampled_from(names), max_size=2))
        ]
    plan: UpgradePlan = plan_upgrade(snap, pool, [target], running)
    changing = [h for h in sorted(pool) if plan.planned[h] != snap.profile_of(h)]
    assert sorted(changing + plan.unchanged) == sorted(pool)
    exists = any(simulate(snap, plan.planned, list(p), running) for p in itertools.permutations(changing))
    assert (plan.order is not None) == exists
    if plan.order is not None:
        assert sorted(plan.order) == sorted(changing)
        assert simulate(snap, plan.planned, plan.order, running)
