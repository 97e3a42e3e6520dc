"""The TLS options of ``devmig agent`` and ``devmig manager``: plain TCP only on loopback unless said so.

Real processes: each command exits before serving (usage errors), or announces itself and is killed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from devmig._certs import LocalCA


def devmig(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "devmig", *args], capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.parametrize(
    "command", [["agent", "--stream-listen", "127.0.0.1:0"], ["manager", "--db", "x.db"]]
)
def test_plain_tcp_on_a_reachable_address_is_refused(command: list[str], tmp_path: Path) -> None:
    run = devmig(*command, "--listen", "0.0.0.0:0", "--json")
    assert run.returncode == 2, run.stdout + run.stderr
    problem = json.loads(run.stdout)["errors"][0]
    assert problem["code"] == "PLAIN_TCP_REFUSED" and "--insecure-plain-tcp" in problem["hint"]


def test_agent_stream_on_a_reachable_address_is_refused_too() -> None:
    run = devmig("agent", "--listen", "127.0.0.1:0", "--stream-listen", "0.0.0.0:0", "--json")
    assert run.returncode == 2 and json.loads(run.stdout)["errors"][0]["loc"] == ["stream_listen"]


def test_insecure_plain_tcp_serves_plain(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "devmig",
            "agent",
            "--listen",
            "0.0.0.0:0",
            "--insecure-plain-tcp",
            "--json",
            "--state-dir",
            str(tmp_path / "s"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert json.loads(line)["url"].startswith("http://0.0.0.0:"), line
    finally:
        process.kill()
        process.communicate()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--tls-cert", "{cert}"], "go together"),
        (["--tls-cert", "{cert}", "--tls-key", "{key}", "--tls-client-certs"], "needs --tls-ca"),
        (["--tls-cert", "{ca}", "--tls-key", "{key}"], "cannot load"),
    ],
)
def test_bad_tls_options_are_usage_errors(extra: list[str], message: str, tmp_path: Path) -> None:
    ca = LocalCA.create(tmp_path)
    issued = ca.issue(tmp_path, "agent")
    files = {"cert": str(issued.cert), "key": str(issued.key), "ca": str(ca.cert)}
    run = devmig("agent", "--json", *(a.format(**files) for a in extra))
    assert run.returncode == 2, run.stdout + run.stderr
    problem = json.loads(run.stdout)["errors"][0]
    assert problem["code"] == "USAGE" and message in problem["message"], problem
