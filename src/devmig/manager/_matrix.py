"""The compatibility matrix: every running device against every host, as the manager's rollback-set answer says.

For a device running on host H, each host D of the inventory gets one cell:

- ``current``: D is H, where the device runs now;
- ``round_trip``: the device can move to D *and* come back to H's profile and to
  every profile it ran on before (the migration journal; :func:`devmig.compat.rollback_set`
  lists D in ``hosts``) — and, with a ``window`` of N, to every profile N releases back
  of each implementation;
- ``one_way``: it can move to D but not come back (``one_way``; the reasons
  are those of the refused return);
- ``refused``: it cannot move to D (``rejected``: the compatibility reasons,
  or the host's own — ``HOST_CORDONED``, ``HOST_UNREACHABLE``), or D has never
  reported (``HOST_NOT_REPORTED``, as placement says).

These are the answers of ``GET /v1/devices/{host}/{id}/rollback-set`` (same window)
and, for the accepted hosts, of ``POST /v1/place``: the same inventory
snapshot, the same core functions (:func:`devmig.orchestration._queries.running_device`,
:func:`devmig.compat.rollback_set`), computed once per device over one
:class:`~devmig.compat.FleetSnapshot`. The dashboard renders it; ``GET
/v1/matrix`` serves it as JSON.

Caching
-------
The dashboard polls the matrix every few seconds and it rarely changes, so the
manager keeps one :class:`MatrixCache` (on its app state, built in its
lifespan). The inventory has no version counter; the cache's key is the
matrix's own inputs, read in one go by :func:`read_inputs`: the snapshot's hosts
and profile fingerprints, every host's device list (one query for the whole fleet:
:meth:`~devmig.inventory.Inventory.devices_by_host`), and a marker of the journal's
finished (``done``) migrations (the devices' history; one row of aggregates:
:meth:`~devmig.inventory.JournalStore.mark`) — a hit costs the same few statements
on 20 hosts as on 2000, and on 20 finished migrations as on 20000; only a miss reads
the finished migrations themselves. Those reads are cheap next to the
computation (a fleet snapshot, one rollback set per device, each device's
history), and comparing them catches every change — a report, a poll, a cordon,
a migration, a write by another process on the same database — without a hook in
every writer. A hit returns the very same object (treat it as read-only).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from devmig._errors import DevmigError, Problem
from devmig.compat import rollback_set
from devmig.inventory import (
    DeviceRecord,
    HostSnapshot,
    Inventory,
    InventorySnapshot,
    JournalMark,
)
from devmig.orchestration import (
    MIGRATIONS,
    Created,
    catalogue_of,
    created_devices,
    device_history,
    fleet_of,
    running_device,
)

__all__ = ["VERDICTS", "MatrixCache", "MatrixInputs", "compatibility_matrix", "read_inputs", "read_key"]

VERDICTS: tuple[str, ...] = ("current", "round_trip", "one_way", "refused")
"""The values of a cell's ``verdict``."""


def _cell(verdict: str, reasons: Iterable[Problem] = ()) -> dict[str, Any]:
    problems = [p.to_dict() for p in reasons]
    codes = list(dict.fromkeys(p["code"] for p in problems))
    return {"verdict": verdict, "codes": codes, "reasons": problems}


def _not_reported(host: str) -> Problem:
    return Problem("HOST_NOT_REPORTED", ("host",), f"host {host} has not reported yet", value=host,
                   hint="the manager polls it; or devmig hosts poll")


MatrixKey = tuple[
    tuple[HostSnapshot, ...],
    tuple[str, ...],
    tuple[tuple[str, tuple[DeviceRecord, ...]], ...],
    JournalMark,
]
"""What a matrix depends on, compared with ``==`` (device configurations are dicts: not hashed): the snapshot's
hosts, its profile fingerprints, each host's devices, and the mark of the finished migrations."""


@dataclass(frozen=True, slots=True)
class MatrixInputs:
    """Everything a matrix is computed from but the hosts' profile histories (which change only with a host's
    fingerprint, part of the snapshot).

    Attributes:
        snap: the snapshot (hosts and profiles).
        devices: each host's devices, by the snapshot's host order (a host removed since is left out).
        created: the journal's finished migrations by the device each created (:func:`created_devices`).
        key: the cache key (:func:`read_key`): hosts, profile fingerprints, devices, and the mark of the
            finished migrations (read before them).
    """

    snap: InventorySnapshot
    devices: Mapping[str, tuple[DeviceRecord, ...]]
    created: Created
    key: MatrixKey


def read_key(inventory: Inventory, snap: InventorySnapshot
             ) -> tuple[MatrixKey, dict[str, tuple[DeviceRecord, ...]]]:
    """Read the cache key of the matrix of ``snap`` and every host's devices (part of the key), not the finished
    migrations: their mark stands for them (:meth:`~devmig.inventory.JournalStore.mark`, one row).

    Two statements on SQL, however many hosts, devices and finished migrations.

    Raises:
        DevmigError: the database's errors (``DB_UNAVAILABLE``...).
    """
    listed = inventory.devices_by_host([host.name for host in snap.hosts])  # one query, not one per host
    devices = {host.name: tuple(listed[host.name]) for host in snap.hosts
               if host.name in listed}  # a host removed since the snapshot is left out
    mark = inventory.journal(MIGRATIONS).mark("done")
    return (snap.hosts, tuple(sorted(snap.profiles)), tuple(devices.items()), mark), devices


def read_inputs(inventory: Inventory, snap: InventorySnapshot, *,
                key: tuple[MatrixKey, dict[str, tuple[DeviceRecord, ...]]] | None = None) -> MatrixInputs:
    """Read what the matrix of ``snap`` needs besides the snapshot: every host's devices and the finished migrations.

    Args:
        key: what :func:`read_key` read for ``snap`` (a cache miss), else it is read here. The key is read
            before the finished migrations, so that one finishing in between changes the next key.

    Raises:
        DevmigError: the database's errors (``DB_UNAVAILABLE``...).
    """
    matrix_key, devices = read_key(inventory, snap) if key is None else key
    done = inventory.journal(MIGRATIONS).list("done")
    return MatrixInputs(snap, devices, created_devices(done), matrix_key)


def compatibility_matrix(inventory: Inventory, snap: InventorySnapshot, window: int = 0, *,
                         inputs: MatrixInputs | None = None) -> dict[str, Any]:
    """Return the matrix of every running device of ``inventory`` against every host of ``snap``.

    Args:
        inventory: the open inventory (its device lists).
        snap: the snapshot the answers are computed from (hosts and profiles).
        window: a round trip must also reach the previous ``window`` releases of
            each implementation of the device's current profile (as the rollback set's ``window``).
        inputs: :func:`read_inputs` of ``snap`` when already read (the cache's); read here otherwise.

    Returns:
        ``{"window": window, "hosts": [name, ...], "devices": [row, ...]}``, hosts by name, devices
        by host then id. A row is ``{"device": "HOST/ID", "host", "id", "model",
        "config", "cells": {host: cell}, "errors": [problem, ...]}``; a cell is
        ``{"verdict": one of VERDICTS, "codes": [code, ...], "reasons": [problem, ...]}``.
        A device whose definition cannot be found on its host has no cells and
        its problems in ``errors``.

    Raises:
        DevmigError: the database's errors (``DB_UNAVAILABLE``...).
    """
    if inputs is None:
        inputs = read_inputs(inventory, snap)
    fleet = fleet_of(snap)
    catalogue = catalogue_of(fleet) if window else ()
    hosts = [h.name for h in snap.hosts]
    created = inputs.created
    rows: list[dict[str, Any]] = []
    for host, records in inputs.devices.items():
        for record in records:
            if not record.running:
                continue
            ref = f"{host}/{record.id}"
            row: dict[str, Any] = {"device": ref, "host": host, "id": record.id, "model": record.model,
                                   "config": dict(record.config), "cells": {}, "errors": []}
            rows.append(row)
            try:
                device = running_device(inventory, fleet, ref)[2]
            except DevmigError as exc:
                row["errors"] = exc.to_dicts()
                continue
            before, _ = device_history(inventory, fleet, host, record.id, created)
            answer = rollback_set(fleet, device, before, window=window, catalogue=catalogue)
            for name in hosts:
                if name == host:
                    row["cells"][name] = _cell("current")
                elif name in answer.hosts:
                    row["cells"][name] = _cell("round_trip")
                elif name in answer.one_way:
                    row["cells"][name] = _cell("one_way", (p for ps in answer.one_way[name].values() for p in ps))
                elif name in answer.rejected:
                    row["cells"][name] = _cell("refused", answer.rejected[name])
                else:
                    row["cells"][name] = _cell("refused", [_not_reported(name)])
    return {"window": window, "hosts": hosts, "devices": rows}


class _Entry:
    """One window's cached matrix, its key, and its JSON body once someone asked for it."""

    __slots__ = ("body", "key", "matrix")

    def __init__(self, key: MatrixKey, matrix: dict[str, Any]) -> None:
        self.key = key
        self.matrix = matrix
        self.body: bytes | None = None


class MatrixCache:
    """The matrix of each ``window``, computed again only when its inputs changed.

    One entry per window (the least recently used one goes first past ``max_windows``). Each
    :meth:`get` reads the key (:func:`read_key`) and compares it with the entry's: equal, the
    entry's matrix (the same object) is returned; else the rest of the inputs is read
    (:func:`read_inputs`) and the matrix computed and kept.
    :meth:`get_json` also keeps the matrix's JSON body, encoded once per entry.

    Args:
        max_windows: how many windows are kept (the ``window`` query parameter takes 0 to 8).

    Attributes:
        computations: how many matrices were computed (misses), for tests and metrics.
        hits: how many were served from the cache.
    """

    def __init__(self, max_windows: int = 9) -> None:
        if max_windows < 1:
            raise ValueError("max_windows is at least 1")
        self.max_windows = max_windows
        self.computations = 0
        self.hits = 0
        self._entries: OrderedDict[int, _Entry] = OrderedDict()

    def _entry(self, inventory: Inventory, snap: InventorySnapshot, window: int) -> tuple[_Entry, bool]:
        key = read_key(inventory, snap)
        entry = self._entries.get(window)
        if entry is not None and entry.key == key[0]:
            self._entries.move_to_end(window)
            self.hits += 1
            return entry, True
        inputs = read_inputs(inventory, snap, key=key)  # the finished migrations: only on a miss
        entry = _Entry(inputs.key, compatibility_matrix(inventory, snap, window, inputs=inputs))
        self.computations += 1
        self._entries[window] = entry
        self._entries.move_to_end(window)
        while len(self._entries) > self.max_windows:
            self._entries.popitem(last=False)
        return entry, False

    def get(self, inventory: Inventory, snap: InventorySnapshot, window: int = 0) -> tuple[dict[str, Any], bool]:
        """The matrix of ``snap`` (see :func:`compatibility_matrix`) and whether it came from the cache.

        The returned matrix may be shared with other callers: do not change it.

        Raises:
            DevmigError: the database's errors (nothing is cached then).
        """
        entry, hit = self._entry(inventory, snap, window)
        return entry.matrix, hit

    def get_json(self, inventory: Inventory, snap: InventorySnapshot, window: int,
                 encode: Callable[[dict[str, Any]], bytes]) -> tuple[bytes, bool]:
        """Like :meth:`get`, but the matrix's JSON body, made by ``encode`` once per computed matrix.

        Raises:
            DevmigError: the database's errors (nothing is cached then).
        """
        entry, hit = self._entry(inventory, snap, window)
        if entry.body is None:
            entry.body = encode(entry.matrix)
        return entry.body, hit

    def clear(self) -> None:
        """Forget every entry (the counters stay)."""
        self._entries.clear()
