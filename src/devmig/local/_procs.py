"""The local fleet's processes and its state directory: children that die with their leader, the lock, ``state.json``.

See :mod:`devmig.local._local_fleet` for the theory of operation. Here: spawning a
child that the kernel kills when its parent dies (``PR_SET_PDEATHSIG``),
reading its announce line, the leader's ``flock``, the state file, and
stopping a running fleet from another process (``devmig down``).
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from devmig._errors import DevmigError
from devmig._json import JsonObject

__all__ = [
    "STATE_FORMAT",
    "STOP_TIMEOUT_S",
    "Child",
    "Lock",
    "announced",
    "fleet_error",
    "kill_leftovers",
    "leader_alive",
    "leader_pid",
    "pid_alive",
    "read_state",
    "signals_ignored",
    "signals_raise",
    "spawn",
    "stop_running",
    "write_state",
]

STATE_FORMAT = "devmig/local-fleet/1"
STOP_TIMEOUT_S = 10.0


def fleet_error(code: str, message: str, *, value: object = None, hint: str | None = None) -> DevmigError:
    """One-problem :class:`DevmigError` of the local fleet.

    Codes: ``FLEET_RUNNING`` (a leader holds the state directory),
    ``FLEET_NOT_RUNNING``, ``FLEET_START_FAILED``, ``FLEET_STATE_INVALID``.
    """
    return DevmigError.of(code, message, loc=("state-dir",), value=value, hint=hint)


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
    announce: JsonObject = field(default_factory=dict)

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


def spawn(name: str, kind: str, args: list[str], env: dict[str, str], logs: Path) -> Child:
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


def announced(child: Child, deadline: float) -> JsonObject:
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


def read_state(state_dir: Path) -> dict[str, Any] | None:  # JSON boundary
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


def write_state(path: Path, data: Mapping[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.touch(mode=0o600)  # it holds the token
    tmp.chmod(0o600)
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)


def _recorded_pids(state: Mapping[str, Any]) -> list[int]:
    pids = [int(state.get("manager", {}).get("pid", 0))]
    pids += [int(a.get("pid", 0)) for a in state.get("agents", [])]
    return [p for p in pids if p > 0]


def kill_leftovers(state_dir: Path, state: Mapping[str, Any] | None) -> list[int]:
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


class Lock:
    """An exclusive ``flock`` on ``DIR/lock``, holding the leader's pid."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / "lock"
        self.fd: int | None = None

    def try_acquire(self) -> bool:
        """Take the lock without waiting; ``False`` when another process holds it."""
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
        """Let go of the lock (idempotent)."""
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


def leader_pid(state_dir: Path) -> int | None:
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
            kill_leftovers(state_dir, state)
            (state_dir / "state.json").unlink(missing_ok=True)
        raise fleet_error("FLEET_NOT_RUNNING", f"nothing running in {state_dir}" + (
            " (removed a stale state.json)" if stale else ""), value=str(state_dir),
            hint="start one with `devmig up`")
    pid = (state or {}).get("leader", {}).get("pid") or leader_pid(state_dir)
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
    killed = kill_leftovers(state_dir, state)
    (state_dir / "state.json").unlink(missing_ok=True)
    return {"stopped": True, "state_dir": str(state_dir), "leader": pid, "forced": forced,
            "children": _recorded_pids(state or {}), "killed_leftovers": killed}


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@contextlib.contextmanager
def signals_ignored() -> Iterator[None]:
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
    """Within the block, SIGINT, SIGTERM and SIGHUP raise :class:`KeyboardInterrupt`.

    So a ``finally`` that stops the fleet runs whichever way the leader is asked to stop.
    """
    def interrupt(_sig: int, _frame: object) -> None:
        raise KeyboardInterrupt

    previous = {s: signal.signal(s, interrupt) for s in _STOP_SIGNALS}  # SIGINT too: a `cmd &` inherits it ignored
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
