"""Inventory fixtures: every inventory test runs on the twin, a SQLite file and PostgreSQL.

PostgreSQL comes from ``DEVMIG_TEST_PG_URL`` (``.ci/run`` starts a throwaway
cluster and exports it); each test gets a database of its own, dropped at
teardown. Without the variable the PostgreSQL cases skip — except under
``CI=true``, where they fail: CI must test PostgreSQL for real.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from devmig_procs import announced, popen_agent, reap

from devmig.inventory import Inventory, MemoryInventory, SqlInventory, sqlite_url

PG_ENV = "DEVMIG_TEST_PG_URL"
AGENT_TOKEN = "fleet-test-token"
"""The token of the agents :class:`Agents` starts."""


def _pg_base_url() -> str:
    url = os.environ.get(PG_ENV)
    if not url:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{PG_ENV} is not set under CI=true: PostgreSQL tests must run in CI")
        pytest.skip(f"{PG_ENV} not set (no PostgreSQL to test against)")
    return url


@contextlib.contextmanager
def pg_database(prefix: str) -> Iterator[str]:
    """The URL of a fresh, empty PostgreSQL database named ``prefix`` + a random suffix (dropped at exit).

    PostgreSQL comes from ``DEVMIG_TEST_PG_URL`` (skipped without it, except under ``CI=true``).
    """
    base = sa.make_url(_pg_base_url())
    name = f"{prefix}{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base.set(database="postgres"), isolation_level="AUTOCOMMIT",
                             poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextlib.contextmanager
def manager_database(kind: str, root: Path, prefix: str) -> Iterator[str]:
    """A database URL for a module's manager: ``kind`` ``sqlite`` (a file under ``root``) or ``postgresql``.

    PostgreSQL: a fresh database (see :func:`pg_database`), dropped after.
    """
    if kind == "sqlite":
        yield sqlite_url(root / "manager.db")
        return
    with pg_database(prefix) as url:
        yield url


@pytest.fixture
def pg_url() -> Iterator[str]:
    """The URL of a fresh, empty PostgreSQL database (dropped at teardown)."""
    with pg_database("devmig_test_") as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database URL: a SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return sqlite_url(tmp_path / "inventory.db")
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def make_inventory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], Inventory]]:
    """A factory of inventories over one store (the twin, SQLite, PostgreSQL); all closed at teardown."""
    made: list[Inventory] = []
    if request.param == "memory":
        shared = MemoryInventory()

        def make() -> Inventory:
            if shared.state.value == "new":
                shared.open()
            return shared
    else:
        url = sqlite_url(tmp_path / "inventory.db") if request.param == "sqlite" else request.getfixturevalue("pg_url")

        def make() -> Inventory:
            inventory = SqlInventory(url)
            inventory.open()
            made.append(inventory)
            return inventory

    yield make
    for inventory in made:
        inventory.close()
    if request.param == "memory":
        shared.close()


@pytest.fixture
def inventory(make_inventory: Callable[[], Inventory]) -> Inventory:
    """An open inventory (twin, SQLite file or PostgreSQL)."""
    return make_inventory()


# -- real agents -------------------------------------------------------------------------


@dataclass
class Agent:
    """One running ``devmig agent`` process."""

    name: str
    process: subprocess.Popen[str]
    url: str
    token: str

    def kill(self) -> None:
        """SIGKILL the agent and wait for it."""
        reap(self.process)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Agents:
    """Starts real agents (several at once: they start in parallel); kills them all at the end."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.started: list[Agent] = []

    def spawn(self, name: str, releases: str, *, port: int = 0) -> Agent:
        """Start an agent without waiting for it (see :meth:`wait`)."""
        process, _ = popen_agent(name, self.root / f"agent-{name}", token=AGENT_TOKEN, releases=releases, port=port)
        agent = Agent(name, process, "", AGENT_TOKEN)
        self.started.append(agent)
        return agent

    @staticmethod
    def wait(agent: Agent) -> Agent:
        """Read the agent's JSON announce line (its URL)."""
        agent.url = announced(f"agent {agent.name}", agent.process)["url"]
        return agent

    def start(self, *specs: tuple[str, str] | tuple[str, str, int]) -> list[Agent]:
        """Start agents ``(name, releases[, port])`` in parallel; return them once all listen."""
        spawned = [self.spawn(spec[0], spec[1], port=spec[2] if len(spec) > 2 else 0) for spec in specs]  # type: ignore[misc]
        return [self.wait(agent) for agent in spawned]

    def kill_all(self) -> None:
        """Kill every agent started."""
        for agent in self.started:
            agent.kill()


@pytest.fixture
def agents(tmp_path: Path) -> Iterator[Agents]:
    """Real agents for one test."""
    started = Agents(tmp_path)
    yield started
    started.kill_all()


@pytest.fixture(scope="module")
def shared_agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Agent]:
    """One real agent (host ``shared``, nic 2.0.0) for a whole test module."""
    started = Agents(tmp_path_factory.mktemp("shared-agent"))
    (agent,) = started.start(("shared", "nic=2.0.0"))
    yield agent
    started.kill_all()
