"""A migration through a real manager: its ``/metrics`` match the record, and the JSON logs carry the ids.

Two agents and a manager, each a real process started with ``--log-format json`` (stderr to a
file). An accelerator migrates a → b through ``POST /v1/migrations``; then the manager's
``/metrics`` (parsed by ``prometheus_client``) are compared with ``GET /v1/migrations/{id}``, and
the log files are read: every line is one JSON object, and the migration's lines on the manager and
on both agents carry its ``migration_id`` and the device ids.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from devmig_procs import DevmigFleet, agent_args, manager_args, wait_finished_record
from prometheus_client.parser import text_string_to_metric_families

from devmig.inventory import sqlite_url

ACCEL = "example.org/devices/accel"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevmigFleet]:
    root = tmp_path_factory.mktemp("fleet")
    fleet = DevmigFleet(root, manager_token="m-token", agent_token="a-token")
    try:
        for name in ("a", "b"):
            (root / name).mkdir()
            args = agent_args(name, root / name, "--log-format", "json", releases="accel=2.0.0")
            fleet.agents[name] = fleet.spawn(name, args, {"DEVMIG_TOKEN": fleet.agent_token})
        args = manager_args(sqlite_url(root / "manager.db"), fleet.manager_token, fleet.agent_token)
        fleet.manager = fleet.spawn("manager", [*args, "--log-format", "json"], {})
        for proc in fleet.procs:
            proc.wait_announced(fleet.announce_timeout)
        with fleet.m() as m:
            for name, agent in fleet.agents.items():
                assert m.post("/v1/hosts", json={"url": agent.url, "name": name}).status_code == 201
        yield fleet
    finally:
        fleet.close()


@pytest.fixture(scope="module")
def migrated(fleet: DevmigFleet) -> dict[str, Any]:
    device = fleet.create("a", ACCEL, "version=2,mem-size-mib=64")
    fleet.poll()
    with fleet.m() as m:
        r = m.post("/v1/migrations", json={"device": f"a/{device['id']}", "destination": "b"})
        assert r.status_code in (201, 202), r.text
        record = wait_finished_record(
            m, f"/v1/migrations/{r.json()['id']}", what="migration", timeout=120
        )
    assert record["outcome"] == "migrated", record
    fleet.poll()
    return record


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_manager_metrics_match_the_record(fleet: DevmigFleet, migrated: dict[str, Any]) -> None:
    with fleet.m() as m:
        r = m.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    s = samples(r.text)
    assert (
        s[("devmig_manager_migrations", (("outcome", "migrated"), ("phase", migrated["phase"])))]
        == 1
    )
    assert s[("devmig_manager_migration_bytes_count", ())] == 1
    assert s[("devmig_manager_migration_bytes_sum", ())] == migrated["progress"]["bytes_sent"] > 0
    assert s[("devmig_manager_migration_precopy_rounds_sum", ())] == migrated["progress"]["round"]
    assert s[("devmig_manager_migration_downtime_seconds_sum", ())] == pytest.approx(
        migrated["downtime_ms"] / 1000
    )
    assert (
        s[("devmig_manager_migration_discarded_records_total", ())] == migrated["discarded_records"]
    )
    assert s[("devmig_manager_journal_backlog", (("kind", "migration"),))] == 0
    assert s[("devmig_manager_journal_backlog", (("kind", "drain"),))] == 0
    assert s[("devmig_manager_devices", (("host", "b"), ("model", ACCEL)))] == 1
    assert ("devmig_manager_devices", (("host", "a"), ("model", ACCEL))) not in s
    assert s[("devmig_manager_hosts", (("reachable", "true"),))] == 2
    assert 0 <= s[("devmig_manager_poller_lag_seconds", ())] < 60
    assert set(
        dict(k[1]).get("host") for k in s if k[0] == "devmig_manager_host_poll_age_seconds"
    ) == {"a", "b"}


def _lines(path: Path) -> list[dict[str, Any]]:
    text = path.read_text(encoding="utf-8")
    return [
        json.loads(line) for line in text.splitlines() if line.strip()
    ]  # every line is one JSON object


def test_json_logs_carry_migration_and_device_ids(
    fleet: DevmigFleet, migrated: dict[str, Any]
) -> None:
    mid = migrated["id"]
    manager = [
        line for line in _lines(fleet.root / "manager.log") if line.get("migration_id") == mid
    ]
    assert {line["phase"] for line in manager} >= {"planned", "done"}
    assert all(
        line["device_id"] == migrated["device_id"] and line["level"] and line["ts"]
        for line in manager
    )
    assert manager[-1]["outcome"] == "migrated"
    # the agents use their own migration ids (the manager's lease names it); the source's lines carry
    # the source device, the destination's the new device
    source = [line for line in _lines(fleet.root / "a.log") if line.get("role") == "source"]
    destination = [
        line for line in _lines(fleet.root / "b.log") if line.get("role") == "destination"
    ]
    assert source and destination
    assert {line["device_id"] for line in source} == {migrated["device_id"]}
    assert {line["device_id"] for line in destination} == {migrated["destination_device_id"]}
    assert {line["migration_id"] for line in source} == {
        line["migration_id"] for line in destination
    }
    assert {line["phase"] for line in source} >= {"OUTGOING", "COMMITTED", "DONE"}
    assert {line["phase"] for line in destination} >= {"INCOMING", "STARTED", "RUNNING"}
