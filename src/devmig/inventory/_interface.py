"""The fleet inventory: what every host runs, as the manager last saw it.

Theory of operation
-------------------
A *host* is identified by the host name its agent reports; its agent URL is an
attribute, unique across the fleet. Registering a name at a second URL, or a
URL under a second name, is ``HOST_CONFLICT``.

A host report is stored by *profile*: the canonical JSON of its
implementations (sorted by name and release, each document's published JSON,
keys sorted, no spaces) — the host name left out — and the xxh3-128 hex digest
of that JSON, the *fingerprint*. Hosts running the same software share one
profile row, so a fleet of thousands of hosts with a handful of software mixes
stores a handful of reports. Both are :mod:`devmig.compat`'s
(:func:`~devmig.compat.profile_fingerprint`, the one definition; an agent's
report ETag is the same digest); :func:`report_profile` returns the pair.

Each host points at its current profile and keeps a *history*: one row per
stretch of time it ran a profile (first and last seen). A report with the
same fingerprint extends the current stretch; a different one opens a new
stretch (even when returning to an older profile).

Polling (see :mod:`devmig.inventory._poller`) records a report (or "not
modified", or a failed poll). ``max_missed`` failed polls in a row mark the host
unreachable; it keeps its last report and profile, and the next successful poll
makes it reachable again. Devices are stored per host as the agent lists them;
the host's ``load`` is the number of its running devices.

Pools group hosts (a host may be in several); a cordoned host stays in the
inventory and its pools but should receive no new devices.

Backends: :class:`~devmig.inventory.SqlInventory` (SQLAlchemy Core; a SQLite
file, or PostgreSQL by URL) and the in-memory twin
:class:`~devmig.inventory.MemoryInventory`. Both implement :class:`Inventory` and
run the same tests. Every method is synchronous and each call is one
transaction. :meth:`Inventory.snapshot` returns plain frozen data for the
sans-IO fleet algorithms.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any, Protocol, runtime_checkable

from devmig._errors import DevmigError
from devmig.compat import fingerprint_of, profile_json
from devmig.inventory._journal import Journal, JournalStore
from devmig.model import HostReport, ModelDocument

__all__ = [
    "DEFAULT_MAX_MISSED",
    "DeviceRecord",
    "HistoryEntry",
    "HostSnapshot",
    "HostView",
    "Inventory",
    "InventorySnapshot",
    "RunState",
    "inventory_error",
    "report_profile",
]

DEFAULT_MAX_MISSED = 3
"""Failed polls in a row after which a host is marked unreachable."""


def report_profile(report: HostReport) -> tuple[str, str]:
    """Return ``(fingerprint, canonical_json)`` of a report's implementations.

    Both are :mod:`devmig.compat`'s, the one definition: the canonical JSON is
    :func:`~devmig.compat.profile_json` (the documents' published JSON sorted by
    ``(name, release)``, keys sorted, no spaces; the host name is not part of
    it) and the fingerprint :func:`~devmig.compat.fingerprint_of` it (xxh3-128,
    32 hex characters) -- :func:`~devmig.compat.profile_fingerprint` of the report.
    """
    canonical = profile_json(report)
    return fingerprint_of(canonical), canonical


def profile_documents(canonical: str) -> tuple[ModelDocument, ...]:
    """Return the documents of a stored profile (they were validated when recorded)."""
    return tuple(ModelDocument.model_validate(raw) for raw in json.loads(canonical))


def inventory_error(code: str, loc: tuple[str | int, ...], message: str, *,
                    value: object = None, hint: str | None = None) -> DevmigError:
    """Build the :class:`DevmigError` of one inventory problem.

    Codes: ``HOST_CONFLICT``, ``HOST_UNKNOWN``, ``HOST_MISMATCH`` (a report
    names another host), ``POOL_CONFLICT``, ``POOL_UNKNOWN``, ``JOURNAL_UNKNOWN``,
    ``INVENTORY_STATE`` (used before ``open`` or after ``close``),
    ``DB_UNAVAILABLE``, ``DB_CONFLICT``, ``DB_ERROR``.
    """
    return DevmigError.of(code, message, loc=loc, value=value, hint=hint)


class RunState(Enum):
    """Lifecycle of an inventory: ``NEW`` → ``OPEN`` → ``CLOSED``."""

    NEW = "new"
    OPEN = "open"
    CLOSED = "closed"


def require_open(state: RunState, needed: RunState = RunState.OPEN) -> None:
    """Raise ``INVENTORY_STATE`` unless ``state`` is ``needed`` (naming both)."""
    if state is not needed:
        raise inventory_error(
            "INVENTORY_STATE", ("inventory",),
            f"the inventory is {state.value}; it must be {needed.value}",
            value=state.value, hint="use `with inventory:` (open once, close once)",
        )


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    """One device as the poller last saw it on a host."""

    id: str
    model: str
    config: Mapping[str, Any]
    state: str
    running: bool

    @classmethod
    def from_agent(cls, raw: Mapping[str, Any]) -> DeviceRecord:
        """Build a record from one entry of an agent's ``GET /v1/devices``.

        Raises:
            DevmigError: ``AGENT_ERROR`` when a required key is missing or mistyped.
        """
        try:
            config = raw["config"]
            if not isinstance(config, Mapping):
                raise TypeError("config")
            return cls(
                id=str(raw["id"]), model=str(raw["model"]), config=dict(config),
                state=str(raw["state"]), running=bool(raw["running"]),
            )
        except (KeyError, TypeError) as exc:
            raise inventory_error(
                "AGENT_ERROR", ("devices",), f"the agent listed a device without a valid {exc}",
                value=dict(raw),
            ) from exc


@dataclass(frozen=True, slots=True)
class HostView:
    """One host's row in the inventory."""

    name: str
    url: str
    fingerprint: str | None
    cordoned: bool
    reachable: bool
    missed_polls: int
    last_seen: datetime | None
    last_etag: str | None
    device_count: int
    load: int
    pools: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One stretch of time during which a host ran one profile."""

    fingerprint: str
    first_seen: datetime
    last_seen: datetime


@dataclass(frozen=True, slots=True)
class HostSnapshot:
    """A host as the fleet algorithms see it (plain data)."""

    name: str
    url: str
    fingerprint: str | None
    cordoned: bool
    reachable: bool
    pools: tuple[str, ...]
    load: int


@dataclass(frozen=True, slots=True)
class InventorySnapshot:
    """The whole fleet at one instant: hosts by name order, profiles by fingerprint."""

    hosts: tuple[HostSnapshot, ...]
    profiles: Mapping[str, tuple[ModelDocument, ...]] = field(default_factory=dict)


@runtime_checkable
class Inventory(Protocol):
    """Where the manager keeps the fleet. Every method is one transaction.

    Methods taking a host name raise ``HOST_UNKNOWN`` when it is not
    registered; database failures are ``DB_UNAVAILABLE`` / ``DB_ERROR``.
    """

    def open(self) -> None:
        """Open (and for SQL, migrate the schema to head)."""

    def close(self) -> None:
        """Release what the inventory holds; it cannot be reopened."""

    def __enter__(self) -> Inventory: ...

    def __exit__(self, *exc: object) -> None: ...

    def add_host(self, name: str, url: str) -> None:
        """Register a host; the same (name, url) again is a no-op.

        Raises:
            DevmigError: ``HOST_CONFLICT`` when the name has another URL or the
                URL belongs to another host.
        """

    def remove_host(self, name: str) -> None:
        """Forget a host, its devices, history and pool memberships."""

    def set_agent_token(self, name: str, sealed: str | None) -> None:
        """Keep the host's agent token, as the caller sealed it (``None`` forgets it); never in a :class:`HostView`."""

    def agent_tokens(self) -> dict[str, str]:
        """Every kept agent token (sealed), by host name."""

    def get_host(self, name: str) -> HostView:
        """Return one host."""

    def list_hosts(self) -> list[HostView]:
        """Return every host, by name."""

    def record_report(self, host: str, report: HostReport, etag: str | None,
                      now: datetime) -> bool:
        """Store a fresh report of ``host``; return whether its profile changed.

        Extends or opens a history stretch, clears missed polls, marks the host
        reachable and remembers ``etag`` for the next If-None-Match.

        Raises:
            DevmigError: ``HOST_MISMATCH`` when the report names another host.
        """

    def record_unchanged(self, host: str, now: datetime) -> None:
        """Record a poll that found the report unchanged (HTTP 304)."""

    def record_poll_failure(self, host: str, now: datetime, *,
                            max_missed: int = DEFAULT_MAX_MISSED) -> bool:
        """Count a failed poll; return whether the host is still reachable.

        After ``max_missed`` failures in a row the host is unreachable; its last
        report, profile and devices are kept.
        """

    def record_devices(self, host: str, devices: Sequence[DeviceRecord]) -> None:
        """Replace the devices of ``host`` (and its device count and load)."""

    def list_devices(self, host: str) -> list[DeviceRecord]:
        """Return the devices of ``host``, by id."""

    def devices_by_host(self, hosts: Sequence[str] | None = None) -> dict[str, list[DeviceRecord]]:
        """Return the devices of many hosts in one read: ``{host: list_devices(host)}``.

        One query (SQL), however many hosts, so a reader of the whole fleet (the
        matrix cache's key, an upgrade plan) does not cost a query per host.

        Args:
            hosts: the hosts wanted; ``None`` for every host. A name that is not
                registered (a host removed since the caller listed it) is left out
                rather than raising ``HOST_UNKNOWN``; a name given twice appears once.

        Returns:
            Each registered host asked for and its devices, by id, as :meth:`list_devices`
            returns them (an empty list for a host with none). Keys come in the order
            of ``hosts``, or by name when ``None``.
        """

    def history(self, host: str) -> list[HistoryEntry]:
        """Return the profiles ``host`` ran, oldest first."""

    def profile(self, fingerprint: str) -> tuple[ModelDocument, ...] | None:
        """Return the documents of a profile, or ``None`` when unknown."""

    def register_reports(self, items: Sequence[tuple[str, str, HostReport]],
                         now: datetime) -> int:
        """Bulk path: register ``(host, url, report)`` items, adding hosts as needed.

        Same rules as :meth:`add_host` then :meth:`record_report` for each item
        (the ETag is cleared); returns how many hosts changed profile.
        """

    def create_pool(self, name: str) -> None:
        """Create an empty pool (``POOL_CONFLICT`` when it exists)."""

    def delete_pool(self, name: str) -> None:
        """Delete a pool (its hosts stay)."""

    def add_to_pool(self, pool: str, host: str) -> None:
        """Put a host in a pool (no-op when already there)."""

    def remove_from_pool(self, pool: str, host: str) -> None:
        """Take a host out of a pool (no-op when not there)."""

    def list_pools(self) -> dict[str, list[str]]:
        """Return every pool with its host names, sorted."""

    def cordon(self, host: str) -> None:
        """Mark a host as taking no new devices."""

    def uncordon(self, host: str) -> None:
        """Let a cordoned host take new devices again."""

    def snapshot(self) -> InventorySnapshot:
        """Return the fleet as plain data (hosts and the profiles they use)."""

    def journal(self, journal: Journal) -> JournalStore:
        """Return the store of ``journal`` in this inventory (its database's table; for the twin, a
        :class:`~devmig.inventory.MemoryJournalStore` kept with the inventory)."""
