"""The stream port under a slowloris client (a real agent process): one HELLO deadline, a pending cap."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest
from agent_processes import AgentProcess, Agents
from socket_checks import closed_within, trickle_closed

from devmig.agent._loop_errors import AcceptErrorLog

STALL = 2.0
CAP = 8


@pytest.fixture(scope="module")
def agent(module_agents: Agents) -> Iterator[AgentProcess]:
    yield module_agents.start("port", "--stall-timeout", str(STALL), "--max-pending-streams", str(CAP))


def connect(agent: AgentProcess) -> socket.socket:
    host, _, port = agent.stream.rpartition(":")
    return socket.create_connection((host, int(port)), timeout=5)


def test_one_byte_at_a_time_does_not_restart_the_hello_deadline(agent: AgentProcess) -> None:
    sock = connect(agent)
    started = time.monotonic()
    with sock:
        closed = trickle_closed(sock)  # at most 40 bytes, 0.25 s apart: 10 s, five stall timeouts
    took = time.monotonic() - started
    assert closed, "the agent kept a trickling HELLO open for 10 s"
    assert took < STALL + 1.5, took


def test_connections_past_the_pending_cap_are_closed_at_once(agent: AgentProcess) -> None:
    held = [connect(agent) for _ in range(CAP)]
    try:
        time.sleep(0.2)
        extra = [connect(agent) for _ in range(5)]
        started = time.monotonic()
        assert all(closed_within(s, 1.0) for s in extra)
        assert time.monotonic() - started < 1.5
        assert not any(closed_within(s, 0.05) for s in held[:2])  # the first ones still wait for a HELLO
        with agent.client() as c:
            assert c.get("/v1/health").status_code == 200
        for s in extra:
            s.close()
    finally:
        for s in held:
            s.close()
    time.sleep(0.3)
    again = connect(agent)  # released: a new connection is pending, not refused
    with again:
        assert not closed_within(again, 0.3)


def test_accept_errors_are_counted_not_flooded() -> None:
    now = [0.0]
    errors = AcceptErrorLog(interval=60.0, clock=lambda: now[0])
    for i in range(10_000):  # ten per second for 1000 s
        now[0] = i / 10
        errors.record({"message": "socket.accept() out of system resource", "exception": OSError(24, "EMFILE")})
    assert errors.total == 10_000
    assert errors.logged == 17  # one a minute over 1000 s
