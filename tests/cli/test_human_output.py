"""How sizes, times and hosts are shown to people (the --json forms are tested with the manager)."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import pytest
from rich.console import Console

from devmig._humanize import ago, size
from devmig.cli._fleet import _host_table
from devmig.cli._output import Output

NOW = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(("stamp", "shown"), [
    (None, "never"),
    ("2026-11-26T11:59:58+00:00", "2 s ago"),
    ("2026-11-26T11:57:00+00:00", "3 min ago"),
    ("2026-11-26T09:00:00+00:00", "3 h ago"),
    ("2026-11-24T12:00:00", "2 d ago"),  # no zone: the manager's times are UTC
    ("2026-11-26T12:00:05+00:00", "0 s ago"),  # a clock a little ahead is not "in the future"
    ("yesterday", "yesterday"),
])
def test_ago(stamp: str | None, shown: str) -> None:
    assert ago(stamp, NOW) == shown


@pytest.mark.parametrize(("n", "shown"), [
    (0, "0 B"), (512, "512 B"), (1126, "1.1 KiB"), (64 << 20, "64.0 MiB"), (3 << 30, "3.0 GiB"), (5 << 40, "5.0 TiB"),
    (1 << 60, "1048576.0 TiB"),
])
def test_size(n: int, shown: str) -> None:
    assert size(n) == shown


def test_host_table_keeps_urls_and_release_names_whole_at_80_columns() -> None:
    out = Output(False)
    buffer = io.StringIO()
    out.console = Console(file=buffer, width=80, color_system=None)
    _host_table(out, [{"name": "rack1-host-a", "url": "http://10.1.2.3:8470", "profile": "6f42e1a6bceb",
                       "releases": {"acme-nic": "2.0.0", "acme-accel": "3.0.0"}, "reachable": False,
                       "cordoned": True, "load": 2, "last_seen": None, "pools": ["p"]}])
    text = buffer.getvalue()
    assert all(len(line) <= 80 for line in text.splitlines())
    assert "rack1-host-a" in text and "acme-accel 3.0.0" in text and "acme-nic 2.0.0" in text
    assert "unreachable" in text and "cordoned" in text and "never" in text
    url_cells = [line.split("│")[2].strip() for line in text.splitlines() if line.startswith("│")]
    assert "".join(url_cells) == "http://10.1.2.3:8470"  # folded over lines, never cut
