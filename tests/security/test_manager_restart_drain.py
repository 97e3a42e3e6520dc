"""A manager SIGKILLed mid-drain, with a token of its own for each agent, finishes the drain after a restart.

Issue 18, finding 3 as a fault row: the agents' tokens were given with ``hosts add`` only (the manager
has no ``--agent-token``); before the tokens were kept (sealed) in the inventory, the restarted manager
failed its next move with ``AUTH_REQUIRED`` and the drain stayed ``running``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from devmig_procs import DevmigFleet, Proc, agent_args, wait_finished_record

pytestmark = pytest.mark.slow

ACCEL = "example.org/devices/accel"
NIC = "example.org/devices/nic"
MANAGER_TOKEN = "drain-manager-token"
TOKENS = {"a": "token-of-a-" + "a" * 20, "b": "token-of-b-" + "b" * 20}


def start_manager(fleet: DevmigFleet, root: Path) -> Proc:
    (root / "manager.token").write_text(MANAGER_TOKEN)
    args = ["manager", "--db", str(root / "manager.db"), "--listen", "127.0.0.1:0", "--json",
            "--poll-interval", "3600", "--token-file", str(root / "manager.token")]
    fleet.manager = fleet.spawn("manager", args, {"DEVMIG_TOKEN": "", "DEVMIG_AGENT_TOKEN": ""})
    return fleet.manager.wait_announced()


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[DevmigFleet]:
    fleet = DevmigFleet(tmp_path, manager_token=MANAGER_TOKEN, agent_token="")
    try:
        for name, token in TOKENS.items():
            (tmp_path / f"{name}.token").write_text(token)
            args = agent_args(name, tmp_path / name, "--token-file", str(tmp_path / f"{name}.token"),
                              "--max-stream-rate", "32M", releases="nic=2.0.0,accel=2.0.0")
            fleet.agents[name] = fleet.spawn(name, args, {"DEVMIG_TOKEN": ""})
        for proc in fleet.agents.values():
            proc.wait_announced()
        start_manager(fleet, tmp_path)
        with fleet.m() as m:
            for name, token in TOKENS.items():
                r = m.post("/v1/hosts", json={"url": fleet.agents[name].url, "name": name, "token": token})
                assert r.status_code == 201, r.text
        yield fleet
    finally:
        fleet.close()


def devices(fleet: DevmigFleet, host: str) -> dict[str, dict[str, Any]]:
    with fleet.agents[host].http() as c:
        return {d["id"]: d for d in c.get("/v1/devices").json()["devices"]}


def test_a_drain_with_per_host_tokens_survives_a_manager_sigkill(fleet: DevmigFleet, tmp_path: Path) -> None:
    ids = []
    for model, config in ((ACCEL, "version=2,mem-size-mib=64"), (ACCEL, "version=2,mem-size-mib=64"),
                          (NIC, "version=2")):
        with fleet.agents["a"].http(TOKENS["a"]) as c:
            r = c.post("/v1/devices", json={"model": model, "config": config})
            assert r.status_code == 201, r.text
            ids.append(r.json()["id"])
    with fleet.m() as m:
        assert m.post("/v1/poll").status_code == 200
        r = m.post("/v1/drains", json={"host": "a", "parallel": 1})
        assert r.status_code == 202, r.text
        drain_id = r.json()["id"]
        deadline = time.monotonic() + 60
        while not m.get(f"/v1/drains/{drain_id}").json()["migrations"]:  # the first move is under way
            assert time.monotonic() < deadline, "the drain never started a migration"
            time.sleep(0.05)
        assert not m.get(f"/v1/drains/{drain_id}").json()["finished"]
    assert fleet.manager is not None
    fleet.manager.kill()  # SIGKILL mid-drain
    start_manager(fleet, tmp_path)  # the same database, no agent token on its command line or environment
    with fleet.m() as m:
        drain = wait_finished_record(m, f"/v1/drains/{drain_id}", what="the drain", timeout=180)
        records = [m.get(f"/v1/migrations/{mid}").json() for mid in drain["migrations"]]
    assert drain["phase"] == "done", drain
    assert len(records) == 3 and all(r["outcome"] == "migrated" for r in records), records
    assert devices(fleet, "a") == {}
    on_b = devices(fleet, "b")
    assert len(on_b) == 3 and all(d["running"] for d in on_b.values())
    assert sorted(r["device"] for r in records) == sorted(f"a/{i}" for i in ids)
