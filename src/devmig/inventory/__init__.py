"""The inventory: the fleet's hosts, pools, profiles and journals (SQLAlchemy; SQLite by default, PostgreSQL by URL).

Open an inventory, register hosts, and poll their agents::

    with SqlInventory(sqlite_url("fleet.db")) as inventory:
        inventory.add_host("host-a", "http://10.0.0.1:8470")
        poller = Poller(inventory, SystemClock(), interval=30.0)
        await poller.poll_once()
        snapshot = inventory.snapshot()   # plain data for the fleet algorithms

:class:`Inventory` is the interface; :class:`SqlInventory` keeps it in a database whose schema
(:data:`metadata`) is upgraded by the Alembic revisions shipped in ``schema_versions/`` when it
opens; :class:`MemoryInventory` is the in-memory twin, and both run the same tests. Each also
implements the journals the orchestration writes ahead of its actions: one interface,
:class:`JournalStore` (:meth:`Inventory.journal` opens one), for every :class:`Journal` — the
migrations' and the drains' differ only in data (table, error code, what counts as finished). The
:class:`Poller` keeps the inventory in step with every agent's report and devices: it is the
inventory's writer, and the orchestrator refreshes a host through it before placing.

The clock lives here because the poller, the first thing that needs one, does: :class:`Clock`,
with :class:`SystemClock` and its twin :class:`ManualClock`; the orchestration and the manager
take the same clock.

The names are loaded on first use (as in :mod:`devmig.agent`): importing the package does not
import the database layer, alembic or the HTTP client.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from devmig._lazy import lazy_names

if TYPE_CHECKING:
    from devmig.inventory._bench import bench_register
    from devmig.inventory._clock import Clock, ManualClock, SystemClock
    from devmig.inventory._interface import (
        DEFAULT_MAX_MISSED,
        DeviceRecord,
        HistoryEntry,
        HostSnapshot,
        HostView,
        Inventory,
        InventorySnapshot,
        RunState,
        report_profile,
    )
    from devmig.inventory._journal import (
        Journal,
        JournalEntry,
        JournalMark,
        JournalPage,
        JournalStore,
        MemoryJournalStore,
        check_limit,
        newest_first,
        utc,
    )
    from devmig.inventory._memory import MemoryInventory
    from devmig.inventory._poller import Poller, PollOutcome, PollStatus
    from devmig.inventory._schema import metadata
    from devmig.inventory._sql import SqlInventory, SqlJournalStore, sqlite_url

__all__ = [
    "DEFAULT_MAX_MISSED",
    "Clock",
    "DeviceRecord",
    "HistoryEntry",
    "HostSnapshot",
    "HostView",
    "Inventory",
    "InventorySnapshot",
    "Journal",
    "JournalEntry",
    "JournalMark",
    "JournalPage",
    "JournalStore",
    "ManualClock",
    "MemoryInventory",
    "MemoryJournalStore",
    "PollOutcome",
    "PollStatus",
    "Poller",
    "RunState",
    "SqlInventory",
    "SqlJournalStore",
    "SystemClock",
    "bench_register",
    "check_limit",
    "metadata",
    "newest_first",
    "report_profile",
    "sqlite_url",
    "utc",
]

_WHERE = {
    "bench_register": "devmig.inventory._bench",
    "Clock": "devmig.inventory._clock",
    "ManualClock": "devmig.inventory._clock",
    "SystemClock": "devmig.inventory._clock",
    "DEFAULT_MAX_MISSED": "devmig.inventory._interface",
    "DeviceRecord": "devmig.inventory._interface",
    "HistoryEntry": "devmig.inventory._interface",
    "HostSnapshot": "devmig.inventory._interface",
    "HostView": "devmig.inventory._interface",
    "Inventory": "devmig.inventory._interface",
    "InventorySnapshot": "devmig.inventory._interface",
    "Journal": "devmig.inventory._journal",
    "JournalEntry": "devmig.inventory._journal",
    "JournalMark": "devmig.inventory._journal",
    "JournalPage": "devmig.inventory._journal",
    "JournalStore": "devmig.inventory._journal",
    "MemoryJournalStore": "devmig.inventory._journal",
    "RunState": "devmig.inventory._interface",
    "check_limit": "devmig.inventory._journal",
    "newest_first": "devmig.inventory._journal",
    "report_profile": "devmig.inventory._interface",
    "utc": "devmig.inventory._journal",
    "MemoryInventory": "devmig.inventory._memory",
    "PollOutcome": "devmig.inventory._poller",
    "PollStatus": "devmig.inventory._poller",
    "Poller": "devmig.inventory._poller",
    "metadata": "devmig.inventory._schema",
    "SqlInventory": "devmig.inventory._sql",
    "SqlJournalStore": "devmig.inventory._sql",
    "sqlite_url": "devmig.inventory._sql",
}


__getattr__, __dir__ = lazy_names(__name__, _WHERE, __all__)
