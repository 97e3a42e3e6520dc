"""Bounded requests on a real agent process: the token before the body, a body limit, bounded answers."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from agent_processes import AgentProcess, Agents

NIC = "example.org/devices/nic"


@pytest.fixture(scope="module")
def agent(module_agents: Agents) -> Iterator[AgentProcess]:
    yield module_agents.start("bounded")


def raw(agent: AgentProcess, head: str, body: bytes = b"", *, timeout: float = 10.0) -> tuple[int, bytes, float]:
    """Send a request by hand; return the status, the whole answer and the seconds it took."""
    where = urlsplit(agent.url)
    started = time.monotonic()
    with socket.create_connection((where.hostname, where.port), timeout=timeout) as sock:
        sock.sendall(head.encode() + b"\r\n" + body)
        sock.shutdown(socket.SHUT_WR) if body else None
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
            if b"\r\n\r\n" in answer and _complete(answer):
                break
    return int(answer.split(b" ", 2)[1]), answer, time.monotonic() - started


def _complete(answer: bytes) -> bool:
    head, _, body = answer.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":")[1])
    return False


def headers(path: str, length: int, token: str | None = None) -> str:
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    return (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{auth}"
            f"Content-Length: {length}\r\n")


def test_an_anonymous_huge_body_is_refused_before_it_is_read(agent: AgentProcess) -> None:
    status, answer, took = raw(agent, headers("/v1/devices", 260 << 20))  # not one byte of it is sent
    assert status == 401 and b"AUTH_REQUIRED" in answer
    assert took < 2.0
    status, answer, _ = raw(agent, headers("/v1/migrations/incoming", 260 << 20, "wrong"))
    assert status == 401 and b"AUTH_FAILED" in answer


def test_a_declared_length_past_the_limit_is_413_at_once(agent: AgentProcess) -> None:
    status, answer, took = raw(agent, headers("/v1/devices", 260 << 20, agent.token))
    assert status == 413 and b"BODY_TOO_LARGE" in answer and took < 2.0


def test_a_chunked_body_past_the_limit_stops_being_read(agent: AgentProcess) -> None:
    chunk = b"x" * 65536
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(20)) + b"0\r\n\r\n"  # 1.25 MiB
    head = (f"POST /v1/devices HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {agent.token}\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n")
    status, answer, _ = raw(agent, head, body)
    assert status == 413 and b"BODY_TOO_LARGE" in answer


def test_a_megabyte_config_string_gets_a_short_answer(agent: AgentProcess) -> None:
    config = "rx-queues=" + "9" * 1_000_000
    with agent.client() as c:
        r = c.post("/v1/devices", json={"model": NIC, "config": config})
        assert r.status_code == 422
        assert len(r.content) < 8192, len(r.content)
        problem = r.json()
        assert "characters)" in json.dumps(problem)
        r = c.post("/v1/devices", json={"model": NIC, "config": {"x" * 900_000: 1}})
        assert r.status_code == 422 and len(r.content) < 8192, len(r.content)
        assert c.get("/v1/health").status_code == 200
