"""Fixtures that run REAL agent processes on loopback (``python -m devmig agent``).

:func:`start_agent` starts one, reads its JSON announce line (url, stream,
token) and returns an :class:`AgentProcess`; every process a test starts is
killed at teardown, so no agent outlives the test session.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import pytest

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


def _spawn(name: str, state_dir: Path, extra: list[str], token: str) -> AgentProcess:
    args = [sys.executable, "-m", "devmig", "agent", "--listen", "127.0.0.1:0", "--json", "--host-name", name,
            "--state-dir", str(state_dir), *extra]
    env = {**os.environ, "DEVMIG_TOKEN": token}
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert process.stdout is not None
    deadline = time.monotonic() + 30
    line = ""
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if line.strip().startswith("{"):
            break
        if process.poll() is not None:
            raise RuntimeError(f"agent {name} exited: {process.stderr.read() if process.stderr else ''}")
    announce: dict[str, Any] = json.loads(line)
    return AgentProcess(name, process, announce["url"], announce["stream"], token, state_dir, args)


@pytest.fixture
def start_agent(tmp_path: Path) -> Iterator[Callable[..., AgentProcess]]:
    """Start agents: ``start_agent("a", "--release", "nic=1.0.0")``; all are killed at teardown."""
    started: list[AgentProcess] = []

    def start(name: str, *extra: str, state_dir: Path | None = None, token: str = TOKEN) -> AgentProcess:
        directory = state_dir or tmp_path / name
        directory.mkdir(parents=True, exist_ok=True)
        agent = _spawn(name, directory, list(extra), token)
        started.append(agent)
        return agent

    yield start
    for agent in started:
        agent.kill()
        for stream in (agent.process.stdout, agent.process.stderr):
            if stream is not None:
                stream.close()
