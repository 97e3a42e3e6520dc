"""A fleet of real processes for the drain tests: agents and one ``devmig manager`` on a database.

Every process logs its stderr to a file under the fleet's root (a pipe nobody reads could fill up
over a module's worth of migrations); each announces itself with one JSON line on stdout. The
fleet is meant to be module-scoped: agents cost about a second each to start (they start in
parallel). :meth:`Fleet.close` kills every process it started.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx2
from devmig_procs import DevmigFleet, devmig_command, wait_finished_record

MANAGER_TOKEN = "drain-test-manager-token"
AGENT_TOKEN = "drain-test-agent-token"
NIC = "example.org/devices/nic"
BLK = "example.org/devices/blk"
ACCEL = "example.org/devices/accel"


class Fleet(DevmigFleet):
    """Agents and a manager; :meth:`close` kills them all."""

    def __init__(self, root: Path) -> None:
        super().__init__(root, manager_token=MANAGER_TOKEN, agent_token=AGENT_TOKEN)

    def start(self, db_url: str, hosts: dict[str, str], *extra_agent_args: str) -> None:
        """Start the agents (``name -> releases``) and the manager at once; register every agent."""
        self.launch(db_url, hosts, {name: extra_agent_args for name in hosts})

    def restart_manager(self, db_url: str) -> None:
        """SIGKILL the manager and start a new one on the same database (the agents stay registered)."""
        assert self.manager is not None
        self.manager.kill()
        self.procs.remove(self.manager)
        self.spawn_manager("manager-2", db_url).wait_announced(self.announce_timeout)

    def devices(self, host: str) -> dict[str, dict[str, Any]]:
        """A host's devices as its agent lists them, by id."""
        with self.a(host) as client:
            response = client.get("/v1/devices")
            assert response.status_code == 200, response.text
            return {d["id"]: d for d in response.json()["devices"]}

    def device(self, host: str, device_id: str) -> dict[str, Any]:
        """One device as its agent shows it."""
        with self.a(host) as client:
            response = client.get(f"/v1/devices/{device_id}")
            assert response.status_code == 200, response.text
            device: dict[str, Any] = response.json()
            return device

    def cli(self, *args: str, timeout: float = 300.0) -> subprocess.CompletedProcess[str]:
        """Run ``devmig ARGS`` against the manager (DEVMIG_MANAGER, DEVMIG_TOKEN set)."""
        return subprocess.run(devmig_command(*args), capture_output=True, text=True, env=self.cli_env(),
                              timeout=timeout, check=False)


def wait_migration(m: httpx2.Client, mid: str, timeout: float = 60.0) -> dict[str, Any]:
    """Poll the manager until a migration finished; return its record."""
    return wait_finished_record(m, f"/v1/migrations/{mid}", what=f"migration {mid}", timeout=timeout)


def wait_drain(m: httpx2.Client, drain_id: str, timeout: float = 120.0) -> dict[str, Any]:
    """Poll the manager until a drain finished; return its record."""
    return wait_finished_record(m, f"/v1/drains/{drain_id}", what=f"drain {drain_id}", timeout=timeout, interval=0.1)


def counters_advance(fleet: Fleet, host: str, device_id: str, gap: float = 0.3) -> tuple[int, int]:
    """Read a device's work-step counter twice, ``gap`` seconds apart (it must be running and advancing)."""
    first = fleet.device(host, device_id)
    time.sleep(gap)
    second = fleet.device(host, device_id)
    assert first["running"] and second["running"], (first["state"], second["state"])
    return int(first["counters"]["steps"]), int(second["counters"]["steps"])


def database(kind: str, root: Path) -> contextlib.AbstractContextManager[str]:
    """A database URL for a module's manager: a SQLite file, or a fresh PostgreSQL database (dropped after).

    PostgreSQL comes from ``DEVMIG_TEST_PG_URL`` (skipped without it, except under ``CI=true``).
    """
    from fleet_env import manager_database

    return manager_database(kind, root, "devmig_drain_")
