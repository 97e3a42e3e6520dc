"""Real ``python -m devmig ...`` processes for the tests of every folder (agents and managers).

The one copy of what the process helpers of ``tests/agent``, ``tests/inventory``,
``tests/orchestration`` and ``tests/manager`` share: the command lines of an agent and a manager,
starting an agent with piped output, reading a process's one-line JSON announcement, SIGKILLing a
process and closing its pipes, :class:`Proc` (a process and its announced URL),
:class:`DevmigFleet` (agents and one manager whose stderr goes to files, all killed by
:meth:`DevmigFleet.close`) and polling a migration (or drain) record until it finished.

This folder is on ``sys.path`` (``pythonpath`` in ``[tool.pytest.ini_options]``), so each folder's
helpers import it by its bare, unique name.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx2


def devmig_command(*args: str) -> list[str]:
    """``python -m devmig ARGS`` with the running interpreter."""
    return [sys.executable, "-m", "devmig", *args]


def agent_args(name: str, state_dir: Path, *extra: str, releases: str | None = None, port: int = 0) -> list[str]:
    """The arguments of ``devmig agent`` listening on 127.0.0.1 (``port`` 0: any) and announcing itself in JSON.

    Unless ``extra`` names one, the image directory is ``STATE_DIR/../images``: the agents a test
    starts side by side share it, as agents migrating block devices share storage.
    """
    release = ["--release", releases] if releases is not None else []
    images = [] if "--image-dir" in extra else ["--image-dir", str(state_dir.parent / "images")]
    return ["agent", "--listen", f"127.0.0.1:{port}", "--json", "--host-name", name, *release,
            "--state-dir", str(state_dir), *images, *extra]


def manager_args(db_url: str, token: str, agent_token: str) -> list[str]:
    """The arguments of ``devmig manager`` on ``db_url`` announcing itself in JSON, with no background polling."""
    return ["manager", "--db", db_url, "--listen", "127.0.0.1:0", "--json", "--token", token,
            "--poll-interval", "3600", "--agent-token", agent_token]


def popen_agent(name: str, state_dir: Path, *extra: str, token: str, releases: str | None = None,
                port: int = 0) -> tuple[subprocess.Popen[str], list[str]]:
    """Start ``devmig agent`` (see :func:`agent_args`; ``DEVMIG_TOKEN`` = ``token``) without waiting for it.

    ``state_dir`` is created if missing; stdout and stderr are pipes (read the announcement with
    :func:`announced`). Returns the process and its command line.
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    args = devmig_command(*agent_args(name, state_dir, *extra, releases=releases, port=port))
    env = {**os.environ, "DEVMIG_TOKEN": token}
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env), args


def announced(name: str, process: subprocess.Popen[str], timeout: float = 60.0) -> dict[str, Any]:
    """Read lines of the process's stdout up to its JSON announcement (url, ...) and return it.

    A process that exits first (its stderr, when piped, goes into the error) or stays silent for
    ``timeout`` seconds is a :class:`RuntimeError`.
    """
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if line.strip().startswith("{"):
            announce: dict[str, Any] = json.loads(line)
            return announce
        if process.poll() is not None:
            stderr = process.stderr.read() if process.stderr else ""
            raise RuntimeError(f"{name} exited {process.returncode}: {stderr}")
    raise RuntimeError(f"{name} did not announce itself")


def reap(process: subprocess.Popen[str], *files: IO[str]) -> None:
    """SIGKILL the process unless it already exited, wait for it, close its stdout/stderr pipes and ``files``."""
    if process.poll() is None:
        process.kill()
    process.wait(timeout=10)
    for stream in (process.stdout, process.stderr, *files):
        if stream is not None:
            stream.close()


@dataclass
class Proc:
    """One running process (an agent or a manager) and what it announced."""

    name: str
    process: subprocess.Popen[str]
    log: IO[str] | None = None
    """The file its stderr goes to, if not a pipe (closed by :meth:`kill`)."""
    url: str = ""
    announce: dict[str, Any] = field(default_factory=dict)
    http_timeout: float = 60.0

    def wait_announced(self, timeout: float = 60.0) -> Proc:
        """Read its announcement (see :func:`announced`); keep it and its URL."""
        self.announce = announced(self.name, self.process, timeout)
        self.url = self.announce["url"]
        return self

    def kill(self) -> None:
        """SIGKILL it and wait."""
        if self.log is None:
            reap(self.process)
        else:
            reap(self.process, self.log)

    def http(self, token: str | None = None) -> httpx2.Client:
        """A client of its HTTP API."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx2.Client(base_url=self.url, headers=headers, timeout=self.http_timeout)


@contextmanager
def piped_agents(root: Path, extras: Mapping[str, Sequence[str]], *, token: str,
                 releases: str | None = None) -> Iterator[dict[str, Proc]]:
    """Agents named by ``extras`` (name → extra arguments), state in ``ROOT/NAME``, all announced; killed on exit.

    Each is started with :func:`popen_agent` (piped output) before any announcement is awaited.
    """
    procs: dict[str, Proc] = {}
    try:
        for name, extra in extras.items():
            process, _ = popen_agent(name, root / name, *extra, token=token, releases=releases)
            procs[name] = Proc(name, process)
        for proc in procs.values():
            proc.wait_announced()
        yield procs
    finally:
        for proc in procs.values():
            reap(proc.process)


class DevmigFleet:
    """Agents and one manager; each logs its stderr to ``ROOT/NAME.log``; :meth:`close` kills them all.

    Files rather than pipes: a pipe nobody reads could fill up over a module's worth of migrations.
    """

    def __init__(self, root: Path, *, manager_token: str, agent_token: str, announce_timeout: float = 60.0) -> None:
        self.root = root
        self.manager_token = manager_token
        self.agent_token = agent_token
        self.announce_timeout = announce_timeout
        self.procs: list[Proc] = []
        self.agents: dict[str, Proc] = {}
        self.manager: Proc | None = None

    def spawn(self, name: str, args: list[str], env: dict[str, str]) -> Proc:
        """Start ``python -m devmig ARGS`` (``env`` over the environment) without waiting for it."""
        log = open(self.root / f"{name}.log", "w", encoding="utf-8")  # noqa: SIM115 (closed by Proc.kill)
        process = subprocess.Popen(devmig_command(*args), stdout=subprocess.PIPE, stderr=log, text=True,
                                   env={**os.environ, **env})
        proc = Proc(name, process, log)
        self.procs.append(proc)
        return proc

    def spawn_manager(self, name: str, db_url: str) -> Proc:
        """Start a manager on ``db_url`` without waiting for it; it becomes :attr:`manager`."""
        self.manager = self.spawn(name, manager_args(db_url, self.manager_token, self.agent_token), {})
        return self.manager

    def launch(self, db_url: str, hosts: Mapping[str, str], extra: Mapping[str, Sequence[str]] | None = None) -> None:
        """Start the agents (``name -> releases``, ``extra`` options by name) and the manager at once.

        Every agent is registered with the manager.
        """
        for name, releases in hosts.items():
            state = self.root / f"agent-{name}"
            state.mkdir(parents=True, exist_ok=True)
            args = agent_args(name, state, *(extra or {}).get(name, []), releases=releases)
            self.agents[name] = self.spawn(name, args, {"DEVMIG_TOKEN": self.agent_token})
        self.spawn_manager("manager", db_url)
        for proc in self.procs:
            proc.wait_announced(self.announce_timeout)
        with self.m() as m:
            for name, agent in self.agents.items():
                response = m.post("/v1/hosts", json={"url": agent.url, "name": name})
                assert response.status_code == 201, response.text

    @property
    def url(self) -> str:
        """The manager's base URL."""
        assert self.manager is not None
        return self.manager.url

    def m(self) -> httpx2.Client:
        """A client of the manager (with its token)."""
        assert self.manager is not None
        return self.manager.http(self.manager_token)

    def a(self, host: str) -> httpx2.Client:
        """A client of a host's agent (with its token)."""
        return self.agents[host].http(self.agent_token)

    def create(self, host: str, model: str, config: str) -> dict[str, Any]:
        """Create a device on a host's agent; return it."""
        with self.a(host) as client:
            response = client.post("/v1/devices", json={"model": model, "config": config})
            assert response.status_code == 201, response.text
            device: dict[str, Any] = response.json()
            return device

    def poll(self) -> None:
        """Make the manager poll every host now."""
        with self.m() as m:
            assert m.post("/v1/poll").status_code == 200

    def cli_env(self) -> dict[str, str]:
        """The environment of a ``devmig`` command against the manager (DEVMIG_MANAGER, DEVMIG_TOKEN, wide output)."""
        return {**os.environ, "DEVMIG_MANAGER": self.url, "DEVMIG_TOKEN": self.manager_token, "COLUMNS": "200"}

    def close(self) -> None:
        """Kill every process."""
        for proc in self.procs:
            proc.kill()


def wait_finished_record(client: httpx2.Client, path: str, *, what: str, timeout: float = 60.0,
                         interval: float = 0.05, must_exist: bool = True) -> dict[str, Any]:
    """Poll ``GET path`` (a migration's or a drain's record) until its ``finished`` is set; return the record.

    ``must_exist``: every answer must be 200 (otherwise a 404 only means "not yet"). Not finished
    within ``timeout`` seconds: an :class:`AssertionError` naming ``what``.
    """
    deadline = time.monotonic() + timeout
    while True:
        response = client.get(path)
        if must_exist:
            assert response.status_code == 200, response.text
        if response.status_code == 200:
            record: dict[str, Any] = response.json()
            if record["finished"]:
                return record
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not finish: {response.text}")
        time.sleep(interval)
