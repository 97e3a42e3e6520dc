"""One journal store interface for the migrations and the drains: what differs between them is data.

Each journal (:data:`MIGRATIONS`, :data:`DRAINS`) runs the same contract on the twin, SQLite and
PostgreSQL: entries round-trip by id, an unknown id raises the journal's own code, what counts as
finished follows the journal's data (a payload flag; a final phase or a dry run), the two journals
never see each other's entries, and a write changes the mark.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from devmig._errors import DevmigError
from devmig.inventory import Inventory, Journal, MemoryInventory, MemoryJournalStore
from devmig.orchestration import DRAINS, MIGRATIONS

T0 = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)


@pytest.mark.parametrize(
    ("journal", "code", "loc", "message"),
    [
        (MIGRATIONS, "JOURNAL_UNKNOWN", "journal", "no journal entry for migration 'nope'"),
        (DRAINS, "DRAIN_UNKNOWN", "drains", "no drain 'nope'"),
    ],
)
def test_each_journal_round_trips_and_names_an_unknown_id_its_own_way(
    make_inventory: Callable[[], Inventory], journal: Journal, code: str, loc: str, message: str
) -> None:
    store = make_inventory().journal(journal)
    assert store.journal == journal
    store.put("b", "planned", {"created_at": T0.isoformat(), "n": [1]}, T0)
    store.put("a", "running", {"created_at": (T0 + timedelta(minutes=1)).isoformat()}, T0)
    store.put("b", "running", {"created_at": T0.isoformat(), "n": [1, 2]}, T0 + timedelta(seconds=1))
    entry = store.get("b")
    assert (entry.phase, entry.payload["n"], entry.updated_at) == ("running", [1, 2], T0 + timedelta(seconds=1))
    entry.payload["n"].append(3)  # a copy: the journal is unchanged
    assert store.get("b").payload["n"] == [1, 2]
    assert [e.id for e in store.list()] == ["a", "b"] and [e.id for e in store.list("planned")] == []
    with pytest.raises(DevmigError) as unknown:
        store.get("nope")
    problem = unknown.value.problems[0]
    assert (problem.code, problem.loc, problem.message, problem.value) == (code, (loc, "nope"), message, "nope")


def test_what_counts_as_finished_is_each_journals_data(make_inventory: Callable[[], Inventory]) -> None:
    inventory = make_inventory()
    migrations, drains = inventory.journal(MIGRATIONS), inventory.journal(DRAINS)
    for store in (migrations, drains):  # the same rows in both journals
        store.put("running", "running", {}, T0)
        store.put("flagged", "running", {"finished": True}, T0)
        store.put("dry", "planned", {"dry_run": True}, T0)
        store.put("done", "done", {}, T0)
    # migrations: finished when the payload says so; drains: a final phase, or a dry run
    assert (migrations.newest(0).total, migrations.newest(0).unfinished) == (4, 3)
    assert (drains.newest(0).total, drains.newest(0).unfinished) == (4, 2)
    assert [MIGRATIONS.finished(e.phase, e.payload) for e in migrations.list()] == [False, False, True, False]
    assert [DRAINS.finished(e.phase, e.payload) for e in drains.list()] == [True, True, False, False]


def test_the_journals_are_apart_and_a_write_changes_the_mark(make_inventory: Callable[[], Inventory]) -> None:
    inventory = make_inventory()
    migrations, drains = inventory.journal(MIGRATIONS), inventory.journal(DRAINS)
    before = migrations.mark()
    drains.put("d1", "running", {}, T0)
    assert migrations.mark() == before and migrations.list() == []
    migrations.put("m1", "running", {}, T0)
    assert migrations.mark() != before and [e.id for e in drains.list()] == ["d1"]
    with pytest.raises(DevmigError) as unknown:
        drains.get("m1")
    assert unknown.value.code == "DRAIN_UNKNOWN"


def test_the_twin_keeps_one_store_per_journal() -> None:
    with MemoryInventory() as inventory:
        store = inventory.journal(DRAINS)
        assert isinstance(store, MemoryJournalStore) and inventory.journal(DRAINS) is store
        assert inventory.journal(MIGRATIONS) is not store
