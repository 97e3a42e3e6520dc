"""The manager service and its CLI against REAL processes: four agents (mixed releases) and a manager.

One module-scoped fleet (agents start slowly here, so they start in parallel,
and once): h1 runs nic 1.0.0 (with blk 1.0.0, accel 1.0.0), h2 nic 2.0.0,
h3 and h4 nic 3.0.0 (newest blk and accel). Pool ``p`` is h1, h2, h3. The
manager polls only when asked (``POST /v1/poll``), so every answer is about
a fleet the test knows.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest
from devmig_procs import announced, devmig_command, manager_args
from fleet_env import Agent, Agents

from devmig.inventory import sqlite_url
from devmig.model import load_host_report

pytestmark = pytest.mark.slow

NIC = "example.org/devices/nic"
MANAGER_TOKEN = "manager-test-token"


@dataclass
class Fleet:
    """The running fleet: agents by name, the manager's URL and an authorised client."""

    agents: dict[str, Agent]
    url: str
    http: httpx2.Client

    def poll(self) -> None:
        """Force one poll round; every host must answer."""
        response = self.http.post("/v1/poll")
        assert response.status_code == 200, response.text
        assert all(p["status"] != "failed" for p in response.json()), response.text

    def create(self, host: str, config: str | dict[str, Any], model: str = NIC) -> str:
        """Create a device on an agent; return its id."""
        agent = self.agents[host]
        with httpx2.Client(base_url=agent.url, headers={"Authorization": f"Bearer {agent.token}"},
                           timeout=30) as client:
            response = client.post("/v1/devices", json={"model": model, "config": config})
            assert response.status_code == 201, response.text
            device_id: str = response.json()["id"]
            return device_id

    def cli(self, *commands: tuple[str, ...], token: bool = False) -> list[tuple[int, Any]]:
        """Run ``devmig COMMAND --json`` for each command, concurrently (start-up is slow here).

        Returns each exit status and the JSON printed, in order.
        """
        env = {**os.environ, "DEVMIG_MANAGER": self.url}
        env.pop("DEVMIG_TOKEN", None)
        if token:
            env["DEVMIG_TOKEN"] = MANAGER_TOKEN
        running = [subprocess.Popen([sys.executable, "-m", "devmig", *args, "--json"], stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True, env=env) for args in commands]
        results = []
        for process in running:
            stdout, stderr = process.communicate(timeout=120)
            assert "Traceback" not in stderr, stderr
            results.append((process.returncode, json.loads(stdout) if stdout.strip() else None))
        return results


def _start_manager(db: Path) -> subprocess.Popen[str]:
    args = devmig_command(*manager_args(sqlite_url(db), MANAGER_TOKEN, "fleet-test-token"))
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    root = tmp_path_factory.mktemp("manager")
    started = Agents(root)
    manager = _start_manager(root / "fleet.db")  # starts while the agents do
    try:
        agents = started.start(
            ("h1", "nic=1.0.0,blk=1.0.0,accel=1.0.0"), ("h2", "nic=2.0.0"), ("h3", "nic=3.0.0"), ("h4", "nic=3.0.0"),
        )
        announce = announced("manager", manager)
        assert announce["event"] == "listening" and "token" not in announce  # the token was given
        http = httpx2.Client(base_url=announce["url"], headers={"Authorization": f"Bearer {MANAGER_TOKEN}"},
                             timeout=60)
        for agent in agents:
            body = {"url": agent.url} if agent.name == "h1" else {"url": agent.url, "name": agent.name}
            response = http.post("/v1/hosts", json=body)  # h1's name is learned from its agent
            assert response.status_code == 201, response.text
        assert http.post("/v1/pools", json={"name": "p"}).status_code == 201
        for host in ("h1", "h2", "h3"):
            assert http.put(f"/v1/pools/p/hosts/{host}").status_code == 200
        yield Fleet({a.name: a for a in agents}, announce["url"], http)
        http.close()
    finally:
        manager.terminate()
        try:
            manager.wait(timeout=15)
        except subprocess.TimeoutExpired:
            manager.kill()
            manager.wait()
        for stream in (manager.stdout, manager.stderr):
            if stream is not None:
                stream.close()
        started.kill_all()


def test_hosts_are_listed_by_profile(fleet: Fleet) -> None:
    hosts = {h["name"]: h for h in fleet.http.get("/v1/hosts").json()["hosts"]}
    assert sorted(hosts) == ["h1", "h2", "h3", "h4"]
    assert hosts["h3"]["fingerprint"] == hosts["h4"]["fingerprint"] != hosts["h2"]["fingerprint"]
    assert hosts["h1"]["releases"] == {"acme-nic": "1.0.0", "acme-blk": "1.0.0", "acme-accel": "1.0.0"}
    assert hosts["h2"]["releases"]["acme-nic"] == "2.0.0"
    assert all(h["reachable"] and not h["cordoned"] and h["last_seen"] for h in hosts.values())
    assert hosts["h1"]["pools"] == ["p"] and hosts["h4"]["pools"] == []


def test_mutations_need_the_token_and_errors_are_problem_details(fleet: Fleet) -> None:
    anonymous = httpx2.post(f"{fleet.url}/v1/pools", json={"name": "x"}, timeout=30)
    assert anonymous.status_code == 401 and anonymous.json()["code"] == "AUTH_REQUIRED"
    clash = fleet.http.post("/v1/hosts", json={"url": fleet.agents["h2"].url, "name": "other"})
    assert clash.status_code == 409 and clash.json()["code"] == "HOST_CONFLICT"
    assert clash.headers["content-type"].startswith("application/problem+json")
    unknown = fleet.http.post("/v1/hosts/nope/cordon")
    assert unknown.status_code == 404 and unknown.json()["code"] == "HOST_UNKNOWN"
    assert "/v1/place" in fleet.http.get("/openapi.json").json()["paths"]


def test_placement_ranks_and_explains(fleet: Fleet) -> None:
    device = fleet.create("h3", "version=3")
    fleet.poll()
    assert fleet.http.post("/v1/hosts/h4/cordon").json()["cordoned"] is True
    try:
        answer = fleet.http.post("/v1/place", json={"vm": [{"device": f"h3/{device}"}]}).json()
    finally:
        fleet.http.post("/v1/hosts/h4/uncordon")
    assert [a["host"] for a in answer["accepted"]] == ["h2"]
    rejected = {h: {p["code"] for p in ps} for h, ps in answer["rejected"].items()}
    assert rejected["h3"] == {"SAME_HOST"}
    assert rejected["h4"] == {"HOST_CORDONED"}
    assert {"PARAM_UNKNOWN", "VALUE_NOT_ALLOWED"} <= rejected["h1"]
    h1_profile = next(p for p in answer["profiles"] if "h1" in p["hosts"])
    assert not h1_profile["accepted"] and h1_profile["reasons"][0]["loc"][:2] == ["devices", 0]
    assert next(p for p in answer["profiles"] if "h4" in p["hosts"])["hosts"] == ["h3", "h4"]

    # a device to create, version 4: only the nic 3.0.0 hosts, the least loaded first
    new = fleet.http.post("/v1/place", json={"vm": [{"model": NIC, "config": "version=4"}]}).json()
    assert [a["host"] for a in new["accepted"]] == ["h4", "h3"]
    assert {p["code"] for p in new["rejected"]["h2"]} >= {"PARAM_UNKNOWN"}

    bad = fleet.http.post("/v1/place", json={"vm": [{"device": "h3/nope"}]})
    assert bad.status_code == 404 and bad.json()["code"] == "DEVICE_NOT_FOUND"
    refused = fleet.http.post("/v1/place", json={"vm": [{"model": NIC, "config": "rx-queues=99"}]})
    assert refused.status_code == 422


def test_baseline_is_accepted_by_every_member(fleet: Fleet) -> None:
    answer = fleet.http.get("/v1/pools/p/baseline", params={"model": NIC}).json()
    assert answer["hosts"] == ["h1", "h2", "h3"]
    assert answer["version"] == "2" and answer["refused"]["3"] == ["h1"]
    assert answer["reference"] == {"name": "acme-nic", "release": "3.0.0"}
    richest = answer["richest"]
    assert richest["rx-queues"] == 8  # nic 1.0.0 allows no more
    for host in ("h1", "h2", "h3"):
        # the same canonical configuration on each host: its own definition's off values for the rest
        with httpx2.Client(base_url=fleet.agents[host].url, timeout=30) as agent:
            report = load_host_report(agent.get("/v1/report").json())
        ((_, model),) = report.candidates(NIC)
        device_id = fleet.create(host, {**model.off_values, **richest})
        with httpx2.Client(base_url=fleet.agents[host].url, timeout=30) as agent:
            assert agent.get(f"/v1/devices/{device_id}").json()["config"] == richest
    unknown = fleet.http.get("/v1/pools/nope/baseline", params={"model": NIC})
    assert unknown.status_code == 404 and unknown.json()["code"] == "POOL_UNKNOWN"


def test_rollback_set_and_upgrade_plan(fleet: Fleet) -> None:
    device = fleet.create("h2", "version=3")
    fleet.poll()
    answer = fleet.http.get(f"/v1/devices/h2/{device}/rollback-set").json()
    assert answer["model"] == NIC and len(answer["targets"]) == 1
    assert set(answer["hosts"]) == {"h3", "h4"}  # nic 3.0.0 takes it and gives it back to nic 2.0.0
    assert {p["code"] for p in answer["rejected"]["h2"]} == {"SAME_HOST"}
    assert "h1" in answer["rejected"]
    windowed = fleet.http.get(f"/v1/devices/h2/{device}/rollback-set", params={"window": 1}).json()
    assert len(windowed["targets"]) > 1  # nic 1.0.0 joins the targets: a version 3 device cannot return there
    assert windowed["hosts"] == [] and set(windowed["one_way"]) == {"h3", "h4"}

    plan = fleet.http.post("/v1/pools/p/plan-upgrade", json={"to": {"nic": "3.0.0"}}).json()
    assert plan["unchanged"] == ["h3"]
    assert {h: p["releases"]["acme-nic"] for h, p in plan["planned"].items()} == {
        h: "3.0.0" for h in ("h1", "h2", "h3")
    }
    assert plan["order"] is not None and sorted(plan["order"]) == ["h1", "h2"]
    assert plan["stranded"] == []
    bad = fleet.http.post("/v1/pools/p/plan-upgrade", json={"to": {"nic": "9.9.9"}})
    assert bad.status_code == 422 and bad.json()["code"] == "RELEASE_UNKNOWN"


def test_cli_exit_codes_and_json(fleet: Fleet) -> None:
    (listed, placed, nowhere, base, plan, not_a_device, unreachable, no_host) = fleet.cli(
        ("hosts", "list"),
        ("place", f"{NIC}:version=4", f"{NIC}:version=1"),
        ("place", "example.org/devices/nope:"),
        ("baseline", "p", NIC),
        ("plan-upgrade", "p", "--to", "nic=3.0.0"),
        ("place", "not-a-device"),
        ("hosts", "list", "--manager", "http://127.0.0.1:9"),
        ("rollback-set", "nohost/x"),
    )
    assert listed[0] == 0 and sorted(h["name"] for h in listed[1]["hosts"]) == ["h1", "h2", "h3", "h4"]
    assert placed[0] == 0 and {a["host"] for a in placed[1]["accepted"]} == {"h3", "h4"}
    assert nowhere[0] == 1 and nowhere[1]["accepted"] == []
    assert {p["code"] for p in nowhere[1]["rejected"]["h1"]} == {"MODEL_UNKNOWN"}
    assert base[0] == 0 and base[1]["version"] == "2"
    assert plan[0] == 0 and plan[1]["stranded"] == [] and plan[1]["order"] is not None
    for code, err, expected in ((not_a_device, "USAGE", 2), (unreachable, "MANAGER_UNREACHABLE", 2),
                                (no_host, "HOST_UNKNOWN", 2)):
        assert (code[0], code[1]["errors"][0]["code"]) == (expected, err)

    conflict, added = fleet.cli(("pools", "create", "p"), ("pools", "add", "p", "h4"), token=True)
    assert conflict[0] == 1 and conflict[1]["errors"][0]["code"] == "POOL_CONFLICT"
    assert added[0] == 0 and added[1]["hosts"] == ["h1", "h2", "h3", "h4"]
    ((anonymous, err),) = fleet.cli(("pools", "remove", "p", "h4"))
    assert anonymous == 2 and err["errors"][0]["code"] == "AUTH_REQUIRED"
    fleet.http.delete("/v1/pools/p/hosts/h4")
