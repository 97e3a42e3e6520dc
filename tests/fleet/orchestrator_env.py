"""Real processes for the orchestrator tests: agents (with extra options) and ``devmig manager`` processes.

Managers are started as ``python -m devmig manager --db URL --listen 127.0.0.1:0 --json`` (several at
once: they start in parallel), optionally with the test hook ``DEVMIG_TEST_CRASH_AT=<phase>`` that makes
the process exit right after committing that journal phase. Every process started is killed at teardown.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2

from devmig.fleet import sqlite_url

MANAGER_TOKEN = "orchestrator-test-token"
AGENT_TOKEN = "fleet-test-token"
NIC = "example.org/devices/nic"


_GATE = """
import runpy, sys
import uvicorn, devmig.cli, devmig.cli._fleet, devmig.fleet._manager, devmig.fleet._sql, devmig.fleet._migrate
sys.stdin.readline()
sys.argv = ["devmig", *sys.argv[1:]]
runpy.run_module("devmig", run_name="__main__", alter_sys=True)
"""


@dataclass
class Proc:
    """One running process (an agent or a manager) and what it announced."""

    name: str
    process: subprocess.Popen[str]
    url: str = ""
    announce: dict[str, Any] = field(default_factory=dict)

    def kill(self) -> None:
        """SIGKILL it and wait."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()

    def http(self, token: str | None = None) -> httpx2.Client:
        """A client of its HTTP API."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx2.Client(base_url=self.url, headers=headers, timeout=30)


def _announced(proc: Proc, timeout: float = 60.0) -> Proc:
    process = proc.process
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if line.strip().startswith("{"):
            proc.announce = json.loads(line)
            proc.url = proc.announce["url"]
            return proc
        if process.poll() is not None:
            raise RuntimeError(f"{proc.name} exited: {process.stderr.read() if process.stderr else ''}")
    raise RuntimeError(f"{proc.name} did not announce itself")


class Processes:
    """Starts agents and managers (in parallel), kills every one at the end."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.started: list[Proc] = []

    def _spawn(self, name: str, args: list[str], env: dict[str, str], *, gated: bool = False) -> Proc:
        command = [sys.executable, "-m", "devmig", *args]
        if gated:
            # the same `python -m devmig ...`, its imports done first, held until released (see release())
            command = [sys.executable, "-c", _GATE, *args]
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   env={**os.environ, **env}, stdin=subprocess.PIPE if gated else None)
        proc = Proc(name, process)
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
        args = ["agent", "--listen", f"127.0.0.1:{port}", "--json", "--host-name", name, "--release", releases,
                "--state-dir", str(state), *extra]
        return self._spawn(name, args, {"DEVMIG_TOKEN": AGENT_TOKEN})

    def spawn_manager(self, name: str, db_url: str, *, crash_at: str | None = None, gated: bool = False) -> Proc:
        """Start a manager on ``db_url`` (no background polling: it polls when it needs to).

        ``gated``: start the interpreter and import devmig now, but run the manager only once
        :meth:`release` d (Python start-up here takes seconds; a chain of managers overlaps it).
        """
        args = ["manager", "--db", db_url, "--listen", "127.0.0.1:0", "--json", "--token", MANAGER_TOKEN,
                "--poll-interval", "3600", "--agent-token", AGENT_TOKEN]
        env = {"DEVMIG_TEST_CRASH_AT": crash_at or ""}
        return self._spawn(name, args, env, gated=gated)

    @staticmethod
    def ready(*procs: Proc) -> list[Proc]:
        """Wait for each process's announce line."""
        return [_announced(p) for p in procs]

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
    deadline = time.monotonic() + timeout
    while True:
        response = manager.get(f"/v1/migrations/{migration_id}")
        assert response.status_code == 200, response.text
        record: dict[str, Any] = response.json()
        if record["finished"]:
            return record
        if time.monotonic() > deadline:
            raise AssertionError(f"migration {migration_id} did not finish: {record}")
        time.sleep(0.05)


@contextlib.contextmanager
def database(kind: str, root: Path) -> Iterator[str]:
    """A database URL for a module's manager: a SQLite file, or a fresh PostgreSQL database (dropped after).

    PostgreSQL comes from ``DEVMIG_TEST_PG_URL`` (skipped without it, except under ``CI=true``).
    """
    if kind == "sqlite":
        yield sqlite_url(root / "manager.db")
        return
    import sqlalchemy as sa
    from fleet_env import _pg_base_url

    base = sa.make_url(_pg_base_url())
    name = f"devmig_orch_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base.set(database="postgres"), isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
