"""``JournalStore.mark`` and ``JournalStore.newest`` of the migrations' journal: one row or one page, on the
twin, SQLite and PostgreSQL.

The matrix cache compares the mark of the finished migrations instead of reading them all on every
poll, so the mark must change with every change of the phase's entries — an entry entering or leaving
the phase, re-written later, or re-written at the *same* instant (a frozen clock) with another payload
or in place of another entry — and must not change when nothing in the phase did (a hit stays a hit
while migrations run). The dashboard's migrations section reads the newest entries and two counts; the
page must equal every entry sorted and cut, and the counts every entry counted. On SQL both reads run
a fixed number of statements whether the journal holds 20 or 200 entries.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sql_statements import executed

from devmig.inventory import Inventory, JournalMark, JournalPage, SqlInventory, newest_first
from devmig.orchestration import MIGRATIONS

T0 = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
PHASES = ("planned", "streaming", "done", "rolled_back", "resolving", "done")


def _payload(i: int, phase: str) -> dict[str, Any]:
    """Migration ``i``: created ``i`` minutes after T0, except that every seventh shares its minute with the
    one before (the id breaks the tie) and every eleventh has no ``created_at`` (older than everything)."""
    minute = i - 1 if i % 7 == 0 else i
    finished = phase in ("done", "rolled_back")
    payload: dict[str, Any] = {"device": f"h{i % 5}/d{i}", "device_id": f"d{i}", "source": f"h{i % 5}",
                               "destination": f"h{(i + 1) % 5}", "destination_device_id": f"n{i}",
                               "finished": finished, "outcome": "migrated" if phase == "done" else None,
                               "history": [{"phase": "planned", "at": T0.isoformat()}], "_lease": f"l{i}"}
    if i % 11:
        payload["created_at"] = (T0 + timedelta(minutes=minute)).isoformat()
    return payload


def _fill(inventory: Inventory, start: int, stop: int, now: datetime | None = None) -> None:
    """Migrations ``start`` .. ``stop - 1`` in several phases, ids not in creation order."""
    for i in range(start, stop):
        phase = PHASES[i % len(PHASES)]
        inventory.journal(MIGRATIONS).put(f"m-{(i * 37) % 1000:03d}-{i}", phase, _payload(i, phase),
                              now or T0 + timedelta(minutes=i))


def _expected(inventory: Inventory, limit: int) -> JournalPage:
    """What the dashboard computed before: every entry read, sorted, cut, counted."""
    entries = sorted(inventory.journal(MIGRATIONS).list(), key=newest_first, reverse=True)
    return JournalPage(
        tuple(entries[:limit]), len(entries), sum(1 for e in entries if not MIGRATIONS.finished(e.phase, e.payload))
    )



def test_the_mark_changes_with_every_change_of_the_phase(make_inventory: Callable[[], Inventory]) -> None:
    inventory = make_inventory()
    empty = inventory.journal(MIGRATIONS).mark("done")
    assert (empty.count, empty.newest) == (0, None)
    assert inventory.journal(MIGRATIONS).mark("done") == empty
    frozen = T0 + timedelta(hours=1)  # every write below at the same instant unless said otherwise
    inventory.journal(MIGRATIONS).put("a", "done", {"destination_device_id": "x"}, frozen)
    inventory.journal(MIGRATIONS).put("b", "done", {"destination_device_id": "y"}, frozen)
    two = inventory.journal(MIGRATIONS).mark("done")
    assert (two.count, two.newest) == (2, frozen)
    assert inventory.journal(MIGRATIONS).mark("done") == two  # read again: the same

    # writes in other phases (a running migration saving its progress) leave the done mark alone
    inventory.journal(MIGRATIONS).put("r", "streaming", {"progress": 1}, frozen + timedelta(seconds=5))
    inventory.journal(MIGRATIONS).put("r", "streaming", {"progress": 2}, frozen + timedelta(seconds=6))
    assert inventory.journal(MIGRATIONS).mark("done") == two
    assert inventory.journal(MIGRATIONS).mark("streaming").count == 1

    # a done entry re-written at the same instant with another payload
    inventory.journal(MIGRATIONS).put("a", "done", {"destination_device_id": "x2"}, frozen)
    amended = inventory.journal(MIGRATIONS).mark("done")
    assert (amended.count, amended.newest) == (2, frozen) and amended != two

    # one entry leaves the phase and another enters it at the same instant: same count, same newest time
    inventory.journal(MIGRATIONS).put("b", "resolving", {"destination_device_id": "y"}, frozen)
    inventory.journal(MIGRATIONS).put("c", "done", {"destination_device_id": "y"}, frozen)
    swapped = inventory.journal(MIGRATIONS).mark("done")
    assert (swapped.count, swapped.newest) == (2, frozen) and swapped not in (two, amended)

    # a done entry re-written later; one leaving the phase
    inventory.journal(MIGRATIONS).put("c", "done", {"destination_device_id": "y"}, frozen + timedelta(microseconds=1))
    later = inventory.journal(MIGRATIONS).mark("done")
    assert later.newest == frozen + timedelta(microseconds=1) and later not in (two, amended, swapped)
    inventory.journal(MIGRATIONS).put(
        "a", "rolled_back", {"destination_device_id": "x2"}, frozen + timedelta(seconds=9)
    )
    left = inventory.journal(MIGRATIONS).mark("done")
    assert (left.count, left.newest) == (1, frozen + timedelta(microseconds=1))
    assert left not in (two, amended, swapped, later)

    # every entry (no phase)
    every = inventory.journal(MIGRATIONS).mark()
    assert every.count == len(inventory.journal(MIGRATIONS).list()) == 4
    assert every.newest == max(e.updated_at for e in inventory.journal(MIGRATIONS).list())
    inventory.journal(MIGRATIONS).put("r", "streaming", {"progress": 3}, frozen + timedelta(seconds=9))
    assert inventory.journal(MIGRATIONS).mark() != every and inventory.journal(MIGRATIONS).mark("done") == left
    assert isinstance(left, JournalMark)


def test_the_mark_sees_a_write_by_another_inventory_on_the_same_database(
        make_inventory: Callable[[], Inventory]) -> None:
    reader, writer = make_inventory(), make_inventory()  # two processes, as far as SQL can tell
    _fill(writer, 0, 12)
    before = reader.journal(MIGRATIONS).mark("done")
    assert before == writer.journal(MIGRATIONS).mark("done") and before.count == sum(
        1 for e in writer.journal(MIGRATIONS).list() if e.phase == "done")
    entry = writer.journal(MIGRATIONS).get("m-074-2")
    assert entry.phase == "done"
    writer.journal(MIGRATIONS).put(
        entry.id, "done", {**entry.payload, "incidents": [{"code": "LATE"}]}, entry.updated_at
    )
    assert reader.journal(MIGRATIONS).mark("done") != before


def test_newest_equals_every_entry_sorted_and_counted(make_inventory: Callable[[], Inventory]) -> None:
    inventory = make_inventory()
    assert inventory.journal(MIGRATIONS).newest(15) == JournalPage((), 0, 0)
    _fill(inventory, 0, 40)
    # an entry updated (its phase and payload) reads as updated
    inventory.journal(MIGRATIONS).put("m-000-0", "streaming", {**_payload(0, "streaming"),
                                                   "created_at": (T0 + timedelta(days=1)).isoformat()},
                          T0 + timedelta(days=1))
    for limit in (0, 1, 15, 39, 40, 100):
        assert inventory.journal(MIGRATIONS).newest(limit) == _expected(inventory, limit), limit
    got = inventory.journal(MIGRATIONS).newest(10)
    assert [e.id for e in got.entries] == [  # migration 35 shares migration 34's minute: the greater id first
        "m-000-0", "m-443-39", "m-406-38", "m-369-37", "m-332-36", "m-295-35",
        "m-258-34", "m-184-32", "m-147-31", "m-110-30"]
    assert (got.total, got.unfinished) == (40, 20)  # planned, streaming and resolving ones (half of each six)
    undated = (
        inventory.journal(MIGRATIONS).newest(40).entries[-3:]
    )  # 11, 22 and 33 have no created_at: the oldest, by id
    assert [e.id for e in undated] == ["m-814-22", "m-407-11", "m-221-33"]
    assert all(e == inventory.journal(MIGRATIONS).get(e.id) for e in got.entries)  # whole entries, payload and all
    with pytest.raises(ValueError):
        inventory.journal(MIGRATIONS).newest(-1)


def test_the_mark_and_the_page_cost_the_same_statements_at_20_and_at_200_entries(db_url: str) -> None:
    with SqlInventory(db_url) as inventory:
        mark_cost: dict[int, list[str]] = {}
        page_cost: dict[int, int] = {}
        for start, stop in ((0, 20), (20, 200)):
            _fill(inventory, start, stop)
            with executed(inventory.engine) as seen:
                mark = inventory.journal(MIGRATIONS).mark("done")
            assert mark.count == sum(1 for e in inventory.journal(MIGRATIONS).list() if e.phase == "done") == stop // 3
            mark_cost[stop] = [sql for sql, _params in seen]
            with executed(inventory.engine) as seen:
                page = inventory.journal(MIGRATIONS).newest(15)
            assert page == _expected(inventory, 15) and len(page.entries) == 15 and page.total == stop
            page_cost[stop] = len(seen)
            # one statement counts, the other reads the newest entries with a LIMIT of 15; nothing else
            counting = [sql for sql, _params in seen if sql.startswith("SELECT count(*)")]
            reading = [params for sql, params in seen if "LIMIT" in sql]
            assert len(counting) == len(reading) == 1, seen
            assert 15 in (reading[0].values() if isinstance(reading[0], dict) else reading[0]), seen
        # the mark is one statement of aggregates (one row), whatever the size of the phase
        assert len(mark_cost[20]) == len(mark_cost[200]) == 1, mark_cost
        assert mark_cost[200][0].startswith("SELECT count(*)") and "sum(" in mark_cost[200][0], mark_cost
        assert "LIMIT" not in mark_cost[200][0] and "GROUP BY" not in mark_cost[200][0], mark_cost
        assert page_cost[20] == page_cost[200] == 2, page_cost
