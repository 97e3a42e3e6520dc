"""``GET /metrics`` of real agent processes after a real migration: the figures match its records.

Two agents on loopback; an accelerator (memory, pre-copy rounds, a measured downtime) and a NIC
migrate from one to the other; then each agent's ``/metrics`` is scraped and parsed with
``prometheus_client``'s own parser, and compared with ``GET /v1/migrations/{id}`` on each side.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from devmig_procs import Proc, piped_agents, wait_finished_record
from prometheus_client.parser import text_string_to_metric_families

TOKEN = "metrics-test-token"
NIC = "example.org/devices/nic"
ACCEL = "example.org/devices/accel"


@pytest.fixture(scope="module")
def agents(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Proc]]:
    root = tmp_path_factory.mktemp("agents")
    with piped_agents(
        root, {"src": (), "dst": ()}, token=TOKEN, releases="nic=2.0.0,accel=2.0.0"
    ) as procs:
        yield procs


def scrape(proc: Proc) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the agent's /metrics: (name, sorted labels) → value."""
    with proc.http() as c:
        r = c.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def migrate(source: Proc, destination: Proc, model: str, config: str) -> tuple[dict, dict]:  # type: ignore[type-arg]
    with source.http(TOKEN) as s, destination.http(TOKEN) as d:
        r = s.post("/v1/devices", json={"model": model, "config": config})
        assert r.status_code == 201, r.text
        r = s.post(
            "/v1/migrations/outgoing",
            json={
                "device_id": r.json()["id"],
                "destination": {"url": destination.url, "token": TOKEN},
            },
        )
        assert r.status_code == 202, r.text
        mid = r.json()["migration_id"]
        out = wait_finished_record(s, f"/v1/migrations/{mid}", what="source")
        into = wait_finished_record(d, f"/v1/migrations/{mid}", what="destination")
    assert out["outcome"] == into["outcome"] == "migrated", (out, into)
    return out, into


def test_metrics_match_the_migration_records(agents: dict[str, Proc]) -> None:
    src, dst = agents["src"], agents["dst"]
    records = [
        migrate(src, dst, ACCEL, "version=2,mem-size-mib=64"),
        migrate(src, dst, NIC, "version=2"),
    ]
    sent = [out for out, _ in records]
    received = [into for _, into in records]
    s, d = scrape(src), scrape(dst)

    assert (
        s[
            (
                "devmig_migrations_total",
                (("outcome", "migrated"), ("phase", "DONE"), ("role", "source")),
            )
        ]
        == 2
    )
    assert (
        d[
            (
                "devmig_migrations_total",
                (("outcome", "migrated"), ("phase", "RUNNING"), ("role", "destination")),
            )
        ]
        == 2
    )
    assert s[("devmig_migration_bytes_count", (("role", "source"),))] == 2
    assert s[("devmig_migration_bytes_sum", (("role", "source"),))] == sum(
        r["bytes_sent"] for r in sent
    )
    assert d[("devmig_migration_bytes_sum", (("role", "destination"),))] == sum(
        r["bytes_received"] for r in received
    )
    assert s[("devmig_migration_precopy_rounds_sum", ())] == sum(r["round"] for r in sent)
    assert s[("devmig_migration_precopy_rounds_count", ())] == 2
    downtimes = [r["downtime_ms"] / 1000 for r in sent]
    assert s[("devmig_migration_downtime_seconds_sum", ())] == pytest.approx(sum(downtimes))
    # the histogram's buckets place each downtime where it belongs
    for le in ("0.1", "1.0", "+Inf"):
        bound = float(le)
        assert s[("devmig_migration_downtime_seconds_bucket", (("le", le),))] == sum(
            1 for t in downtimes if t <= bound
        )
    assert d[("devmig_migration_discarded_records_total", ())] == sum(
        r["discarded_records"] for r in received
    )
    assert d[("devmig_migration_discarded_bytes_total", ())] == sum(
        r["discarded_bytes"] for r in received
    )
    # devices by provider and model: both now run on the destination; nothing is left unfinished
    assert d[("devmig_devices", (("model", ACCEL), ("provider", "sdk")))] == 1
    assert d[("devmig_devices", (("model", NIC), ("provider", "sdk")))] == 1
    assert not any(name == "devmig_devices" for name, _ in s)
    assert s[("devmig_journal_backlog", ())] == d[("devmig_journal_backlog", ())] == 0

    # scraping again observes nothing twice
    assert (
        scrape(src)[
            (
                "devmig_migrations_total",
                (("outcome", "migrated"), ("phase", "DONE"), ("role", "source")),
            )
        ]
        == 2
    )


def test_a_refused_migration_counts_by_outcome_and_phase(agents: dict[str, Proc]) -> None:
    src, dst = agents["src"], agents["dst"]
    with src.http(TOKEN) as s:
        device = s.post("/v1/devices", json={"model": NIC, "config": "version=2"}).json()
        r = s.post(
            "/v1/migrations/outgoing",
            json={"device_id": device["id"], "destination": {"url": dst.url, "token": "wrong"}},
        )
        if r.status_code == 202:
            record = wait_finished_record(
                s, f"/v1/migrations/{r.json()['migration_id']}", what="source"
            )
            assert record["outcome"] == "rolled_back"
            phase = record["error"]["phase"] or "ROLLED_BACK"
            samples = scrape(src)
            assert (
                samples[
                    (
                        "devmig_migrations_total",
                        (("outcome", "rolled_back"), ("phase", phase), ("role", "source")),
                    )
                ]
                == 1
            )
        else:  # refused before a migration existed: nothing counted
            assert not any(
                dict(labels).get("outcome") == "rolled_back" for _, labels in scrape(src)
            )
