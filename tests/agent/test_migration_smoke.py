"""Smoke: one accel migration between two real agents."""

from __future__ import annotations

import time

from conftest import AgentProcess


def wait_done(agent: AgentProcess, mid: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    with agent.client() as c:
        while True:
            st = c.get(f"/v1/migrations/{mid}").json()
            if st["finished"] or time.monotonic() > deadline:
                return st
            time.sleep(0.05)


def test_smoke(start_agent) -> None:
    a = start_agent("a")
    b = start_agent("b")
    with a.client() as ca:
        resp = ca.post("/v1/devices", json={"model": "example.org/devices/accel", "config": "version=1,mem-size-mib=64"}); print(resp.text); dev = resp.json()
        r = ca.post("/v1/migrations/outgoing", json={"device_id": dev["id"], "destination": {"url": b.url, "token": b.token}})
        print(r.status_code, r.json())
        mid = r.json()["migration_id"]
    st = wait_done(a, mid)
    print(st)
    with b.client() as cb:
        print(cb.get(f"/v1/migrations/{mid}").json())
    assert st["outcome"] == "migrated"
