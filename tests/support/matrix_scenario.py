"""The compatibility matrix's test scenario, shared by the dashboard's and the fleet's matrix tests.

NIC releases 2.1.0 and 2.2.0 disagree on the off value of a parameter (``wol``), so a device that
came from 2.1.0 goes to 2.2.0 only one way. :func:`wol_fleet` registers four hosts — old (2.1.0),
mid and twin (2.0.0), x (2.2.0) — with a NIC on mid and one on twin.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from example_docs import host_report, nic_with_wol

from devmig._examples import load_example
from devmig.inventory import Inventory
from devmig.inventory._interface import DeviceRecord
from devmig.model import expand

__all__ = ["NIC", "T0", "at", "migration", "nic", "wol_fleet"]

NIC = "example.org/devices/nic"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def nic(device_id: str) -> DeviceRecord:
    """A running NIC created as ``version=2`` on acme-nic 2.0.0."""
    model = load_example("acme-nic/2.0.0").find(NIC)
    assert model is not None
    return DeviceRecord(device_id, NIC, dict(expand(model, "version=2").values), "RUNNING", True)


def migration(source: str, device_id: str, destination: str, new_id: str, *, finished: bool = False) -> dict[str, Any]:
    """A migration journal payload that moved ``device_id`` to ``destination`` as ``new_id``."""
    payload: dict[str, Any] = {
        "source": source, "device_id": device_id, "destination": destination,
        "destination_device_id": new_id, "created_at": at(0).isoformat(),
        "history": [{"phase": "planned", "at": at(0).isoformat()},
                    {"phase": "streaming", "at": at(10).isoformat()}, {"phase": "done", "at": at(11).isoformat()}]}
    if finished:
        payload["finished"] = True
    return payload


def wol_fleet(inventory: Inventory) -> None:
    """Hosts old (2.1.0), mid and twin (2.0.0), x (2.2.0); a NIC on mid and one on twin."""
    v200 = load_example("acme-nic/2.0.0")
    inventory.register_reports([
        ("old", "http://old", host_report("old", nic_with_wol("2.1.0", "none"))),
        ("mid", "http://mid", host_report("mid", v200)),
        ("x", "http://x", host_report("x", nic_with_wol("2.2.0", "magic"))),
        ("twin", "http://twin", host_report("twin", v200)),
    ], at(0))
    inventory.record_devices("mid", [nic("d1")])
    inventory.record_devices("twin", [nic("fresh")])
