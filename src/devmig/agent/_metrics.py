"""The agent's Prometheus metrics (``GET /metrics``, with the ``prometheus-client`` library).

Each finished migration is observed once, from its status (the figures of
``GET /v1/migrations/{id}``), in its own registry per app (two agents in one
process never mix figures):

* ``devmig_migrations_total{role,outcome,phase}`` — finished migrations; ``phase`` is where a
  failed one failed (its error's phase), else its final phase;
* ``devmig_migration_bytes{role}`` — bytes a source sent / a destination received (histogram);
* ``devmig_migration_downtime_seconds`` — a source's measured downtime (histogram);
* ``devmig_migration_precopy_rounds`` — a source's pre-copy rounds (histogram);
* ``devmig_migration_discarded_records_total`` / ``..._bytes_total`` — pre-copy records a
  destination discarded for a torn digest (stream format 2, DESIGN §4).

Read at each scrape: ``devmig_devices{provider,model}``, ``devmig_migrations_active{role,phase}``
and ``devmig_journal_backlog`` (migrations this agent's journal holds unfinished).

A migration is observed when its final status is journaled and, for one whose last figures
arrive after that (a destination's digest), at the next scrape; migrations already finished in
the journal when the agent started are not counted again.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client import Counter as PromCounter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from devmig.agent._host import Host
    from devmig.agent._migrations import Migration, MigrationEngine

__all__ = ["AgentMetrics", "CONTENT_TYPE"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

BYTES_BUCKETS = tuple(float(1 << n) for n in range(10, 37, 2))  # 1 KiB .. 64 GiB, by 4
DOWNTIME_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
ROUND_BUCKETS = (0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 15.0, 20.0, 30.0)


class _Live(Collector):
    """What is read at each scrape: devices, running migrations, the journal backlog."""

    def __init__(self, host: Host, engine: MigrationEngine) -> None:
        self.host = host
        self.engine = engine

    def collect(self) -> Iterator[Metric]:
        devices = GaugeMetricFamily(
            "devmig_devices",
            "Devices on this host, by provider and model.",
            labels=["provider", "model"],
        )
        counts: Counter[tuple[str, str]] = Counter(
            ("sdk", d.device.config.model) for d in self.host.devices.values()
        )
        if self.host.kernel is not None:
            counts.update(
                ("kernel", str(k.to_dict().get("model"))) for k in self.host.kernel.devices.values()
            )
        for (provider, model), n in sorted(counts.items()):
            devices.add_metric([provider, model], n)
        yield devices
        active = GaugeMetricFamily(
            "devmig_migrations_active",
            "Migrations not finished, by role and phase.",
            labels=["role", "phase"],
        )
        running = Counter(
            (m.role.value, m.phase) for m in self.engine.migrations.values() if not m.finished
        )
        for (role, phase), n in sorted(running.items()):
            active.add_metric([role, phase], n)
        yield active
        yield GaugeMetricFamily(
            "devmig_journal_backlog",
            "Migrations this agent's journal holds unfinished (in doubt, or running).",
            value=sum(1 for m in self.engine.migrations.values() if not m.finished),
        )


class AgentMetrics:
    """The metrics of one agent app.

    Args:
        host: the agent's devices.
        engine: its migration engine (its migrations are observed as they finish).
    """

    def __init__(self, host: Host, engine: MigrationEngine) -> None:
        self.engine = engine
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.migrations = PromCounter(
            "devmig_migrations",
            "Finished migrations, by role, outcome and phase.",
            ["role", "outcome", "phase"],
            registry=r,
        )
        self.bytes = Histogram(
            "devmig_migration_bytes",
            "Bytes a migration carried (sent by a source, received by a destination).",
            ["role"],
            buckets=BYTES_BUCKETS,
            registry=r,
        )
        self.downtime = Histogram(
            "devmig_migration_downtime_seconds",
            "A source's measured downtime.",
            buckets=DOWNTIME_BUCKETS,
            registry=r,
        )
        self.rounds = Histogram(
            "devmig_migration_precopy_rounds",
            "A source's pre-copy rounds.",
            buckets=ROUND_BUCKETS,
            registry=r,
        )
        self.discarded_records = PromCounter(
            "devmig_migration_discarded_records",
            "Pre-copy records a destination discarded (a torn digest; their pages came again).",
            registry=r,
        )
        self.discarded_bytes = PromCounter(
            "devmig_migration_discarded_bytes", "The bytes of those records.", registry=r
        )
        r.register(_Live(host, engine))
        # what the journal already held finished is history, not this process's figures
        self._observed = {m.id for m in engine.migrations.values() if m.finished}

    def observe(self, m: Migration) -> None:
        """Count ``m`` once it is finished with its final figures (idempotent)."""
        if m.id in self._observed or not m.finished:
            return
        self._observed.add(m.id)
        role = m.role.value
        phase = str((m.error or {}).get("phase") or m.phase)
        self.migrations.labels(role, m.outcome or "unknown", phase).inc()
        self.bytes.labels(role).observe(m.bytes_sent if role == "source" else m.bytes_received)
        if role == "source":
            self.rounds.observe(m.round)
            if m.downtime_ms is not None:
                self.downtime.observe(m.downtime_ms / 1000.0)
        else:
            self.discarded_records.inc(m.discarded_records)
            self.discarded_bytes.inc(m.discarded_bytes)

    def render(self) -> bytes:
        """The exposition text (observing first whatever finished since the last look)."""
        for m in list(self.engine.migrations.values()):
            self.observe(m)
        return generate_latest(self.registry)
