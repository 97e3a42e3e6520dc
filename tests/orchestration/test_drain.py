"""Drains: the pure plan, the store (twin, SQLite, PostgreSQL), the Drainer's refusals, and a resume.

The last test is real processes: a drain under way when its manager is SIGKILLed goes on after a
restart on the same SQLite file, and every device ends up exactly once in the fleet.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from drain_env import ACCEL, NIC, Fleet, database, wait_drain
from fleet_fixtures import at, report

from devmig._errors import DevmigError, Problem
from devmig._examples import load_example
from devmig.inventory import Inventory, MemoryInventory, MemoryJournalStore
from devmig.inventory._interface import DeviceRecord, HostSnapshot, InventorySnapshot
from devmig.model import expand
from devmig.orchestration import DRAINS, MIGRATIONS
from devmig.orchestration._drain import Drainer, plan_drain, record_of
from devmig.orchestration._orchestrator import Orchestrator


def _host(name: str, load: int = 0, *, cordoned: bool = False) -> HostSnapshot:
    return HostSnapshot(name, f"http://{name}", "fp", cordoned, True, (), load)


def _dev(device_id: str, model: str = "m", *, running: bool = True) -> DeviceRecord:
    return DeviceRecord(device_id, model, {}, "RUNNING" if running else "STOPPED", running)


def _least_loaded(seen: list[InventorySnapshot]) -> Callable[[str, InventorySnapshot], str]:
    """A stand-in placement: the least loaded host that is not cordoned (name breaks ties)."""

    def place(device: str, snap: InventorySnapshot) -> str:
        seen.append(snap)
        if "stuck" in device:
            raise DevmigError([Problem("NO_HOST", ("device",), f"no host can take {device}", value=device)])
        hosts = sorted((h.load, h.name) for h in snap.hosts if not h.cordoned)
        return hosts[0][1]

    return place


def test_plan_raises_each_destinations_load_before_the_next_device() -> None:
    snap = InventorySnapshot((_host("src", 5), _host("h1", 0), _host("h2", 1)), {})
    devices = [_dev("d1"), _dev("d2"), _dev("d3"), _dev("d4"), _dev("off", running=False), _dev("stuck-1", "x")]
    seen: list[InventorySnapshot] = []
    plan = plan_drain("src", devices, snap, _least_loaded(seen))
    assert [(m.device, m.destination) for m in plan.moves] == [
        ("src/d1", "h1"), ("src/d2", "h1"), ("src/d3", "h2"), ("src/d4", "h1")]
    assert [s.device for s in plan.stranded] == ["src/stuck-1"] and not plan.complete
    assert plan.stranded[0].errors[0].code == "NO_HOST" and plan.stranded[0].model == "x"
    assert {h.name: h.load for h in plan.snapshot.hosts} == {"src": 5, "h1": 3, "h2": 2}
    assert all(next(h for h in s.hosts if h.name == "src").cordoned for s in seen)  # the drained host takes nothing
    assert {h.name: h.load for h in snap.hosts} == {"src": 5, "h1": 0, "h2": 1}  # the input is not changed
    assert plan.moves[0].to_dict() == {"device": "src/d1", "model": "m", "destination": "h1"}


def test_plan_of_an_empty_host_is_complete() -> None:
    plan = plan_drain("src", [], InventorySnapshot((_host("src"),), {}), _least_loaded([]))
    assert plan.complete and plan.moves == ()


Twin = tuple[MemoryInventory, Orchestrator]


def _fleet_twin() -> Twin:
    """Hosts on the inventory twin: ``src`` runs four NICs (version 2) and a version=4 NIC;
    ``b`` and ``c`` (acme-nic 2.0.0, one profile) take version 2; ``old`` (1.0.0) too but it is cordoned."""
    inventory = MemoryInventory()
    inventory.open()
    now = at(0)
    inventory.register_reports([
        ("src", "http://src", report("src", "acme-nic/3.0.0")),
        ("b", "http://b", report("b", "acme-nic/2.0.0")),
        ("c", "http://c", report("c", "acme-nic/2.0.0")),
        ("old", "http://old", report("old", "acme-nic/1.0.0")),
    ], now)
    inventory.cordon("old")
    model = load_example("acme-nic/3.0.0").find(NIC)
    assert model is not None

    def nic(device_id: str, version: int) -> DeviceRecord:
        return DeviceRecord(device_id, NIC, dict(expand(model, f"version={version}").values), "RUNNING", True)

    inventory.record_devices("src", [*(nic(f"n{i}", 2) for i in range(4)), nic("v4", 4)])
    inventory.record_devices("c", [nic("x", 2)])
    return inventory, Orchestrator(inventory, sweep_interval=None)


@pytest.fixture
def twin() -> Iterator[Twin]:
    """:func:`_fleet_twin`'s inventory and orchestrator; the inventory is closed at teardown."""
    inventory, orchestrator = _fleet_twin()
    yield inventory, orchestrator
    inventory.close()


def test_plan_with_real_placement_spreads_over_one_profile_and_strands_with_reasons(twin: Twin) -> None:
    inventory, orchestrator = twin
    plan = plan_drain("src", inventory.list_devices("src"), orchestrator.snapshot(),
                      lambda device, snap: orchestrator.place_device(device, snapshot=snap))
    # b (load 0) and c (load 1) are one profile: the loads taken as each NIC is placed alternate them
    assert [m.destination for m in plan.moves] == ["b", "b", "c", "b"]
    (stuck,) = plan.stranded
    assert stuck.device == "src/v4" and stuck.errors[0].code == "NO_HOST"
    by_host = {p.loc[1] for p in stuck.errors[1:]}
    assert by_host == {"b", "c", "old", "src"}
    assert "HOST_CORDONED" in {p.code for p in stuck.errors[1:] if p.loc[1] == "old"}
    assert "VALUE_NOT_ALLOWED" in {p.code for p in stuck.errors[1:] if p.loc[1] == "b"}  # version 4 is not in 2.0.0


def test_drainer_dry_run_refusal_and_unknowns_on_the_twin(twin: Twin) -> None:
    inventory, orchestrator = twin

    async def scenario() -> None:
        drainer = Drainer(inventory, orchestrator, MemoryJournalStore(DRAINS))
        dry = await drainer.start("src", dry_run=True)
        assert dry["phase"] == "planned" and dry["finished"] and dry["dry_run"]
        assert len(dry["plan"]) == 4 and [s["device"] for s in dry["stranded"]] == ["src/v4"]
        assert not inventory.get_host("src").cordoned  # a dry run cordons nothing
        with pytest.raises(DevmigError) as refused:
            await drainer.start("src")
        first = refused.value.problems[0]
        assert first.code == "STRANDED" and first.value == ["src/v4"]
        assert refused.value.problems[1].code == "NO_HOST" and refused.value.problems[1].loc[:2] == (
            "devices",
            "src/v4",
        )
        assert inventory.get_host("src").cordoned  # stays cordoned
        failed = drainer.get(first.context["drain"])
        assert failed["phase"] == "failed" and failed["migrations"] == [] and failed["error"]["code"] == "STRANDED"
        assert inventory.journal(MIGRATIONS).list() == []  # no migration was journalled
        assert [d["id"] for d in drainer.list()] and {d["id"] for d in drainer.list()} == {dry["id"], failed["id"]}
        for call, code in ((drainer.start("nowhere"), "HOST_UNKNOWN"), (drainer.start("src", parallel=0),
                                                                        "REQUEST_INVALID")):
            with pytest.raises(DevmigError) as bad:
                await call
            assert bad.value.code == code
        with pytest.raises(DevmigError) as unknown:
            drainer.get("drain-nope")
        assert unknown.value.code == "DRAIN_UNKNOWN"
        await drainer.aclose()

    asyncio.run(scenario())


def test_a_second_drain_of_a_host_being_drained_is_refused_on_the_twin(twin: Twin) -> None:
    inventory, orchestrator = twin
    store = MemoryJournalStore(DRAINS)
    # a drain of src under way (journalled by this or an earlier manager)
    store.put("drain-under-way", "running", {"host": "src", "plan": [], "migrations": [], "history": []}, at(0))

    async def scenario() -> None:
        drainer = Drainer(inventory, orchestrator, store)
        with pytest.raises(DevmigError) as busy:
            await drainer.start("src", partial=True)
        problem = busy.value.problems[0]
        assert (problem.code, problem.loc, problem.value) == ("DRAIN_BUSY", ("host",), "drain-under-way")
        assert problem.hint == "see GET /v1/drains/drain-under-way"
        assert not inventory.get_host("src").cordoned and inventory.journal(MIGRATIONS).list() == []  # nothing done
        assert [row.id for row in store.list()] == ["drain-under-way"]  # nothing journalled
        dry = await drainer.start("src", dry_run=True)  # a dry run changes nothing: still answered
        assert dry["phase"] == "planned" and len(dry["plan"]) == 4
        other = await drainer.start("b")  # another host drains
        assert (await drainer.wait(other["id"], timeout=5))["phase"] == "done"
        await drainer.aclose()

    asyncio.run(scenario())


class _StoreFailingOnce(MemoryJournalStore):
    """The twin, whose database fails once when a drain's end is written (as a lost connection would)."""

    def __init__(self) -> None:
        super().__init__(DRAINS)
        self.failed = 0

    def put(self, id: str, phase: str, payload: Mapping[str, Any], now: datetime) -> None:
        if phase == "done" and not self.failed:
            self.failed += 1
            raise DevmigError([Problem("DB_UNAVAILABLE", ("database",), "the database went away")])
        super().put(id, phase, payload, now)


def test_a_drain_whose_task_died_is_resumed_by_the_sweep_on_the_twin(twin: Twin) -> None:
    inventory, orchestrator = twin
    store = _StoreFailingOnce()

    async def scenario() -> None:
        drainer = Drainer(inventory, orchestrator, store, sweep_interval=0.05)
        await drainer.open()
        started = await drainer.start("b")
        done = await drainer.wait(started["id"], timeout=30)  # without the sweep it stays running
        assert store.failed == 1 and done["phase"] == "done"
        assert [h["phase"] for h in done["history"]] == ["planned", "running", "done"]
        await drainer.aclose()

    asyncio.run(scenario())


def test_an_empty_host_drains_at_once_on_the_twin(twin: Twin) -> None:
    inventory, orchestrator = twin

    async def scenario() -> None:
        drainer = Drainer(inventory, orchestrator)
        started = await drainer.start("b")
        done = await drainer.wait(started["id"], timeout=5)
        assert done["phase"] == "done" and done["plan"] == [] and done["migrations"] == []
        assert [h["phase"] for h in done["history"]] == ["planned", "running", "done"]
        await drainer.aclose()

    asyncio.run(scenario())


def test_store_round_trip_on_every_database(make_inventory: Callable[[], Inventory]) -> None:
    inventory = make_inventory()
    store = inventory.journal(DRAINS)
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    store.put("drain-b", "running", {"host": "h", "plan": [{"device": "h/1"}], "migrations": []}, now)
    store.put("drain-a", "planned", {"host": "g", "dry_run": True}, now)
    store.put("drain-b", "done", {"host": "h", "plan": [{"device": "h/1"}], "migrations": ["drain-b-0"]}, now)
    assert [r.id for r in store.list()] == ["drain-a", "drain-b"]
    row = store.get("drain-b")
    assert (row.phase, row.payload["migrations"], row.updated_at) == ("done", ["drain-b-0"], now)
    record = record_of(row)
    assert record["finished"] and record["id"] == "drain-b" and record["host"] == "h"
    with pytest.raises(DevmigError) as unknown:
        store.get("drain-c")
    assert unknown.value.code == "DRAIN_UNKNOWN"
    if isinstance(inventory, MemoryInventory):
        assert isinstance(store, MemoryJournalStore) and inventory.journal(DRAINS) is store  # kept with the twin


# -- a drain survives its manager --------------------------------------------------------------------


@pytest.fixture
def small_fleet(tmp_path: Path) -> Iterator[tuple[Fleet, str]]:
    with database("sqlite", tmp_path) as url:
        fleet = Fleet(tmp_path)
        try:
            # paced streams: a 64 MiB accelerator takes seconds to move, long enough to kill the manager
            fleet.start(url, {"a": "nic=2.0.0,accel=2.0.0", "b": "nic=2.0.0,accel=2.0.0"},
                        "--max-stream-rate", "32M")
            yield fleet, url
        finally:
            fleet.close()


def test_a_drain_resumes_after_the_manager_is_killed(small_fleet: tuple[Fleet, str]) -> None:
    fleet, url = small_fleet
    ids = [fleet.create("a", ACCEL, "version=2,mem-size-mib=64")["id"],
           fleet.create("a", ACCEL, "version=2,mem-size-mib=64")["id"],
           fleet.create("a", NIC, "version=2")["id"]]
    fleet.poll()
    with fleet.m() as m:
        response = m.post("/v1/drains", json={"host": "a", "parallel": 1})
        assert response.status_code == 202, response.text
        drain_id = response.json()["id"]
        deadline = time.monotonic() + 60
        while not m.get(f"/v1/drains/{drain_id}").json()["migrations"]:  # the first migration is under way
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert not m.get(f"/v1/drains/{drain_id}").json()["finished"]
    fleet.restart_manager(url)  # SIGKILL, then a new process on the same file
    with fleet.m() as m:
        drain = wait_drain(m, drain_id, timeout=180)
        records = [m.get(f"/v1/migrations/{mid}").json() for mid in drain["migrations"]]
    assert drain["phase"] == "done", drain
    assert len(records) == 3 and all(r["outcome"] == "migrated" for r in records), records
    assert fleet.devices("a") == {}
    on_b = fleet.devices("b")
    assert len(on_b) == 3 and all(d["running"] for d in on_b.values())
    assert sorted(r["destination_device_id"] for r in records) == sorted(on_b)
    assert sorted(r["device"] for r in records) == sorted(f"a/{i}" for i in ids)


def test_plan_strands_a_vmm_carried_device_and_still_plans_the_sdk_ones(twin: Twin) -> None:
    # DESIGN §9: the report says who carries each implementation's data; the agents would refuse (409)
    # to move a device whose data the VMM carries, so the planner strands it with that reason.
    inventory, orchestrator = twin
    accel = load_example("acme-accel/3.0.0")
    accel_model = accel.find(ACCEL)
    assert accel_model is not None
    inventory.record_devices("src", [*inventory.list_devices("src"),
                                     DeviceRecord("a1", ACCEL, dict(expand(accel_model, "version=1").values),
                                                  "RUNNING", True)])
    source = report("src", "acme-nic/3.0.0", "acme-accel/3.0.0").model_copy(
        update={"carriers": {"acme-accel/3.0.0": "vmm", "acme-nic/3.0.0": "agent"}})
    assert source.carrier(accel.implementation) == "vmm"

    def place(device: str, snap: InventorySnapshot) -> str:
        return orchestrator.place_device(device, snapshot=snap)

    plan = plan_drain("src", inventory.list_devices("src"), orchestrator.snapshot(), place, source=source)
    assert [m.device for m in plan.moves] == ["src/n0", "src/n1", "src/n2", "src/n3"]
    stuck = {s.device: s.errors for s in plan.stranded}
    assert [p.code for p in stuck["src/a1"]] == ["KERNEL_DEVICE_DATA_BY_VMM"]
    assert "VMM" in stuck["src/a1"][0].message and stuck["src/a1"][0].value == ACCEL
    assert stuck["src/v4"][0].code == "NO_HOST"
    # without the carriers (an old report) the planner places it as before: the codes are placement's
    old = plan_drain("src", inventory.list_devices("src"), orchestrator.snapshot(), place,
                     source=report("src", "acme-nic/3.0.0", "acme-accel/3.0.0"))
    assert "KERNEL_DEVICE_DATA_BY_VMM" not in {p.code for s in old.stranded for p in s.errors}
    assert [m.device for m in old.moves] == [m.device for m in plan.moves]
