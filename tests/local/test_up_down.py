"""``devmig up`` / ``devmig down``: a real local fleet (a manager and four agent processes) on loopback.

Each test starts a real fleet, so they are slow (the imports of five Python
processes dominate) and marked so.
"""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx2
import pytest
from local_fleet_checks import (
    alive,
    assert_nothing_left,
    devmig,
    kill_group,
    read_state,
    recorded_pids,
    start_leader,
    wait_until,
)

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")


def _tls(state: dict[str, Any]) -> ssl.SSLContext:
    """The operator's client context: the fleet's local CA and the client certificate the agents require."""
    files = state["tls"]
    ctx = ssl.create_default_context(cafile=files["ca"])
    ctx.load_cert_chain(files["cert"], files["key"])
    return ctx


def _check_fleet(state: dict[str, Any]) -> None:
    """The fleet answers over TLS: four hosts reachable in pool local, on the promised releases, devices running."""
    manager = state["manager"]["url"]
    assert manager.startswith("https://") and all(a["url"].startswith("https://") for a in state["agents"])
    verify = _tls(state)
    # an agent refuses a client without the fleet's client certificate, in the handshake
    anonymous = ssl.create_default_context(cafile=state["tls"]["ca"])
    with pytest.raises(httpx2.HTTPError):
        httpx2.get(f"{state['agents'][0]['url']}/v1/devices", timeout=30, verify=anonymous).raise_for_status()
    hosts = httpx2.get(f"{manager}/v1/hosts", timeout=30, verify=verify).json()["hosts"]
    assert sorted(h["name"] for h in hosts) == ["current-a", "current-b", "newest", "oldest"]
    assert all(h["reachable"] and h["pools"] == ["local"] for h in hosts)
    releases = {h["name"]: h["releases"] for h in hosts}
    assert releases["oldest"] == {"acme-nic": "1.0.0", "acme-blk": "1.0.0", "acme-accel": "1.0.0"}
    assert releases["current-a"] == releases["current-b"] == {
        "acme-nic": "2.0.0", "acme-blk": "2.0.0", "acme-accel": "2.0.0"}
    assert releases["newest"]["acme-nic"] == "3.0.0" and releases["newest"]["acme-accel"] == "3.0.0"
    devices = 0
    for agent in state["agents"]:
        listed = httpx2.get(f"{agent['url']}/v1/devices", timeout=30, verify=verify).json()["devices"]
        assert all(d["running"] for d in listed)
        devices += len(listed)
        blk = [d for d in listed if d["model"] == "example.org/devices/blk"]
        assert all(str(d["host"]["image"]).startswith(state["state_dir"]) for d in blk)
        assert all(d["memory_bytes"] <= 64 << 20 for d in listed)  # small accelerators
    assert devices == len(state["devices"]) >= 4
    # one shared token: the manager accepts it, and so does every agent
    token = state["token"]
    auth = {"Authorization": f"Bearer {token}"}
    assert httpx2.post(f"{manager}/v1/poll", headers=auth, timeout=30, verify=verify).status_code == 200
    assert httpx2.post(f"{manager}/v1/poll", headers={"Authorization": "Bearer wrong"}, timeout=30,
                       verify=verify).status_code == 401


@pytest.mark.slow
def test_up_foreground_refuses_a_second_up_and_stops_everything_on_sigint(tmp_path: Path) -> None:
    state_dir = tmp_path / "fleet"
    leader, state = start_leader(state_dir, tmp_path / "leader.log", as_background_job=True)
    try:
        assert len(recorded_pids(state)) == 5 and all(alive(p) for p in recorded_pids(state))
        assert state["pool"] == "local" and state["token"]
        _check_fleet(state)

        second = devmig("up", "--state-dir", str(state_dir))
        assert second.returncode == 1, second.stdout + second.stderr
        assert "FLEET_RUNNING" in second.stderr and "already runs" in second.stderr
        assert "Traceback" not in second.stderr
        assert read_state(state_dir) == state  # the running fleet's state is untouched

        leader.send_signal(signal.SIGINT)  # Ctrl-C; also for `devmig up &`, which starts with SIGINT ignored
        assert leader.wait(timeout=60) == 0
        assert_nothing_left(state_dir, state)
        assert read_state(state_dir) is None
        lines = [
            json.loads(line) for line in (tmp_path / "leader.log").read_text().splitlines() if line.startswith("{")
        ]
        assert [line["event"] for line in lines] == ["up", "down"]
    finally:
        kill_group(leader)

    nothing = devmig("down", "--state-dir", str(state_dir))
    assert nothing.returncode == 1 and "nothing running" in nothing.stderr


@pytest.mark.slow
def test_detach_then_down(tmp_path: Path) -> None:
    state_dir = tmp_path / "fleet"
    # what a leader killed long ago left: an unlocked lock file and a state.json naming dead processes
    state_dir.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True).stdout.strip()
    (state_dir / "lock").write_text(f"{dead}\n")
    (state_dir / "state.json").write_text(json.dumps({
        "format": "devmig/local-fleet/1", "state_dir": str(state_dir), "leader": {"pid": int(dead)},
        "token": "old", "pool": "local", "manager": {"pid": int(dead), "url": "http://127.0.0.1:1"},
        "agents": [], "devices": []}))
    up = devmig("up", "--detach", "--state-dir", str(state_dir), "--json", timeout=300)
    assert up.returncode == 0, up.stdout + up.stderr
    announced = json.loads(up.stdout)
    state = read_state(state_dir)
    assert state is not None and announced["event"] == "up" and announced["detached"] is True
    assert announced["manager"] == state["manager"] and announced["agents"] == state["agents"]
    assert state["token"] != "old"  # the stale state was replaced
    leader = state["leader"]["pid"]
    try:
        assert alive(leader) and all(alive(p) for p in recorded_pids(state))
        _check_fleet(state)

        again = devmig("up", "--detach", "--state-dir", str(state_dir), "--json")
        assert again.returncode == 1
        assert json.loads(again.stdout)["errors"][0]["code"] == "FLEET_RUNNING"

        down = devmig("down", "--state-dir", str(state_dir), "--json")
        assert down.returncode == 0, down.stdout + down.stderr
        assert json.loads(down.stdout)["leader"] == leader
        wait_until(lambda: not alive(leader), 30, "the leader to exit")
        assert_nothing_left(state_dir, state)
        assert read_state(state_dir) is None
    finally:
        if alive(leader):
            os.kill(leader, signal.SIGKILL)

    nothing = devmig("down", "--state-dir", str(state_dir), "--json")
    assert nothing.returncode == 1
    assert json.loads(nothing.stdout)["errors"][0]["code"] == "FLEET_NOT_RUNNING"


@pytest.mark.slow
def test_sigkill_of_the_leader_kills_its_children_and_down_cleans_the_stale_state(tmp_path: Path) -> None:
    state_dir = tmp_path / "fleet"
    leader, state = start_leader(state_dir, tmp_path / "leader.log")
    try:
        leader.send_signal(signal.SIGKILL)  # no chance to clean up: the kernel must take the children down
        leader.wait(timeout=30)
        started = time.monotonic()
        assert_nothing_left(state_dir, state, timeout=10)
        assert time.monotonic() - started < 10
        assert read_state(state_dir) == state  # stale: nobody removed it
    finally:
        kill_group(leader)

    stale = devmig("down", "--state-dir", str(state_dir))
    assert stale.returncode == 1
    assert "nothing running" in stale.stderr and "stale" in stale.stderr
    assert read_state(state_dir) is None


def test_down_with_nothing_there(tmp_path: Path) -> None:
    result = devmig("down", "--state-dir", str(tmp_path / "empty"))
    assert result.returncode == 1
    assert "nothing running" in result.stderr and "Traceback" not in result.stderr


def test_default_state_dir_is_devmig_home(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {**os.environ, "DEVMIG_HOME": str(home)}
    result = devmig("down", "--json", env=env)
    assert result.returncode == 1
    assert json.loads(result.stdout)["errors"][0]["value"] == str(home.resolve())
    result = devmig("down", "--json", cwd=tmp_path, env={k: v for k, v in os.environ.items() if k != "DEVMIG_HOME"})
    assert json.loads(result.stdout)["errors"][0]["value"] == str((tmp_path / ".devmig").resolve())
