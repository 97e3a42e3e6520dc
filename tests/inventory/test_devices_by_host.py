"""``Inventory.devices_by_host``: the devices of many hosts in one read, on the twin, SQLite and PostgreSQL.

The batch read must be ``{host: list_devices(host)}`` exactly — same records, same order — for hosts
with devices, hosts without, hosts removed since the caller listed them, and fleets larger than one
``IN`` list. The matrix cache reads its key through it (:mod:`test_matrix_queries` counts the
statements).
"""

from __future__ import annotations

import pytest
from fleet_fixtures import at, report

from devmig import DevmigError
from devmig.inventory import DeviceRecord, Inventory, MemoryInventory

NIC = "example.org/devices/nic"
BLK = "example.org/devices/blk"


def _devices(i: int) -> list[DeviceRecord]:
    """Host ``i``'s devices: none for every third host, else ``i % 4 + 1`` of them, ids out of order."""
    if i % 3 == 0:
        return []
    return [DeviceRecord(f"d{(7 * k) % 10}{k}", NIC if k % 2 else BLK, {"queues": k, "name": f"h{i}"},
                         "RUNNING" if k % 2 else "STOPPED", bool(k % 2))
            for k in range(i % 4 + 1)]


def _per_host(inventory: Inventory, names: list[str]) -> dict[str, list[DeviceRecord]]:
    """The answer of one ``list_devices`` per host (what the batch read replaces)."""
    return {name: inventory.list_devices(name) for name in names}


def test_the_batch_read_is_list_devices_of_every_host(inventory: Inventory) -> None:
    names = [f"h{i:03d}" for i in range(12)]
    for i, name in enumerate(names):
        inventory.add_host(name, f"http://{name}:1")
        inventory.record_devices(name, _devices(i))
    everything = inventory.devices_by_host()
    assert everything == _per_host(inventory, names)
    assert list(everything) == names  # by name
    assert everything["h000"] == [] and [d.id for d in everything["h002"]] == ["d00", "d42", "d71"]
    assert all(isinstance(d, DeviceRecord) for ds in everything.values() for d in ds)

    # some hosts, in the caller's order; duplicates once
    asked = ["h007", "h000", "h003", "h007", "h011"]
    some = inventory.devices_by_host(asked)
    assert list(some) == ["h007", "h000", "h003", "h011"]
    assert some == _per_host(inventory, ["h007", "h000", "h003", "h011"])
    assert inventory.devices_by_host([]) == {}

    # a host removed since the caller listed it is absent (not HOST_UNKNOWN); so is a name never registered
    inventory.remove_host("h002")
    with pytest.raises(DevmigError) as gone:
        inventory.list_devices("h002")
    assert gone.value.code == "HOST_UNKNOWN"
    after = inventory.devices_by_host(["h001", "h002", "nowhere", "h004"])
    assert after == _per_host(inventory, ["h001", "h004"])
    assert "h002" not in inventory.devices_by_host()

    # a device list replaced, then emptied, reads as list_devices does
    inventory.record_devices("h001", [DeviceRecord("z", NIC, {}, "RUNNING", True)])
    inventory.record_devices("h004", [])
    assert inventory.devices_by_host(["h001", "h004"]) == {"h001": [DeviceRecord("z", NIC, {}, "RUNNING", True)],
                                                           "h004": []}


def test_the_batch_read_of_a_large_fleet(inventory: Inventory) -> None:
    """More hosts than one ``IN (...)`` chunk (500), registered in bulk as the poller does."""
    names = [f"host-{i:04d}" for i in range(620)]
    inventory.register_reports([(name, f"http://{name}:1", report(name, "acme-nic/2.0.0")) for name in names], at(0))
    for i, name in enumerate(names[:40]):
        inventory.record_devices(name, _devices(i))
    expected = _per_host(inventory, names)
    assert inventory.devices_by_host() == expected
    assert inventory.devices_by_host(list(reversed(names))) == {n: expected[n] for n in reversed(names)}
    assert sum(len(ds) for ds in expected.values()) == sum(len(_devices(i)) for i in range(40))


def test_the_batch_read_needs_an_open_inventory() -> None:
    inventory = MemoryInventory()
    with pytest.raises(DevmigError) as before:
        inventory.devices_by_host()
    assert before.value.code == "INVENTORY_STATE"
    with inventory:
        assert inventory.devices_by_host() == {}
    with pytest.raises(DevmigError) as after:
        inventory.devices_by_host(["a"])
    assert after.value.code == "INVENTORY_STATE"
