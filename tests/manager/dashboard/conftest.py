"""Fixtures of the dashboard tests: one real fleet of eight hosts per module, and one headless Chromium.

The helpers live in ``dashboard_fleet`` (a unique module name). Hosts (all in pool ``prod``; the
``edge-*`` ones also in ``edge``): one on the oldest releases, three on current ones (one of them
with blk 1.1.0), two on the newest, one cordoned, and one whose agent is killed after it reported
(unreachable, its device still listed). ``cur-rack1-b``'s agent paces its outgoing streams so that a
migration from it lasts a few seconds (its progress can be watched): its devices start with random
memory (``--prefill-seed``), which no compression shrinks. Agents take about a second
each to start (in parallel; much longer on a loaded machine).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dashboard_fleet import (
    ACCEL,
    CORDONED,
    DEVICES,
    GONE,
    HOSTS,
    PACED,
    STREAM_RATE,
    Dashboard,
    DashboardFleet,
    chromium,
    require_browser,
)


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    """Eight real agents and a real manager on a SQLite file, with devices, pools, a cordon and a dead host."""
    fleet = DashboardFleet(tmp_path_factory.mktemp("dashboard-fleet"))
    try:
        fleet.start(HOSTS, {PACED: ["--max-stream-rate", STREAM_RATE, "--prefill-seed", "7"]})
        created = [fleet.create(host, model, config) for host, model, config in DEVICES]
        mover = fleet.create(PACED, ACCEL, "version=2,mem-size-mib=64")
        with fleet.m() as m:
            for pool in ("prod", "edge"):
                assert m.post("/v1/pools", json={"name": pool}).status_code == 201
            for host in HOSTS:
                assert m.put(f"/v1/pools/prod/hosts/{host}").status_code == 200
                if host.startswith("edge-"):
                    assert m.put(f"/v1/pools/edge/hosts/{host}").status_code == 200
            assert m.post(f"/v1/hosts/{CORDONED}/cordon").status_code == 200
        fleet.poll()
        fleet.agents[GONE].kill()
        for _ in range(3):  # the default max_missed: three failed polls make it unreachable
            fleet.poll()
        with fleet.m() as m:
            gone = m.get(f"/v1/hosts/{GONE}").json()
        assert gone["reachable"] is False, gone
        yield Dashboard(fleet, mover, created)
    finally:
        fleet.close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Headless Chromium (Debian's) with a 1366 x 768 viewport, for a whole module."""
    require_browser()
    with chromium(1366, 768, tmp_path_factory.mktemp("chromium")) as driver:
        yield driver


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where a module's screenshots go first (each is copied to ``test-artifacts/dashboard/``)."""
    return tmp_path_factory.mktemp("screenshots")
