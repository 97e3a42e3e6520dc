"""A whole fleet on this machine: a manager and four agents as child processes (``devmig up``).

By default every API and migration stream runs on TLS: the leader makes a local CA in
``DIR/tls`` and one certificate per process (and ``operator``, the leader's and the CLI's client
certificate); ``state.json`` names the files (``tls``). ``tls=False`` (``--insecure-plain-tcp``)
runs plain TCP on loopback.

Theory of operation
-------------------
The *leader* — the process running ``devmig up`` or ``devmig tour`` — owns a
state directory. It takes an exclusive ``flock`` on ``DIR/lock`` for as long
as it lives (the lock, not a pid, says whether a fleet runs: the kernel drops
it whatever way the leader dies), starts ``devmig manager`` on a SQLite file
and four ``devmig agent`` processes on ``127.0.0.1`` ephemeral ports, reads
the JSON line each one announces, registers the agents with the manager in
pool ``local``, creates a few devices, and writes ``DIR/state.json`` (pids,
URLs, token, pool, devices).

Children never outlive the leader: on Linux each one asks the kernel, in the
child between ``fork`` and ``exec``, for ``SIGKILL`` when its parent dies
(``prctl(PR_SET_PDEATHSIG)``), and exits at once if the parent already died.
The signal follows the *thread* that forked the child, so start a fleet from
a thread that lives as long as the fleet (the main thread). An orderly stop
(:meth:`LocalFleet.stop`) sends ``SIGTERM``, waits, then ``SIGKILL``\\ s what
is left, and removes ``state.json``.

Every run starts afresh: the manager's database, agent journals, block images
and logs of a previous run are deleted (only those names: the directory
itself may hold anything else).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2

from devmig._errors import DevmigError
from devmig._json import JsonObject
from devmig._tls import TlsConfig, client_tls
from devmig.local._procs import (
    STATE_FORMAT,
    STOP_TIMEOUT_S,
    Child,
    Lock,
    announced,
    fleet_error,
    kill_leftovers,
    leader_alive,
    leader_pid,
    pid_alive,
    read_state,
    signals_ignored,
    signals_raise,
    spawn,
    stop_running,
    write_state,
)

__all__ = [
    "DEFAULT_DEVICES",
    "DEFAULT_HOSTS",
    "POOL",
    "STATE_FORMAT",
    "DeviceSpec",
    "HostSpec",
    "LocalFleet",
    "default_state_dir",
    "fleet_error",
    "leader_alive",
    "pid_alive",
    "read_state",
    "signals_raise",
    "stop_running",
]

POOL = "local"
NIC = "example.org/devices/nic"
BLK = "example.org/devices/blk"
ACCEL = "example.org/devices/accel"
IMAGE_BYTES = 4 << 20
START_TIMEOUT_S = 120.0
"""Seconds a child may take to announce itself (imports are slow on a busy 2-core machine)."""

_RUNTIME_NAMES = ("manager.db", "manager.db-wal", "manager.db-shm", "manager.db-journal", "logs", "agents", "images",
                  "tls")
"""What a run leaves in the state directory besides ``state.json`` and ``lock`` (deleted at the next start)."""


@dataclass(frozen=True)
class HostSpec:
    """One agent of the local fleet: its host name and the releases it runs (short names)."""

    name: str
    releases: Mapping[str, str]
    role: str

    @property
    def release_option(self) -> str:
        """The ``--release`` value: ``nic=1.0.0,blk=1.0.0,accel=1.0.0``."""
        return ",".join(f"{k}={v}" for k, v in sorted(self.releases.items()))


@dataclass(frozen=True)
class DeviceSpec:
    """A device the fleet starts with: where, which model, its option string (block devices get an image)."""

    host: str
    model: str
    config: str


def _releases(release: str) -> dict[str, str]:
    return {"nic": release, "blk": release, "accel": release}


DEFAULT_HOSTS: tuple[HostSpec, ...] = (
    HostSpec("oldest", _releases("1.0.0"), "the oldest releases"),
    HostSpec("current-a", _releases("2.0.0"), "current releases"),
    HostSpec("current-b", _releases("2.0.0"), "current releases"),
    HostSpec("newest", {"nic": "3.0.0", "blk": "2.0.0", "accel": "3.0.0"}, "the newest releases"),
)
"""One host on the oldest releases of the reference devices, two on current, one on the newest
(acme-blk's newest is 2.0.0)."""

DEFAULT_DEVICES: tuple[DeviceSpec, ...] = (
    DeviceSpec("oldest", ACCEL, "version=2,mem-size-mib=64"),
    DeviceSpec("oldest", NIC, "version=2"),
    DeviceSpec("oldest", BLK, "version=2"),
    DeviceSpec("current-a", NIC, "version=3"),
    DeviceSpec("current-a", BLK, "version=3"),
    DeviceSpec("current-b", ACCEL, "version=2,mem-size-mib=64,fp16=on"),
    DeviceSpec("current-b", NIC, "version=2"),
    DeviceSpec("newest", NIC, "version=4"),
)
"""A few running devices; accelerators with 64 MiB of memory (the smallest every release allows)."""


def default_state_dir() -> Path:
    """``$DEVMIG_HOME``, else ``./.devmig``."""
    home = os.environ.get("DEVMIG_HOME")
    return Path(home) if home else Path.cwd() / ".devmig"


# -- the fleet -----------------------------------------------------------------------------


class LocalFleet:
    """A manager and agents on loopback, owned by this process (the leader).

    Args:
        state_dir: where the lock, ``state.json``, the database, logs and images live.
        hosts: the agents to run (default :data:`DEFAULT_HOSTS`).
        devices: the devices to create (default :data:`DEFAULT_DEVICES`).
        poll_interval: the manager's seconds between polls.
        tls: make a local CA (``DIR/tls``) and run every API and stream on TLS: the agents require
            client certificates (the manager's, each other's, the leader's ``operator`` one);
            ``False``: plain TCP on loopback.

    Use as a context manager, or call :meth:`start` and always :meth:`stop`::

        with LocalFleet(Path(".devmig")) as fleet:
            print(fleet.state["manager"]["url"])
    """

    def __init__(self, state_dir: Path, *, hosts: tuple[HostSpec, ...] = DEFAULT_HOSTS,
                 devices: tuple[DeviceSpec, ...] = DEFAULT_DEVICES, poll_interval: float = 2.0,
                 tls: bool = True) -> None:
        self.state_dir = state_dir.resolve()
        self.tls = tls
        self.client_tls: TlsConfig | None = None
        """The leader's client configuration (the CA and the ``operator`` certificate), once made."""
        self.hosts = hosts
        self.devices = devices
        self.poll_interval = poll_interval
        self.token = secrets.token_urlsafe(24)
        self.children: list[Child] = []
        self.state: dict[str, Any] = {}
        self.run_state = "new"
        self._lock = Lock(self.state_dir)

    def __enter__(self) -> LocalFleet:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- start -------------------------------------------------------------------------------

    def acquire(self) -> None:
        """Take the state directory (the lock); clean what a dead leader left.

        Raises:
            DevmigError: ``FLEET_RUNNING`` naming the running leader.
        """
        if self._lock.fd is not None:
            return
        if not self._lock.try_acquire():
            pid = leader_pid(self.state_dir)
            state = None
            with contextlib.suppress(DevmigError):
                state = read_state(self.state_dir)
            where = f" (manager {state['manager']['url']})" if state and "manager" in state else ""
            raise fleet_error("FLEET_RUNNING", f"a local fleet already runs in {self.state_dir}: leader pid "
                              f"{pid}{where}", value=str(self.state_dir),
                              hint="stop it with `devmig down`, or pick another --state-dir")
        stale = None
        with contextlib.suppress(DevmigError):
            stale = read_state(self.state_dir)
        kill_leftovers(self.state_dir, stale)
        (self.state_dir / "state.json").unlink(missing_ok=True)

    def start(self, *, on_event: Callable[[str], None] | None = None) -> dict[str, Any]:
        """Start the manager and the agents, register them, create the devices; write ``state.json``.

        On any failure everything started is stopped before the error propagates.

        Returns:
            The state (what ``state.json`` holds).

        Raises:
            DevmigError: ``FLEET_RUNNING``, ``FLEET_START_FAILED``.
        """
        if self.run_state != "new":
            raise RuntimeError(f"a LocalFleet starts once (it is {self.run_state})")
        self.run_state = "starting"
        say = on_event or (lambda _text: None)
        try:
            self.acquire()
            self._clean()
            say("starting the manager and 4 agents")
            self._spawn_all()
            deadline = time.monotonic() + START_TIMEOUT_S
            for child in self.children:
                child.announce = announced(child, deadline)
            say("registering the agents in pool " + POOL)
            devices = self._configure()
            self.state = self._state(devices)
            write_state(self.state_dir / "state.json", self.state)
        except BaseException:
            self.stop()
            raise
        self.run_state = "running"
        return self.state

    def _clean(self) -> None:
        for name in _RUNTIME_NAMES:
            path = self.state_dir / name
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        for sub in ("logs", "agents", "images"):
            (self.state_dir / sub).mkdir(parents=True, exist_ok=True)

    def _certificates(self) -> dict[str, list[str]]:
        """Make the local CA and a certificate for each process; return each one's TLS options."""
        from devmig._certs import (
            LocalCA,  # cryptography only when a fleet starts (not for `devmig down`)
        )

        directory = self.state_dir / "tls"
        ca = LocalCA.create(directory)
        options: dict[str, list[str]] = {}
        for name in ("manager", *(h.name for h in self.hosts)):
            issued = ca.issue(directory, name)
            options[name] = ["--tls-cert", str(issued.cert), "--tls-key", str(issued.key), "--tls-ca", str(ca.cert)]
            if name != "manager":  # agents: only the fleet's certificates may call them or stream to them
                options[name].append("--tls-client-certs")
        operator = ca.issue(directory, "operator")
        self.client_tls = TlsConfig(cert=operator.cert, key=operator.key, ca=ca.cert)
        return options

    def _spawn_all(self) -> None:
        logs = self.state_dir / "logs"
        base = {k: v for k, v in os.environ.items() if not k.startswith("DEVMIG_")}
        env = {**base, "DEVMIG_TOKEN": self.token, "DEVMIG_AGENT_TOKEN": self.token}
        python = [sys.executable, "-m", "devmig"]
        tls = self._certificates() if self.tls else {}
        manager = [*python, "manager", "--db", str(self.state_dir / "manager.db"), "--listen", "127.0.0.1:0",
                   "--poll-interval", str(self.poll_interval), "--json", *tls.get("manager", [])]
        self.children.append(spawn("manager", "manager", manager, env, logs))
        for host in self.hosts:
            args = [*python, "agent", "--host-name", host.name, "--release", host.release_option,
                    "--listen", "127.0.0.1:0", "--state-dir", str(self.state_dir / "agents" / host.name),
                    "--image-dir", str(self.state_dir / "images"), "--json",  # one shared store
                    *tls.get(host.name, [])]
            self.children.append(spawn(host.name, "agent", args, env, logs))

    def _configure(self) -> list[JsonObject]:
        manager = self.children[0].announce["url"]
        agents = {c.name: c.announce["url"] for c in self.children[1:]}
        auth = {"Authorization": f"Bearer {self.token}"}
        created: list[JsonObject] = []
        with httpx2.Client(headers=auth, timeout=30, verify=client_tls(self.client_tls)) as http:
            _ok(http.post(f"{manager}/v1/pools", json={"name": POOL}))
            for name, url in agents.items():
                _ok(http.post(f"{manager}/v1/hosts", json={"url": url, "name": name, "token": self.token}))
                _ok(http.put(f"{manager}/v1/pools/{POOL}/hosts/{name}"))
            for n, spec in enumerate(self.devices):
                host: JsonObject = {}
                if spec.model == BLK:
                    image = self.state_dir / "images" / f"{spec.host}-{n}.img"
                    with image.open("wb") as f:
                        f.truncate(IMAGE_BYTES)
                    host["image"] = str(image)
                body = {"model": spec.model, "config": spec.config, "host": host}
                device = _ok(http.post(f"{agents[spec.host]}/v1/devices", json=body))
                created.append({"host": spec.host, "id": device["id"], "model": spec.model,
                                "config": device["string"], "version": device["version"]})
            _ok(http.post(f"{manager}/v1/poll"))
        return created

    def _state(self, devices: list[JsonObject]) -> dict[str, Any]:
        manager = self.children[0]
        specs = {h.name: h for h in self.hosts}
        return {
            "format": STATE_FORMAT,
            "state_dir": str(self.state_dir),
            "leader": {"pid": os.getpid()},
            "token": self.token,
            "tls": None if self.client_tls is None else {
                "ca": str(self.client_tls.ca), "cert": str(self.client_tls.cert), "key": str(self.client_tls.key)},
            "pool": POOL,
            "manager": {"pid": manager.pid, "url": manager.announce["url"],
                        "db": str(self.state_dir / "manager.db"), "log": str(manager.log_path)},
            "agents": [
                {"name": c.name, "pid": c.pid, "url": c.announce["url"], "stream": c.announce.get("stream"),
                 "releases": dict(specs[c.name].releases), "role": specs[c.name].role, "log": str(c.log_path)}
                for c in self.children[1:]
            ],
            "devices": devices,
        }

    # -- running -----------------------------------------------------------------------------

    def exited(self) -> list[Child]:
        """Children that exited although nobody stopped them."""
        return [c for c in self.children if c.process.poll() is not None]

    # -- stop --------------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop every child (SIGTERM, then SIGKILL after a grace period), remove ``state.json``, unlock.

        Idempotent; safe to call from a ``finally`` after any failure.
        """
        if self.run_state == "stopped":
            return
        self.run_state = "stopping"
        with signals_ignored():
            self._stop_children()
        self.run_state = "stopped"

    def _stop_children(self) -> None:
        for child in self.children:
            if child.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for child in self.children:
            try:
                child.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.process.kill()
                child.process.wait()
            for f in child.files:
                f.close()
        if self._lock.fd is not None:
            (self.state_dir / "state.json").unlink(missing_ok=True)
        self._lock.release()


def _ok(response: httpx2.Response) -> Any:  # JSON boundary
    if response.status_code >= 400:
        from devmig.agent import remote_error

        error = remote_error(response)
        raise fleet_error("FLEET_START_FAILED", f"{response.request.method} {response.request.url} answered "
                          f"{response.status_code}: {error}", value=str(response.request.url)) from error
    return response.json() if response.content else None

