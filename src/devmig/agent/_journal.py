"""The migration journal: what an agent must remember across a crash.

The hand-off protocol (``devmig.migration``) needs two durable facts: the
source's COMMITTED (written before GO; afterwards the source never resumes by
itself) and the destination's STARTED (written before the device runs).
Everything else an agent journals -- a migration beginning, its outcome -- is
there so that an agent restarted with the same ``--state-dir`` can still
answer ``GET /v1/migrations/{id}`` and the peer's in-doubt QUERY. Beside the
status, a record carries the migration's per-migration tokens (a source's
callback token and the destination's query token; never the agents' bearer
tokens), so that a restarted agent still accepts its peer's queries and a
restarted source in doubt can still ask (see ``_in_doubt``).

A record is one JSON object: ``{"migration", "role", "record", "at",
"data"}``. :class:`Journal` is the interface; :class:`MemoryJournal` is its
in-memory twin (tests, and agents without a state directory);
:class:`FileJournal` appends JSON lines to ``migrations.jsonl`` and fsyncs
each record before :meth:`Journal.append` returns, so a record that was
acknowledged survives a crash. A write that fails raises
``JOURNAL_FAILED``: the caller treats it as its agent failing (the protocol
rolls back or destroys).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from devmig._errors import DevmigError, Problem

__all__ = ["FileJournal", "Journal", "JournalRecord", "MemoryJournal"]

#: Record kinds. The source writes OUTGOING, COMMITTED, then DONE or
#: ROLLED_BACK; the destination INCOMING, STARTED, then RUNNING, or DESTROYED.
RECORDS = frozenset(
    {"OUTGOING", "INCOMING", "COMMITTED", "STARTED", "DONE", "ROLLED_BACK", "RUNNING", "DESTROYED", "IN_DOUBT"}
)


@dataclass(frozen=True, slots=True)
class JournalRecord:
    """One journal entry.

    Attributes:
        migration: the migration id.
        role: ``source`` or ``destination``.
        record: one of :data:`RECORDS`.
        at: wall-clock time of the write (seconds since the epoch).
        data: a JSON object of details (e.g. the final status).
    """

    migration: str
    role: str
    record: str
    at: float
    data: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The record as a JSON object."""
        return {"migration": self.migration, "role": self.role, "record": self.record, "at": self.at,
                "data": dict(self.data)}


class Journal(Protocol):
    """Durable, append-only migration records."""

    def append(self, migration: str, role: str, record: str, data: Mapping[str, Any] | None = None) -> None:
        """Append one record; return only once it is durable.

        Raises:
            DevmigError: ``JOURNAL_FAILED`` when it could not be written (no record exists then).
        """

    def records(self, migration: str) -> list[JournalRecord]:
        """Every record of one migration, oldest first."""

    def migrations(self) -> list[str]:
        """Every migration id journaled, in order of first appearance."""

    def close(self) -> None:
        """Release the journal's resources."""


def _journal_failed(message: str) -> DevmigError:
    return DevmigError([Problem("JOURNAL_FAILED", ("journal",), message)])


class MemoryJournal:
    """The in-memory twin of :class:`FileJournal` (nothing survives the process)."""

    def __init__(self) -> None:
        self._records: dict[str, list[JournalRecord]] = {}
        self.fail_next: str | None = None
        """Set to a message to make the next append fail (fault injection for tests)."""

    def append(self, migration: str, role: str, record: str, data: Mapping[str, Any] | None = None) -> None:
        """Append one record (see :meth:`Journal.append`)."""
        self._load(self._new_record(migration, role, record, data))

    def _new_record(self, migration: str, role: str, record: str, data: Mapping[str, Any] | None) -> JournalRecord:
        """Check and stamp a record to append (an unknown name, an injected failure raise)."""
        if record not in RECORDS:
            raise ValueError(f"unknown journal record {record!r}")
        if self.fail_next is not None:
            message, self.fail_next = self.fail_next, None
            raise _journal_failed(message)
        return JournalRecord(migration, role, record, time.time(), dict(data or {}))

    def _load(self, entry: JournalRecord) -> None:
        self._records.setdefault(entry.migration, []).append(entry)

    def records(self, migration: str) -> list[JournalRecord]:
        """Every record of one migration, oldest first."""
        return list(self._records.get(migration, ()))

    def migrations(self) -> list[str]:
        """Every migration id journaled."""
        return list(self._records)

    def close(self) -> None:
        """Nothing to release."""


class FileJournal(MemoryJournal):
    """A journal in ``<state_dir>/migrations.jsonl``: one JSON line per record, fsynced.

    Opening reads every existing record (a torn last line, from a crash in
    the middle of a write, is ignored: its append never returned).

    Args:
        state_dir: the agent's state directory (created if missing).

    Raises:
        DevmigError: ``JOURNAL_FAILED`` when the file cannot be opened.
    """

    def __init__(self, state_dir: Path) -> None:
        super().__init__()
        self.path = Path(state_dir) / "migrations.jsonl"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            for entry in self._read():
                self._load(entry)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        except OSError as exc:
            raise _journal_failed(f"cannot open the journal {self.path}: {exc.strerror}") from exc

    def _read(self) -> Iterator[JournalRecord]:
        if not self.path.exists():
            return
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                raw = json.loads(line)
                yield JournalRecord(str(raw["migration"]), str(raw["role"]), str(raw["record"]),
                                    float(raw["at"]), dict(raw.get("data") or {}))
            except (ValueError, KeyError, TypeError):
                continue  # a torn line from a crash mid-write

    def append(self, migration: str, role: str, record: str, data: Mapping[str, Any] | None = None) -> None:
        """Append one JSON line and fsync it (see :meth:`Journal.append`)."""
        entry = self._new_record(migration, role, record, data)
        line = (json.dumps(entry.to_json(), separators=(",", ":"), default=str) + "\n").encode()
        try:
            written = os.write(self._fd, line)
            if written != len(line):
                raise OSError(0, f"short write ({written} of {len(line)} bytes)")
            os.fsync(self._fd)
        except OSError as exc:
            raise _journal_failed(f"cannot write the journal {self.path}: {exc.strerror or exc}") from exc
        self._load(entry)

    def close(self) -> None:
        """Close the file."""
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)
