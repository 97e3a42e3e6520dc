"""A small benchmark of bulk registration.

Run ``python -c "from devmig.inventory import bench_register; print(bench_register(10_000))"``.
"""

from __future__ import annotations

import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from devmig._examples import list_examples, load_example
from devmig.inventory._sql import SqlInventory, sqlite_url
from devmig.model import HOST_REPORT_FORMAT, HostReport, ModelDocument

__all__ = ["bench_register"]


def _reports(n: int) -> list[tuple[str, str, HostReport]]:
    docs = [load_example(e.name) for e in list_examples() if not e.broken]
    families: dict[str, list[ModelDocument]] = {}
    for doc in docs:
        families.setdefault(doc.implementation.name, []).append(doc)
    mixes = []
    names = sorted(families)
    for i in range(24):  # a couple dozen software mixes, like a real fleet
        mixes.append(tuple(families[f][(i // (k + 1)) % len(families[f])] for k, f in enumerate(names)))
    out = []
    for i in range(n):
        name = f"host-{i:06d}"
        report = HostReport.model_validate(
            {"format": HOST_REPORT_FORMAT, "host": name, "implementations": mixes[i % len(mixes)]}
        )
        out.append((name, f"http://10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}:8470", report))
    return out


def bench_register(n: int = 10_000, batch: int = 1_000, path: Path | None = None) -> float:
    """Register ``n`` host reports into a fresh SQLite file in batches; return reports per second.

    Reports are built before the clock starts (a couple dozen software mixes of
    the bundled example documents); what is timed is :meth:`SqlInventory.register_reports`
    — fingerprints, profile dedup, host and history rows, commits.
    """
    items = _reports(n)
    with (
        tempfile.TemporaryDirectory() as tmp,
        SqlInventory(sqlite_url(path or Path(tmp) / "bench.db")) as inventory,
    ):
        now = datetime.now(UTC)
        start = time.perf_counter()
        for i in range(0, n, batch):
            inventory.register_reports(items[i : i + batch], now)
        elapsed = time.perf_counter() - start
        if len(inventory.list_hosts()) != n:
            raise RuntimeError("the benchmark lost hosts")
    return n / elapsed

