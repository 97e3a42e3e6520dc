"""Fixtures that run REAL agent processes on loopback (``python -m devmig agent``).

:func:`start_agent` starts one, reads its JSON announce line (url, stream,
token) and returns an :class:`AgentProcess`; every process a test starts is
killed at teardown, so no agent outlives the test session.
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import pytest
from devmig_procs import announced, popen_agent, reap, wait_finished_record

TOKEN = "agent-test-token"


@dataclass
class AgentProcess:
    """One running agent."""

    name: str
    process: subprocess.Popen[str]
    url: str
    stream: str
    token: str
    state_dir: Path
    args: list[str] = field(default_factory=list)

    def client(self, *, auth: bool = True) -> httpx2.Client:
        """A sync HTTP client for this agent (with its token unless ``auth=False``)."""
        headers = {"Authorization": f"Bearer {self.token}"} if auth else {}
        return httpx2.Client(base_url=self.url, headers=headers, timeout=30)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send a signal and wait for the process."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    @property
    def alive(self) -> bool:
        return self.process.poll() is None


def _announced(name: str, process: subprocess.Popen[str], args: list[str], state_dir: Path, token: str) -> AgentProcess:
    try:
        announce = announced(f"agent {name}", process)
    except RuntimeError:
        process.kill()
        raise
    return AgentProcess(name, process, announce["url"], announce["stream"], token, state_dir, args)


class Agents:
    """Starts agents (in parallel) and kills every one it started."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.started: list[AgentProcess] = []

    def start_many(self, *specs: tuple[str, list[str]], token: str = TOKEN) -> list[AgentProcess]:
        """Start several agents at once: ``start_many(("a", []), ("b", ["--release", "nic=1.0.0"]))``."""
        pending = []
        for name, extra in specs:
            directory = self.root / name
            process, args = popen_agent(name, directory, *extra, token=token)
            pending.append((name, process, args, directory))
        agents = []
        for name, process, args, directory in pending:
            agent = _announced(name, process, args, directory, token)
            self.started.append(agent)
            agents.append(agent)
        return agents

    def start(self, name: str, *extra: str, token: str = TOKEN) -> AgentProcess:
        """Start one agent."""
        return self.start_many((name, list(extra)), token=token)[0]

    def close(self) -> None:
        """Kill every agent started."""
        for agent in self.started:
            reap(agent.process)


@pytest.fixture
def agents(tmp_path: Path) -> Iterator[Agents]:
    """Function-scoped agents."""
    pool = Agents(tmp_path)
    yield pool
    pool.close()


@pytest.fixture(scope="module")
def module_agents(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Agents]:
    """Module-scoped agents (shared by a test module)."""
    pool = Agents(tmp_path_factory.mktemp("agents"))
    yield pool
    pool.close()


def wait_finished(agent: AgentProcess, migration_id: str, timeout: float = 60.0) -> dict[str, Any]:
    """Poll an agent until the migration finished there (not known there yet: not finished); return its status."""
    with agent.client() as client:
        return wait_finished_record(client, f"/v1/migrations/{migration_id}", timeout=timeout, must_exist=False,
                                    what=f"migration {migration_id} on {agent.name}")
