"""The drains section on a long journal: what it shows is unchanged, and it reads only the newest drains.

The section is polled every second. It used to read every drain ever journalled (payloads and all)
to show the newest :data:`DRAINS_SHOWN`, the total and the running count; it now reads those rows
and the two counts. Here the journal holds three to thirty times more drains than are shown —
running, finished, failed, partial and dry runs mixed — and the view is compared with the one
computed the old way from every record; on a SQLite manager the fragment's statements are counted
(a ``before_cursor_execute`` listener on the inventory's engine) at 30 and at 300 drains.
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

from devmig.inventory import (
    JournalEntry,
    JournalStore,
    MemoryInventory,
    MemoryJournalStore,
    SqlInventory,
    sqlite_url,
)
from devmig.manager import ManagerSettings, create_manager_app
from devmig.manager._dashboard import DRAINS_SHOWN, drain_row, drains_view
from devmig.orchestration import DRAINS
from devmig.orchestration._drain import PHASES, Drainer
from devmig.orchestration._orchestrator import Orchestrator

T0 = datetime(2026, 1, 1, tzinfo=UTC)
NOW = T0 + timedelta(days=2)


def _fill(store: JournalStore, start: int, stop: int) -> None:
    """Drains ``start`` .. ``stop - 1`` in every phase (``planned`` ones are dry runs), some with moved
    devices and stranded ones, ids unrelated to their age."""
    for i in range(start, stop):
        phase = PHASES[i % len(PHASES)]
        plan = [{"device": f"h{i}/d{k}", "model": "m", "destination": "x"} for k in range(i % 4)]
        results = {m["device"]: {"migration": f"m{k}", "outcome": "migrated" if k % 2 == 0 else "rolled_back"}
                   for k, m in enumerate(plan) if phase != "planned"}
        store.put(f"drain-{(i * 7919) % 10007:05d}", phase, {
            "host": f"h{i % 9}", "partial": i % 2 == 0, "parallel": 1 + i % 3, "dry_run": phase == "planned",
            "plan": plan, "stranded": [{"device": f"h{i}/s", "model": "m", "errors": [{"code": "NO_HOST"}]}] * (i % 2),
            "migrations": [r["migration"] for r in results.values()], "results": results, "error": None,
            "created_at": (T0 + timedelta(minutes=i)).isoformat(),
            "history": [{"phase": "planned", "at": T0.isoformat()}]}, T0 + timedelta(minutes=i))


def _before(app: FastAPI) -> dict[str, Any]:
    """The drains view as it was computed before: every record read, then cut and counted."""
    records = app.state.drainer.list()
    return {"drains": [drain_row(r, NOW) for r in records[:DRAINS_SHOWN]], "total": len(records),
            "running": sum(1 for r in records if not r.get("finished"))}


class _CountingStore(MemoryJournalStore):
    """The twin, counting the drains it hands out (each :meth:`get` copies one record)."""

    def __init__(self) -> None:
        super().__init__(DRAINS)
        self.read = 0

    def get(self, id: str) -> JournalEntry:
        self.read += 1
        return super().get(id)



@pytest.mark.parametrize("drains", [DRAINS_SHOWN * 3 + 1, 300])
def test_the_view_is_unchanged_and_reads_only_the_shown_drains_on_the_twin(drains: int) -> None:
    with MemoryInventory() as inventory:
        store = _CountingStore()
        _fill(store, 0, drains)
        app = FastAPI()
        app.state.drainer = Drainer(inventory, Orchestrator(inventory, sweep_interval=None), store,
                                    sweep_interval=None)
        expected = _before(app)
        assert 0 < expected["running"] < expected["total"] == drains  # running and finished mixed
        assert any(r["dry_run"] for r in expected["drains"]) and any(r["failures"] for r in expected["drains"])
        store.read = 0
        view = drains_view(app, NOW)
        assert store.read == DRAINS_SHOWN  # not one per drain of the journal
        assert view == expected


def test_the_fragment_on_a_sqlite_manager_reads_the_same_statements_at_30_and_300_drains(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "manager.db")
    app = create_manager_app(ManagerSettings(db_url=url), poll=False)
    with TestClient(app) as client:
        inventory: SqlInventory = app.state.inventory
        store = app.state.drainer.store
        assert inventory.journal(DRAINS).__class__ is store.__class__  # the drains live in the inventory's database
        statements: dict[int, int] = {}
        for start, stop in ((0, 30), (30, 300)):
            _fill(store, start, stop)
            expected = _before(app)
            with executed(inventory.engine) as seen:
                fragment = client.get("/dashboard/drains")
            assert fragment.status_code == 200, fragment.text
            statements[stop] = len(seen)
            # one statement counts, the other reads the shown rows (LIMIT DRAINS_SHOWN); nothing else
            counting = [sql for sql, _params in seen if sql.startswith("SELECT count(*)")]
            reading = [(sql, params) for sql, params in seen if "LIMIT" in sql]
            assert len(counting) == len(reading) == 1 and DRAINS_SHOWN in reading[0][1], seen
            shown = re.findall(r'data-drain="([^"]+)"', fragment.text)
            assert shown == [r["id"] for r in expected["drains"]]
            summary = f'{expected["running"]} running · {stop} in the journal (newest {DRAINS_SHOWN} shown)'
            assert summary in fragment.text
            assert drains_view(app, NOW) == expected
        assert statements[30] == statements[300] == 2, statements
