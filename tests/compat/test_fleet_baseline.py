"""Baseline of a pool: newest version and richest configuration every member accepts."""

from __future__ import annotations

from typing import Any

import pytest
from compat_fixtures import NIC_ID, model_of, report, variant
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_fleet_placement import EX
from test_fleet_strategies import all_models, fleets

from devmig.compat import Baseline, FleetSnapshot, ProfileRegistry, baseline, check
from devmig.compat._baseline import creation_string
from devmig.model import Config, DeviceModel, IntParam, ModelDocument, expand, same_value

PROPS = settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]
)


def pool(*docs: list[ModelDocument]) -> FleetSnapshot:
    registry = ProfileRegistry()
    for i, ds in enumerate(docs):
        registry.register(report(f"h{i}", *ds))
    return registry.snapshot()


def ex(*names: str) -> list[ModelDocument]:
    return [EX[n] for n in names]


def test_mixed_nic_pool() -> None:
    snap = pool(ex("acme-nic/1.0.0"), ex("acme-nic/2.0.0"), ex("acme-nic/3.0.0"))
    b = baseline(snap, sorted(snap.hosts), NIC_ID)
    nic3 = model_of(EX["acme-nic/3.0.0"])
    assert b.reference == nic3
    assert b.version == "2" and b.version_string == "version=2"
    assert b.refused == {"4": ("h0", "h1"), "3": ("h0",)}
    assert b.richest is not None and b.richest.values == {
        "link-speed": "10G", "mac-filters": 64, "rss": True, "rx-queues": 8, "tx-queues": 8,
    }
    assert b.richest_string is not None and expand(nic3, b.richest_string) == b.richest


def test_uniform_pool_gets_the_latest_version_and_the_init_configuration() -> None:
    snap = pool(ex("acme-nic/3.0.0"), ex("acme-nic/3.0.0", "acme-blk/2.0.0"))
    b = baseline(snap, sorted(snap.hosts), NIC_ID)
    nic3 = model_of(EX["acme-nic/3.0.0"])
    assert b.version == "4"
    assert b.richest == expand(nic3, "")


def test_a_pool_without_the_model_is_blocked_by_each_host() -> None:
    snap = pool(ex("acme-nic/3.0.0"), ex("acme-blk/2.0.0"))
    b = baseline(snap, sorted(snap.hosts), NIC_ID)
    assert b.version is None and b.richest is None
    assert list(b.blocking) == ["h1"] and [p.code for p in b.blocking["h1"]] == ["MODEL_UNKNOWN"]
    none = baseline(snap, ["h1"], NIC_ID)
    assert none.reference is None and [p.code for p in none.blocking["h1"]] == ["MODEL_UNKNOWN"]


def test_refused_off_values_block_with_reasons() -> None:
    needs_rss = variant(
        lambda m: m["params"]["rss"].update(allowed=[True]), lambda m: m.update(versions=[]), release="3.1.0"
    )
    no_rss = variant(lambda m: m["params"]["rss"].update(allowed=[False], init=False),
                     lambda m: m["params"]["rx-table-size"].update(init=0),
                     lambda m: m.update(versions=[{"name": "1", "params": {}}]), release="3.0.1")
    snap = pool([needs_rss], [no_rss])
    b = baseline(snap, sorted(snap.hosts), NIC_ID)
    assert b.richest is None
    assert list(b.blocking) == ["h0"] and [p.code for p in b.blocking["h0"]] == ["VALUE_NOT_ALLOWED"]
    assert b.refused == {"1": ("h0",)}


def test_a_redefined_version_is_excluded() -> None:
    redefined = variant(lambda m: m["versions"][1]["params"].update({"rx-queues": 6}), release="3.0.1")
    snap = pool(ex("acme-nic/3.0.0"), [redefined])
    b = baseline(snap, sorted(snap.hosts), "example.org/devices/nic")
    assert "2" in b.excluded_versions


def test_creation_string_round_trips() -> None:
    nic3 = model_of(EX["acme-nic/3.0.0"])
    config = expand(nic3, "version=2,tso=on")
    text = creation_string(nic3, config)
    assert text is not None and "version" not in text and expand(nic3, text) == config
    assert creation_string(nic3, expand(nic3, "version=3")) == "version=3"


# -- properties ----------------------------------------------------------------------


def closer_values(model: DeviceModel, name: str, current: Any) -> list[Any]:
    """Every value the reference allows that is strictly closer to the init value (brute force)."""
    p = model.params[name]
    if same_value(current, p.init):
        return []
    if isinstance(p, IntParam) and type(current) is int:
        values = {v for r in p.allowed for v in range(r.min, r.max + 1, r.step or 1)}
        return [v for v in values if abs(p.init - v) < abs(p.init - current)]
    return [p.init]


def all_accept(snap: FleetSnapshot, hosts: list[str], source: DeviceModel, config: Config) -> bool:
    return all(check(source, config, snap.report_of(h)).compatible for h in hosts)


@PROPS
@given(st.data())
def test_baseline_is_accepted_by_all_locally_maximal_and_deterministic(data: st.DataObject) -> None:
    snap = data.draw(fleets(max_hosts=5))
    models = sorted({m.model for m in all_models(snap)})
    if not models:
        return
    model_id = data.draw(st.sampled_from(models))
    hosts = data.draw(st.lists(st.sampled_from(sorted(snap.hosts)), min_size=1, unique=True))
    b = baseline(snap, hosts, model_id)
    again = baseline(
        FleetSnapshot.build(reversed(list(snap.profiles.values())), reversed(list(snap.hosts.values()))),
        list(reversed(hosts)),
        model_id,
    )
    assert again.to_dict() == b.to_dict()
    if b.reference is None:
        assert set(b.blocking) == set(hosts)
        return
    ref = b.reference
    if b.version_config is not None:
        assert all_accept(snap, hosts, ref, b.version_config)
    for refusing in b.refused.values():
        assert refusing
    if b.richest is None:
        assert b.version is None and b.blocking
        for h, reasons in b.blocking.items():
            assert reasons == check(ref, Config(model_id, ()), snap.report_of(h)).reasons
        return
    assert not b.blocking
    assert all_accept(snap, hosts, ref, b.richest)
    full = b.richest.full(ref)
    for name in ref.params:
        for value in closer_values(ref, name, full[name]):
            trial = {**full, name: value}
            assert not all_accept(snap, hosts, ref, Config(ref.model, ref.canonical_items(trial))), (name, value)
    if b.richest_string is not None:
        assert expand(ref, b.richest_string) == b.richest


@pytest.mark.parametrize("impl", ["acme-nic", "acme-blk", "acme-accel"])
def test_examples_pools_every_subset(impl: str) -> None:
    releases = [n for n in EX if n.startswith(impl + "/")]
    snap = pool(*([EX[n]] for n in releases))
    model_ids = sorted({m.model for n in releases for m in EX[n].models})
    for model_id in model_ids:
        b: Baseline = baseline(snap, sorted(snap.hosts), model_id)
        if b.richest is not None and b.reference is not None:
            assert all_accept(snap, [h for h in snap.hosts], b.reference, b.richest)
