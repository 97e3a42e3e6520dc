"""A manager migration's journal payload and the record the API shows (typed dicts, no I/O).

The payload of a ``migration_journal`` row holds everything about one
migration (:class:`MigrationPayload`): the public record's fields (device,
source, destination, progress, downtime, digest, error, history, ...) and
private ones whose keys start with ``_`` — the lease, the agents' URLs, the
last forward phase — which :func:`record_of` leaves out. The private keys are
read in one place, :meth:`Route.of`, and written by :func:`new_payload` and
:func:`enter_phase`; :func:`payload_of` checks a journal entry's payload at
the border (the database), so the orchestrator works on typed data.
:func:`enter_phase` applies one journal
phase to a payload (history, outcome); :func:`copy_progress` copies what
the agents said into it; :func:`lineage` follows a device back through the
migrations that brought it where it runs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import NotRequired, TypedDict, cast

from devmig._json import JsonObject, JsonValue
from devmig.inventory import JournalEntry
from devmig.orchestration._journal_phases import FINISHED, FORWARD

__all__ = [
    "Created",
    "Hop",
    "MigrationPayload",
    "MigrationRecord",
    "Route",
    "copy_progress",
    "created_devices",
    "enter_phase",
    "lineage",
    "new_payload",
    "payload_of",
    "record_of",
]


class PhaseEntry(TypedDict):
    """One item of a migration's ``history``."""

    phase: str
    at: str


class Resolving(TypedDict):
    """Why a migration waits in ``resolving``, since when, and how often it was asked."""

    code: str | None
    reason: str | None
    since: str
    attempts: int


class MigrationPayload(TypedDict):
    """A ``migration_journal`` row's payload (its JSON keys, in the order they are written)."""

    device: str
    device_id: str
    model: str
    source: str
    destination: str
    destination_device_id: JsonValue
    finished: bool
    outcome: str | None
    progress: JsonObject
    downtime_ms: JsonValue
    digest: JsonValue
    error: JsonObject | None
    resolving: Resolving | None
    discarded_records: JsonValue
    discarded_bytes: JsonValue
    history: list[PhaseEntry]
    drain: str | None
    created_at: str
    incidents: NotRequired[list[JsonValue]]
    _lease: str
    _last_forward: NotRequired[str]
    _source_url: str
    _destination_url: str


MigrationRecord = JsonObject
"""A migration's public record (:func:`record_of`): the payload's public keys, ``id``, ``phase``,
``updated_at``."""

_REQUIRED: dict[str, type | tuple[type, ...]] = {
    "device": str, "device_id": str, "model": str, "source": str, "destination": str,
    "finished": bool, "progress": dict, "history": list, "created_at": str,
    "_lease": str, "_source_url": str, "_destination_url": str,
}


def payload_of(entry: JournalEntry) -> MigrationPayload:
    """A journal entry's payload, checked (the keys the orchestrator reads have their types), as a copy.

    Raises:
        ValueError: the payload is not a migration's (a key is missing or of another type).
    """
    payload = dict(entry.payload)
    for key, kind in _REQUIRED.items():
        if not isinstance(payload.get(key), kind):
            raise ValueError(f"migration {entry.id}: journal payload key {key!r} is not a {kind}")
    return cast(MigrationPayload, payload)


@dataclass(frozen=True, slots=True)
class Route:
    """How the manager reaches a migration's agents: the payload's private part, typed."""

    source: str
    destination: str
    source_url: str
    destination_url: str
    lease: str
    last_forward: str

    @classmethod
    def of(cls, payload: MigrationPayload) -> Route:
        """The route of a payload (the one place that reads its private keys)."""
        return cls(payload["source"], payload["destination"], payload["_source_url"],
                   payload["_destination_url"], payload["_lease"], payload.get("_last_forward", "planned"))


def iso(value: datetime) -> str:
    """A time as the records show it (ISO-8601)."""
    return value.isoformat()


def new_payload(*, device: str, device_id: str, model: str, source: str, destination: str, source_url: str,
                destination_url: str, lease: str, drain: str | None, now: datetime) -> MigrationPayload:
    """The payload of a migration just planned."""
    return {
        "device": device, "device_id": device_id, "model": model,
        "source": source, "destination": destination, "destination_device_id": None,
        "finished": False, "outcome": None,
        "progress": {"stage": None, "round": 0, "bytes_sent": 0, "rate": 0.0, "expected_downtime_ms": None},
        "downtime_ms": None, "digest": None, "error": None, "resolving": None,
        "discarded_records": 0, "discarded_bytes": 0,
        "history": [{"phase": "planned", "at": iso(now)}],
        "drain": drain, "created_at": iso(now),
        "_lease": lease, "_last_forward": "planned", "_source_url": source_url, "_destination_url": destination_url,
    }


def record_of(entry: JournalEntry) -> MigrationRecord:
    """The public record of a journal entry (private ``_`` keys left out)."""
    record: MigrationRecord = {k: v for k, v in entry.payload.items() if not k.startswith("_")}
    record.update(id=entry.id, phase=entry.phase, updated_at=iso(entry.updated_at))
    return record


def enter_phase(payload: MigrationPayload, phase: str, now: datetime) -> None:
    """Record that the migration entered ``phase``: history, last forward phase, outcome once finished.

    A migration rolled back without an error from the agents gets ``ROLLED_BACK`` as its error. One
    that ended migrated has no error: what went wrong on the way (an agent that answered late, then
    went on) is kept under ``incidents``.
    """
    payload["history"] = [*payload.get("history", []), {"phase": phase, "at": iso(now)}]
    if phase in FORWARD:
        payload["_last_forward"] = phase
    if phase != "resolving":
        payload["resolving"] = None
    if phase in FINISHED:
        payload["finished"] = True
        payload["outcome"] = "migrated" if phase == "done" else "rolled_back"
        if phase == "done" and payload.get("error") is not None:
            payload["incidents"] = [*payload.get("incidents", []), payload["error"]]
            payload["error"] = None
        if phase == "rolled_back" and payload.get("error") is None:
            payload["error"] = {"code": "ROLLED_BACK", "message": "the agents rolled the migration back",
                                "phase": payload.get("_last_forward")}


def copy_progress(payload: MigrationPayload, source: Mapping[str, JsonValue] | None,
                  destination: Mapping[str, JsonValue] | None) -> None:
    """Copy the agents' statuses (``GET /v1/migrations/{id}``, ``None`` when not known) into the payload."""
    s, d = source, destination
    if s is not None:
        payload["progress"] = {
            "stage": s.get("stage"), "round": s.get("round", 0), "bytes_sent": s.get("bytes_sent", 0),
            "rate": s.get("rate", 0.0), "expected_downtime_ms": s.get("expected_downtime_ms"),
            "source_phase": s.get("phase"),
            "destination_phase": d.get("phase") if d is not None else None,
        }
        for key in ("downtime_ms", "digest"):
            if s.get(key) is not None:
                payload[key] = s[key]
        if s.get("destination_device_id"):
            payload["destination_device_id"] = s["destination_device_id"]
        error = s.get("error")
        if isinstance(error, Mapping) and error.get("code") != "FENCED" and payload.get("error") is None:
            payload["error"] = {"code": error.get("code"), "message": error.get("message"),
                                "phase": error.get("phase")}
    if d is not None:
        if d.get("device_id") and not payload.get("destination_device_id"):
            payload["destination_device_id"] = d["device_id"]
        if d.get("digest") and payload.get("digest") is None:
            payload["digest"] = d["digest"]
        # counted by the destination: pre-copy records torn at the source, discarded, sent again
        payload["discarded_records"] = d.get("discarded_records", 0)
        payload["discarded_bytes"] = d.get("discarded_bytes", 0)


@dataclass(frozen=True, slots=True)
class Hop:
    """One migration in a device's past: it ran on ``host`` (as ``device_id``) until ``at``."""

    migration: str
    host: str
    device_id: str
    at: datetime


Created = Mapping[tuple[str, str], JournalEntry]
"""Each migration that ended migrated, by the device it created: ``(destination, destination_device_id)``."""


def created_devices(entries: Iterable[JournalEntry]) -> dict[tuple[str, str], JournalEntry]:
    """Index the journal by the device each finished migration created (build once, follow many)."""
    created: dict[tuple[str, str], JournalEntry] = {}
    for entry in entries:
        p = entry.payload
        if entry.phase == "done" and p.get("destination_device_id"):
            created[(str(p["destination"]), str(p["destination_device_id"]))] = entry
    return created


def lineage(entries: Iterable[JournalEntry] | Created, host: str, device_id: str) -> list[Hop]:
    """Follow the device ``host/device_id`` back through the migrations that brought it there.

    Each migration that ended migrated and created ``host/device_id`` names the host the device
    ran on before; that device is followed in turn, until a device no migration created.

    Args:
        entries: the journal, or its :func:`created_devices` index (for many devices at once).

    Returns:
        The hops, most recent first; ``at`` is when the migration started streaming (else when
        it was planned): the source host then ran the profile the device ran on.
    """
    created = entries if isinstance(entries, Mapping) else created_devices(entries)
    hops: list[Hop] = []
    seen: set[tuple[str, str]] = set()
    key = (host, device_id)
    while key in created and key not in seen:
        seen.add(key)
        entry = created[key]
        p = entry.payload
        times = [h["at"] for h in p.get("history", []) if h.get("phase") == "streaming"]
        at = datetime.fromisoformat(times[0] if times else str(p["created_at"]))
        key = (str(p["source"]), str(p["device_id"]))
        hops.append(Hop(entry.id, key[0], key[1], at))
    return hops
