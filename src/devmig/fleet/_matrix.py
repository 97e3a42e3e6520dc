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
snapshot, the same core functions (:func:`devmig.fleet._manager_api.running_device`,
:func:`devmig.compat.rollback_set`), computed once per device over one
:class:`~devmig.compat.FleetSnapshot`. The dashboard renders it; ``GET
/v1/matrix`` serves it as JSON.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from devmig._errors import DevmigError, Problem
from devmig.compat import rollback_set
from devmig.fleet._inventory import Inventory, InventorySnapshot
from devmig.fleet._manager_api import _catalogue, device_history, fleet_of, running_device
from devmig.fleet._migration_records import created_devices

__all__ = ["VERDICTS", "compatibility_matrix"]

VERDICTS: tuple[str, ...] = ("current", "round_trip", "one_way", "refused")
"""The values of a cell's ``verdict``."""


def _cell(verdict: str, reasons: Iterable[Problem] = ()) -> dict[str, Any]:
    problems = [p.to_dict() for p in reasons]
    codes = list(dict.fromkeys(p["code"] for p in problems))
    return {"verdict": verdict, "codes": codes, "reasons": problems}


def _not_reported(host: str) -> Problem:
    return Problem("HOST_NOT_REPORTED", ("host",), f"host {host} has not reported yet", value=host,
                   hint="the manager polls it; or devmig hosts poll")


def compatibility_matrix(inventory: Inventory, snap: InventorySnapshot, window: int = 0) -> dict[str, Any]:
    """Return the matrix of every running device of ``inventory`` against every host of ``snap``.

    Args:
        inventory: the open inventory (its device lists).
        snap: the snapshot the answers are computed from (hosts and profiles).
        window: a round trip must also reach the previous ``window`` releases of
            each implementation of the device's current profile (as the rollback set's ``window``).

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
    fleet = fleet_of(snap)
    catalogue = _catalogue(fleet) if window else ()
    hosts = [h.name for h in snap.hosts]
    created = created_devices(inventory.journal_list())
    rows: list[dict[str, Any]] = []
    for host in hosts:
        try:
            records = inventory.list_devices(host)
        except DevmigError as exc:
            if exc.code == "HOST_UNKNOWN":  # removed since the snapshot
                continue
            raise
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
