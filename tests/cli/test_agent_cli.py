"""`devmig agent` refuses bad options with a message and exit 2, never a traceback."""

from __future__ import annotations

import subprocess
import sys


def test_unknown_release_is_refused_before_serving() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "devmig", "agent", "--listen", "127.0.0.1:0", "--release", "nic=9.9.9", "--json"],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stdout + proc.stderr
    assert "RELEASE_UNKNOWN" in proc.stdout


def test_print_migration_info_json_is_the_host_report() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "devmig",
            "agent",
            "--release",
            "nic=1.0.0",
            "--host-name",
            "h",
            "--print-migration-info-json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0
    assert '"format": "devmig/host-report/1"' in proc.stdout
    assert '"release": "1.0.0"' in proc.stdout
