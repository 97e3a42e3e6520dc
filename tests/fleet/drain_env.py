"""A fleet of real processes for the drain tests: agents and one ``devmig manager`` on a database.

Every process logs its stderr to a file under the fleet's root (a pipe nobody reads could fill up
over a module's worth of migrations); each announces itself with one JSON line on stdout. The
fleet is meant to be module-scoped: agents cost about a second each to start (they start in
parallel). :meth:`Fleet.close` kills every process it started.
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
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx2

from devmig.fleet import sqlite_url

MANAGER_TOKEN = "drain-test-manager-token"
AGENT_TOKEN = "drain-test-agent-token"
NIC = "example.org/devices/nic"
BLK = "example.org/devices/blk"
ACCEL = "example.org/devices/accel"


@dataclass
class Proc:
    """One running process and its announced URL."""

    name: str
    process: subprocess.Popen[str]
    log: IO[str]
    url: str = ""

    def kill(self) -> None:
        """SIGKILL it and wait."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)
        if self.process.stdout is not None:
            self.process.stdout.close()
        self.log.close()

    def http(self, token: str | None = None) -> httpx2.Client:
        """A client of its HTTP API."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx2.Client(base_url=self.url, headers=headers, timeout=60)


class Fleet:
    """Agents and a manager; :meth:`close` kills them all."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.procs: list[Proc] = []
        self.agents: dict[str, Proc] = {}
        self.manager: Proc | None = None

    def _spawn(self, name: str, args: list[str], env: dict[str, str]) -> Proc:
        log = open(self.root / f"{name}.log", "w", encoding="utf-8")  # noqa: SIM115 (closed by Proc.kill)
        process = subprocess.Popen([sys.executable, "-m", "devmig", *args], stdout=subprocess.PIPE, stderr=log,
                                   text=True, env={**os.environ, **env})
        proc = Proc(name, process, log)
        self.procs.append(proc)
        return proc

    @staticmethod
    def _announced(proc: Proc, timeout: float = 60.0) -> Proc:
        assert proc.process.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = proc.process.stdout.readline()
            if line.strip().startswith("{"):
                proc.url = json.loads(line)["url"]
                return proc
            if proc.process.poll() is not None:
                raise RuntimeError(f"{proc.name} exited {proc.process.returncode}")
        raise RuntimeError(f"{proc.name} did not announce itself")

    def start(self, db_url: str, hosts: dict[str, str], *extra_agent_args: str) -> None:
        """Start the agents (``name -> releases``) and the manager at once; register every agent."""
        for name, releases in hosts.items():
            state = self.root / f"agent-{name}"
            state.mkdir(parents=True, exist_ok=True)
            self.agents[name] = self._spawn(name, [
                "agent", "--listen", "127.0.0.1:0", "--json", "--host-name", name, "--release", releases,
                "--state-dir", str(state), *extra_agent_args], {"DEVMIG_TOKEN": AGENT_TOKEN})
        self.manager = self._spawn("manager", [
            "manager", "--db", db_url, "--listen", "127.0.0.1:0", "--json", "--token", MANAGER_TOKEN,
            "--poll-interval", "3600", "--agent-token", AGENT_TOKEN], {})
        for proc in self.procs:
            self._announced(proc)
        with self.m() as m:
            for name, agent in self.agents.items():
                response = m.post("/v1/hosts", json={"url": agent.url, "name": name})
                assert response.status_code == 201, response.text

    def restart_manager(self, db_url: str) -> None:
        """SIGKILL the manager and start a new one on the same database (the agents stay registered)."""
        assert self.manager is not None
        self.manager.kill()
        self.procs.remove(self.manager)
        self.manager = self._spawn("manager-2", [
            "manager", "--db", db_url, "--listen", "127.0.0.1:0", "--json", "--token", MANAGER_TOKEN,
            "--poll-interval", "3600", "--agent-token", AGENT_TOKEN], {})
        self._announced(self.manager)

    def m(self) -> httpx2.Client:
        """A client of the manager (with its token)."""
        assert self.manager is not None
        return self.manager.http(MANAGER_TOKEN)

    def a(self, host: str) -> httpx2.Client:
        """A client of a host's agent (with its token)."""
        return self.agents[host].http(AGENT_TOKEN)

    def create(self, host: str, model: str, config: str) -> dict[str, Any]:
        """Create a device on a host's agent; return it."""
        with self.a(host) as client:
            response = client.post("/v1/devices", json={"model": model, "config": config})
            assert response.status_code == 201, response.text
            device: dict[str, Any] = response.json()
            return device

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

    def poll(self) -> None:
        """Make the manager poll every host now."""
        with self.m() as m:
            assert m.post("/v1/poll").status_code == 200

    def cli(self, *args: str, timeout: float = 300.0) -> subprocess.CompletedProcess[str]:
        """Run ``devmig ARGS`` against the manager (DEVMIG_MANAGER, DEVMIG_TOKEN set)."""
        assert self.manager is not None
        env = {**os.environ, "DEVMIG_MANAGER": self.manager.url, "DEVMIG_TOKEN": MANAGER_TOKEN, "COLUMNS": "200"}
        return subprocess.run([sys.executable, "-m", "devmig", *args], capture_output=True, text=True,
                              env=env, timeout=timeout, check=False)

    def close(self) -> None:
        """Kill every process."""
        for proc in self.procs:
            proc.kill()


def wait_migration(m: httpx2.Client, mid: str, timeout: float = 60.0) -> dict[str, Any]:
    """Poll the manager until a migration finished; return its record."""
    deadline = time.monotonic() + timeout
    while True:
        response = m.get(f"/v1/migrations/{mid}")
        assert response.status_code == 200, response.text
        record: dict[str, Any] = response.json()
        if record["finished"]:
            return record
        assert time.monotonic() < deadline, f"migration {mid} did not finish: {record}"
        time.sleep(0.05)


def wait_drain(m: httpx2.Client, drain_id: str, timeout: float = 120.0) -> dict[str, Any]:
    """Poll the manager until a drain finished; return its record."""
    deadline = time.monotonic() + timeout
    while True:
        response = m.get(f"/v1/drains/{drain_id}")
        assert response.status_code == 200, response.text
        record: dict[str, Any] = response.json()
        if record["finished"]:
            return record
        assert time.monotonic() < deadline, f"drain {drain_id} did not finish: {record}"
        time.sleep(0.1)


def counters_advance(fleet: Fleet, host: str, device_id: str, gap: float = 0.3) -> tuple[int, int]:
    """Read a device's work-step counter twice, ``gap`` seconds apart (it must be running and advancing)."""
    first = fleet.device(host, device_id)
    time.sleep(gap)
    second = fleet.device(host, device_id)
    assert first["running"] and second["running"], (first["state"], second["state"])
    return int(first["counters"]["steps"]), int(second["counters"]["steps"])


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
    name = f"devmig_drain_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base.set(database="postgres"), isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
