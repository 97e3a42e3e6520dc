"""Helpers of the local-fleet tests: run ``devmig`` commands, and find what a fleet left behind.

"Left behind" is judged from outside, as a user would: a process whose
command line names the state directory, a recorded pid still alive, a
recorded port that cannot be bound again.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

START_TIMEOUT_S = 240.0
"""Five Python processes import FastAPI and numpy on a shared 2-core machine: be patient."""


def devmig(*args: str, timeout: float = 120.0, cwd: Path | None = None,
           env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m devmig ARGS`` to completion (no terminal) and return the result."""
    return subprocess.run([sys.executable, "-m", "devmig", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, env=dict(env) if env is not None else None,
                          stdin=subprocess.DEVNULL)


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``condition`` until it holds; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def read_state(state_dir: Path) -> dict[str, Any] | None:
    """The fleet's ``state.json``, or ``None``."""
    try:
        data: dict[str, Any] = json.loads((state_dir / "state.json").read_text())
    except (FileNotFoundError, ValueError):
        return None
    return data


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def start_leader(state_dir: Path, log: Path, *, as_background_job: bool = False,
                 ) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    """Start ``devmig up --json`` in the foreground (its own session, no terminal); wait until it is up.

    ``as_background_job``: start it with SIGINT ignored, as a shell's ``devmig up &`` does.
    """
    with log.open("wb") as sink:
        leader = subprocess.Popen([sys.executable, "-m", "devmig", "up", "--state-dir", str(state_dir), "--json"],
                                  stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT,
                                  start_new_session=True, preexec_fn=_ignore_sigint if as_background_job else None)
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        state = read_state(state_dir)
        if state is not None and state["leader"]["pid"] == leader.pid:
            return leader, state
        if leader.poll() is not None:
            raise AssertionError(f"devmig up exited with {leader.returncode}: {log.read_text()}")
        if time.monotonic() > deadline:
            kill_group(leader)
            raise AssertionError(f"devmig up did not come up: {log.read_text()}")
        time.sleep(0.1)


def kill_group(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL a process's whole session/group (test clean-up) and reap it."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


def recorded_pids(state: Mapping[str, Any]) -> list[int]:
    """The manager's and the agents' pids."""
    return [int(state["manager"]["pid"])] + [int(a["pid"]) for a in state["agents"]]


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def processes_naming(text: str) -> list[tuple[int, str]]:
    """Every live process whose command line contains ``text`` (but not this test process)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline and alive(int(entry.name)):
            found.append((int(entry.name), cmdline))
    return found


def ports(state: Mapping[str, Any]) -> list[tuple[str, int]]:
    """Every address the fleet listened on (HTTP of all, migration streams of the agents)."""
    urls: Sequence[str] = [state["manager"]["url"], *(a["url"] for a in state["agents"]),
                           *(a["stream"] for a in state["agents"] if a.get("stream"))]
    out = []
    for url in urls:
        host, _, port = url.rpartition("//")[2].rpartition(":")
        out.append((host, int(port)))
    return out


def bound(addresses: Sequence[tuple[str, int]]) -> list[tuple[str, int]]:
    """The addresses something still listens on (SO_REUSEADDR: a TIME_WAIT connection does not count)."""
    busy = []
    for host, port in addresses:
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, port))
            except OSError:
                busy.append((host, port))
    return busy


def assert_nothing_left(state_dir: Path, state: Mapping[str, Any], timeout: float = 15.0) -> None:
    """No recorded pid alive, no process naming the state directory, every recorded port free."""
    pids = recorded_pids(state)
    wait_until(lambda: not [p for p in pids if alive(p)], timeout, f"the fleet's processes {pids} to exit")
    wait_until(lambda: not processes_naming(str(state_dir)), timeout, f"no process naming {state_dir}")
    wait_until(lambda: not bound(ports(state)), timeout, "every recorded port to be free")
