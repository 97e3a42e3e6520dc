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
"""

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
from devmig.fleet._journal_phases import FORWARD, PHASES, TRANSITIONS, AgentView, Decision, decide
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
    "DrainPlan",
    "DrainStore",
    "Drainer",
    "DeviceRecord",
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
