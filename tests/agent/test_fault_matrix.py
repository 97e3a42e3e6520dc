"""The fault matrix: one fault per row, injected into a migration between REAL agents.

Each row starts a fresh device on the source agent, migrates it to the
destination agent through :class:`~_proxy.StreamProxy` (the destination
advertises the proxy's address with ``--advertise-stream``), injects one
fault at a chosen point, then asserts:

* where the device runs afterwards (``source``, ``destination`` or
  ``nowhere``), read from BOTH agents' ``GET /v1/devices`` -- and that at most
  one side runs it, also while the fault is in effect;
* the outcome on the source, the error code and the phase it names (and the
  destination's, when the row is about it);
* cleanup: no copy left on the side that does not run it, no device left busy,
  no proxied connection left open, no secret left outstanding.

Phases are hit deterministically: the source paces its stream
(``--max-stream-rate``) and runs one pre-copy round over a device whose
workload dirties a large hot set, so pre-copy and stop-copy each last about a
second; the test polls ``GET /v1/migrations/{id}`` for the stage, or the proxy
holds a control frame (GO, ACK) while the fault is injected. Agents are
module-scoped; a killed destination is restarted on the same state directory
(its journal answers the source's in-doubt queries).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cbor2
import httpx2
import pytest
from _proxy import StreamProxy
from agent_processes import TOKEN, AgentProcess, _announced
from devmig_procs import popen_agent, reap

from devmig.migration import SourceHandoff

pytestmark = pytest.mark.slow

ACCEL = "example.org/devices/accel"
BIG = {"model": ACCEL, "config": "version=1,mem-size-mib=64", "host": {"hot_set_mib": 16}}
SMALL = {"model": ACCEL, "config": "version=1,mem-size-mib=16", "host": {"hot_set_mib": 1}}
SOURCE_ARGS = ["--stall-timeout", "2", "--max-stream-rate", "8M", "--max-rounds", "1", "--steps-per-tick", "20"]
DEST_ARGS = ["--stall-timeout", "2", "--secret-ttl", "3", "--release", "nic=1.0.0"]
POLL = 0.005


# -- the bench: two agents and a proxy ------------------------------------------------------


class Lazy:
    """An agent process being started; :meth:`get` waits for its announce line."""

    def __init__(self, root: Path, name: str, extra: list[str]) -> None:
        self.name, self.dir = name, root / name
        self.process, self.args = popen_agent(name, self.dir, *extra, token=TOKEN)
        self.agent: AgentProcess | None = None

    def get(self) -> AgentProcess:
        if self.agent is None:
            self.agent = _announced(self.name, self.process, self.args, self.dir, TOKEN)
        return self.agent

    def kill(self) -> None:
        reap(self.process)


@dataclass
class Bench:
    root: Path
    proxy: StreamProxy
    procs: dict[str, Lazy] = field(default_factory=dict)
    all: list[Lazy] = field(default_factory=list)

    def spawn(self, name: str, extra: list[str]) -> None:
        lazy = Lazy(self.root, name, extra)
        self.procs[name] = lazy
        self.all.append(lazy)

    def agent(self, name: str) -> AgentProcess:
        return self.procs[name].get()

    @property
    def src(self) -> AgentProcess:
        return self.agent("src")

    @property
    def dst(self) -> AgentProcess:
        return self.agent("dst")

    def kill_and_restart(self, name: str, *, restart: bool = True) -> str:
        """SIGKILL an agent; start it again (same state directory) in the background; return its URL."""
        old = self.procs[name].get()
        old.kill(signal.SIGKILL)
        if restart:
            self.restart(name, old.url)
        return old.url

    def restart(self, name: str, url: str) -> None:
        """Start a killed agent again on the same URL: the peer's in-doubt queries must reach it."""
        args = [*DEST_ARGS, "--advertise-stream", self.proxy.address] if name == "dst" else SOURCE_ARGS
        self.spawn(name, [*args, "--listen", url.removeprefix("http://")])

    def close(self) -> None:
        self.proxy.close()
        for lazy in self.all:
            lazy.kill()


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bench]:
    b = Bench(tmp_path_factory.mktemp("matrix"), StreamProxy())
    b.spawn("src", SOURCE_ARGS)
    b.spawn("dst", [*DEST_ARGS, "--advertise-stream", b.proxy.address])
    b.spawn("src2", SOURCE_ARGS)  # a source to kill
    yield b
    b.close()


# -- helpers ---------------------------------------------------------------------------------


def get(agent: AgentProcess, path: str) -> Any:
    with agent.client() as c:
        r = c.get(path)
        return r.json() if r.status_code == 200 else None


def status(agent: AgentProcess, mid: str) -> dict[str, Any]:
    st = get(agent, f"/v1/migrations/{mid}")
    assert st is not None, f"{agent.name} does not know {mid}"
    return dict(st)


def running_copies(b: Bench, src: AgentProcess, src_dev: str, mid: str) -> list[str]:
    """Where the device runs now: ``source`` and/or ``destination`` (both agents asked)."""
    where = []
    if src.alive:
        dev = get(src, f"/v1/devices/{src_dev}")
        if dev is not None and dev["running"]:
            where.append("source")
    dst = b.procs["dst"]
    if dst.process.poll() is None and dst.agent is not None:
        for dev in get(dst.agent, "/v1/devices")["devices"]:
            if dev.get("origin") == mid and dev["running"]:
                where.append("destination")
    assert len(where) <= 1, f"the device runs on both sides: {where}"
    return where


def wait_for(what: str, cond: Callable[[], Any], timeout: float = 30.0, guard: Callable[[], Any] | None = None) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if guard is not None:
            guard()
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}: {cond.__doc__ or ''}")
        time.sleep(POLL)


def start(b: Bench, fault: str | None = None, *, src: AgentProcess | None = None, device: dict[str, Any] = BIG,
          mid: str) -> str:
    """Create a device on the source and start migrating it through the proxy; return its id."""
    src = src or b.src
    b.proxy.arm(b.dst.stream, fault)
    with src.client() as c:
        r = c.post("/v1/devices", json=device)
        assert r.status_code == 201, r.text
        dev_id: str = r.json()["id"]
        r = c.post("/v1/migrations/outgoing", json={"migration_id": mid, "device_id": dev_id,
                                                    "destination": {"url": b.dst.url, "token": b.dst.token}})
        assert r.status_code == 202, r.text
    return dev_id


def stage_is(agent: AgentProcess, mid: str, *stages: str, min_bytes: int = 0) -> bool:
    st = get(agent, f"/v1/migrations/{mid}")
    return bool(st and st["stage"] in stages and st["bytes_sent"] >= min_bytes)


def phase_is(agent: AgentProcess, mid: str, *phases: str) -> bool:
    st = get(agent, f"/v1/migrations/{mid}")
    return bool(st and st["phase"] in phases)


def finished(agent: AgentProcess, mid: str) -> dict[str, Any] | None:
    st = get(agent, f"/v1/migrations/{mid}")
    return st if st and st["finished"] else None


def hello_raw(stream: str, mid: str, payload: bytes | None = None, secret: bytes = b"") -> bytes:
    """Send a preamble and a HELLO (or a hand-made HELLO payload) on a raw socket; return the reply."""
    host, _, port = stream.rpartition(":")
    if payload is None:
        data = SourceHandoff(mid, secret).hello()
    else:
        data = SourceHandoff(mid, b"s" * 32).hello()[:8] + bytes([1]) + len(payload).to_bytes(4, "big") + payload
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := s.recv(4096):
            chunks.append(chunk)
    return b"".join(chunks)


def incoming(dst: AgentProcess, mid: str) -> dict[str, Any]:
    with dst.client() as c:
        r = c.post("/v1/migrations/incoming", json={
            "migration_id": mid, "model": ACCEL, "config": {}, "source": {"url": "", "host": "raw"}})
        assert r.status_code == 200, r.text
        return dict(r.json())


def cli(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "DEVMIG_TOKEN": TOKEN}
    return subprocess.Popen([sys.executable, "-m", "devmig", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


# -- the rows --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Expect:
    """What a row must end in."""

    runs_on: str
    """``source``, ``destination`` or ``nowhere``."""
    source_phase: str | None
    codes: frozenset[str] = frozenset()
    """The source's error code (empty: no error); for ``destination_*`` rows, see below."""
    error_phases: frozenset[str] = frozenset()
    destination_phase: str | None = None
    destination_codes: frozenset[str] = frozenset()
    destination_error_phases: frozenset[str] = frozenset()


def E(runs_on: str, source_phase: str | None, codes: str = "", phases: str = "", destination_phase: str | None = None,
      destination_codes: str = "", destination_phases: str = "") -> Expect:
    split = lambda text: frozenset(text.split())  # noqa: E731
    return Expect(runs_on, source_phase, split(codes), split(phases), destination_phase, split(destination_codes),
                  split(destination_phases))


@dataclass
class Run:
    """What an injection hands back to the common checks."""

    src: AgentProcess
    dev_id: str
    mid: str
    src_status: dict[str, Any] | None = None


def _dest_killed_in(stage: str) -> Callable[[Bench, str], Run]:
    def inject(b: Bench, mid: str) -> Run:
        dev_id = start(b, mid=mid)
        wait_for(stage, lambda: stage_is(b.src, mid, stage, min_bytes=1 << 20))
        b.kill_and_restart("dst")
        return Run(b.src, dev_id, mid)
    return inject


def _dest_killed_holding(fault: str, dest_phase: str) -> Callable[[Bench, str], Run]:
    """Hold GO (or ACK) in the proxy, kill the destination, check the source in doubt, restart it."""
    def inject(b: Bench, mid: str) -> Run:
        dev_id = start(b, fault, mid=mid)
        src = b.src
        wait_for("the hold", lambda: b.proxy.holding.is_set() and phase_is(src, mid, "COMMITTED", "IN_DOUBT")
                 and phase_is(b.dst, mid, *dest_phase.split()))
        url = b.kill_and_restart("dst", restart=False)
        wait_for("IN_DOUBT", lambda: phase_is(src, mid, "IN_DOUBT"))
        assert running_copies(b, src, dev_id, mid) == []  # committed: the source never resumes by itself
        time.sleep(0.5)  # the destination is down: nothing may change
        assert phase_is(src, mid, "IN_DOUBT") and running_copies(b, src, dev_id, mid) == []
        b.restart("dst", url)
        b.dst  # noqa: B018 -- wait for the restarted destination: its journal answers
        return Run(src, dev_id, mid)
    return inject


def _source_killed_in_precopy(b: Bench, mid: str) -> Run:
    src = b.agent("src2")
    dev_id = start(b, src=src, mid=mid)
    wait_for("pre-copy", lambda: stage_is(src, mid, "precopy", min_bytes=1 << 20))
    b.kill_and_restart("src2", restart=False)
    return Run(src, dev_id, mid)


def _source_killed_in_stopcopy(b: Bench, mid: str) -> Run:
    """SIGKILL the source in stop-copy (the device stopped there, not yet committed): it dies with the source."""
    src = live(b, "src2")
    dev_id = start(b, src=src, mid=mid)
    wait_for("stop-copy", lambda: stage_is(src, mid, "stopcopy", min_bytes=1 << 20))
    b.kill_and_restart("src2", restart=False)
    return Run(src, dev_id, mid)


def _source_killed_waiting_ready(b: Bench, mid: str) -> Run:
    """Hold READY (the source waits for it), SIGKILL the source, restart it on the same journal.

    The destination sent READY and cannot tell whether the source committed: it asks the source,
    which (restarted) answers from its journal that it never did, so the destination destroys its copy.
    """
    src = live(b, "src2")
    dev_id = start(b, "hold-ready", src=src, device=SMALL, mid=mid)
    wait_for("the hold", lambda: b.proxy.holding.is_set() and phase_is(src, mid, "WAIT_READY")
             and phase_is(b.dst, mid, "WAIT_GO"))
    url = b.kill_and_restart("src2", restart=False)
    time.sleep(0.5)
    assert running_copies(b, src, dev_id, mid) == []  # the destination's copy waits; nothing runs
    b.proxy.release()
    b.restart("src2", url)
    return Run(b.agent("src2"), dev_id, mid)


def _source_stopped_waiting_ready(b: Bench, mid: str) -> Run:
    """Hold READY, SIGSTOP the source, let READY through, and keep it stopped past the stall timeout."""
    src = b.src
    dev_id = start(b, "hold-ready", device=SMALL, mid=mid)
    wait_for("the hold", lambda: b.proxy.holding.is_set() and phase_is(src, mid, "WAIT_READY")
             and phase_is(b.dst, mid, "WAIT_GO"))
    src.process.send_signal(signal.SIGSTOP)
    try:
        b.proxy.release()
        time.sleep(5.0)  # 2.5 stall timeouts; a stopped source runs nothing (and answers nothing)
    finally:
        src.process.send_signal(signal.SIGCONT)
    return Run(src, dev_id, mid)


def _stopped(name: str) -> Callable[[Bench, str], Run]:
    def inject(b: Bench, mid: str) -> Run:
        dev_id = start(b, mid=mid)
        wait_for("pre-copy", lambda: stage_is(b.src, mid, "precopy", min_bytes=1 << 20)
                 and phase_is(b.dst, mid, "RESUMING"))
        stopped, other = (b.dst, b.src) if name == "dst" else (b.src, b.dst)
        stopped.process.send_signal(signal.SIGSTOP)
        try:
            other_st = wait_for("the peer to give up", lambda: finished(other, mid), timeout=15)
        finally:
            stopped.process.send_signal(signal.SIGCONT)
        run = Run(b.src, dev_id, mid)
        if name == "dst":
            run.src_status = other_st
        return run
    return inject


def _proxied(fault: str) -> Callable[[Bench, str], Run]:
    def inject(b: Bench, mid: str) -> Run:
        dev_id = start(b, fault, device=SMALL if fault == "flip-hello" else BIG, mid=mid)
        return Run(b.src, dev_id, mid)
    return inject


def _cli_killed(when: str) -> Callable[[Bench, str], Run]:
    def inject(b: Bench, mid: str) -> Run:
        src = b.src
        b.proxy.arm(b.dst.stream, "hold-ack" if when == "committed" else None)
        with src.client() as c:
            dev_id = c.post("/v1/devices", json=BIG).json()["id"]
        proc = cli("migrate", "--from", src.url, "--device", dev_id, "--to", b.dst.url, "--migration-id", mid,
                   "--json")
        try:
            if when == "committed":
                wait_for("COMMITTED", lambda: phase_is(src, mid, "COMMITTED", "IN_DOUBT") and b.proxy.holding.is_set(),
                         timeout=60)
            else:
                wait_for("pre-copy", lambda: stage_is(src, mid, "precopy", min_bytes=1 << 20), timeout=60)
        finally:
            proc.kill()
            proc.communicate()
        b.proxy.release()
        wait_for("the end", lambda: finished(src, mid))
        shown = cli("migration", "show", mid, "--agent", src.url, "--json")
        out, err = shown.communicate(timeout=60)
        assert shown.returncode == 0, err
        assert '"outcome": "migrated"' in out, out
        return Run(src, dev_id, mid)
    return inject


def _dest_commit_refused(b: Bench, mid: str) -> Run:
    """The destination's ``RESUMING -> STOP`` fails after the whole stream arrived and validated.

    A block device on a shared image: the image grows between the source's
    open and the destination's (an operator's mistake on shared storage), so
    the destination's copy, created with the same configuration, has another
    capacity. The stream is well-formed (per-record checks and trailer digest
    pass); committing the sections is what fails (``SECTION_INVALID``, the
    ``disk`` section's capacity), so the destination refuses at ``RESUMING``,
    destroys its copy, and the source resumes.
    """
    image = b.root / "images" / f"{mid}.img"  # the agents' shared image directory
    image.parent.mkdir(exist_ok=True)
    image.write_bytes(b"\0" * (4 << 20))
    src = b.src
    b.proxy.arm(b.dst.stream, None)
    with src.client() as c:
        r = c.post("/v1/devices", json={"model": "example.org/devices/blk", "config": "version=1",
                                        "host": {"image": str(image)}})
        assert r.status_code == 201, r.text
        dev_id: str = r.json()["id"]
        with image.open("r+b") as f:  # the destination will open it at twice the size
            f.truncate(8 << 20)
        r = c.post("/v1/migrations/outgoing", json={"migration_id": mid, "device_id": dev_id,
                                                    "destination": {"url": b.dst.url, "token": b.dst.token}})
        assert r.status_code == 202, r.text
    d = wait_for("the destination's end", lambda: finished(b.dst, mid))
    assert d["timings"].get("trailer") and d["error"]["code"] == "SECTION_INVALID", d  # the whole stream validated
    return Run(src, dev_id, mid)


ROWS: dict[str, tuple[Callable[[Bench, str], Run], Expect]] = {
    "dest-SIGKILL-precopy": (
        _dest_killed_in("precopy"),
        E("source", "ROLLED_BACK", "PEER_LOST CONNECTION_LOST", "STREAMING"),
    ),
    "dest-SIGKILL-stopcopy": (
        _dest_killed_in("stopcopy"),
        E("source", "ROLLED_BACK", "PEER_LOST CONNECTION_LOST", "STREAMING"),
    ),
    "dest-SIGKILL-after-READY": (
        _dest_killed_holding("hold-go", "WAIT_GO"),
        E("source", "ROLLED_BACK", "PEER_LOST CONNECTION_LOST PEER_STALLED DESTINATION_LOST", "COMMITTED", "DESTROYED"),
    ),
    # the ACK is held: the source is in doubt (lost, or stalled while the ACK is held) until the
    # restarted destination's journal says STARTED; the device died with the destination
    "dest-SIGKILL-after-GO": (
        _dest_killed_holding("hold-ack", "STARTING RUNNING"),
        E("nowhere", "DONE", "PEER_LOST CONNECTION_LOST PEER_STALLED", "COMMITTED", "RUNNING"),
    ),
    "source-SIGKILL-precopy": (
        _source_killed_in_precopy,
        E(
            "nowhere",
            None,
            destination_phase="DESTROYED",
            destination_codes="SOURCE_LOST",
            destination_phases="RESUMING",
        ),
    ),
    "source-SIGKILL-stopcopy": (
        _source_killed_in_stopcopy,
        E(
            "nowhere",
            None,
            destination_phase="DESTROYED",
            destination_codes="SOURCE_LOST PEER_LOST CONNECTION_LOST",
            destination_phases="RESUMING",
        ),
    ),
    # the device died with the source; its restarted journal (OUTGOING, no COMMITTED) says ROLLED_BACK,
    # and device_is says nowhere (checked for every row below)
    "source-SIGKILL-WAIT_READY": (
        _source_killed_waiting_ready,
        E("nowhere", "ROLLED_BACK", destination_phase="DESTROYED"),
    ),
    # READY waits in the stopped source's socket; the destination, stalled at WAIT_GO, asks the source; the
    # source wakes, commits, finds the connection closed, and learns from the destination that it runs there
    "source-SIGSTOP-WAIT_READY": (
        _source_stopped_waiting_ready,
        E("destination", "DONE", "CONNECTION_LOST PEER_LOST PEER_STALLED", "COMMITTED", destination_phase="RUNNING"),
    ),
    "dest-SIGSTOP-precopy": (
        _stopped("dst"),
        E("source", "ROLLED_BACK", "PEER_STALLED", "STREAMING WAIT_READY", "DESTROYED"),
    ),
    "source-SIGSTOP-precopy": (
        _stopped("src"),
        E("source", "ROLLED_BACK", "", "", "DESTROYED", "PEER_STALLED", "RESUMING"),
    ),
    # the destination refuses; the source's error is the destination's (side ``destination``)
    # a stop-copy BULK: the destination refuses it while the source still streams, and lingers (drops
    # what still comes) until the source read the refusal and closed -- not a reset that loses it
    "proxy-flip-bulk": (
        _proxied("flip-bulk"),
        E("source", "ROLLED_BACK", "RECORD_CORRUPT", "RESUMING", "DESTROYED", "RECORD_CORRUPT", "RESUMING"),
    ),
    # a LIVE (pre-copy) record is discarded, not refused; its digest is in the framing: refused at the trailer
    "proxy-flip-live-bulk": (
        _proxied("flip-live-bulk"),
        E("source", "ROLLED_BACK", "DIGEST_MISMATCH", "RESUMING", "DESTROYED", "DIGEST_MISMATCH", "RESUMING"),
    ),
    # a refused HELLO: the source drops the destination's waiting copy at once (not at the secret's expiry)
    "proxy-flip-hello": (
        _proxied("flip-hello"),
        E("source", "ROLLED_BACK", "AUTH_FAILED HELLO_INVALID", "WAIT_HELLO", "DESTROYED", "CANCELLED", "WAIT_HELLO"),
    ),
    "proxy-flip-section": (
        _proxied("flip-section"),
        E("source", "ROLLED_BACK", "RECORD_CORRUPT", "RESUMING", "DESTROYED", "RECORD_CORRUPT", "RESUMING"),
    ),
    # the destination sees the cut itself, or the source's cancel first
    "proxy-truncate": (
        _proxied("truncate"),
        E(
            "source",
            "ROLLED_BACK",
            "PEER_LOST CONNECTION_LOST",
            "STREAMING",
            "DESTROYED",
            "PEER_LOST CONNECTION_LOST CANCELLED",
            "RESUMING",
        ),
    ),
    "proxy-reset": (
        _proxied("reset"),
        E(
            "source",
            "ROLLED_BACK",
            "PEER_LOST CONNECTION_LOST",
            "STREAMING",
            "DESTROYED",
            "PEER_LOST CONNECTION_LOST CANCELLED",
            "RESUMING",
        ),
    ),
    # the stream validated, the commit (RESUMING -> STOP) is refused: the source resumes, the copy is destroyed
    "dest-commit-refused": (
        _dest_commit_refused,
        E("source", "ROLLED_BACK", "SECTION_INVALID", "RESUMING", "DESTROYED", "SECTION_INVALID", "RESUMING"),
    ),
    "cli-killed-precopy": (_cli_killed("precopy"), E("destination", "DONE", destination_phase="RUNNING")),
    "cli-killed-after-COMMITTED": (_cli_killed("committed"), E("destination", "DONE", destination_phase="RUNNING")),
}


@pytest.mark.parametrize("row", list(ROWS))
def test_fault(bench: Bench, row: str) -> None:
    inject, expect = ROWS[row]
    mid = "mig-" + row.lower().replace("_", "-")
    run = inject(bench, mid)
    src, dev_id = run.src, run.dev_id
    dst = bench.dst
    # the source's outcome (unless the source itself died)
    if expect.source_phase is not None:
        st = run.src_status or wait_for("the source's end", lambda: finished(src, mid),
                                        guard=lambda: running_copies(bench, src, dev_id, mid))
        st = finished(src, mid) or st
        assert st["phase"] == expect.source_phase, st
        if expect.codes:
            assert st["error"] and st["error"]["code"] in expect.codes, st["error"]
        elif expect.source_phase == "DONE":
            assert st["error"] is None or expect.runs_on == "nowhere", st["error"]
        else:
            assert st["error"] and st["error"]["code"], st
        if expect.error_phases:
            assert st["error"]["phase"] in expect.error_phases, st["error"]
    # the destination's view
    if expect.destination_phase is not None:
        d = wait_for("the destination's end", lambda: finished(dst, mid))
        assert d["phase"] == expect.destination_phase, d
        if expect.destination_codes:
            assert d["error"] and d["error"]["code"] in expect.destination_codes, d["error"]
        if expect.destination_error_phases:
            assert d["error"]["phase"] in expect.destination_error_phases, d["error"]
        assert d["secret_outstanding"] is False
    # where the device runs, read from both agents
    where = running_copies(bench, src, dev_id, mid)
    assert where == ([] if expect.runs_on == "nowhere" else [expect.runs_on]), where
    # and each side's status says so: the side that runs it says here, no side claims a device it lost
    said = {name: st["device_is"] for name, agent in (("source", src), ("destination", dst))
            if agent.alive and (st := finished(agent, mid)) is not None}
    for name, device_is in said.items():
        if expect.runs_on == name:
            assert device_is == "here", (name, said)
        else:
            assert device_is != "here" or (name == "source" and expect.runs_on == "nowhere"
                                            and get(src, f"/v1/devices/{dev_id}") is not None), (name, said)
    # cleanup: no leftover copy, nothing busy, no open connection, no outstanding secret
    if expect.runs_on != "destination":
        assert [d for d in get(dst, "/v1/devices")["devices"] if d.get("origin") == mid] == []
    d_st = get(dst, f"/v1/migrations/{mid}")
    if d_st is not None:
        wait_for("the destination's end", lambda: finished(dst, mid))
        assert get(dst, f"/v1/migrations/{mid}")["secret_outstanding"] is False
    if src.alive:
        if expect.runs_on == "source":
            dev = get(src, f"/v1/devices/{dev_id}")
            assert dev["busy"] is None and dev["state"] == "RUNNING", dev
            first = dev["counters"]["steps"]
            wait_for("the workload to go on", lambda: get(src, f"/v1/devices/{dev_id}")["counters"]["steps"] > first)
        else:
            assert get(src, f"/v1/devices/{dev_id}") is None
    bench.proxy.release()
    # free the CPU for the next rows
    with src.client() if src.alive else dst.client() as c:
        if src.alive:
            c.delete(f"/v1/devices/{dev_id}")
    if expect.runs_on == "destination":
        with dst.client() as c:
            for dev in c.get("/v1/devices").json()["devices"]:
                if dev.get("origin") == mid:
                    c.delete(f"/v1/devices/{dev['id']}")


# -- secrets, compatibility, conflicts --------------------------------------------------------


def test_secrets(bench: Bench) -> None:
    dst = bench.dst
    mid = "mig-secrets"
    offer = incoming(dst, mid)
    assert get(dst, f"/v1/migrations/{mid}")["secret_outstanding"] is True
    secret = bytes.fromhex(offer["secret"])
    # wrong: refused before a byte of state; the migration is undisturbed
    assert b"AUTH_FAILED" in hello_raw(dst.stream, mid, secret=bytes(32))
    # missing: a HELLO without a secret is malformed
    reply = hello_raw(dst.stream, mid, payload=cbor2.dumps({"migration": mid}, canonical=True))
    assert b"HELLO_INVALID" in reply or b"FRAME_INVALID" in reply or b"AUTH_FAILED" in reply, reply
    st = status(dst, mid)
    assert st["phase"] == "WAIT_HELLO" and st["secret_outstanding"]
    assert get(dst, f"/v1/devices/{offer['device_id']}")["state"] == "RESUMING"
    # right, then reused
    hello_raw(dst.stream, mid, secret=secret)
    st = wait_for("destroyed", lambda: finished(dst, mid))
    assert st["phase"] == "DESTROYED" and st["secret_outstanding"] is False
    assert b"SECRET_REUSED" in hello_raw(dst.stream, mid, secret=secret)
    assert get(dst, f"/v1/devices/{offer['device_id']}") is None
    # expired: nobody connects within --secret-ttl; the copy is destroyed, the secret refused
    mid = "mig-secret-expired"
    offer = incoming(dst, mid)
    st = wait_for("expiry", lambda: finished(dst, mid), timeout=10)
    assert st["phase"] == "DESTROYED" and st["error"]["code"] == "SECRET_EXPIRED"
    assert st["error"]["phase"] == "WAIT_HELLO" and st["secret_outstanding"] is False
    assert get(dst, f"/v1/devices/{offer['device_id']}") is None
    reply = hello_raw(dst.stream, mid, secret=bytes.fromhex(offer["secret"]))
    assert b"SECRET_EXPIRED" in reply or b"AUTH_FAILED" in reply, reply


def test_incompatible_destination(bench: Bench) -> None:
    src, dst = bench.src, bench.dst
    with src.client() as c:
        dev = c.post("/v1/devices", json={"model": "example.org/devices/nic", "config": "version=3"}).json()
        r = c.post("/v1/migrations/outgoing", json={"migration_id": "mig-incompatible", "device_id": dev["id"],
                                                    "destination": {"url": dst.url, "token": dst.token}})
        assert r.status_code == 409 and r.json()["code"] == "INCOMPATIBLE", r.text
        assert len(r.json()["errors"]) >= 2
        assert c.get("/v1/migrations/mig-incompatible").status_code == 404
        after = c.get(f"/v1/devices/{dev['id']}").json()
        assert after["running"] and after["busy"] is None
        c.delete(f"/v1/devices/{dev['id']}")
    assert [d for d in get(dst, "/v1/devices")["devices"] if d.get("origin") == "mig-incompatible"] == []
    assert get(dst, "/v1/migrations/mig-incompatible") is None


def test_concurrent_migrate_and_delete_are_409(bench: Bench) -> None:
    src, dst = bench.src, bench.dst
    mid = "mig-concurrent"
    dev_id = start(bench, mid=mid)
    wait_for("pre-copy", lambda: stage_is(src, mid, "precopy"))
    with src.client() as c:
        body = {"device_id": dev_id, "destination": {"url": dst.url, "token": dst.token}}
        other = c.post("/v1/migrations/outgoing", json={**body, "migration_id": "mig-concurrent-2"})
        assert other.status_code == 409 and other.json()["code"] == "DEVICE_BUSY", other.text
        deleted = c.delete(f"/v1/devices/{dev_id}")
        assert deleted.status_code == 409 and deleted.json()["code"] == "DEVICE_BUSY", deleted.text
    st = wait_for("the end", lambda: finished(src, mid))
    assert st["outcome"] == "migrated", st
    assert running_copies(bench, src, dev_id, mid) == ["destination"]
    with dst.client() as c:
        c.delete(f"/v1/devices/{st['destination_device_id']}")


# -- a source restarted in doubt resolves by itself (DESIGN §6) -----------------------------------


def journal(agent: AgentProcess, mid: str) -> list[dict[str, Any]]:
    """The records an agent journaled for one migration (its ``migrations.jsonl``)."""
    lines = (agent.state_dir / "migrations.jsonl").read_text(encoding="utf-8").splitlines()
    return [r for r in map(json.loads, lines) if r["migration"] == mid]


def live(b: Bench, name: str) -> AgentProcess:
    """The agent ``name``, started again (same URL and state directory) if an earlier test killed it."""
    lazy = b.procs[name]
    if lazy.process.poll() is not None:
        b.restart(name, lazy.get().url)
    return b.agent(name)


def _source_killed_committed(b: Bench, mid: str, fault: str, dest_phases: str) -> tuple[str, str]:
    """Hold GO (or ACK) so the source has journaled COMMITTED and has no ACK, then SIGKILL the source.

    Returns the device id and the killed source's URL (to restart it on).
    """
    src = live(b, "src2")
    dev_id = start(b, fault, src=src, device=SMALL, mid=mid)
    wait_for("the hold", lambda: b.proxy.holding.is_set() and phase_is(src, mid, "COMMITTED", "IN_DOUBT")
             and phase_is(b.dst, mid, *dest_phases.split()))
    assert [r["record"] for r in journal(src, mid)] == ["OUTGOING", "COMMITTED"]
    return dev_id, b.kill_and_restart("src2", restart=False)


def _no_token_shown(agents: list[AgentProcess], mid: str, *tokens: str) -> None:
    for agent in agents:
        for path in (f"/v1/migrations/{mid}", "/v1/migrations"):
            with agent.client() as c:
                text = c.get(path).text
            for token in tokens:
                assert token not in text, f"{agent.name} {path} shows a per-migration token"


@pytest.mark.parametrize("fault, dest_phases", [("hold-go", "WAIT_GO"), ("hold-ack", "STARTING RUNNING")])
def test_restarted_source_resolves_its_in_doubt_migration(bench: Bench, fault: str, dest_phases: str) -> None:
    """Killed after COMMITTED, restarted with the destination alive: nobody calls it, it reaches DONE."""
    mid = f"mig-source-restarted-{fault}"
    dev_id, url = _source_killed_committed(bench, mid, fault, dest_phases)
    dst = bench.dst
    committed = journal(bench.procs["src2"].get(), mid)[-1]["data"]
    query_token, callback_token = committed["query_token"], committed["callback_token"]
    assert "query_token" not in json.dumps(committed["status"]) and query_token not in json.dumps(committed["status"])
    assert journal(dst, mid)[0]["data"]["query_token"] == query_token  # the destination journaled what it issued
    t0 = time.monotonic()
    bench.restart("src2", url)
    src = bench.agent("src2")
    announced_at = time.monotonic()
    st = wait_for("the restarted source's end", lambda: finished(src, mid), timeout=15,
                  guard=lambda: running_copies(bench, src, dev_id, mid))
    resolved_s, after_announce_s = time.monotonic() - t0, time.monotonic() - announced_at
    assert st["phase"] == "DONE" and st["outcome"] == "migrated" and st["from_journal"], st
    assert st["error"]["code"] == "CONNECTION_LOST" and st["error"]["phase"] == "COMMITTED", st["error"]
    # measured: 0.1-0.4 s after the restarted agent announced itself (3.4-4.5 s with its start-up)
    assert after_announce_s < 5 and resolved_s < 15, (resolved_s, after_announce_s)
    d = wait_for("the destination's end", lambda: finished(dst, mid))
    assert d["phase"] == "RUNNING" and d["secret_outstanding"] is False, d
    # exactly one copy, on the destination; none left on the source
    assert running_copies(bench, src, dev_id, mid) == ["destination"]
    assert get(src, f"/v1/devices/{dev_id}") is None
    assert [r["record"] for r in journal(src, mid)] == ["OUTGOING", "COMMITTED", "DONE"]
    _no_token_shown([src, dst], mid, query_token, callback_token)
    # the query route: a wrong token is refused with a stable code, the issued ones are accepted
    frame = SourceHandoff.restarted_in_doubt(mid).query()
    headers = {"Content-Type": "application/octet-stream"}
    with httpx2.Client(base_url=dst.url, timeout=10) as c:
        wrong = c.post(f"/v1/migrations/{mid}/query", content=frame, headers={**headers, "Authorization": "Bearer x"})
        assert wrong.status_code == 401 and wrong.json()["code"] == "AUTH_FAILED", wrong.text
        stolen = c.post(f"/v1/migrations/{mid}/query", content=frame,
                        headers={**headers, "Authorization": f"Bearer {callback_token}"})  # the source's token
        assert stolen.status_code == 401 and stolen.json()["code"] == "AUTH_FAILED", stolen.text
        other = c.post(f"/v1/migrations/{mid}-other/query", content=frame,
                       headers={**headers, "Authorization": f"Bearer {query_token}"})  # another migration's
        assert other.status_code == 401 and other.json()["code"] == "AUTH_FAILED", other.text
        right = c.post(f"/v1/migrations/{mid}/query", content=frame,
                       headers={**headers, "Authorization": f"Bearer {query_token}"})
        assert right.status_code == 200 and b"STARTED" in right.content, right.content
    with httpx2.Client(base_url=src.url, timeout=10) as c:  # the restarted source accepts its callback token
        asked = c.post(f"/v1/migrations/{mid}/query", content=frame,
                       headers={**headers, "Authorization": f"Bearer {callback_token}"})
        assert asked.status_code != 401, asked.text  # (a source's frame sent to a source: refused as a query)
    bench.proxy.release()
    with dst.client() as c:
        c.delete(f"/v1/devices/{d['destination_device_id']}")


@pytest.mark.parametrize("fault, dest_phases, outcome", [
    # STARTED is in the destination's journal: DONE (the device died with the destination)
    ("hold-ack", "STARTING RUNNING", "migrated"),
    # the destination never started it: ABORTED, so ROLLED_BACK -- with nothing to resume
    ("hold-go", "WAIT_GO", "rolled_back"),
])
def test_restarted_source_keeps_asking_until_the_destination_is_back(bench: Bench, fault: str, dest_phases: str,
                                                                     outcome: str) -> None:
    mid = f"mig-source-restarted-dest-down-{fault}"
    dev_id, src_url = _source_killed_committed(bench, mid, fault, dest_phases)
    dst_url = bench.kill_and_restart("dst", restart=False)
    bench.restart("src2", src_url)
    src = bench.agent("src2")
    wait_for("the source to ask", lambda: stage_is(src, mid, "in_doubt"), timeout=10)
    time.sleep(1.5)  # the destination is down: the source keeps asking, nothing changes
    st = status(src, mid)
    assert st["phase"] == "IN_DOUBT" and st["outcome"] == "in_doubt" and not st["finished"], st
    assert running_copies(bench, src, dev_id, mid) == []
    bench.restart("dst", dst_url)
    dst = bench.dst
    st = wait_for("the restarted source's end", lambda: finished(src, mid), timeout=15,
                  guard=lambda: running_copies(bench, src, dev_id, mid))
    assert st["outcome"] == outcome, st
    if outcome == "migrated":
        assert st["phase"] == "DONE" and st["error"]["code"] == "CONNECTION_LOST", st
    else:
        assert st["phase"] == "ROLLED_BACK", st
        assert st["error"]["code"] == "DESTINATION_LOST" and st["error"]["side"] == "destination", st["error"]
        assert "runs nowhere" in st["error"]["message"], st["error"]
    assert running_copies(bench, src, dev_id, mid) == []  # both copies died with their processes
    assert get(src, f"/v1/devices/{dev_id}") is None
    assert [d for d in get(dst, "/v1/devices")["devices"] if d.get("origin") == mid] == []
    d = get(dst, f"/v1/migrations/{mid}")
    assert d["finished"] and d["secret_outstanding"] is False, d
    bench.proxy.release()
