"""Rollback sets remember where a device ran: the manager's journal and the hosts' profile history.

A device that came to its host by a migration must be able to go back to the
profile it ran on before — even when no host runs that profile any more (its
documents are kept by the inventory). Here releases 2.1.0 and 2.2.0 of the
NIC disagree on the off value of a parameter 2.0.0 does not have: a device
that ran on 2.1.0 and now runs on 2.0.0 may move to 2.2.0 but not come back
to 2.1.0 from there (rule 5), so 2.2.0 is one-way for it, not a round trip.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from example_docs import host_report, nic_with_wol
from fleet_fixtures import at

from devmig._examples import load_example
from devmig.compat import Profile
from devmig.inventory import Inventory, JournalEntry
from devmig.inventory._interface import DeviceRecord
from devmig.manager._matrix import compatibility_matrix
from devmig.model import expand
from devmig.orchestration import MIGRATIONS
from devmig.orchestration._migration_records import Hop, lineage
from devmig.orchestration._queries import answer_rollback_set

NIC = "example.org/devices/nic"


def _migration(source: str, device_id: str, destination: str, new_id: str, streaming: datetime,
               phase: str = "done") -> dict[str, Any]:
    return {
        "source": source,
        "device_id": device_id,
        "destination": destination,
        "destination_device_id": new_id,
        "created_at": at(0).isoformat(),
        "history": [
            {"phase": "planned", "at": at(0).isoformat()},
            {"phase": "streaming", "at": streaming.isoformat()},
            {"phase": phase, "at": streaming.isoformat()},
        ],
    }


def test_lineage_follows_finished_migrations_back_and_stops_on_a_cycle() -> None:
    entries = [
        JournalEntry("m1", "done", _migration("a", "d0", "b", "d1", at(10)), at(11)),
        JournalEntry("m2", "done", _migration("b", "d1", "c", "d2", at(20)), at(21)),
        JournalEntry("m3", "rolled_back", _migration("c", "d2", "e", "d3", at(30), "rolled_back"), at(31)),
        JournalEntry("loop", "done", _migration("x", "y", "x", "y", at(40)), at(41)),
    ]
    assert lineage(entries, "c", "d2") == [Hop("m2", "b", "d1", at(20)), Hop("m1", "a", "d0", at(10))]
    assert lineage(entries, "e", "d3") == []  # a rolled-back migration created nothing
    assert lineage(entries, "x", "y") == [Hop("loop", "x", "y", at(40))]
    assert lineage(entries, "a", "d0") == []


def test_a_device_must_be_able_to_return_to_a_profile_it_ran_on(make_inventory: Callable[[], Inventory]) -> None:
    inventory = make_inventory()
    h21, h22 = nic_with_wol("2.1.0", "none"), nic_with_wol("2.2.0", "magic")
    v200 = load_example("acme-nic/2.0.0")
    inventory.register_reports(
        [
            ("old", "http://old", host_report("old", h21)),
            ("mid", "http://mid", host_report("mid", v200)),
            ("x", "http://x", host_report("x", h22)),
            ("twin", "http://twin", host_report("twin", v200)),
        ],
        at(0),
    )
    # the device ran on old (2.1.0) as d0 and moved to mid as d1; later old was upgraded to 2.0.0
    inventory.journal(MIGRATIONS).put("m1", "done", _migration("old", "d0", "mid", "d1", at(10)), at(12))
    inventory.register_reports([("old", "http://old", host_report("old", v200))], at(100))
    model = v200.find(NIC)
    assert model is not None
    inventory.record_devices("mid", [DeviceRecord("d1", NIC, dict(expand(model, "version=2").values), "RUNNING",
                                                  True)])
    inventory.record_devices("twin", [DeviceRecord("fresh", NIC, dict(expand(model, "version=2").values),
                                                   "RUNNING", True)])
    snap = inventory.snapshot()

    answer = answer_rollback_set(inventory, snap, "mid", "d1", 0)
    assert answer["history"] == [{"migration": "m1", "host": "old", "device": "old/d0",
                                  "profile": Profile.of([h21]).short}]
    assert len(answer["targets"]) == 2  # 2.0.0, where it runs, and 2.1.0, which no host runs any more
    assert sorted(answer["hosts"]) == ["old", "twin"]
    assert list(answer["one_way"]) == ["x"]
    (reasons,) = answer["one_way"]["x"].values()
    assert {r["code"] for r in reasons} == {"OFF_VALUE_MISMATCH"} and reasons[0]["loc"][-1] == "wol"

    # a device that never migrated has only where it runs to return to: 2.2.0 is a round trip for it
    fresh = answer_rollback_set(inventory, snap, "twin", "fresh", 0)
    assert fresh["history"] == [] and sorted(fresh["hosts"]) == ["mid", "old", "x"]

    # the dashboard's matrix says the same
    rows = {row["device"]: row["cells"] for row in compatibility_matrix(inventory, snap)["devices"]}
    assert rows["mid/d1"]["x"]["verdict"] == "one_way" and rows["mid/d1"]["twin"]["verdict"] == "round_trip"
    assert rows["twin/fresh"]["x"]["verdict"] == "round_trip"
