"""Real processes for the orchestrator tests: agents (with extra options) and ``devmig manager`` processes.

Managers are started as ``python -m devmig manager --db URL --listen 127.0.0.1:0 --json`` (several at
once: they start in parallel), optionally with the test hook ``DEVMIG_TEST_CRASH_AT=<phase>`` that makes
the process exit right after committing that journal phase. Every process started is killed at teardown.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx2
from devmig_procs import Proc, agent_args, devmig_command, manager_args, wait_finished_record

MANAGER_TOKEN = "orchestrator-test-token"
AGENT_TOKEN = "fleet-test-token"
NIC = "example.org/devices/nic"

_GATE = """
import runpy, sys
import uvicorn, devmig.cli, devmig.cli._fleet, devmig.manager._app
import devmig.inventory._sql, devmig.inventory._schema_upgrade
sys.stdin.readline()
sys.argv = ["devmig", *sys.argv[1:]]
runpy.run_module("devmig", run_name="__main__", alter_sys=True)
"""


class Processes:
    """Starts agents and managers (in parallel), kills every one at the end."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.started: list[Proc] = []

    def _spawn(self, name: str, args: list[str], env: dict[str, str], *, gated: bool = False) -> Proc:
        command = devmig_command(*args)
        if gated:
            # the same `python -m devmig ...`, its imports done first, held until released (see release())
            command = [sys.executable, "-c", _GATE, *args]
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   env={**os.environ, **env}, stdin=subprocess.PIPE if gated else None)
        proc = Proc(name, process, http_timeout=30.0)
        self.started.append(proc)
        return proc

    @staticmethod
    def release(proc: Proc) -> Proc:
        """Let a gated process run ``python -m devmig ...`` now."""
        assert proc.process.stdin is not None
        proc.process.stdin.write("go\n")
        proc.process.stdin.flush()
        return proc

    def spawn_agent(self, name: str, releases: str = "nic=3.0.0", *extra: str, port: int = 0) -> Proc:
        """Start an agent (state dir under the root, so a restart keeps its journal)."""
        state = self.root / f"agent-{name}"
        state.mkdir(parents=True, exist_ok=True)
        return self._spawn(name, agent_args(name, state, *extra, releases=releases, port=port),
                           {"DEVMIG_TOKEN": AGENT_TOKEN})

    def spawn_manager(self, name: str, db_url: str, *, crash_at: str | None = None, gated: bool = False) -> Proc:
        """Start a manager on ``db_url`` (no background polling: it polls when it needs to).

        ``gated``: start the interpreter and import devmig now, but run the manager only once
        :meth:`release` d (Python start-up here takes seconds; a chain of managers overlaps it).
        """
        env = {"DEVMIG_TEST_CRASH_AT": crash_at or ""}
        return self._spawn(name, manager_args(db_url, MANAGER_TOKEN, AGENT_TOKEN), env, gated=gated)

    @staticmethod
    def ready(*procs: Proc) -> list[Proc]:
        """Wait for each process's announce line."""
        return [p.wait_announced() for p in procs]

    def kill_all(self) -> None:
        """Kill everything started."""
        for proc in self.started:
            proc.kill()


def create_device(agent: Proc, config: str = "version=2", model: str = NIC) -> str:
    """Create a device on an agent; return its id."""
    with agent.http(AGENT_TOKEN) as client:
        response = client.post("/v1/devices", json={"model": model, "config": config})
        assert response.status_code == 201, response.text
        device_id: str = response.json()["id"]
        return device_id


def agent_devices(agent: Proc) -> dict[str, dict[str, Any]]:
    """The devices an agent lists, by id."""
    with agent.http() as client:
        response = client.get("/v1/devices")
        assert response.status_code == 200, response.text
        return {d["id"]: d for d in response.json()["devices"]}


def register(manager: httpx2.Client, *agents: Proc) -> None:
    """Register agents as hosts of a manager (named as they report)."""
    for agent in agents:
        response = manager.post("/v1/hosts", json={"url": agent.url, "name": agent.name})
        assert response.status_code == 201, response.text


def wait_finished(manager: httpx2.Client, migration_id: str, timeout: float = 60.0) -> dict[str, Any]:
    """Poll the manager until a migration finished; return its record."""
    return wait_finished_record(manager, f"/v1/migrations/{migration_id}", what=f"migration {migration_id}",
                                timeout=timeout)


def database(kind: str, root: Path) -> contextlib.AbstractContextManager[str]:
    """A database URL for a module's manager: a SQLite file, or a fresh PostgreSQL database (dropped after).

    PostgreSQL comes from ``DEVMIG_TEST_PG_URL`` (skipped without it, except under ``CI=true``).
    """
    from fleet_env import manager_database

    return manager_database(kind, root, "devmig_orch_")
