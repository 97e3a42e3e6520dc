"""A whole fleet on this machine: a manager and four agents as child processes (``devmig up``).

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
import ctypes
import fcntl
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx2

from devmig._errors import DevmigError, Problem

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

STATE_FORMAT = "devmig/local-fleet/1"
POOL = "local"
NIC = "example.org/devices/nic"
BLK = "example.org/devices/blk"
ACCEL = "example.org/devices/accel"
IMAGE_BYTES = 4 << 20
START_TIMEOUT_S = 120.0
"""Seconds a child may take to announce itself (imports are slow on a busy 2-core machine)."""
STOP_TIMEOUT_S = 10.0

_RUNTIME_NAMES = ("manager.db", "manager.db-wal", "manager.db-shm", "manager.db-journal", "logs", "agents", "images")
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


def fleet_error(code: str, message: str, *, value: Any = None, hint: str | None = None) -> DevmigError:
    """One-problem :class:`DevmigError` of the local fleet.

    Codes: ``FLEET_RUNNING`` (a leader holds the state directory),
    ``FLEET_NOT_RUNNING``, ``FLEET_START_FAILED``, ``FLEET_STATE_INVALID``.
    """
    return DevmigError([Problem(code, ("state-dir",), message, value=value, hint=hint)])


def default_state_dir() -> Path:
    """``$DEVMIG_HOME``, else ``./.devmig``."""
    home = os.environ.get("DEVMIG_HOME")
    return Path(home) if home else Path.cwd() / ".devmig"


# -- processes -----------------------------------------------------------------------------

_PR_SET_PDEATHSIG = 1


def _pdeathsig_hook() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child die with its parent (Linux), or ``None`` elsewhere.

    libc is looked up here, in the parent: the hook itself runs between fork
    and exec, where it must do as little as possible.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    parent = os.getpid()

    def hook() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the request took effect
            os._exit(1)

    return hook


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` names a live process (a zombie counts as dead)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc: trust kill(0)
    return stat.rpartition(")")[2].split()[0] != "Z"


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


@dataclass
class Child:
    """One process of the fleet (the manager or an agent)."""

    name: str
    kind: str
    process: subprocess.Popen[bytes]
    out_path: Path
    log_path: Path
    files: list[IO[bytes]] = field(default_factory=list)
    announce: dict[str, Any] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        """The child's pid."""
        return self.process.pid

    def log_tail(self, lines: int = 12) -> str:
        """The last lines of its output and standard error (for an error message)."""
        text = ""
        for path in (self.out_path, self.log_path):
            with contextlib.suppress(OSError):
                text += path.read_text(errors="replace").strip() + "\n"
        return "\n".join(text.strip().splitlines()[-lines:])


def _spawn(name: str, kind: str, args: list[str], env: dict[str, str], logs: Path) -> Child:
    out_path, log_path = logs / f"{name}.out", logs / f"{name}.log"
    out, err = out_path.open("wb"), log_path.open("wb")
    try:
        process = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env, close_fds=True,
            preexec_fn=_pdeathsig_hook(),  # only prctl and getppid run between fork and exec
            process_group=0,  # Ctrl-C reaches the leader only; it stops the children in order
        )
    except OSError as exc:
        out.close()
        err.close()
        raise fleet_error("FLEET_START_FAILED", f"cannot start {name}: {exc}", value=name) from exc
    return Child(name, kind, process, out_path, log_path, [out, err])


def _announced(child: Child, deadline: float) -> dict[str, Any]:
    """Wait for the child's JSON announce line (its first line on stdout)."""
    while True:
        try:
            text = child.out_path.read_text(errors="replace")
        except OSError:
            text = ""
        for line in text.split("\n")[:-1]:  # complete lines only
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    data = json.loads(line)
                    if isinstance(data, dict) and "url" in data:
                        return dict(data)
        if child.process.poll() is not None:
            raise fleet_error("FLEET_START_FAILED",
                              f"{child.kind} {child.name} exited with status {child.process.returncode}:\n"
                              f"{child.log_tail()}", value=child.name, hint=f"see {child.log_path}")
        if time.monotonic() > deadline:
            raise fleet_error("FLEET_START_FAILED", f"{child.kind} {child.name} did not announce itself in time",
                              value=child.name, hint=f"see {child.log_path}")
        time.sleep(0.05)


# -- state file ----------------------------------------------------------------------------


def read_state(state_dir: Path) -> dict[str, Any] | None:
    """The fleet's ``state.json`` in ``state_dir``, or ``None`` when there is none.

    Raises:
        DevmigError: ``FLEET_STATE_INVALID`` when it is not a local fleet's state.
    """
    path = state_dir / "state.json"
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise fleet_error("FLEET_STATE_INVALID", f"cannot read {path}: {exc}", value=str(path)) from exc
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise fleet_error("FLEET_STATE_INVALID", f"{path} is not JSON: {exc}", value=str(path)) from exc
    if not isinstance(data, dict) or data.get("format") != STATE_FORMAT:
        raise fleet_error("FLEET_STATE_INVALID", f"{path} is not the state of a local fleet", value=str(path),
                          hint=f'expected "format": "{STATE_FORMAT}"')
    return data


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)


def _recorded_pids(state: Mapping[str, Any]) -> list[int]:
    pids = [int(state.get("manager", {}).get("pid", 0))]
    pids += [int(a.get("pid", 0)) for a in state.get("agents", [])]
    return [p for p in pids if p > 0]


def _kill_leftovers(state_dir: Path, state: Mapping[str, Any] | None) -> list[int]:
    """SIGKILL recorded children still alive whose command line names ``state_dir`` (never another process)."""
    killed = []
    marker = str(state_dir.resolve())
    for pid in _recorded_pids(state or {}):
        if pid_alive(pid) and marker in _cmdline(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            killed.append(pid)
    return killed


# -- the lock ------------------------------------------------------------------------------


class _Lock:
    """An exclusive ``flock`` on ``DIR/lock``, holding the leader's pid."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / "lock"
        self.fd: int | None = None

    def try_acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd
        return True

    def release(self) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self.fd, 0)
            os.close(self.fd)
            self.fd = None


def leader_alive(state_dir: Path) -> bool:
    """Whether a leader holds ``state_dir`` (its lock is taken)."""
    path = state_dir / "lock"
    if not path.exists():
        return False
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def _leader_pid(state_dir: Path) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        return int((state_dir / "lock").read_text().strip())
    return None


def stop_running(state_dir: Path, *, timeout: float = 30.0) -> dict[str, Any]:
    """Stop the fleet whose leader holds ``state_dir`` (``devmig down``); return what was stopped.

    Sends the leader ``SIGTERM`` and waits for it to release the lock; a
    leader that does not is killed (its children die with it). Recorded
    children still alive afterwards are killed too.

    Raises:
        DevmigError: ``FLEET_NOT_RUNNING`` when no leader holds the directory
            (a stale ``state.json`` is removed first).
    """
    state_dir = state_dir.resolve()
    state = None
    with contextlib.suppress(DevmigError):
        state = read_state(state_dir)
    if not leader_alive(state_dir):
        stale = state is not None
        if stale:
            _kill_leftovers(state_dir, state)
            (state_dir / "state.json").unlink(missing_ok=True)
        raise fleet_error("FLEET_NOT_RUNNING", f"nothing running in {state_dir}" + (
            " (removed a stale state.json)" if stale else ""), value=str(state_dir),
            hint="start one with `devmig up`")
    pid = (state or {}).get("leader", {}).get("pid") or _leader_pid(state_dir)
    if pid:
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while leader_alive(state_dir) and time.monotonic() < deadline:
        time.sleep(0.05)
    forced = False
    if leader_alive(state_dir) and pid:
        forced = True
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), signal.SIGKILL)
        while leader_alive(state_dir) and time.monotonic() < deadline + STOP_TIMEOUT_S:
            time.sleep(0.05)
    killed = _kill_leftovers(state_dir, state)
    (state_dir / "state.json").unlink(missing_ok=True)
    return {"stopped": True, "state_dir": str(state_dir), "leader": pid, "forced": forced,
            "children": _recorded_pids(state or {}), "killed_leftovers": killed}


# -- the fleet -----------------------------------------------------------------------------


class LocalFleet:
    """A manager and agents on loopback, owned by this process (the leader).

    Args:
        state_dir: where the lock, ``state.json``, the database, logs and images live.
        hosts: the agents to run (default :data:`DEFAULT_HOSTS`).
        devices: the devices to create (default :data:`DEFAULT_DEVICES`).
        poll_interval: the manager's seconds between polls.

    Use as a context manager, or call :meth:`start` and always :meth:`stop`::

        with LocalFleet(Path(".devmig")) as fleet:
            print(fleet.state["manager"]["url"])
    """

    def __init__(self, state_dir: Path, *, hosts: tuple[HostSpec, ...] = DEFAULT_HOSTS,
                 devices: tuple[DeviceSpec, ...] = DEFAULT_DEVICES, poll_interval: float = 2.0) -> None:
        self.state_dir = state_dir.resolve()
        self.hosts = hosts
        self.devices = devices
        self.poll_interval = poll_interval
        self.token = secrets.token_urlsafe(24)
        self.children: list[Child] = []
        self.state: dict[str, Any] = {}
        self.run_state = "new"
        self._lock = _Lock(self.state_dir)

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
            pid = _leader_pid(self.state_dir)
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
        _kill_leftovers(self.state_dir, stale)
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
                child.announce = _announced(child, deadline)
            say("registering the agents in pool " + POOL)
            devices = self._configure()
            self.state = self._state(devices)
            _write_json(self.state_dir / "state.json", self.state)
        except BaseException:
            self.stop()
            raise
        self.run_state = "running"
        return self.state

    def _clean(self) -> None:
        for name in _RUNTIME_NAMES:
            path = self.state_dir / name
            if path.is_dir():
                import shutil

                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        for sub in ("logs", "agents", "images"):
            (self.state_dir / sub).mkdir(parents=True, exist_ok=True)

    def _spawn_all(self) -> None:
        logs = self.state_dir / "logs"
        base = {k: v for k, v in os.environ.items() if not k.startswith("DEVMIG_")}
        env = {**base, "DEVMIG_TOKEN": self.token, "DEVMIG_AGENT_TOKEN": self.token}
        python = [sys.executable, "-m", "devmig"]
        manager = [*python, "manager", "--db", str(self.state_dir / "manager.db"), "--listen", "127.0.0.1:0",
                   "--poll-interval", str(self.poll_interval), "--json"]
        self.children.append(_spawn("manager", "manager", manager, env, logs))
        for host in self.hosts:
            args = [*python, "agent", "--host-name", host.name, "--release", host.release_option,
                    "--listen", "127.0.0.1:0", "--state-dir", str(self.state_dir / "agents" / host.name), "--json"]
            self.children.append(_spawn(host.name, "agent", args, env, logs))

    def _configure(self) -> list[dict[str, Any]]:
        manager = self.children[0].announce["url"]
        agents = {c.name: c.announce["url"] for c in self.children[1:]}
        auth = {"Authorization": f"Bearer {self.token}"}
        created: list[dict[str, Any]] = []
        with httpx2.Client(headers=auth, timeout=30) as http:
            _ok(http.post(f"{manager}/v1/pools", json={"name": POOL}))
            for name, url in agents.items():
                _ok(http.post(f"{manager}/v1/hosts", json={"url": url, "name": name, "token": self.token}))
                _ok(http.put(f"{manager}/v1/pools/{POOL}/hosts/{name}"))
            for n, spec in enumerate(self.devices):
                host: dict[str, Any] = {}
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

    def _state(self, devices: list[dict[str, Any]]) -> dict[str, Any]:
        manager = self.children[0]
        specs = {h.name: h for h in self.hosts}
        return {
            "format": STATE_FORMAT,
            "state_dir": str(self.state_dir),
            "leader": {"pid": os.getpid()},
            "token": self.token,
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
        with _signals_ignored():
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


def _ok(response: httpx2.Response) -> Any:
    if response.status_code >= 400:
        from devmig.agent._client import remote_error

        error = remote_error(response)
        raise fleet_error("FLEET_START_FAILED", f"{response.request.method} {response.request.url} answered "
                          f"{response.status_code}: {error}", value=str(response.request.url)) from error
    return response.json() if response.content else None


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@contextlib.contextmanager
def _signals_ignored() -> Iterator[None]:
    """Ignore SIGINT/SIGTERM/SIGHUP in the block (a second Ctrl-C must not cut a stop short); main thread only."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in _STOP_SIGNALS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


@contextlib.contextmanager
def signals_raise() -> Iterator[None]:
    """Within the block, SIGTERM (and SIGHUP) raise :class:`KeyboardInterrupt` like SIGINT does.

    So a ``finally`` that stops the fleet runs whichever way the leader is asked to stop.
    """
    def interrupt(_sig: int, _frame: object) -> None:
        raise KeyboardInterrupt

    previous = {s: signal.signal(s, interrupt) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
