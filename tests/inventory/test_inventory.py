"""The inventory's rules, run on the in-memory twin, a SQLite file and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fleet_fixtures import T0, at, report

from devmig import DevmigError
from devmig.inventory import DeviceRecord, Inventory, MemoryInventory, SqlInventory, report_profile
from devmig.orchestration import MIGRATIONS

NIC1 = ("acme-nic/1.0.0", "acme-blk/1.0.0")
NIC2 = ("acme-nic/2.0.0", "acme-blk/1.0.0")


def test_add_list_remove_hosts(inventory: Inventory) -> None:
    inventory.add_host("b", "http://b:1")
    inventory.add_host("a", "http://a:1")
    inventory.add_host("a", "http://a:1")  # the same again: no-op
    assert [h.name for h in inventory.list_hosts()] == ["a", "b"]
    a = inventory.get_host("a")
    assert (a.url, a.fingerprint, a.cordoned, a.reachable, a.missed_polls) == ("http://a:1", None, False, True, 0)
    inventory.remove_host("b")
    assert [h.name for h in inventory.list_hosts()] == ["a"]
    with pytest.raises(DevmigError) as info:
        inventory.get_host("b")
    assert info.value.code == "HOST_UNKNOWN"


@pytest.mark.parametrize(("name", "url"), [("a", "http://other:1"), ("c", "http://a:1")])
def test_host_conflict(inventory: Inventory, name: str, url: str) -> None:
    inventory.add_host("a", "http://a:1")
    with pytest.raises(DevmigError) as info:
        inventory.add_host(name, url)
    assert info.value.code == "HOST_CONFLICT"
    assert [(h.name, h.url) for h in inventory.list_hosts()] == [("a", "http://a:1")]


def test_hosts_with_same_software_share_a_profile(inventory: Inventory) -> None:
    for name in ("a", "b", "c"):
        inventory.add_host(name, f"http://{name}:1")
    assert inventory.record_report("a", report("a", *NIC1), '"e1"', T0) is True
    assert inventory.record_report("b", report("b", *reversed(NIC1)), '"e1"', T0) is True
    assert inventory.record_report("c", report("c", *NIC2), None, T0) is True
    a, b, c = inventory.list_hosts()
    assert a.fingerprint == b.fingerprint != c.fingerprint
    assert a.last_etag == '"e1"' and a.last_seen == T0
    fingerprint, _canonical = report_profile(report("zzz", *NIC1))
    assert a.fingerprint == fingerprint  # the host name is not part of it
    docs = inventory.profile(fingerprint)
    assert docs is not None
    assert [(d.implementation.name, d.implementation.release) for d in docs] == [
        ("acme-blk", "1.0.0"), ("acme-nic", "1.0.0")]
    assert inventory.profile("0" * 32) is None
    snapshot = inventory.snapshot()
    assert [h.name for h in snapshot.hosts] == ["a", "b", "c"]
    assert set(snapshot.profiles) == {a.fingerprint, c.fingerprint}
    assert snapshot.profiles[fingerprint] == docs


def test_fingerprint_definition() -> None:
    import json

    import xxhash

    r = report("h", "acme-nic/2.0.0", "acme-accel/1.0.0")
    docs = sorted(r.implementations, key=lambda d: (d.implementation.name, d.implementation.release))
    canonical = json.dumps([d.to_json() for d in docs], sort_keys=True, separators=(",", ":"))
    assert report_profile(r) == (xxhash.xxh3_128_hexdigest(canonical.encode()), canonical)


def test_history(inventory: Inventory) -> None:
    inventory.add_host("a", "http://a:1")
    assert inventory.record_report("a", report("a", *NIC1), None, at(0)) is True
    assert inventory.record_report("a", report("a", *NIC1), None, at(10)) is False
    inventory.record_unchanged("a", at(20))
    assert inventory.record_report("a", report("a", *NIC2), None, at(30)) is True
    assert inventory.record_report("a", report("a", *NIC1), None, at(40)) is True  # back: a new stretch
    one, two = report_profile(report("a", *NIC1))[0], report_profile(report("a", *NIC2))[0]
    assert [(h.fingerprint, h.first_seen, h.last_seen) for h in inventory.history("a")] == [
        (one, at(0), at(20)), (two, at(30), at(30)), (one, at(40), at(40))]
    assert inventory.get_host("a").last_seen == at(40)


def test_report_of_another_host_is_refused(inventory: Inventory) -> None:
    inventory.add_host("a", "http://a:1")
    with pytest.raises(DevmigError) as info:
        inventory.record_report("a", report("b", *NIC1), None, T0)
    assert info.value.code == "HOST_MISMATCH"
    assert inventory.get_host("a").fingerprint is None
    with pytest.raises(DevmigError) as info:
        inventory.record_report("nobody", report("nobody", *NIC1), None, T0)
    assert info.value.code == "HOST_UNKNOWN"


def test_unreachable_after_missed_polls_keeps_last_report(inventory: Inventory) -> None:
    inventory.add_host("a", "http://a:1")
    inventory.record_report("a", report("a", *NIC1), '"e"', at(0))
    assert inventory.record_poll_failure("a", at(10), max_missed=3) is True
    assert inventory.record_poll_failure("a", at(20), max_missed=3) is True
    assert inventory.record_poll_failure("a", at(30), max_missed=3) is False
    host = inventory.get_host("a")
    assert (host.reachable, host.missed_polls, host.last_seen) == (False, 3, at(0))
    assert host.fingerprint == report_profile(report("a", *NIC1))[0]
    assert host.fingerprint in inventory.snapshot().profiles
    assert inventory.record_poll_failure("a", at(40), max_missed=3) is False
    inventory.record_unchanged("a", at(50))  # back
    host = inventory.get_host("a")
    assert (host.reachable, host.missed_polls, host.last_seen) == (True, 0, at(50))


def test_devices_and_load(inventory: Inventory) -> None:
    inventory.add_host("a", "http://a:1")
    records = [
        DeviceRecord("d2", "example.org/devices/nic", {"rss": True}, "RUNNING", True),
        DeviceRecord("d1", "example.org/devices/blk", {}, "STOP", False),
    ]
    inventory.record_devices("a", records)
    assert inventory.list_devices("a") == sorted(records, key=lambda d: d.id)
    host = inventory.get_host("a")
    assert (host.device_count, host.load) == (2, 1)
    inventory.record_devices("a", [])
    assert inventory.list_devices("a") == []
    assert (inventory.get_host("a").device_count, inventory.get_host("a").load) == (0, 0)


def test_pools_and_cordon(inventory: Inventory) -> None:
    for name in ("a", "b"):
        inventory.add_host(name, f"http://{name}:1")
    inventory.create_pool("gold")
    inventory.create_pool("all")
    with pytest.raises(DevmigError) as info:
        inventory.create_pool("gold")
    assert info.value.code == "POOL_CONFLICT"
    inventory.add_to_pool("gold", "a")
    inventory.add_to_pool("gold", "a")
    inventory.add_to_pool("all", "b")
    inventory.add_to_pool("all", "a")
    assert inventory.list_pools() == {"all": ["a", "b"], "gold": ["a"]}
    assert inventory.get_host("a").pools == ("all", "gold")
    with pytest.raises(DevmigError) as info:
        inventory.add_to_pool("silver", "a")
    assert info.value.code == "POOL_UNKNOWN"
    with pytest.raises(DevmigError) as info:
        inventory.add_to_pool("gold", "zz")
    assert info.value.code == "HOST_UNKNOWN"
    inventory.cordon("b")
    snap = {h.name: h for h in inventory.snapshot().hosts}
    assert snap["b"].cordoned and not snap["a"].cordoned
    assert snap["a"].pools == ("all", "gold")
    inventory.uncordon("b")
    assert not inventory.get_host("b").cordoned
    inventory.remove_from_pool("gold", "a")
    inventory.remove_host("b")
    assert inventory.list_pools() == {"all": ["a"], "gold": []}
    inventory.delete_pool("all")
    assert inventory.list_pools() == {"gold": []}
    assert inventory.get_host("a").pools == ()


def test_register_reports_bulk(inventory: Inventory) -> None:
    inventory.add_host("h0", "http://h0:1")
    inventory.record_report("h0", report("h0", *NIC1), '"e"', at(0))
    items = [(f"h{i}", f"http://h{i}:1", report(f"h{i}", *(NIC1 if i % 2 == 0 else NIC2))) for i in range(6)]
    assert inventory.register_reports(items, at(10)) == 5  # h0 keeps its profile
    hosts = inventory.list_hosts()
    assert len(hosts) == 6
    assert len({h.fingerprint for h in hosts}) == 2
    assert all(h.last_seen == at(10) and h.reachable for h in hosts)
    assert [(h.first_seen, h.last_seen) for h in inventory.history("h0")] == [(at(0), at(10))]
    assert len(inventory.snapshot().profiles) == 2
    assert inventory.register_reports(items, at(20)) == 0


@pytest.mark.parametrize("bad", [
    ("h1", "http://h0:1"),     # URL of another host
    ("h0", "http://moved:1"),  # host at another URL
])
def test_register_reports_is_all_or_nothing(inventory: Inventory, bad: tuple[str, str]) -> None:
    inventory.add_host("h0", "http://h0:1")
    items = [("x", "http://x:1", report("x", *NIC1)), (*bad, report(bad[0], *NIC2))]
    with pytest.raises(DevmigError) as info:
        inventory.register_reports(items, T0)
    assert info.value.code == "HOST_CONFLICT"
    assert [h.name for h in inventory.list_hosts()] == ["h0"]
    assert inventory.snapshot().profiles == {}


def test_journal(inventory: Inventory) -> None:
    inventory.journal(MIGRATIONS).put("m1", "STARTED", {"device": "d1", "to": ["b"]}, at(0))
    inventory.journal(MIGRATIONS).put("m2", "STARTED", {}, at(1))
    inventory.journal(MIGRATIONS).put("m1", "COMMITTED", {"device": "d1"}, at(2))
    entry = inventory.journal(MIGRATIONS).get("m1")
    assert (entry.phase, dict(entry.payload), entry.updated_at) == ("COMMITTED", {"device": "d1"}, at(2))
    assert [e.id for e in inventory.journal(MIGRATIONS).list()] == ["m1", "m2"]
    assert [e.id for e in inventory.journal(MIGRATIONS).list("STARTED")] == ["m2"]
    with pytest.raises(DevmigError) as info:
        inventory.journal(MIGRATIONS).get("nope")
    assert info.value.code == "JOURNAL_UNKNOWN"


def test_data_survives_reopening(make_inventory: Callable[[], Inventory]) -> None:
    first = make_inventory()
    first.add_host("a", "http://a:1")
    first.record_report("a", report("a", *NIC1), '"e"', T0)
    first.create_pool("p")
    first.add_to_pool("p", "a")
    second = make_inventory()
    assert second.get_host("a").pools == ("p",)
    assert second.snapshot() == first.snapshot()


@pytest.mark.parametrize("factory", [MemoryInventory, lambda: SqlInventory("sqlite://")])
def test_lifecycle(factory: Callable[[], Inventory]) -> None:
    inventory = factory()
    with pytest.raises(DevmigError) as info:
        inventory.list_hosts()
    assert info.value.code == "INVENTORY_STATE"
    with inventory:
        assert inventory.list_hosts() == []
    with pytest.raises(DevmigError) as info:
        inventory.open()
    assert info.value.code == "INVENTORY_STATE"
    assert "closed" in str(info.value)


def test_unreachable_database_is_db_unavailable(tmp_path: object) -> None:
    inventory = SqlInventory("postgresql+psycopg://nobody@127.0.0.1:1/none")
    with pytest.raises(DevmigError) as info:
        inventory.open()
    assert info.value.code == "DB_UNAVAILABLE"
    assert info.value.__cause__ is not None


def test_twin_and_sql_implement_the_protocol() -> None:
    assert isinstance(MemoryInventory(), Inventory)
    assert isinstance(SqlInventory("sqlite://"), Inventory)
