"""The manager killed at EVERY journal phase and restarted on the same database: one running copy of every device.

Real processes throughout: agents ``a``, ``b`` and ``e`` (``b`` has 32 MiB of device memory, so a 64 MiB
accel device cannot arrive there and the agents roll that migration back) and a chain of ``devmig manager``
processes on ONE SQLite file, each started with the test hook ``DEVMIG_TEST_CRASH_AT=<phase>``: the process
exits at once (``os._exit``: no cleanup, as abrupt as SIGKILL) right after committing that phase. The next
manager starts on the same database, resumes what the previous one left — by asking both agents — and is
itself killed at the next phase, in the live path (a migration it was asked to start) or in the resume path
(a migration it found unfinished):

====================  ==============================================================================
killed at             where
====================  ==============================================================================
planned               live: ``m1`` (a→b) before the outgoing call
destination_created   live: ``m2`` (a→b) committed, killed before the call (``m1`` is rolled back)
rolling_back          resume of ``m2``: the source never heard of it, fence it
rolled_back           resume of ``m2``: the source fenced, no copy on b
streaming             live: ``m3`` (e→b); also ``m4`` (a→b, too big for b) is somewhere on its way
resolving             resume of ``m3`` with ``e`` killed: its source cannot be asked
destination_validated resume of ``m3`` with ``e`` back (same port, same journal) ... and so on:
handed_off,           each resume walks ``m3`` one phase further, in order
destination_running,
source_released, done
====================  ==============================================================================

A last manager (no hook) finds nothing unfinished; every device runs exactly once (both agents' device
lists), ``m1``, ``m2``, ``m4`` are rolled back (the device still runs on its source) and ``m3`` is done.
Python takes seconds to start a manager on a loaded machine, so each manager of the chain is started a few steps
ahead with its imports done and held (``orchestrator_env``'s gate) until the previous one died.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import httpx2
import pytest
from orchestrator_env import (
    AGENT_TOKEN,
    MANAGER_TOKEN,
    NIC,
    Proc,
    Processes,
    agent_devices,
    create_device,
    register,
    wait_finished,
)

from devmig.inventory import sqlite_url
from devmig.orchestration import PHASES
from devmig.orchestration._orchestrator import CRASH_EXIT

pytestmark = pytest.mark.slow

ACCEL = "example.org/devices/accel"
TOO_BIG = "mem-size-mib=64,engines=2"  # b has 32 MiB of device memory
CHAIN = ("planned", "destination_created", "rolling_back", "rolled_back", "streaming", "resolving",
         "destination_validated", "handed_off", "destination_running", "source_released", "done")
"""The phases the managers are killed at, one manager each, in this order: every journal phase."""


def _crashed(proc: Proc, timeout: float = 90.0) -> None:
    """Wait for the manager to die by the crash hook."""
    try:
        code = proc.process.wait(timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"{proc.name} did not exit at its phase") from exc
    stderr = proc.process.stderr.read() if proc.process.stderr else ""
    assert code == CRASH_EXIT, f"{proc.name} exited {code}: {stderr[-2000:]}"
    assert "test hook: crashing right after committing" in stderr, stderr[-2000:]


def _start(http: httpx2.Client, device: str, mid: str) -> None:
    """POST a migration to b; the manager may die while answering (crash at ``planned``)."""
    try:
        response = http.post("/v1/migrations", json={"device": device, "destination": "b", "migration_id": mid})
    except httpx2.HTTPError:
        return
    assert response.status_code == 202, response.text


def _wait_agent(agent: Proc, mid: str) -> dict[str, Any]:
    with agent.http() as client:
        deadline = time.monotonic() + 40
        while True:
            status: dict[str, Any] = client.get(f"/v1/migrations/{mid}").json()
            if status.get("finished"):
                return status
            assert time.monotonic() < deadline, status
            time.sleep(0.05)


def test_manager_killed_at_every_phase_ends_with_one_running_copy(tmp_path: Path) -> None:
    procs = Processes(tmp_path)
    db = sqlite_url(tmp_path / "manager.db")
    crashed_at: list[str] = []
    # the chain, in order; each manager is started (gated: its imports done) two steps ahead
    chain: list[str | None] = [*CHAIN, None]
    ahead: list[Proc] = []

    def manager(crash_at: str | None) -> Proc:
        while len(ahead) < 3 and chain:
            phase = chain.pop(0)
            ahead.append(procs.spawn_manager(f"manager-{phase}", db, crash_at=phase, gated=True))
        proc = ahead.pop(0)
        assert proc.name == f"manager-{crash_at}"
        if crash_at is not None:
            crashed_at.append(crash_at)
        return Processes.release(proc)

    try:
        a, b, e = Processes.ready(
            procs.spawn_agent("a", "nic=3.0.0,accel=3.0.0"),
            procs.spawn_agent("b", "nic=3.0.0,accel=3.0.0", "--max-device-memory", "32M"),
            procs.spawn_agent("e", "nic=3.0.0"),
            first := manager("planned"),
        )[:3]
        devices = {"m1": create_device(a, "version=2", NIC), "m2": create_device(a, "version=2", NIC),
                   "m3": create_device(e, "version=2", NIC), "m4": create_device(a, TOO_BIG, ACCEL)}
        sources = {"m1": a, "m2": a, "m3": e, "m4": a}

        # planned (live)
        with first.http(MANAGER_TOKEN) as http:
            register(http, a, b, e)
            _start(http, f"a/{devices['m1']}", "m1")
        _crashed(first)
        # destination_created (live); m1 is resumed meanwhile: rolled back
        (second,) = Processes.ready(manager("destination_created"))
        with second.http(MANAGER_TOKEN) as http:
            _start(http, f"a/{devices['m2']}", "m2")
        _crashed(second)
        # rolling_back, then rolled_back: both in the resume of m2
        for phase in ("rolling_back", "rolled_back"):
            _crashed(manager(phase))
        # streaming (live m3); m4 starts too and is wherever it is when the process dies
        (third,) = Processes.ready(manager("streaming"))
        with third.http(MANAGER_TOKEN) as http:
            _start(http, f"a/{devices['m4']}", "m4")
            _start(http, f"e/{devices['m3']}", "m3")
        _crashed(third)
        # the agents carry m3 on their own; then its source agent goes away: resolving
        assert _wait_agent(e, "m3")["outcome"] == "migrated"
        e_port = int(e.url.rsplit(":", 1)[1])
        e.kill()
        _crashed(manager("resolving"))
        # e is back (same port, same journal): each next manager walks m3 one phase further
        (e,) = Processes.ready(procs.spawn_agent("e", "nic=3.0.0", port=e_port))
        sources["m3"] = e
        for phase in ("destination_validated", "handed_off", "destination_running", "source_released", "done"):
            _crashed(manager(phase))

        (last,) = Processes.ready(manager(None))
        with last.http(MANAGER_TOKEN) as http:
            records = {mid: wait_finished(http, mid) for mid in devices}
            assert http.get("/v1/migrations", params={"active": "true"}).json()["migrations"] == []

        assert crashed_at == list(CHAIN) and set(CHAIN) == set(PHASES)  # killed at every journal phase
        outcomes = {mid: r["phase"] for mid, r in records.items()}
        assert outcomes == {"m1": "rolled_back", "m2": "rolled_back", "m3": "done", "m4": "rolled_back"}, records
        history = {mid: [h["phase"] for h in r["history"]] for mid, r in records.items()}
        assert history["m1"] == ["planned", "rolling_back", "rolled_back"]
        assert history["m2"] == ["planned", "destination_created", "rolling_back", "rolled_back"]
        assert history["m3"] == ["planned", "destination_created", "streaming", "resolving", "destination_validated",
                                 "handed_off", "destination_running", "source_released", "done"]
        assert records["m3"]["digest"] and records["m3"]["downtime_ms"] is not None

        # exactly one running copy of every device, where the outcome says
        seen = {"a": agent_devices(a), "b": agent_devices(b), "e": agent_devices(e)}
        for mid, record in records.items():
            source = sources[mid].name
            if record["outcome"] == "migrated":
                assert devices[mid] not in seen[source]
                assert seen["b"][record["destination_device_id"]]["running"]
            else:
                assert seen[source][devices[mid]]["running"]
        assert set(seen["b"]) == {records["m3"]["destination_device_id"]}
        assert sum(len(listed) for listed in seen.values()) == len(devices)
        assert all(d["running"] for listed in seen.values() for d in listed.values())
        # the unstarted ones were fenced on the source: a late outgoing call gets the rolled-back migration
        with a.http(AGENT_TOKEN) as agent:
            for mid in ("m1", "m2"):
                status = agent.get(f"/v1/migrations/{mid}").json()
                assert status["phase"] == "ROLLED_BACK" and status["error"]["code"] == "FENCED", status
                late = agent.post("/v1/migrations/outgoing",
                                  json={"migration_id": mid, "device_id": devices[mid], "destination": {"url": b.url}})
                assert late.status_code == 409 and late.json()["code"] == "LEASE_HELD"
    finally:
        procs.kill_all()
