"""Issue 5 on a real fleet: five agent processes on mixed releases, one manager process on a database.

Hosts: ``old`` (nic/blk/accel 1.0.0), ``cur-a``/``cur-b``/``cur-c`` (2.0.0), ``new`` (nic 3.0.0,
blk 2.0.0 — acme-blk's newest —, accel 3.0.0), all in pool ``fleet``; accelerators have 64 MiB of
memory (the smallest every release allows). The fleet is module-scoped and runs once on a SQLite
file and once on PostgreSQL (``DEVMIG_TEST_PG_URL``). The tests run in file order and build on each
other's fleet: placement, a baseline device that tours the pool, a drain refused as STRANDED, dry
runs, a full drain while devices keep running, and a partial drain.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from drain_env import ACCEL, BLK, NIC, Fleet, counters_advance, database, wait_drain, wait_migration

HOSTS = {
    "old": "nic=1.0.0,blk=1.0.0,accel=1.0.0",
    "cur-a": "nic=2.0.0,blk=2.0.0,accel=2.0.0",
    "cur-b": "nic=2.0.0,blk=2.0.0,accel=2.0.0",
    "cur-c": "nic=2.0.0,blk=2.0.0,accel=2.0.0",
    "new": "nic=3.0.0,blk=2.0.0,accel=3.0.0",
}
NEWEST_ONLY = "version=2,link-speed=25G"
"""A NIC configuration only acme-nic 3.0.0 accepts."""


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def fleet(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    root = tmp_path_factory.mktemp(f"fleet-{request.param}")
    with database(request.param, root) as url:
        fleet = Fleet(root)
        try:
            fleet.start(url, HOSTS)
            with fleet.m() as m:
                assert m.post("/v1/pools", json={"name": "fleet"}).status_code == 201
                for host in HOSTS:
                    assert m.put(f"/v1/pools/fleet/hosts/{host}").status_code == 200
            fleet.create("cur-c", NIC, "version=2")
            fleet.create("cur-c", BLK, "version=2")
            fleet.create("cur-c", ACCEL, "version=2,mem-size-mib=64")
            fleet.create("new", NIC, "version=4")  # only acme-nic 3.0.0 runs it: stranded by a drain of new
            fleet.create("new", BLK, "version=2")
            fleet.create("old", ACCEL, "version=2,mem-size-mib=64")
            fleet.poll()
            yield fleet
        finally:
            fleet.close()


def _everything(fleet: Fleet) -> dict[str, dict[str, dict[str, Any]]]:
    return {host: fleet.devices(host) for host in HOSTS}


def _count(fleet: Fleet) -> int:
    return sum(len(devices) for devices in _everything(fleet).values())


def test_placement_answers_with_rejection_reasons(fleet: Fleet) -> None:
    with fleet.m() as m:
        answer = m.post("/v1/place", json={"vm": [{"model": NIC, "config": NEWEST_ONLY}]}).json()
    assert [a["host"] for a in answer["accepted"]] == ["new"]
    assert set(answer["rejected"]) == {"old", "cur-a", "cur-b", "cur-c"}
    for host, reasons in answer["rejected"].items():
        assert reasons, host
        for reason in reasons:
            assert reason["code"] and reason["message"] and reason["hint"], (host, reason)
    # the 2.0.0 hosts lack the 25G value of link-speed; so does the 1.0.0 host
    for host in ("cur-a", "cur-b", "cur-c", "old"):
        reasons = answer["rejected"][host]
        assert "VALUE_NOT_ALLOWED" in {r["code"] for r in reasons}, (host, reasons)
        assert any("link-speed" in r["loc"] for r in reasons), (host, reasons)
    # a cordoned host is rejected for that, with its own code
    with fleet.m() as m:
        assert m.post("/v1/hosts/cur-b/cordon").status_code == 200
        try:
            answer = m.post("/v1/place", json={"vm": [{"model": NIC, "config": "version=2"}]}).json()
        finally:
            assert m.post("/v1/hosts/cur-b/uncordon").status_code == 200
    assert "cur-b" not in [a["host"] for a in answer["accepted"]]
    assert [r["code"] for r in answer["rejected"]["cur-b"]] == ["HOST_CORDONED"]
    assert {"old", "cur-a", "cur-c", "new"} <= {a["host"] for a in answer["accepted"]}


def test_baseline_device_migrates_to_every_host_and_back(fleet: Fleet) -> None:
    with fleet.m() as m:
        base = m.get("/v1/pools/fleet/baseline", params={"model": NIC}).json()
    assert base["version"] == "2" and base["version_string"], base  # the 1.0.0 host bounds it
    device = fleet.create("new", NIC, base["version_string"])
    assert device["version"] == base["version"]
    before = _count(fleet)
    host, device_id = "new", device["id"]
    steps = counters_advance(fleet, host, device_id)[1]
    tour = ["old", "cur-a", "cur-b", "cur-c", "new"]
    with fleet.m() as m:
        for destination in tour:
            response = m.post("/v1/migrations", json={"device": f"{host}/{device_id}", "destination": destination})
            assert response.status_code == 202, response.text
            record = wait_migration(m, response.json()["id"])
            assert record["outcome"] == "migrated", record
            assert record["phase"] == "done" and record["destination"] == destination
            assert [h["phase"] for h in record["history"]][-1] == "done"
            host, device_id = destination, record["destination_device_id"]
            first, second = counters_advance(fleet, host, device_id)
            assert steps < first < second, (destination, steps, first, second)  # the state came along, and runs
            steps = second
            assert _count(fleet) == before, f"after the move to {destination}"
    assert host == "new" and fleet.device("new", device_id)["config"] == device["config"]


def test_drain_refused_as_stranded_moves_nothing(fleet: Fleet) -> None:
    fleet.poll()
    before = _everything(fleet)
    with fleet.m() as m:
        migrations_before = len(m.get("/v1/migrations").json()["migrations"])
        response = m.post("/v1/drains", json={"host": "new"})
        assert response.status_code == 409, response.text
        problems = response.json()["errors"]
        assert problems[0]["code"] == "STRANDED"
        v4 = next(d for d in before["new"].values() if d["model"] == NIC and d["version"] == "4")
        ref = f"new/{v4['id']}"
        assert problems[0]["value"] == [ref]
        mine = [p for p in problems[1:] if p["loc"][:2] == ["devices", ref]]
        assert mine and mine[0]["code"] == "NO_HOST"
        hosts_named = {p["loc"][3] for p in mine[1:] if p["loc"][2] == "hosts"}
        assert hosts_named == set(HOSTS), hosts_named  # every host, with its reasons
        own = {p["code"] for p in mine[1:] if p["loc"][3] == "new"}
        assert own and own <= {"HOST_CORDONED", "SAME_HOST"}, own
        others = [p for p in mine[1:] if p["loc"][3] != "new"]
        assert {p["code"] for p in others} >= {"VERSION_UNSUPPORTED"} or others, others
        assert all(p["code"] and p["message"] for p in mine)
        drain_id = problems[0]["context"]["drain"]
        drain = m.get(f"/v1/drains/{drain_id}").json()
        assert drain["phase"] == "failed" and drain["finished"] and drain["migrations"] == []
        assert [s["device"] for s in drain["stranded"]] == [ref]
        assert m.get("/v1/hosts/new").json()["cordoned"] is True  # stays cordoned
        assert len(m.get("/v1/migrations").json()["migrations"]) == migrations_before
        assert m.post("/v1/hosts/new/uncordon").status_code == 200
    time.sleep(0.2)
    after = _everything(fleet)
    assert {h: sorted(d) for h, d in after.items()} == {h: sorted(d) for h, d in before.items()}
    assert all(d["running"] for d in after["new"].values())


def test_dry_run_plans_without_moving(fleet: Fleet) -> None:
    fleet.poll()
    before = _everything(fleet)
    run = fleet.cli("drain", "cur-c", "--dry-run", "--json")
    assert run.returncode == 0, run.stdout + run.stderr
    plan = json.loads(run.stdout)
    assert plan["phase"] == "planned" and plan["exit"] == 0 and not plan["stranded"]
    assert sorted(p["device"] for p in plan["plan"]) == sorted(f"cur-c/{i}" for i in before["cur-c"])
    assert all(p["destination"] not in ("cur-c",) for p in plan["plan"])
    # each destination is one placement accepts (ranked: fewest spare capabilities, then load)
    with fleet.m() as m:
        for p in plan["plan"]:
            answer = m.post("/v1/place", json={"vm": [{"device": p["device"]}]}).json()
            assert p["destination"] in [a["host"] for a in answer["accepted"]], (p, answer["accepted"])
    table = fleet.cli("drain", "new", "--dry-run")
    assert table.returncode == 1, table.stdout + table.stderr  # the version=4 NIC would be stranded
    assert "stranded" in table.stdout and "NO_HOST" in table.stdout and "dry run" in table.stdout
    with fleet.m() as m:
        assert m.get("/v1/hosts/cur-c").json()["cordoned"] is False
        assert m.get("/v1/hosts/new").json()["cordoned"] is False
        assert m.get("/v1/migrations", params={"active": "true"}).json()["migrations"] == []
    assert {h: sorted(d) for h, d in _everything(fleet).items()} == {h: sorted(d) for h, d in before.items()}


def test_drain_empties_a_host_while_devices_keep_running(fleet: Fleet) -> None:
    fleet.poll()
    before = _everything(fleet)
    total = sum(len(d) for d in before.values())
    steps = {i: counters_advance(fleet, "cur-c", i, 0.1)[1] for i in before["cur-c"]}
    bystander = next(iter(before["old"]))
    with fleet.m() as m:
        response = m.post("/v1/drains", json={"host": "cur-c", "parallel": 2})
        assert response.status_code == 202, response.text
        drain = response.json()
        assert drain["phase"] == "running" and len(drain["plan"]) == 3 and drain["parallel"] == 2
        assert m.get("/v1/hosts/cur-c").json()["cordoned"] is True
        while not drain["finished"]:  # meanwhile, a device elsewhere keeps working
            first, second = counters_advance(fleet, "old", bystander, 0.05)
            assert second > first
            drain = m.get(f"/v1/drains/{drain['id']}").json()
        drain = wait_drain(m, drain["id"])
        assert drain["phase"] == "done", drain
        records = [m.get(f"/v1/migrations/{mid}").json() for mid in drain["migrations"]]
        listed = m.get("/v1/drains").json()["drains"]
    assert drain["id"] in [d["id"] for d in listed]
    assert len(records) == 3 and all(r["outcome"] == "migrated" and r["drain"] == drain["id"] for r in records)
    assert fleet.devices("cur-c") == {}  # empty
    after = _everything(fleet)
    assert sum(len(d) for d in after.values()) == total  # each device exactly once in the fleet
    for r in records:
        source_id = r["device"].split("/", 1)[1]
        assert r["destination"] != "cur-c" and r["downtime_ms"] is not None
        moved = after[r["destination"]][r["destination_device_id"]]
        assert moved["model"] == before["cur-c"][source_id]["model"]
        assert moved["config"] == before["cur-c"][source_id]["config"]
        first, second = counters_advance(fleet, r["destination"], r["destination_device_id"])
        assert steps[source_id] < first < second  # its work went on from where it was
    # the host stays cordoned: placement rejects it
    with fleet.m() as m:
        answer = m.post("/v1/place", json={"vm": [{"model": NIC, "config": "version=2"}]}).json()
    assert [r["code"] for r in answer["rejected"]["cur-c"]] == ["HOST_CORDONED"]


def test_partial_drain_moves_what_it_can_and_exits_3(fleet: Fleet) -> None:
    fleet.poll()
    before = _everything(fleet)
    total = sum(len(d) for d in before.values())
    run = fleet.cli("drain", "new", "--partial", "--parallel", "2", "--json")
    assert run.returncode == 3, run.stdout + run.stderr
    drain = json.loads(run.stdout)
    assert drain["phase"] == "partial" and drain["exit"] == 3
    assert len(drain["stranded"]) == 1 and drain["stranded"][0]["errors"][0]["code"] == "NO_HOST"
    assert len(drain["plan"]) == len(before["new"]) - 1
    assert all(r["outcome"] == "migrated" for r in drain["migration_records"])
    left = fleet.devices("new")
    assert [d["version"] for d in left.values()] == ["4"] and all(d["running"] for d in left.values())
    assert sum(len(d) for d in _everything(fleet).values()) == total
    with fleet.m() as m:
        assert m.get("/v1/hosts/new").json()["cordoned"] is True
        assert m.post("/v1/hosts/new/uncordon").status_code == 200
        assert m.post("/v1/hosts/cur-c/uncordon").status_code == 200
    shown = fleet.cli("migrations", drain["migrations"][0])
    assert shown.returncode == 0 and "done" in shown.stdout and drain["id"] in shown.stdout, shown.stdout
