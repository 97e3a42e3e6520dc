"""Host reports built from the shipped example documents."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from devmig._examples import load_example
from devmig.model import HOST_REPORT_FORMAT, HostReport

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    """``T0`` plus ``seconds``."""
    return T0 + timedelta(seconds=seconds)


def report(host: str, *examples: str) -> HostReport:
    """A report of ``host`` running the example releases named (``acme-nic/1.0.0``, ...)."""
    docs = [load_example(name) for name in examples]
    return HostReport.model_validate(
        {"format": HOST_REPORT_FORMAT, "host": host, "implementations": docs}
    )
