"""The manager's Prometheus metrics (``GET /metrics``, with the ``prometheus-client`` library).

Everything is read from the inventory at each scrape, so the figures survive
a restart of the manager (its journal forgets nothing) and two managers on
one database report the same:

* ``devmig_manager_migrations{phase,outcome}`` — the journal's migrations by phase and outcome;
* ``devmig_manager_migration_bytes`` / ``..._downtime_seconds`` / ``..._precopy_rounds`` —
  histograms over the finished migrations' records (bytes sent, downtime, pre-copy rounds);
* ``devmig_manager_migration_discarded_records`` / ``..._bytes`` — pre-copy records the
  destinations discarded (stream format 2);
* ``devmig_manager_journal_backlog{kind}`` — unfinished migrations and drains;
* ``devmig_manager_devices{host,model}`` — devices as last polled;
* ``devmig_manager_hosts{reachable}``, ``devmig_manager_host_poll_age_seconds{host}`` (seconds
  since the host last answered a poll) and ``devmig_manager_poller_lag_seconds`` (the largest
  age among reachable hosts: how stale the inventory's view is).

Reading the whole migration journal costs one query per scrape (fine at a
scrape interval; a journal of many thousand rows would want counters kept
in the database instead).
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from devmig.orchestration import MIGRATIONS

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from devmig.inventory import Inventory
    from devmig.orchestration import Drainer

__all__ = ["CONTENT_TYPE", "ManagerMetrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
BYTES_BUCKETS = tuple(float(1 << n) for n in range(10, 37, 2))
DOWNTIME_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
ROUND_BUCKETS = (0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 15.0, 20.0, 30.0)


def _histogram(
    name: str, doc: str, values: Sequence[float], buckets: Sequence[float]
) -> HistogramMetricFamily:
    counts = [0] * (len(buckets) + 1)
    for v in values:
        counts[bisect.bisect_left(buckets, v)] += 1
    cumulative, running = [], 0
    for le, n in zip([*(repr(b) for b in buckets), "+Inf"], counts, strict=True):
        running += n
        cumulative.append((le, running))
    return HistogramMetricFamily(name, doc, buckets=cumulative, sum_value=float(sum(values)))


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


class _Fleet(Collector):
    def __init__(self, inventory: Inventory, drainer: Drainer | None) -> None:
        self.inventory = inventory
        self.drainer = drainer

    def collect(self) -> Iterator[Metric]:
        entries = self.inventory.journal(MIGRATIONS).list()
        by_phase = GaugeMetricFamily(
            "devmig_manager_migrations",
            "The journal's migrations by phase and outcome.",
            labels=["phase", "outcome"],
        )
        counts = Counter((e.phase, str(e.payload.get("outcome") or "none")) for e in entries)
        for (phase, outcome), n in sorted(counts.items()):
            by_phase.add_metric([phase, outcome], n)
        yield by_phase
        finished = [e.payload for e in entries if e.payload.get("finished") is True]
        sent = [
            v
            for p in finished
            if (v := _number((p.get("progress") or {}).get("bytes_sent"))) is not None
        ]
        downtime = [v / 1000 for p in finished if (v := _number(p.get("downtime_ms"))) is not None]
        rounds = [
            v
            for p in finished
            if (v := _number((p.get("progress") or {}).get("round"))) is not None
        ]
        yield _histogram(
            "devmig_manager_migration_bytes", "Bytes finished migrations sent.", sent, BYTES_BUCKETS
        )
        yield _histogram(
            "devmig_manager_migration_downtime_seconds",
            "Finished migrations' downtime.",
            downtime,
            DOWNTIME_BUCKETS,
        )
        yield _histogram(
            "devmig_manager_migration_precopy_rounds",
            "Finished migrations' pre-copy rounds.",
            rounds,
            ROUND_BUCKETS,
        )
        yield CounterMetricFamily(
            "devmig_manager_migration_discarded_records",
            "Pre-copy records the destinations discarded (a torn digest).",
            value=sum(_number(p.get("discarded_records")) or 0 for p in finished),
        )
        yield CounterMetricFamily(
            "devmig_manager_migration_discarded_bytes",
            "The bytes of those records.",
            value=sum(_number(p.get("discarded_bytes")) or 0 for p in finished),
        )
        backlog = GaugeMetricFamily(
            "devmig_manager_journal_backlog", "Unfinished migrations and drains.", labels=["kind"]
        )
        backlog.add_metric(
            ["migration"], sum(1 for e in entries if e.payload.get("finished") is not True)
        )
        if self.drainer is not None:
            backlog.add_metric(["drain"], self.drainer.newest(0)[2])
        yield backlog

        hosts = self.inventory.list_hosts()
        now = datetime.now(UTC)
        reachable = GaugeMetricFamily(
            "devmig_manager_hosts", "Registered hosts, by reachability.", labels=["reachable"]
        )
        reachable.add_metric(["true"], sum(1 for h in hosts if h.reachable))
        reachable.add_metric(["false"], sum(1 for h in hosts if not h.reachable))
        yield reachable
        age = GaugeMetricFamily(
            "devmig_manager_host_poll_age_seconds",
            "Seconds since the host last answered a poll.",
            labels=["host"],
        )
        ages = {}
        for h in hosts:
            if h.last_seen is not None:
                ages[h.name] = max(0.0, (now - h.last_seen).total_seconds())
                age.add_metric([h.name], ages[h.name])
        yield age
        yield GaugeMetricFamily(
            "devmig_manager_poller_lag_seconds",
            "The largest poll age among reachable hosts (how stale the inventory is).",
            value=max((ages[h.name] for h in hosts if h.reachable and h.name in ages), default=0.0),
        )
        devices = GaugeMetricFamily(
            "devmig_manager_devices",
            "Devices as last polled, by host and model.",
            labels=["host", "model"],
        )
        for host, records in sorted(self.inventory.devices_by_host().items()):
            for model, n in sorted(Counter(r.model for r in records).items()):
                devices.add_metric([host, model], n)
        yield devices


class ManagerMetrics:
    """The metrics of one manager app (its own registry)."""

    def __init__(self, inventory: Inventory, drainer: Drainer | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Fleet(inventory, drainer))

    def render(self) -> bytes:
        """The exposition text."""
        return generate_latest(self.registry)
