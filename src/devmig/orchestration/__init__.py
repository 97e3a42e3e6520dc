"""Orchestration: the fleet's journalled migrations and drains, and the questions they ask of it.

A migration moves one device between two hosts' agents; :class:`Orchestrator` journals every phase
ahead of the agent call that enters it, so a manager that restarts resumes each unfinished migration
where it stood. What to do next is the pure :func:`decide` over the journal's phase and what the two
agents say (:data:`PHASES`, :data:`FORWARD`, :data:`TRANSITIONS`, :class:`AgentView`,
:class:`Decision`). A drain empties a host: the pure :func:`plan_drain` places every device it runs,
and :class:`Drainer` migrates them through the orchestrator, journalled and resumable too.

Both write ahead through one interface, :class:`JournalStore` (defined beside the journal's rows in
:mod:`devmig.inventory`, whose SQL and in-memory stores implement it): :data:`MIGRATIONS` and
:data:`DRAINS` say, as data, which table each journal is, the error code of an unknown id
(``JOURNAL_UNKNOWN``, ``DRAIN_UNKNOWN``) and what counts as finished.

The fleet questions — placement, pool baselines, rollback sets, upgrade plans — are answered from an
inventory snapshot and the journal (:func:`answer_place` and its siblings): the orchestrator places
with them, the manager's HTTP API serves them.

The names are loaded on first use: importing the package does not import the database layer or the
HTTP client.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from devmig._lazy import lazy_names

if TYPE_CHECKING:
    from devmig.inventory import JournalStore
    from devmig.orchestration._drain import (
        DRAINS,
        Drainer,
        DrainPlan,
        PlannedMove,
        Stranded,
        plan_drain,
    )
    from devmig.orchestration._journal_phases import (
        FORWARD,
        MIGRATIONS,
        PHASES,
        TRANSITIONS,
        AgentView,
        Decision,
        decide,
    )
    from devmig.orchestration._migration_records import Created, created_devices
    from devmig.orchestration._orchestrator import Orchestrator
    from devmig.orchestration._queries import (
        PlaceRequest,
        RunningRef,
        UpgradeRequest,
        answer_baseline,
        answer_place,
        answer_plan_upgrade,
        answer_rollback_set,
        catalogue_of,
        device_history,
        fleet_of,
        host_dict,
        profile_docs,
        running_device,
    )
    from devmig.orchestration._run_state import RUN_STATE_MOVES, RunState

__all__ = [
    "DRAINS",
    "FORWARD",
    "MIGRATIONS",
    "PHASES",
    "RUN_STATE_MOVES",
    "TRANSITIONS",
    "AgentView",
    "Created",
    "Decision",
    "DrainPlan",
    "Drainer",
    "JournalStore",
    "Orchestrator",
    "PlaceRequest",
    "PlannedMove",
    "RunState",
    "RunningRef",
    "Stranded",
    "UpgradeRequest",
    "answer_baseline",
    "answer_place",
    "answer_plan_upgrade",
    "answer_rollback_set",
    "catalogue_of",
    "created_devices",
    "decide",
    "device_history",
    "fleet_of",
    "host_dict",
    "plan_drain",
    "profile_docs",
    "running_device",
]

_WHERE = {
    "RUN_STATE_MOVES": "devmig.orchestration._run_state",
    "RunState": "devmig.orchestration._run_state",
    "JournalStore": "devmig.inventory",
    "DRAINS": "devmig.orchestration._drain",
    "DrainPlan": "devmig.orchestration._drain",
    "Drainer": "devmig.orchestration._drain",
    "PlannedMove": "devmig.orchestration._drain",
    "Stranded": "devmig.orchestration._drain",
    "plan_drain": "devmig.orchestration._drain",
    "FORWARD": "devmig.orchestration._journal_phases",
    "MIGRATIONS": "devmig.orchestration._journal_phases",
    "PHASES": "devmig.orchestration._journal_phases",
    "TRANSITIONS": "devmig.orchestration._journal_phases",
    "AgentView": "devmig.orchestration._journal_phases",
    "Decision": "devmig.orchestration._journal_phases",
    "decide": "devmig.orchestration._journal_phases",
    "Created": "devmig.orchestration._migration_records",
    "created_devices": "devmig.orchestration._migration_records",
    "Orchestrator": "devmig.orchestration._orchestrator",
    "PlaceRequest": "devmig.orchestration._queries",
    "RunningRef": "devmig.orchestration._queries",
    "UpgradeRequest": "devmig.orchestration._queries",
    "answer_baseline": "devmig.orchestration._queries",
    "answer_place": "devmig.orchestration._queries",
    "answer_plan_upgrade": "devmig.orchestration._queries",
    "answer_rollback_set": "devmig.orchestration._queries",
    "catalogue_of": "devmig.orchestration._queries",
    "device_history": "devmig.orchestration._queries",
    "fleet_of": "devmig.orchestration._queries",
    "host_dict": "devmig.orchestration._queries",
    "profile_docs": "devmig.orchestration._queries",
    "running_device": "devmig.orchestration._queries",
}


__getattr__, __dir__ = lazy_names(__name__, _WHERE, __all__)
