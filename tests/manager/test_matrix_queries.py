"""What a matrix-cache hit costs the database: the same few statements on 20 hosts as on 200.

The dashboard asks for the matrix every few seconds; a hit still reads the cache key (every host's
devices and the finished migrations). The statements are counted on the inventory's own engine with
a ``before_cursor_execute`` listener, on a SQLite file and on PostgreSQL; the fleet grows from 20 to
200 hosts in the same database between the two counts.
"""

from __future__ import annotations

from collections.abc import Callable

from fleet_fixtures import at, report
from sql_statements import executed

from devmig._examples import load_example
from devmig.inventory import DeviceRecord, SqlInventory
from devmig.manager._matrix import MatrixCache, compatibility_matrix, read_inputs
from devmig.model import expand

NIC = "example.org/devices/nic"


def _grow(inventory: SqlInventory, start: int, stop: int) -> None:
    """Hosts ``start`` .. ``stop - 1`` (acme-nic 2.0.0): every fifth runs a NIC, every other one a stopped one,
    the rest nothing."""
    model = load_example("acme-nic/2.0.0").find(NIC)
    assert model is not None
    config = dict(expand(model, "version=2").values)
    names = [f"h{i:03d}" for i in range(start, stop)]
    inventory.register_reports([(n, f"http://{n}:1", report(n, "acme-nic/2.0.0")) for n in names], at(start))
    for i, name in zip(range(start, stop), names, strict=True):
        if i % 5 == 0:
            inventory.record_devices(name, [DeviceRecord("nic-0", NIC, config, "RUNNING", True)])
        elif i % 2:
            inventory.record_devices(name, [DeviceRecord("nic-1", NIC, config, "STOPPED", False)])


def _counted(inventory: SqlInventory, action: Callable[[], object]) -> int:
    with executed(inventory.engine) as seen:
        action()
    return len(seen)


def test_a_matrix_cache_hit_costs_the_same_statements_on_20_and_on_200_hosts(db_url: str) -> None:
    with SqlInventory(db_url) as inventory:
        cache = MatrixCache()
        hit_cost: dict[int, int] = {}
        poll_cost: dict[int, int] = {}
        for start, stop in ((0, 20), (20, 200)):
            _grow(inventory, start, stop)
            snap = inventory.snapshot()
            assert len(snap.hosts) == stop
            matrix, hit = cache.get(inventory, snap)
            assert not hit and len(matrix["hosts"]) == stop and len(matrix["devices"]) == stop // 5
            hit_cost[stop] = _counted(inventory, lambda: cache.get(inventory, snap))  # noqa: B023 (called at once)
            # what one dashboard poll of the matrix does: a snapshot, then the cache
            poll_cost[stop] = _counted(inventory, lambda: cache.get(inventory, inventory.snapshot()))
            again, hit = cache.get(inventory, inventory.snapshot())
            assert hit and again is matrix
            assert again == compatibility_matrix(inventory, inventory.snapshot())  # the cached one is right
            inputs = read_inputs(inventory, snap)
            assert dict(inputs.devices) == {n: tuple(ds) for n, ds in inventory.devices_by_host().items()}
        assert hit_cost[20] == hit_cost[200] <= 3, hit_cost  # the devices of every host, the finished migrations
        assert poll_cost[20] == poll_cost[200] <= 6, poll_cost
        assert cache.hits == 6 and cache.computations == 2
