"""Faults with REAL agents: bad secrets on a raw socket, a peer killed mid-migration, the CLI."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from typing import Any

import pytest
from agent_processes import TOKEN, AgentProcess, Agents, wait_finished

from devmig.migration import SourceHandoff

ACCEL = {"model": "example.org/devices/accel", "config": "version=1,mem-size-mib=64"}


def _incoming(dest: AgentProcess, mid: str) -> dict[str, Any]:
    with dest.client() as c:
        r = c.post("/v1/migrations/incoming", json={
            "migration_id": mid, "model": "example.org/devices/nic", "config": {},
            "source": {"url": "http://127.0.0.1:9", "host": "raw"}})
        assert r.status_code == 200, r.text
        return dict(r.json())


def _hello(stream: str, mid: str, secret: bytes) -> bytes:
    host, _, port = stream.rpartition(":")
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(SourceHandoff(mid, secret).hello())
        s.shutdown(socket.SHUT_WR)
        chunks = []
        while True:
            data = s.recv(4096)
            if not data:
                break
            chunks.append(data)
    return b"".join(chunks)


@pytest.mark.slow
def test_wrong_and_reused_secrets_on_a_raw_socket(agents: Agents) -> None:
    dest = agents.start("raw")
    mid = "mig-raw-1"
    offer = _incoming(dest, mid)
    again = _incoming(dest, mid)  # unused secret: the same device, a fresh secret
    assert again["device_id"] == offer["device_id"] and again["secret"] != offer["secret"]
    reply = _hello(offer["stream"], mid, bytes.fromhex(offer["secret"]))  # the revoked one
    assert b"AUTH_FAILED" in reply
    reply = _hello(offer["stream"], mid, b"x" * 32)
    assert b"AUTH_FAILED" in reply
    with dest.client() as c:
        st = c.get(f"/v1/migrations/{mid}").json()
        assert st["phase"] == "WAIT_HELLO"  # strangers did not disturb it
        assert c.get(f"/v1/devices/{offer['device_id']}").json()["state"] == "RESUMING"
    # the right secret is accepted; the connection then ends without a stream: the copy is destroyed
    _hello(again["stream"], mid, bytes.fromhex(again["secret"]))
    st = wait_finished(dest, mid)
    assert st["phase"] == "DESTROYED" and st["error"]["phase"] == "RESUMING"
    reply = _hello(again["stream"], mid, bytes.fromhex(again["secret"]))
    assert b"SECRET_REUSED" in reply
    with dest.client() as c:
        assert c.get(f"/v1/devices/{offer['device_id']}").status_code == 404
        r = c.post("/v1/migrations/incoming", json={
            "migration_id": mid, "model": "example.org/devices/nic", "config": {},
            "source": {"url": "", "host": "raw"}})
        assert r.status_code == 409 and r.json()["code"] == "MIGRATION_CONFLICT"


@pytest.mark.slow
def test_destination_killed_source_resumes(agents: Agents) -> None:
    src, dest = agents.start_many(("src", ["--stall-timeout", "2"]), ("dst", []))
    with src.client() as c:
        dev = c.post("/v1/devices", json=ACCEL).json()
        r = c.post("/v1/migrations/outgoing",
                   json={"device_id": dev["id"], "destination": {"url": dest.url, "token": dest.token}})
        assert r.status_code == 202
        mid = r.json()["migration_id"]
    dest.kill()
    st = wait_finished(src, mid, timeout=30)
    if st["outcome"] == "migrated":
        pytest.skip("the migration finished before the destination was killed")
    assert st["outcome"] == "rolled_back" and st["phase"] == "ROLLED_BACK"
    assert st["error"]["code"] in {"DESTINATION_UNREACHABLE", "PEER_LOST", "CONNECT_FAILED", "PEER_STALLED",
                                   "CONNECTION_LOST", "TIMEOUT"}
    assert st["error"]["phase"]
    with src.client() as c:
        after = c.get(f"/v1/devices/{dev['id']}").json()
        assert after["running"] and after["busy"] is None
        first = after["counters"]["steps"]
        time.sleep(0.2)
        assert c.get(f"/v1/devices/{dev['id']}").json()["counters"]["steps"] > first


@pytest.mark.slow
def test_source_killed_destination_destroys_its_copy(agents: Agents) -> None:
    # A paced source with seeded (not zero) memory, so the kill lands while the stream flows (before READY):
    # zero chunks go as tiny ZERO records, and 64 MiB of them took no time at any pace.
    src, dest = agents.start_many(("src", ["--max-stream-rate", "4000000", "--prefill-seed", "5"]),
                                  ("dst", ["--stall-timeout", "2"]))
    with src.client() as c:
        dev = c.post("/v1/devices", json=ACCEL).json()
        r = c.post("/v1/migrations/outgoing",
                   json={"device_id": dev["id"], "destination": {"url": dest.url, "token": dest.token}})
        mid = r.json()["migration_id"]
    deadline = time.monotonic() + 10
    with dest.client() as c:
        while time.monotonic() < deadline:  # kill the source once the stream flows
            r = c.get(f"/v1/migrations/{mid}")
            if r.status_code == 200 and r.json()["phase"] != "WAIT_HELLO":
                break
            time.sleep(0.005)
    src.kill()
    try:
        st = wait_finished(dest, mid, timeout=20)
    except AssertionError:
        # The destination had said READY: it must not guess. It waits for the
        # source agent, which answers from its journal once restarted.
        with dest.client() as c:
            assert c.get(f"/v1/migrations/{mid}").json()["phase"] == "WAIT_DECISION"
        agents.start_many(("src", []))
        st = wait_finished(dest, mid, timeout=30)
    if st["phase"] == "RUNNING":
        pytest.skip("the hand-off finished before the source was killed")
    assert st["phase"] == "DESTROYED"
    assert st["error"]["code"] in {"SOURCE_LOST", "PEER_LOST", "CONNECTION_LOST", "TIMEOUT", "PEER_STALLED",
                                   "SECRET_EXPIRED"}
    with dest.client() as c:
        assert c.get(f"/v1/devices/{st['device_id']}").status_code == 404


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DEVMIG_TOKEN": TOKEN}
    return subprocess.run([sys.executable, "-m", "devmig", *args], capture_output=True, text=True, env=env,
                          timeout=120)


def test_cli_migrate(agents: Agents) -> None:
    old, new = agents.start_many(("old", ["--release", "nic=1.0.0"]), ("new", []))
    with new.client() as c:
        incompatible = c.post("/v1/devices", json={"model": "example.org/devices/nic", "config": "version=3"}).json()
        dev = c.post("/v1/devices", json={"model": "example.org/devices/nic", "config": "version=1"}).json()
    refused = _cli("migrate", "--from", new.url, "--device", incompatible["id"], "--to", old.url, "--json")
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert json.loads(refused.stdout)["verdict"]["reasons"]
    with old.client() as c:
        assert c.get("/v1/devices").json()["devices"] == []
    done = _cli("migrate", "--from", new.url, "--device", dev["id"], "--to", old.url, "--json",
                "--migration-id", "mig-cli-1")
    assert done.returncode == 0, done.stdout + done.stderr
    status = json.loads(done.stdout)
    assert status["outcome"] == "migrated" and status["migration_id"] == "mig-cli-1"
    shown = _cli("migration", "show", "mig-cli-1", "--agent", old.url, "--json")
    assert shown.returncode == 0 and json.loads(shown.stdout)["phase"] == "RUNNING"
    discarded = json.loads(shown.stdout)["discarded_records"]  # the destination counts torn records
    human = _cli("migration", "show", "mig-cli-1", "--agent", old.url)
    assert human.returncode == 0 and f"discarded {discarded} torn pre-copy record(s)" in human.stdout, human.stdout
    unreachable = _cli("migrate", "--from", "http://127.0.0.1:9", "--device", "x", "--to", old.url)
    assert unreachable.returncode == 2


@pytest.mark.slow
def test_restarted_agent_answers_from_its_journal(agents: Agents) -> None:
    src, dest = agents.start_many(("src", []), ("dst", []))
    with src.client() as c:
        dev = c.post("/v1/devices", json={"model": "example.org/devices/nic", "config": "version=1"}).json()
        mid = c.post("/v1/migrations/outgoing", json={"device_id": dev["id"],
                     "destination": {"url": dest.url, "token": dest.token}}).json()["migration_id"]
    done = wait_finished(src, mid)
    assert done["outcome"] == "migrated", json.dumps(done["error"])
    wait_finished(dest, mid)
    dest.kill(signal.SIGKILL)
    again = agents.start_many(("dst", []))[0]
    with again.client() as c:
        st = c.get(f"/v1/migrations/{mid}").json()
        assert st["phase"] == "RUNNING" and st["from_journal"] is True
