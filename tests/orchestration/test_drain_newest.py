"""``JournalStore.newest``: the newest drains and the journal's counts, on the twin, SQLite and PostgreSQL.

The dashboard polls it every second, so it must equal what it replaces — the first rows of every
drain sorted newest first, and the counts over every drain — and read no other row: the SQL store
runs the same two statements whether the journal holds 30 or 300 drains, the rows come from one
``ORDER BY ... LIMIT``, and the twin copies only the payloads it returns.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sql_statements import executed

from devmig.inventory import (
    Inventory,
    JournalEntry,
    JournalPage,
    JournalStore,
    MemoryInventory,
    MemoryJournalStore,
    SqlInventory,
    newest_first,
)
from devmig.orchestration import DRAINS
from devmig.orchestration._drain import PHASES, Drainer, record_of
from devmig.orchestration._orchestrator import Orchestrator

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def _payload(i: int, phase: str) -> dict[str, Any]:
    """Drain ``i``: created ``i`` minutes after T0, except that every seventh shares its minute with the one
    before (the id breaks the tie) and every eleventh has no ``created_at`` (older than everything)."""
    minute = i - 1 if i % 7 == 0 else i
    payload: dict[str, Any] = {"host": f"h{i % 5}", "partial": False, "parallel": 1, "dry_run": phase == "planned",
                               "plan": [{"device": f"h{i % 5}/d{k}"} for k in range(i % 3)], "migrations": [],
                               "results": {}, "error": None}
    if i % 11:
        payload["created_at"] = (T0 + timedelta(minutes=minute)).isoformat()
    return payload


def _fill(store: JournalStore, start: int, stop: int) -> None:
    """Drains ``start`` .. ``stop - 1`` in every phase (planned ones are dry runs), ids not in creation order."""
    for i in range(start, stop):
        phase = PHASES[i % len(PHASES)]
        store.put(f"drain-{(i * 37) % 1000:03d}-{i}", phase, _payload(i, phase), T0 + timedelta(minutes=i))


def _expected(store: JournalStore, limit: int) -> JournalPage:
    """What the dashboard computed before: every drain read, sorted, cut, counted."""
    rows = sorted(store.list(), key=newest_first, reverse=True)
    running = sum(1 for r in rows if not DRAINS.finished(r.phase, r.payload))
    return JournalPage(tuple(rows[:limit]), len(rows), running)



def test_newest_equals_every_drain_sorted_and_counted(make_inventory: Callable[[], Inventory]) -> None:
    store = make_inventory().journal(DRAINS)
    assert store.newest(10) == JournalPage((), 0, 0)
    _fill(store, 0, 40)
    # a drain updated (its phase and payload) reads as updated
    store.put("drain-000-0", "running", {**_payload(0, "running"), "created_at": (T0 + timedelta(days=1)).isoformat()},
              T0 + timedelta(days=1))
    for limit in (0, 1, 10, 39, 40, 100):
        got = store.newest(limit)
        assert got == _expected(store, limit), limit
    got = store.newest(10)
    assert [r.id for r in got.entries] == [  # drain 35 shares drain 34's minute: the greater id first
        "drain-000-0", "drain-443-39", "drain-406-38", "drain-369-37", "drain-332-36", "drain-295-35",
        "drain-258-34", "drain-184-32", "drain-147-31", "drain-110-30"]
    assert (got.total, got.unfinished) == (40, 9)  # drains 1, 6, ..., 36 and the updated drain 0 run
    undated = store.newest(40).entries[-3:]  # drains 11, 22 and 33 have no created_at: the oldest, by id
    assert [r.id for r in undated] == ["drain-814-22", "drain-407-11", "drain-221-33"]
    assert [r.id for r in store.list("running")] == sorted(r.id for r in store.list() if r.phase == "running")
    with pytest.raises(ValueError):
        store.newest(-1)


def test_newest_reads_the_same_two_statements_at_30_and_at_300_drains(db_url: str) -> None:
    with SqlInventory(db_url) as inventory:
        store = inventory.journal(DRAINS)
        counts: dict[int, int] = {}
        for start, stop in ((0, 30), (30, 300)):
            _fill(store, start, stop)
            with executed(inventory.engine) as seen:
                got = store.newest(10)
            assert got == _expected(store, 10) and len(got.entries) == 10 and got.total == stop
            counts[stop] = len(seen)
            # one statement counts, the other reads the newest rows with a LIMIT of 10; nothing else
            counting = [sql for sql, _params in seen if sql.startswith("SELECT count(*)")]
            reading = [params for sql, params in seen if "LIMIT" in sql]
            assert len(counting) == len(reading) == 1, seen
            assert 10 in (reading[0].values() if isinstance(reading[0], dict) else reading[0]), seen
        assert counts[30] == counts[300] == 2, counts


class _CountingStore(MemoryJournalStore):
    """The twin, counting the payloads it hands out (each :meth:`get` copies one)."""

    def __init__(self) -> None:
        super().__init__(DRAINS)
        self.copied = 0

    def get(self, id: str) -> JournalEntry:
        self.copied += 1
        return super().get(id)


def test_the_twin_copies_only_the_newest_payloads() -> None:
    store = _CountingStore()
    _fill(store, 0, 200)
    store.copied = 0
    got = store.newest(10)
    assert store.copied == 10 and got == _expected(store, 10)


def test_the_drainer_lists_the_newest_records_and_counts() -> None:
    inventory = MemoryInventory()
    with inventory:
        store = MemoryJournalStore(DRAINS)
        _fill(store, 0, 25)
        drainer = Drainer(inventory, Orchestrator(inventory, sweep_interval=None), store, sweep_interval=None)
        every = drainer.list()
        records, total, running = drainer.newest(10)
        assert records == every[:10] and total == len(every) == 25
        assert running == sum(1 for r in every if not r["finished"])
        assert [r["id"] for r in every] == [record_of(r)["id"] for r in sorted(store.list(), key=newest_first,
                                                                               reverse=True)]
