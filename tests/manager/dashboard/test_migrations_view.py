"""The migrations section on a long journal: what it shows is unchanged, and it reads only the newest migrations.

The section is polled every second. It used to read every migration ever journalled (payloads and
all, :meth:`Orchestrator.list`) to show the newest :data:`MIGRATIONS_SHOWN`, the total and the running
count; it now reads those entries and the two counts (:meth:`Orchestrator.newest`). Here the journal
holds three to twenty times more migrations than are shown — every phase, ties on ``created_at``, some
without one, some finished a moment ago — and the view is compared with the one computed the old way
from every record; on a SQLite inventory the fragment's statements are counted (a
``before_cursor_execute`` listener on the inventory's engine) at 30 and at 300 migrations.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sql_statements import executed

from devmig._humanize import ago, seconds_since
from devmig.inventory import (
    Inventory,
    Journal,
    JournalEntry,
    MemoryInventory,
    MemoryJournalStore,
    SqlInventory,
    sqlite_url,
)
from devmig.manager._dashboard import (
    MIGRATIONS_SHOWN,
    MOVED_RECENT_S,
    _size,
    migrations_view,
    mount_dashboard,
    progress_of,
)
from devmig.orchestration._journal_phases import MIGRATIONS, PHASES
from devmig.orchestration._migration_records import copy_progress, enter_phase, new_payload
from devmig.orchestration._orchestrator import Orchestrator

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _fill(inventory: Inventory, start: int, stop: int) -> datetime:
    """Migrations ``start`` .. ``stop - 1`` in every phase, ids unrelated to their age; every ninth shares
    its minute with the one before, every thirteenth has no ``created_at``. Returns the time of the
    last write: the newest finished ones were written a second before it."""
    last = T0
    for i in range(start, stop):
        phase = PHASES[i % len(PHASES)]
        created = T0 + timedelta(minutes=i - 1 if i % 9 == 0 else i)
        payload = new_payload(
            device=f"h{i % 7}/d{i}",
            device_id=f"d{i}",
            model="example.org/devices/nic",
            source=f"h{i % 7}",
            destination=f"h{(i + 3) % 7}",
            source_url="http://s",
            destination_url="http://d",
            lease=f"lease-{i}",
            drain=f"drain-{i}" if i % 5 == 0 else None,
            now=created,
        )
        if phase != "planned":
            copy_progress(payload, {"stage": "bulk", "round": i % 3, "bytes_sent": 1000 * i, "rate": 10.0 * (i % 4),
                                    "downtime_ms": 1.5 if phase == "done" else None}, {"phase": "RUNNING"})
            enter_phase(payload, "streaming", created + timedelta(seconds=1))
            enter_phase(payload, phase, created + timedelta(seconds=2))
        if i % 13 == 0:
            del payload["created_at"]
        last = created + timedelta(seconds=3)
        inventory.journal(MIGRATIONS).put(f"mig-{(i * 7919) % 10007:05d}", phase, payload, last - timedelta(seconds=1))
    return last


def _just_finished(inventory: Inventory, now: datetime) -> None:
    """A migration created last and finished (``done``) a second before ``now``."""
    payload = new_payload(device="h0/fresh", device_id="fresh", model="example.org/devices/nic", source="h0",
                          destination="h1", source_url="http://s", destination_url="http://d", lease="lease",
                          drain=None, now=now - timedelta(seconds=2))
    enter_phase(payload, "done", now - timedelta(seconds=1))
    inventory.journal(MIGRATIONS).put("mig-just-done", "done", payload, now - timedelta(seconds=1))


def _before(orchestrator: Orchestrator, now: datetime) -> dict[str, Any]:
    """The migrations view as it was computed before: every record read, then cut and counted."""
    records = orchestrator.list()
    rows = []
    for record in records[:MIGRATIONS_SHOWN]:
        progress = record.get("progress") or {}
        rows.append({
            **record, "bar": progress_of(record), "sent": _size(progress.get("bytes_sent")),
            "rate_text": _size(progress.get("rate")) + "/s" if progress.get("rate") else "—",
            "started": ago(record.get("created_at"), now),
        })
    active = sum(1 for r in records if not r.get("finished"))
    moved = any(r.get("finished") and seconds_since(r["updated_at"], now) < MOVED_RECENT_S
                for r in records[:MIGRATIONS_SHOWN])
    return {"migrations": rows, "total": len(records), "active": active, "moved": moved}


class _CountingJournal(MemoryJournalStore):
    """The twin's journal, counting the entries it hands out in lists."""

    def __init__(self) -> None:
        super().__init__(MIGRATIONS)
        self.listed = 0

    def list(self, phase: str | None = None) -> list[JournalEntry]:
        got = super().list(phase)
        self.listed += len(got)
        return got


class _CountingInventory(MemoryInventory):
    """The twin, whose migrations' journal counts the entries it hands out in lists."""

    def __init__(self) -> None:
        super().__init__()
        self.migrations = _CountingJournal()

    def journal(self, journal: Journal) -> MemoryJournalStore:
        return self.migrations if journal == MIGRATIONS else super().journal(journal)


def _app(inventory: Inventory) -> FastAPI:
    """The dashboard over an inventory and an orchestrator that drives nothing (no sweep, never opened)."""
    app = FastAPI()
    app.state.inventory = inventory
    app.state.orchestrator = Orchestrator(inventory, sweep_interval=None)
    mount_dashboard(app)
    return app


@pytest.mark.parametrize("migrations", [MIGRATIONS_SHOWN * 3 + 1, 300])
def test_the_view_is_unchanged_and_reads_no_list_of_the_journal_on_the_twin(migrations: int) -> None:
    with _CountingInventory() as inventory:
        last = _fill(inventory, 0, migrations - 1)
        _just_finished(inventory, last)
        app = _app(inventory)
        for now in (last, last + timedelta(minutes=5)):  # the newest finished a second ago; then long ago
            expected = _before(app.state.orchestrator, now)
            assert 0 < expected["active"] < expected["total"] == migrations  # running and finished mixed
            assert len(expected["migrations"]) == MIGRATIONS_SHOWN
            inventory.migrations.listed = 0
            view = migrations_view(app, now)
            assert inventory.migrations.listed == 0  # not one entry of the journal listed (the old view listed all)
            assert view == expected
        assert _before(app.state.orchestrator, last)["moved"] and not expected["moved"]
        assert migrations_view(app, last)["migrations"][0]["id"] == "mig-just-done"



def test_the_fragment_on_sqlite_reads_the_same_statements_at_30_and_300_migrations(tmp_path: Path) -> None:
    with SqlInventory(sqlite_url(tmp_path / "manager.db")) as inventory:
        app = _app(inventory)
        statements: dict[int, int] = {}
        with TestClient(app) as client:
            for start, stop in ((0, 30), (30, 300)):
                last = _fill(inventory, start, stop)
                expected = _before(app.state.orchestrator, last)
                assert migrations_view(app, last) == expected
                with executed(inventory.engine) as seen:
                    fragment = client.get("/dashboard/migrations")
                assert fragment.status_code == 200, fragment.text
                statements[stop] = len(seen)
                # one statement counts, the other reads the shown entries (LIMIT MIGRATIONS_SHOWN); nothing else
                counting = [sql for sql, _params in seen if sql.startswith("SELECT count(*)")]
                reading = [(sql, params) for sql, params in seen if "LIMIT" in sql]
                assert len(counting) == len(reading) == 1 and MIGRATIONS_SHOWN in reading[0][1], seen
                shown = re.findall(r'data-migration="([^"]+)"', fragment.text)
                assert shown == [r["id"] for r in expected["migrations"]]
                summary = (f'{expected["active"]} running · {stop} in the journal '
                           f'(newest {MIGRATIONS_SHOWN} shown)')
                assert summary in fragment.text
        assert statements[30] == statements[300] == 2, statements


def test_newest_is_the_head_of_list_with_its_counts() -> None:
    with MemoryInventory() as inventory:
        _fill(inventory, 0, 40)
        orchestrator = Orchestrator(inventory, sweep_interval=None)
        every = orchestrator.list()
        for limit in (0, 1, MIGRATIONS_SHOWN, 40, 41):
            records, total, active = orchestrator.newest(limit)
            assert records == every[:limit] and total == len(every) == 40
            assert active == sum(1 for r in every if not r["finished"]) > 0
        assert orchestrator.list(active=True) == [r for r in every if r["phase"] not in ("done", "rolled_back")]
        with pytest.raises(ValueError):
            orchestrator.newest(-1)
