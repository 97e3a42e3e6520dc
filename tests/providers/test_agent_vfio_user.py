"""A real agent with ``--provider vfio-user:SETTINGS.json`` hosting real backend processes (DESIGN §9).

The report is the union (sdk + backends, a release offered twice refused with
``PROVIDER_CONFLICT``); ``POST /v1/devices`` launches a backend with every
parameter as ``--m-`` and holds its connection; a backend's exit 1 is a 422
``BACKEND_REFUSED`` with its words; counters and the digest come from the
backend; DELETE makes it exit; a killed backend is ``LOST`` with its status;
backends die with their agent.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from devmig_procs import announced, popen_agent, reap

from devmig.devices import device_class

TOKEN = "vfio-user-agent-token"
NIC = "example.org/devices/nic"
SERVE = [sys.executable, "-m", "devmig", "vfio-user", "serve"]


def _refuser(tmp_path: Path) -> Path:
    """A third party's backend: acme-nic 2.0.0 that refuses rss=on with its own words."""
    script = tmp_path / "refusing-backend"
    serve = " ".join(SERVE)
    script.write_text(
        "#!/bin/sh\n"
        'case " $* " in *" --m-rss=on "*) echo "rss is not wired on this card" >&2; exit 1;; esac\n'
        f'exec {serve} acme-nic/2.0.0 "$@"\n'
    )
    script.chmod(0o755)
    return script


def _settings(tmp_path: Path, backends: list[dict]) -> Path:  # type: ignore[type-arg]
    path = tmp_path / "vfio-user.json"
    path.write_text(json.dumps({"backends": backends}))
    return path


def _children(pid: int) -> set[int]:
    out: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        out |= {int(c) for c in (task / "children").read_text().split()}
    return out


def _gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return True
        if state == "Z":
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[tuple[httpx2.Client, int]]:
    settings = _settings(
        tmp_path,
        [
            {"command": [*SERVE, "acme-nic/1.0.0"], "client": "agent"},
            {"command": [str(_refuser(tmp_path))]},
            {"command": [*SERVE, "acme-accel/1.0.0"], "client": "vmm"},
        ],
    )
    process, _ = popen_agent(
        "host-v", tmp_path / "agent", "--provider", f"vfio-user:{settings}", token=TOKEN
    )
    try:
        url = announced("agent host-v", process)["url"]
        with httpx2.Client(
            base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60
        ) as client:
            yield client, process.pid
    finally:
        reap(process)


def test_the_report_is_the_union_and_backends_are_hosted(
    agent: tuple[httpx2.Client, int],
) -> None:
    client, agent_pid = agent
    releases = [
        (d["implementation"]["name"], d["implementation"]["release"])
        for d in client.get("/v1/report").json()["implementations"]
    ]
    assert releases[-3:] == [("acme-nic", "1.0.0"), ("acme-nic", "2.0.0"), ("acme-accel", "1.0.0")]
    providers = {
        (p["implementation"]["name"], p["implementation"]["release"]): (p["provider"], p["carrier"])
        for p in client.get("/v1/providers").json()["implementations"]
    }
    assert providers[("acme-nic", "1.0.0")] == ("vfio-user", "agent")
    assert providers[("acme-accel", "1.0.0")] == ("vfio-user", "vmm")
    assert providers[("acme-nic", "3.0.0")] == ("sdk", "agent")

    made = client.post(
        "/v1/devices",
        json={"model": NIC, "config": "version=1,rx-queues=4", "implementation": "acme-nic/1.0.0"},
    )
    assert made.status_code == 201, made.text
    device = made.json()
    assert (device["provider"], device["carrier"], device["state"]) == (
        "vfio-user",
        "agent",
        "RUNNING",
    )
    assert device["implementation"] == {"name": "acme-nic", "release": "1.0.0"}
    [backend] = _children(agent_pid)
    argv = Path(f"/proc/{backend}/cmdline").read_bytes().decode().split("\0")[:-1]
    params = sorted(a for a in argv if a.startswith("--m-"))
    assert len(params) == len(
        device_class("acme-nic", "1.0.0").model().params
    )  # off values included
    assert "--m-rx-queues=4" in params
    assert not any(a.startswith("--migration-version") for a in argv)

    # counters and digest come from the backend over the agent's connection
    first = client.get(f"/v1/devices/{device['id']}", params={"digest": "true"}).json()
    assert len(first["digest"]) == 32 and "steps" in first["counters"]
    time.sleep(0.5)
    later = client.get(f"/v1/devices/{device['id']}").json()
    assert later["counters"]["steps"] > first["counters"]["steps"]  # the backend's workload runs
    assert client.get("/v1/health").json()["devices"] == 1

    # the third party's words come back with a 422, and nothing is left running
    refused = client.post(
        "/v1/devices",
        json={"model": NIC, "config": "version=2,rss=on", "implementation": "acme-nic/2.0.0"},
    )
    assert refused.status_code == 422 and refused.json()["code"] == "BACKEND_REFUSED", refused.text
    assert "rss is not wired on this card" in refused.json()["errors"][0]["hint"]
    assert _children(agent_pid) == {backend}
    ok = client.post(
        "/v1/devices",
        json={"model": NIC, "config": "version=1", "implementation": "acme-nic/2.0.0"},
    )
    assert ok.status_code == 201, ok.text

    # DELETE closes the connection: the backend exits and its socket goes
    assert client.delete(f"/v1/devices/{device['id']}").status_code == 204
    assert _gone(backend)
    assert client.get(f"/v1/devices/{device['id']}").status_code == 404

    # a backend that dies is LOST with its exit status, never restarted
    second = ok.json()
    before = _children(agent_pid)
    for pid in before:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        if b"acme-nic/2.0.0" in cmd:
            os.kill(pid, signal.SIGKILL)
            assert _gone(pid)
    deadline = time.monotonic() + 10  # the agent learns of the death when it reaps the process
    lost = client.get(f"/v1/devices/{second['id']}").json()
    while lost["state"] != "LOST" and time.monotonic() < deadline:
        time.sleep(0.05)
        lost = client.get(f"/v1/devices/{second['id']}").json()
    assert (lost["state"], lost["exit_status"]) == ("LOST", -signal.SIGKILL)
    time.sleep(0.3)
    assert len(_children(agent_pid)) == len(before) - 1
    assert client.delete(f"/v1/devices/{second['id']}").status_code == 204

    # a vmm backend: its socket is left for the VMM
    vmm = client.post(
        "/v1/devices",
        json={
            "model": "example.org/devices/accel",
            "config": "version=1",
            "implementation": "acme-accel/1.0.0",
        },
    )
    assert vmm.status_code == 201, vmm.text
    assert (vmm.json()["carrier"], vmm.json()["state"]) == ("vmm", "RUNNING")
    socket = Path(vmm.json()["host"]["socket"])
    assert socket.exists()
    assert client.delete(f"/v1/devices/{vmm.json()['id']}").status_code == 204
    assert not socket.exists()


def test_backends_die_with_their_agent(tmp_path: Path) -> None:
    settings = _settings(tmp_path, [{"command": [*SERVE, "acme-nic/1.0.0"]}])
    process, _ = popen_agent(
        "host-d", tmp_path / "agent", "--provider", f"vfio-user:{settings}", token=TOKEN
    )
    try:
        url = announced("agent host-d", process)["url"]
        with httpx2.Client(
            base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60
        ) as c:
            made = c.post("/v1/devices", json={"model": NIC, "implementation": "acme-nic/1.0.0"})
            assert made.status_code == 201, made.text
        [backend] = _children(process.pid)
        process.kill()
        process.wait(timeout=10)
        assert _gone(backend)
    finally:
        reap(process)


def test_a_release_offered_twice_stops_the_agent(tmp_path: Path) -> None:
    settings = _settings(tmp_path, [{"command": [*SERVE, "acme-nic/3.0.0"]}])  # the sdk's too
    process, _ = popen_agent(
        "host-c", tmp_path / "agent", "--provider", f"vfio-user:{settings}", token=TOKEN
    )
    try:
        out, err = process.communicate(timeout=60)
        assert process.returncode == 2
        assert "PROVIDER_CONFLICT" in out + err
    finally:
        reap(process)
