"""Journals: write-ahead records of long operations, one interface for every kind.

Theory of operation
-------------------
The manager journals each migration and each drain *before* it acts, so that a manager that
restarts finds every unfinished one and resumes it. Both journals hold the same rows — an id, the
current phase, a JSON payload, the time of the last write — and are read the same ways, so one
interface, :class:`JournalStore`, serves both; what differs between them is data, a
:class:`Journal`: the table, the error code of an unknown id, and what counts as finished. The
journals themselves are defined where they are used (:data:`devmig.orchestration.MIGRATIONS`,
:data:`devmig.orchestration.DRAINS`).

An inventory opens the store of a journal with :meth:`~devmig.inventory.Inventory.journal`:
:class:`~devmig.inventory.SqlInventory` returns one on its database's table (each call one
transaction), :class:`~devmig.inventory.MemoryInventory` the in-memory twin
:class:`MemoryJournalStore` (one per journal, kept with the inventory). Both run the same tests.
"""

from __future__ import annotations

import copy
import heapq
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from devmig._errors import DevmigError, Problem

__all__ = [
    "Journal",
    "JournalEntry",
    "JournalMark",
    "JournalPage",
    "JournalStore",
    "Journalled",
    "MemoryJournalStore",
    "check_limit",
    "newest_first",
    "utc",
]


@dataclass(frozen=True, slots=True)
class Journal:
    """One journal, as data: where it is stored and what its rows mean.

    Attributes:
        table: the name of its table in the inventory's database (``migration_journal``, ...).
        unknown: the error code of an id the journal does not hold (``JOURNAL_UNKNOWN``, ...).
        loc: the first part of that error's location (the id follows).
        noun: what the message calls an entry: ``no {noun} {id!r}``.
        final_phases: phases in which an entry is finished.
        finished_flags: payload keys whose true value makes an entry finished, in any phase.
    """

    table: str
    unknown: str
    loc: str
    noun: str
    final_phases: frozenset[str] = frozenset()
    finished_flags: tuple[str, ...] = ()

    def finished(self, phase: str, payload: Mapping[str, Any]) -> bool:
        """Whether an entry is finished: a final phase, or a finished flag set in its payload."""
        return phase in self.final_phases or any(payload.get(flag) for flag in self.finished_flags)

    def unknown_error(self, id: str) -> DevmigError:
        """The error of an id the journal does not hold (its :attr:`unknown` code)."""
        return DevmigError([Problem(self.unknown, (self.loc, id), f"no {self.noun} {id!r}", value=id)])


def utc(value: datetime) -> datetime:
    """Return ``value`` as an aware UTC datetime (naive values are taken as UTC)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """One entry of a journal: a migration's or a drain's last recorded phase and payload."""

    id: str
    phase: str
    payload: dict[str, Any]
    updated_at: datetime


class Journalled(Protocol):
    """A journalled record: a :class:`JournalEntry`, or anything with its id and payload."""

    @property
    def id(self) -> str: ...

    @property
    def payload(self) -> Mapping[str, Any]: ...


def newest_first(entry: Journalled) -> tuple[str, str]:
    """The sort key of "newest first" (descending) of journalled records: the payload's ``created_at``
    (ISO text), then the id — the order of :meth:`~devmig.orchestration._orchestrator.Orchestrator.list` and
    :meth:`~devmig.orchestration._drain.Drainer.list`."""
    return str(entry.payload.get("created_at", "")), entry.id


@dataclass(frozen=True, slots=True)
class JournalMark:
    """A cheap marker of the journal entries in one phase: read in one small query, compared with ``==``.

    Two marks of the same inventory are equal when no entry entered or left the phase and none of
    its entries was written again (another phase, another ``updated_at``, another payload); the
    SQL inventory reads them from the rows, so a write by another process counts too. A mark may
    change when nothing did (the twin counts writes; an entry re-written with the same content).

    Attributes:
        count: how many entries the phase holds.
        newest: the greatest ``updated_at`` among them (``None`` when there are none).
        digest: what tells the rest apart: on SQL the sum of a digest of each entry's id,
            ``updated_at`` and payload, computed by the database (two different sets of entries with
            the same count and newest time collide with a chance of about 2**-32 on SQLite, 2**-64 on
            PostgreSQL); on the twin the
            number of writes that touched the phase.
    """

    count: int
    newest: datetime | None
    digest: int


@dataclass(frozen=True, slots=True)
class JournalPage:
    """The newest journal entries and the journal's counts, read without loading every entry.

    Attributes:
        entries: the newest entries, newest first (:func:`newest_first`, descending).
        total: how many entries the journal holds.
        unfinished: how many of them are not finished (:meth:`Journal.finished`).
    """

    entries: tuple[JournalEntry, ...]
    total: int
    unfinished: int


def check_limit(limit: int) -> None:
    """Raise ``ValueError`` when a row limit is negative."""
    if limit < 0:
        raise ValueError(f"limit is at least 0, not {limit}")


class JournalStore(Protocol):
    """Where one journal's entries are kept: written ahead of every action, read to resume and show."""

    journal: Journal

    def put(self, id: str, phase: str, payload: Mapping[str, Any], now: datetime) -> None:
        """Record an entry's current phase and payload (insert or replace)."""

    def get(self, id: str) -> JournalEntry:
        """Return an entry (the journal's :attr:`~Journal.unknown` code when absent)."""

    def list(self, phase: str | None = None) -> list[JournalEntry]:
        """Return every entry (in ``phase``, when given), by id."""

    def mark(self, phase: str | None = None) -> JournalMark:
        """Return a marker of the entries in ``phase`` (every entry when ``None``) that changes with them.

        One query of one row, however long the journal: a reader that keeps something computed from
        :meth:`list` (the matrix cache) compares marks instead of reading every entry. Read the mark
        *before* the entries it stands for, so that a write in between makes the next mark differ.
        See :class:`JournalMark` for what equal marks mean.
        """

    def newest(self, limit: int) -> JournalPage:
        """Return the ``limit`` newest entries (:func:`newest_first`) and the journal's counts; no other
        entry is read.

        The entries are the first ``limit`` of every entry sorted newest first (a ``created_at``
        that is not text counts as ``""`` on SQL); ``total`` and ``unfinished`` count every entry
        (:meth:`Journal.finished`).

        Raises:
            ValueError: ``limit`` is negative.
        """


class MemoryJournalStore:
    """The in-memory twin of the SQL journal store: entries in a dict, copied in and out.

    Args:
        journal: which journal.
        check: called before every operation (the owning inventory's "is it open" check).
    """

    def __init__(self, journal: Journal, check: Callable[[], None] = lambda: None) -> None:
        self.journal = journal
        self._check = check
        self._entries: dict[str, JournalEntry] = {}
        self._writes: dict[str | None, int] = {}  # per phase (None: any), for mark

    def put(self, id: str, phase: str, payload: Mapping[str, Any], now: datetime) -> None:
        """See :meth:`JournalStore.put`."""
        self._check()
        before = self._entries.get(id)
        self._entries[id] = JournalEntry(id, phase, copy.deepcopy(dict(payload)), utc(now))
        for touched in {None, phase, None if before is None else before.phase}:
            self._writes[touched] = self._writes.get(touched, 0) + 1

    def get(self, id: str) -> JournalEntry:
        """See :meth:`JournalStore.get`: a copy, as the database would give."""
        self._check()
        try:
            entry = self._entries[id]
        except KeyError:
            raise self.journal.unknown_error(id) from None
        return JournalEntry(entry.id, entry.phase, copy.deepcopy(entry.payload), entry.updated_at)

    def list(self, phase: str | None = None) -> list[JournalEntry]:
        """See :meth:`JournalStore.list`."""
        self._check()
        return [self.get(k) for k in sorted(self._entries) if phase is None or self._entries[k].phase == phase]

    def mark(self, phase: str | None = None) -> JournalMark:
        """See :meth:`JournalStore.mark`: the count and newest time of the phase's entries, and the
        number of writes that put an entry in the phase or took one out of it (nothing is copied)."""
        self._check()
        times = [e.updated_at for e in self._entries.values() if phase is None or e.phase == phase]
        return JournalMark(len(times), max(times, default=None), self._writes.get(phase, 0))

    def newest(self, limit: int) -> JournalPage:
        """See :meth:`JournalStore.newest`: only the ``limit`` newest payloads are copied."""
        self._check()
        check_limit(limit)
        entries = self._entries.values()
        top = heapq.nlargest(limit, entries, key=newest_first)
        unfinished = sum(1 for e in entries if not self.journal.finished(e.phase, e.payload))
        return JournalPage(tuple(self.get(e.id) for e in top), len(entries), unfinished)
