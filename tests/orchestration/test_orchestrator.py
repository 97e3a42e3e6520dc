"""Migrations through the manager (``/v1/migrations``) on REAL agent processes and a real manager process.

One fleet per database (a SQLite file; PostgreSQL when ``DEVMIG_TEST_PG_URL`` is set), started once:

- ``a``: nic 3.0.0, accel 3.0.0; device memory prefilled (seeded, not zeros), streams paced at 8 MB/s
  (an accel device's 16 MiB take two seconds);
- ``b``: the same releases (the usual destination);
- ``c``: nic 1.0.0 (refuses version-3 nic devices).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx2
import pytest
from fleet_env import free_port
from orchestrator_env import (
    AGENT_TOKEN,
    MANAGER_TOKEN,
    Proc,
    Processes,
    agent_devices,
    create_device,
    database,
    register,
    wait_finished,
)

from devmig.inventory import MemoryInventory, Poller
from devmig.orchestration import FORWARD, MIGRATIONS, Orchestrator
from devmig.orchestration._migration_records import enter_phase, new_payload

pytestmark = pytest.mark.slow

ACCEL = "example.org/devices/accel"
BIG = "mem-size-mib=16,engines=2"


@dataclass
class Fleet:
    agents: dict[str, Proc]
    manager: Proc
    http: httpx2.Client

    def migrate(self, device: str, destination: str | None = None, migration_id: str | None = None) -> httpx2.Response:
        body: dict[str, Any] = {"device": device, "destination": destination}
        if migration_id is not None:
            body["migration_id"] = migration_id
        return self.http.post("/v1/migrations", json=body)

    def count(self) -> int:
        return len(self.http.get("/v1/migrations").json()["migrations"])


@pytest.fixture(scope="module")
def agents(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Proc]]:
    """The agents, shared by both databases' managers (each test makes its own devices)."""
    procs = Processes(tmp_path_factory.mktemp("orchestrator-agents"))
    try:
        started = Processes.ready(
            # seeded memory, not zeros (zero chunks go as tiny ZERO records): the paced streams take their time
            procs.spawn_agent("a", "nic=3.0.0,accel=3.0.0", "--max-stream-rate", "8M", "--prefill-seed", "11"),
            procs.spawn_agent("b", "nic=3.0.0,accel=3.0.0"),
            procs.spawn_agent("c", "nic=1.0.0,accel=3.0.0"),
        )
        yield {agent.name: agent for agent in started}
    finally:
        procs.kill_all()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def fleet(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
          agents: dict[str, Proc]) -> Iterator[Fleet]:
    """A manager on a SQLite file or a PostgreSQL database, the agents registered."""
    root = tmp_path_factory.mktemp(f"orchestrator-{request.param}")
    procs = Processes(root)
    with database(request.param, root) as url:
        try:
            (manager,) = Processes.ready(procs.spawn_manager("manager", url))
            http = manager.http(MANAGER_TOKEN)
            register(http, *agents.values())
            yield Fleet(agents, manager, http)
            http.close()
        finally:
            procs.kill_all()


def wait_streaming(fleet: Fleet, mid: str, timeout: float = 40.0) -> dict[str, Any]:
    """Wait until the manager's record of ``mid`` is in phase ``streaming``; fail with the record otherwise.

    A record that ended, or went past ``streaming``, fails at once (with what happened), not at the deadline.
    """
    deadline = time.monotonic() + timeout
    while True:
        record: dict[str, Any] = fleet.http.get(f"/v1/migrations/{mid}").json()
        if record["phase"] == "streaming":
            return record
        assert record["phase"] in ("planned", "destination_created") and not record["finished"], record
        assert time.monotonic() < deadline, record
        time.sleep(0.05)


def test_migrates_with_progress_downtime_digest_and_history(fleet: Fleet) -> None:
    device = create_device(fleet.agents["a"], BIG, ACCEL)
    accepted = fleet.migrate(f"a/{device}", "b")
    assert accepted.status_code == 202, accepted.text
    record = accepted.json()
    mid = record["id"]
    assert record["phase"] == "planned" and not record["finished"] and record["outcome"] is None
    assert (record["source"], record["destination"], record["model"]) == ("a", "b", ACCEL)

    # live progress while the paced stream runs (16 MiB at 8 MB/s)
    seen: list[dict[str, Any]] = []
    active: list[str] = []
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        now = fleet.http.get(f"/v1/migrations/{mid}").json()
        seen.append(now)
        if now["finished"]:
            break
        if now["phase"] == "streaming" and not active:
            active = [r["id"] for r in fleet.http.get("/v1/migrations", params={"active": "true"}).json()["migrations"]]
        time.sleep(0.1)
    streaming = [r for r in seen if r["phase"] == "streaming"]
    assert streaming, [r["phase"] for r in seen]
    assert any(r["progress"]["bytes_sent"] > 0 and r["progress"]["stage"] == "precopy" for r in streaming)
    assert mid in active

    done = wait_finished(fleet.http, mid)
    assert done["phase"] == "done" and done["outcome"] == "migrated" and done["error"] is None
    assert [h["phase"] for h in done["history"]] == list(FORWARD)
    assert done["downtime_ms"] is not None and done["downtime_ms"] > 0 and len(done["digest"]) == 32
    assert done["progress"]["bytes_sent"] >= max(r["progress"]["bytes_sent"] for r in seen) > 0
    assert done["progress"]["rate"] > 0 and done["progress"]["round"] >= 1
    # exactly one running copy, on b
    assert device not in agent_devices(fleet.agents["a"])
    copy = agent_devices(fleet.agents["b"])[done["destination_device_id"]]
    assert copy["running"] and copy["model"] == ACCEL
    # the journal is the device's history: its rollback set must also return to a's profile (and
    # "done" means the manager's inventory already lists the new device: no poll needed)
    back = fleet.http.get(f"/v1/devices/b/{done['destination_device_id']}/rollback-set")
    assert back.status_code == 200, back.text
    (hop,) = back.json()["history"]
    assert (hop["migration"], hop["host"], hop["device"]) == (mid, "a", f"a/{device}") and hop["profile"]
    # finished ones are not active; the newest is listed first
    assert all(r["id"] != mid for r in fleet.http.get("/v1/migrations", params={"active": "true"}).json()["migrations"])
    assert fleet.http.get("/v1/migrations").json()["migrations"][0]["id"] == mid
    # the lease: the agents refuse another controller of this migration id (and the agent-only caller)
    with fleet.agents["a"].http(AGENT_TOKEN) as agent:
        for lease in ("someone-else/" + mid, None):
            body = {"migration_id": mid, "device_id": device, "destination": {"url": fleet.agents["c"].url},
                    "lease": lease}
            refused = agent.post("/v1/migrations/outgoing", json=body)
            assert refused.status_code == 409 and refused.json()["code"] == "LEASE_HELD", refused.text


def test_placement_chooses_the_destination(fleet: Fleet) -> None:
    device = create_device(fleet.agents["a"], "version=3")
    assert fleet.http.post("/v1/poll").status_code == 200
    place = fleet.http.post("/v1/place", json={"vm": [{"device": f"a/{device}"}]}).json()
    best = place["accepted"][0]["host"]
    assert "c" in place["rejected"]  # nic 1.0.0 cannot run a version-3 device
    response = fleet.migrate(f"a/{device}")
    assert response.status_code == 202, response.text
    assert response.json()["destination"] == best
    done = wait_finished(fleet.http, response.json()["id"])
    assert done["outcome"] == "migrated"
    assert done["destination_device_id"] in agent_devices(fleet.agents[best])


def test_refusals_before_anything_moved(fleet: Fleet) -> None:
    device = create_device(fleet.agents["a"], "version=3")
    before = {name: set(agent_devices(agent)) for name, agent in fleet.agents.items()}
    journalled = fleet.count()

    incompatible = fleet.migrate(f"a/{device}", "c")
    assert incompatible.status_code == 409 and incompatible.json()["code"] == "INCOMPATIBLE", incompatible.text
    assert len(incompatible.json()["errors"]) > 1  # every reason follows

    same = fleet.migrate(f"a/{device}", "a")
    assert same.status_code == 409 and same.json()["code"] == "SAME_HOST"
    missing = fleet.migrate("a/nope")
    assert missing.status_code == 404 and missing.json()["code"] == "DEVICE_NOT_FOUND"
    unknown = fleet.migrate("zz/dev-1")
    assert unknown.status_code == 404 and unknown.json()["code"] == "HOST_UNKNOWN"
    unknown_dest = fleet.migrate(f"a/{device}", "zz")
    assert unknown_dest.status_code == 404 and unknown_dest.json()["code"] == "HOST_UNKNOWN"
    bad = fleet.migrate("no-slash")
    assert bad.status_code == 422
    anonymous = httpx2.post(f"{fleet.manager.url}/v1/migrations", json={"device": f"a/{device}"}, timeout=30)
    assert anonymous.status_code == 401

    assert fleet.http.post("/v1/hosts/b/cordon").status_code == 200
    try:
        cordoned = fleet.migrate(f"a/{device}", "b")
        assert cordoned.status_code == 409 and cordoned.json()["code"] == "HOST_CORDONED"
        nowhere = fleet.migrate(f"a/{device}")
        assert nowhere.status_code == 409 and nowhere.json()["code"] == "NO_HOST", nowhere.text
        reasons = {tuple(e["loc"][:2]): e["code"] for e in nowhere.json()["errors"][1:]}
        assert reasons[("hosts", "b")] == "HOST_CORDONED" and reasons[("hosts", "a")] == "SAME_HOST"
        assert ("hosts", "c") in reasons
    finally:
        fleet.http.post("/v1/hosts/b/uncordon")

    assert fleet.count() == journalled  # nothing journalled
    assert {name: set(agent_devices(agent)) for name, agent in fleet.agents.items()} == before  # nothing moved
    assert fleet.http.get("/v1/migrations/nope").json()["code"] == "MIGRATION_UNKNOWN"


def test_idempotent_by_id_and_busy_devices(fleet: Fleet) -> None:
    device = create_device(fleet.agents["a"], BIG, ACCEL)
    mid = f"mig-idem-{device}"
    first = fleet.migrate(f"a/{device}", "b", mid)
    assert first.status_code == 202, first.text
    again = fleet.migrate(f"a/{device}", "b", mid)
    assert (
        again.status_code == 200
        and again.json()["id"] == mid
        and again.json()["created_at"] == first.json()["created_at"]
    )
    busy = fleet.migrate(f"a/{device}", "b", mid + "-other")
    assert busy.status_code == 409 and busy.json()["code"] == "DEVICE_BUSY", busy.text
    done = wait_finished(fleet.http, mid)
    after = fleet.migrate(f"a/{device}", "b", mid)
    assert after.status_code == 200 and after.json()["phase"] == "done"
    assert after.json()["history"] == done["history"]  # nothing ran twice
    other = create_device(fleet.agents["a"], "version=2")
    conflict = fleet.migrate(f"a/{other}", "b", mid)
    assert conflict.status_code == 409 and conflict.json()["code"] == "MIGRATION_CONFLICT"


def test_the_agents_roll_back_and_no_copy_stays(fleet: Fleet) -> None:
    a, b = fleet.agents["a"], fleet.agents["b"]
    device = create_device(a, BIG, ACCEL)
    before = set(agent_devices(b))
    response = fleet.migrate(f"a/{device}", "b")
    assert response.status_code == 202, response.text
    mid = response.json()["id"]
    wait_streaming(fleet, mid)
    with a.http(AGENT_TOKEN) as agent:  # the operator cancels on the source agent (no lease: allowed)
        assert agent.post(f"/v1/migrations/{mid}/cancel").status_code == 200
    record = wait_finished(fleet.http, mid)
    assert record["phase"] == "rolled_back" and record["outcome"] == "rolled_back", record
    assert [h["phase"] for h in record["history"]] == ["planned", "destination_created", "streaming",
                                                       "rolling_back", "rolled_back"]
    assert record["error"]["code"]
    assert agent_devices(a)[device]["running"]
    assert set(agent_devices(b)) == before  # no copy stays


def test_the_agent_only_path_needs_no_lease_and_a_fence_stops_a_late_start(agents: dict[str, Proc]) -> None:
    a, b = agents["a"], agents["b"]
    device = create_device(a, "version=2")
    with a.http(AGENT_TOKEN) as agent:
        body = {
            "migration_id": f"cli-{device}",
            "device_id": device,
            "destination": {"url": b.url, "token": AGENT_TOKEN},
        }
        started = agent.post("/v1/migrations/outgoing", json=body)
        assert started.status_code == 202, started.text
        assert agent.post("/v1/migrations/outgoing", json=body).status_code == 202  # idempotent, no lease
        taken = agent.post("/v1/migrations/outgoing", json={**body, "lease": "manager/x"})
        assert taken.status_code == 409 and taken.json()["code"] == "LEASE_HELD"
        deadline = time.monotonic() + 40
        while not agent.get(f"/v1/migrations/cli-{device}").json()["finished"]:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert agent.get(f"/v1/migrations/cli-{device}").json()["outcome"] == "migrated"

        # a fence: an id this source never heard of is recorded as rolled back; a late start gets that back
        other = create_device(a, "version=2")
        fence = {"lease": "manager/fenced", "device_id": other}
        fenced = agent.post("/v1/migrations/fenced-1/cancel", json=fence)
        assert fenced.status_code == 200 and fenced.json()["phase"] == "ROLLED_BACK", fenced.text
        late = agent.post("/v1/migrations/outgoing", json={"migration_id": "fenced-1", "device_id": other,
                                                           "destination": {"url": b.url}, "lease": "manager/fenced"})
        assert late.status_code == 202 and late.json()["phase"] == "ROLLED_BACK"
        assert agent.get(f"/v1/devices/{other}").json()["running"]
        assert agent.post("/v1/migrations/unknown-2/cancel").status_code == 404  # the operator's cancel as before


def test_arriving_migrations_count_in_the_destinations_load() -> None:
    """In-process, on the inventory twin: unfinished journal entries raise their destination's load."""
    inventory = MemoryInventory()
    with inventory:
        for name in ("h1", "h2"):
            inventory.add_host(name, f"http://{name}")
        now = datetime.now(UTC)
        inventory.journal(MIGRATIONS).put("m1", "streaming", {"device": "h1/x", "destination": "h2"}, now)
        inventory.journal(MIGRATIONS).put("m2", "planned", {"device": "h1/y", "destination": "h2"}, now)
        inventory.journal(MIGRATIONS).put("m3", "done", {"device": "h1/z", "destination": "h2"}, now)
        orchestrator = Orchestrator(inventory)
        assert orchestrator.arriving() == {"h2": 2}
        loads = {h.name: h.load for h in orchestrator.snapshot().hosts}
        assert loads == {"h1": 0, "h2": 2}
        assert {r["id"] for r in orchestrator.list(active=True)} == {"m1", "m2"}
        assert {r["id"] for r in orchestrator.list()} == {"m1", "m2", "m3"}
        assert orchestrator.get("m3")["phase"] == "done"


def test_a_second_controller_cannot_take_a_migration_over(fleet: Fleet) -> None:
    """An in-process orchestrator (on the inventory twin) tries the id the manager is driving: LEASE_HELD."""
    a = fleet.agents["a"]
    device = create_device(a, "mem-size-mib=32,engines=2", ACCEL)  # 4 s of stream: still running when asked
    response = fleet.migrate(f"a/{device}", "b", f"taken-{device}")
    assert response.status_code == 202, response.text
    mid = response.json()["id"]
    wait_streaming(fleet, mid)

    async def second_controller() -> dict[str, Any]:
        with MemoryInventory() as inventory:
            for agent in (a, fleet.agents["b"]):
                inventory.add_host(agent.name, agent.url)
            async with Poller(inventory, token=AGENT_TOKEN) as poller, Orchestrator(
                inventory, poller, token_for=lambda _host: AGENT_TOKEN, sweep_interval=None, interval=0.05,
            ) as other:
                started = await other.start(f"a/{device}", "b", migration_id=mid)
                assert started["phase"] == "planned"
                return await other.wait(mid, timeout=20)

    refused = asyncio.run(second_controller())
    assert refused["outcome"] == "rolled_back" and refused["error"]["code"] == "LEASE_HELD", refused
    assert [h["phase"] for h in refused["history"]] == ["planned", "destination_created", "rolling_back",
                                                        "rolled_back"]
    done = wait_finished(fleet.http, mid)  # the manager's migration is unaffected
    assert done["outcome"] == "migrated"
    assert device not in agent_devices(a) and done["destination_device_id"] in agent_devices(fleet.agents["b"])


def test_unreachable_agents_keep_a_migration_resolving_with_retries() -> None:
    """In-process, on the inventory twin: after a restart nobody answers, so nothing is decided."""
    silent = [f"http://127.0.0.1:{free_port()}" for _ in range(2)]  # nothing listens there

    async def resume() -> tuple[dict[str, Any], dict[str, Any]]:
        with MemoryInventory() as inventory:
            for name, url in zip(("h1", "h2"), silent, strict=True):
                inventory.add_host(name, url)
            payload = new_payload(device="h1/d", device_id="d", model="m", source="h1", destination="h2",
                                  source_url=silent[0], destination_url=silent[1], lease="old/m1", drain=None,
                                  now=datetime.now(UTC))
            for phase in ("destination_created", "streaming", "destination_validated", "handed_off"):
                enter_phase(payload, phase, datetime.now(UTC))
            inventory.journal(MIGRATIONS).put("m1", "handed_off", payload, datetime.now(UTC))
            async with Orchestrator(inventory, interval=0.01, sweep_interval=None, agent_timeout=1.0) as orch:
                loop = asyncio.get_running_loop()
                deadline = loop.time() + 20
                while (early := orch.get("m1"))["phase"] != "resolving":
                    assert loop.time() < deadline, early
                    await asyncio.sleep(0.05)
                while (later := orch.get("m1"))["resolving"]["attempts"] <= early["resolving"]["attempts"]:
                    assert loop.time() < deadline, later
                    await asyncio.sleep(0.05)
                return early, later

    early, later = asyncio.run(resume())
    assert early["phase"] == later["phase"] == "resolving" and not later["finished"] and later["outcome"] is None
    assert later["resolving"]["code"] == "AGENT_UNREACHABLE"
    assert later["resolving"]["attempts"] > early["resolving"]["attempts"] >= 1  # it keeps asking, backing off
    assert [h["phase"] for h in later["history"]][-2:] == ["handed_off", "resolving"]
