"""The matrix cache's key stands for the finished migrations by their mark: a hit reads one row, not the journal.

The dashboard asks for the matrix every few seconds. Its key used to hold ``(id, updated_at)`` of every
finished migration, read with its payload on every get; it now holds
:meth:`~devmig.inventory.JournalStore.mark`, and the finished migrations are read only on a miss.
Here, on the twin, a SQLite file and PostgreSQL: a hit costs the same statements with 20 and with 200
finished migrations and reads none of them; the served matrix is the one computed the old way (every
host's devices, every finished migration); and a finished migration re-written at the same instant with
the device it created — which the old key did not see — changes the verdict.

The scenario is the one of ``tests/manager/dashboard/test_matrix_cache.py``: NIC releases 2.1.0 and 2.2.0
disagree on the off value of a parameter, so a device that came from 2.1.0 goes to 2.2.0 only one way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from matrix_scenario import at, migration, wol_fleet
from sql_statements import executed

from devmig.inventory import Inventory, JournalStore, SqlInventory
from devmig.manager._matrix import MatrixCache, MatrixInputs, compatibility_matrix
from devmig.orchestration import MIGRATIONS
from devmig.orchestration._migration_records import created_devices


def _history(inventory: Inventory, start: int, stop: int) -> None:
    """Finished migrations ``start`` .. ``stop - 1`` that created devices no host runs now (and some rolled
    back ones), all at the same instant."""
    for i in range(start, stop):
        inventory.journal(MIGRATIONS).put(
            f"old-{i:04d}", "done", migration("twin", f"a{i}", "x", f"gone{i}", finished=True), at(50)
        )
        if i % 4 == 0:
            inventory.journal(MIGRATIONS).put(
                f"back-{i:04d}", "rolled_back", migration("mid", f"b{i}", "x", f"none{i}", finished=True), at(50)
            )


def _the_old_way(inventory: Inventory, window: int = 0) -> dict[str, Any]:
    """The matrix from the inputs the cache read before: each host's devices and every finished migration."""
    snap = inventory.snapshot()
    devices = {h.name: tuple(inventory.list_devices(h.name)) for h in snap.hosts}
    inputs = MatrixInputs(snap, devices, created_devices(inventory.journal(MIGRATIONS).list("done")), key=())  # type: ignore[arg-type]
    return compatibility_matrix(inventory, snap, window, inputs=inputs)


def _verdict(matrix: dict[str, Any], device: str, host: str) -> str:
    row = next(r for r in matrix["devices"] if r["device"] == device)
    return str(row["cells"][host]["verdict"])


class _Reads:
    """Counts the entries the inventory's journals list (every inventory: the twin has no statements to count)."""

    def __init__(self, inventory: Inventory) -> None:
        self.inventory = inventory
        self.entries = 0
        self._journal = inventory.journal

    def __enter__(self) -> _Reads:
        reads = self

        class Counted:
            def __init__(self, store: JournalStore) -> None:
                self.store = store

            def __getattr__(self, name: str) -> Any:
                return getattr(self.store, name)

            def list(self, phase: str | None = None) -> list[Any]:
                got = self.store.list(phase)
                reads.entries += len(got)
                return got

        self.inventory.journal = lambda journal: Counted(self._journal(journal))  # type: ignore[method-assign,assignment,return-value]
        return self

    def __exit__(self, *exc: object) -> None:
        del self.inventory.journal  # type: ignore[method-assign]


def test_a_hit_reads_the_mark_not_the_finished_migrations(make_inventory: Callable[[], Inventory]) -> None:
    inventory = make_inventory()
    wol_fleet(inventory)
    cache = MatrixCache()
    hit_cost: dict[int, list[str]] = {}
    for start, stop in ((0, 20), (20, 200)):
        _history(inventory, start, stop)
        matrix, hit = cache.get(inventory, inventory.snapshot())
        assert not hit and matrix == _the_old_way(inventory)
        snap = inventory.snapshot()
        engine = inventory.engine if isinstance(inventory, SqlInventory) else None  # the twin runs no SQL
        with _Reads(inventory) as reads, executed(engine) as seen:
            again, hit = cache.get(inventory, snap)
        assert hit and again is matrix
        assert reads.entries == 0  # not one finished migration read (the old key read all of them)
        hit_cost[stop] = [sql for sql, _params in seen]
        assert not [sql for sql in hit_cost[stop] if "migration_journal.payload" in sql and "sum(" not in sql], seen
    assert len(hit_cost[20]) == len(hit_cost[200]), hit_cost
    if isinstance(inventory, SqlInventory):
        assert len(hit_cost[200]) == 2, hit_cost[200]  # the devices of every host; the mark of the journal
    assert cache.computations == 2 and cache.hits == 2


def test_a_finished_migration_rewritten_at_the_same_instant_changes_the_matrix(
        make_inventory: Callable[[], Inventory]) -> None:
    inventory = make_inventory()
    wol_fleet(inventory)
    _history(inventory, 0, 30)
    cache = MatrixCache()
    first, _ = cache.get(inventory, inventory.snapshot())
    assert _verdict(first, "mid/d1", "x") == "round_trip"  # no known past of mid/d1
    # m1 finished at 12 s having created a device of another host ...
    inventory.journal(MIGRATIONS).put("m1", "done", migration("old", "d0", "mid", "elsewhere", finished=True), at(12))
    second, hit = cache.get(inventory, inventory.snapshot())
    assert not hit and second == first == _the_old_way(inventory)
    assert cache.get(inventory, inventory.snapshot())[1]  # unchanged since: a hit
    # ... then the same entry, same instant, now naming mid/d1 (which came from old, 2.1.0): one way to x
    inventory.journal(MIGRATIONS).put("m1", "done", migration("old", "d0", "mid", "d1", finished=True), at(12))
    third, hit = cache.get(inventory, inventory.snapshot())
    assert not hit and third == _the_old_way(inventory)
    assert _verdict(third, "mid/d1", "x") == "one_way" and _verdict(third, "twin/fresh", "x") == "round_trip"
    # a migration still running, saving its progress, leaves the finished ones (and the cache) alone
    inventory.journal(MIGRATIONS).put("m2", "streaming", migration("twin", "fresh", "x", "f2", finished=True), at(13))
    inventory.journal(MIGRATIONS).put(
        "m2", "streaming", {**migration("twin", "fresh", "x", "f2", finished=True), "progress": 7}, at(14)
    )
    assert cache.get(inventory, inventory.snapshot()) == (third, True)
    # m1 leaves done (rolled back, say, by hand) at the same instant: the past is forgotten again
    inventory.journal(MIGRATIONS).put("m1", "rolled_back", migration("old", "d0", "mid", "d1", finished=True), at(12))
    fourth, hit = cache.get(inventory, inventory.snapshot())
    assert not hit and fourth == _the_old_way(inventory) and _verdict(fourth, "mid/d1", "x") == "round_trip"
    assert cache.computations == 4
