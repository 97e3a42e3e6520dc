"""The fleet: the inventory of hosts (SQLAlchemy; SQLite by default, PostgreSQL by URL) and its poller.

Open an inventory, register hosts, and poll their agents::

    with SqlInventory(sqlite_url("fleet.db")) as inventory:
        inventory.add_host("host-a", "http://10.0.0.1:8470")
        poller = Poller(inventory, SystemClock(), interval=30.0)
        await poller.poll_once()
        snapshot = inventory.snapshot()   # plain data for the fleet algorithms

:class:`MemoryInventory` is the in-memory twin and :class:`ManualClock` the
clock twin; both run the same tests as the real ones. The manager's
migrations are driven by :class:`Orchestrator` over a write-ahead journal whose
phases and resume rules are the pure :func:`decide` and :data:`TRANSITIONS`;
drains by :class:`Drainer`, whose plan is the pure :func:`plan_drain`.

The names are loaded on first use (as in :mod:`devmig.agent`): a command that
needs one light part of the package — ``devmig down`` reads a state file —
does not import the database layer, alembic and the web framework.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from devmig._lazy import lazy_names

if TYPE_CHECKING:
    from devmig.fleet._bench import bench_register
    from devmig.fleet._clock import Clock, ManualClock, SystemClock
    from devmig.fleet._drain import (
        Drainer,
        DrainPlan,
        DrainStore,
        MemoryDrainStore,
        PlannedMove,
        SqlDrainStore,
        Stranded,
        plan_drain,
    )
    from devmig.fleet._inventory import (
        DEFAULT_MAX_MISSED,
        DeviceRecord,
        HistoryEntry,
        HostSnapshot,
        HostView,
        Inventory,
        InventorySnapshot,
        JournalEntry,
        RunState,
        report_profile,
    )
    from devmig.fleet._journal_phases import (
        FORWARD,
        PHASES,
        TRANSITIONS,
        AgentView,
        Decision,
        decide,
    )
    from devmig.fleet._manager import ManagerSettings, create_manager_app
    from devmig.fleet._memory import MemoryInventory
    from devmig.fleet._orchestrator import Orchestrator
    from devmig.fleet._poller import Poller, PollOutcome, PollStatus
    from devmig.fleet._schema import metadata
    from devmig.fleet._sql import SqlInventory, sqlite_url

__all__ = [
    "DEFAULT_MAX_MISSED",
    "FORWARD",
    "PHASES",
    "TRANSITIONS",
    "AgentView",
    "Clock",
    "Decision",
    "DeviceRecord",
    "DrainPlan",
    "DrainStore",
    "Drainer",
    "HistoryEntry",
    "HostSnapshot",
    "HostView",
    "Inventory",
    "InventorySnapshot",
    "JournalEntry",
    "ManagerSettings",
    "ManualClock",
    "MemoryDrainStore",
    "MemoryInventory",
    "Orchestrator",
    "PlannedMove",
    "PollOutcome",
    "PollStatus",
    "Poller",
    "RunState",
    "SqlDrainStore",
    "SqlInventory",
    "Stranded",
    "SystemClock",
    "bench_register",
    "create_manager_app",
    "decide",
    "metadata",
    "plan_drain",
    "report_profile",
    "sqlite_url",
]

_WHERE = {
    "DEFAULT_MAX_MISSED": "devmig.fleet._inventory",
    "FORWARD": "devmig.fleet._journal_phases",
    "PHASES": "devmig.fleet._journal_phases",
    "TRANSITIONS": "devmig.fleet._journal_phases",
    "AgentView": "devmig.fleet._journal_phases",
    "Clock": "devmig.fleet._clock",
    "Decision": "devmig.fleet._journal_phases",
    "DeviceRecord": "devmig.fleet._inventory",
    "DrainPlan": "devmig.fleet._drain",
    "DrainStore": "devmig.fleet._drain",
    "Drainer": "devmig.fleet._drain",
    "HistoryEntry": "devmig.fleet._inventory",
    "HostSnapshot": "devmig.fleet._inventory",
    "HostView": "devmig.fleet._inventory",
    "Inventory": "devmig.fleet._inventory",
    "InventorySnapshot": "devmig.fleet._inventory",
    "JournalEntry": "devmig.fleet._inventory",
    "ManagerSettings": "devmig.fleet._manager",
    "ManualClock": "devmig.fleet._clock",
    "MemoryDrainStore": "devmig.fleet._drain",
    "MemoryInventory": "devmig.fleet._memory",
    "Orchestrator": "devmig.fleet._orchestrator",
    "PlannedMove": "devmig.fleet._drain",
    "PollOutcome": "devmig.fleet._poller",
    "PollStatus": "devmig.fleet._poller",
    "Poller": "devmig.fleet._poller",
    "RunState": "devmig.fleet._inventory",
    "SqlDrainStore": "devmig.fleet._drain",
    "SqlInventory": "devmig.fleet._sql",
    "Stranded": "devmig.fleet._drain",
    "SystemClock": "devmig.fleet._clock",
    "bench_register": "devmig.fleet._bench",
    "create_manager_app": "devmig.fleet._manager",
    "decide": "devmig.fleet._journal_phases",
    "metadata": "devmig.fleet._schema",
    "plan_drain": "devmig.fleet._drain",
    "report_profile": "devmig.fleet._inventory",
    "sqlite_url": "devmig.fleet._sql",
}


__getattr__, __dir__ = lazy_names(__name__, _WHERE, __all__)
