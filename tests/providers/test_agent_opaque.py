"""An opaque vfio-user backend (a tiny program of our own, no migration information) in real agents.

Declared opaque, it is never probed (it would start serving instead of
printing) and is published under ``opaque:<sha256>``: agents hosting the very
same program publish the same identity; a program with other fixed arguments
is another identity, and ``devmig check``, placement and the manager (its
``/v1/place`` for the running device) answer ``NO_MIGRATION_INFO`` for it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from devmig_procs import announced, devmig_command, manager_args, popen_agent, reap

from devmig.compat import FleetSnapshot, RunningDevice, place
from devmig.inventory import sqlite_url
from devmig.model import expand, load_host_report

TOKEN = "opaque-agent-token"
TINY = str(Path(__file__).parent / "programs" / "tiny_vfio_user.py")


def _agent(tmp_path: Path, name: str, *extra: str) -> tuple[subprocess.Popen[str], str]:
    settings = tmp_path / f"{name}.json"
    command = [sys.executable, TINY, *extra]
    settings.write_text(
        json.dumps({"backends": [{"command": command, "opaque": True, "name": "tiny"}]})
    )
    process, _ = popen_agent(
        name, tmp_path / name, "--provider", f"vfio-user:{settings}", token=TOKEN
    )
    return process, announced(f"agent {name}", process)["url"]


@pytest.fixture
def agents(tmp_path: Path) -> Iterator[dict[str, str]]:
    started = []
    try:
        urls = {}
        for name, extra in [("host-a", ()), ("host-b", ()), ("host-c", ("--flavour=b",))]:
            process, url = _agent(tmp_path, name, *extra)
            started.append(process)
            urls[name] = url
        yield urls
    finally:
        for process in started:
            reap(process)


def test_an_opaque_backend_is_hosted_and_moves_only_to_the_same_program(
    agents: dict[str, str], tmp_path: Path
) -> None:
    reports = {}
    for name, url in agents.items():
        reports[name] = httpx2.get(f"{url}/v1/report", timeout=30).json()
        (tmp_path / f"{name}.report.json").write_text(json.dumps(reports[name]))
    [tiny_a] = [
        d for d in reports["host-a"]["implementations"] if d["implementation"]["name"] == "tiny"
    ]
    [tiny_c] = [
        d for d in reports["host-c"]["implementations"] if d["implementation"]["name"] == "tiny"
    ]
    model = tiny_a["models"][0]["model"]
    assert model.startswith("opaque:") and tiny_c["models"][0]["model"] != model

    # hosted: the agent launches it and holds its connection (VERSION negotiated), DELETE ends it
    with httpx2.Client(
        base_url=agents["host-a"], headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30
    ) as a:
        made = a.post("/v1/devices", json={"model": model})
        assert made.status_code == 201, made.text
        device = made.json()
        assert (device["provider"], device["state"], device["counters"]) == (
            "vfio-user",
            "RUNNING",
            {},
        )

        # the manager: the running device may go to host-b only (NO_MIGRATION_INFO on host-c)
        manager = subprocess.Popen(
            devmig_command(*manager_args(sqlite_url(tmp_path / "fleet.db"), "m-token", TOKEN)),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            url = announced("manager", manager)["url"]
            with httpx2.Client(
                base_url=url, headers={"Authorization": "Bearer m-token"}, timeout=60
            ) as m:
                for name, agent_url in agents.items():
                    assert (
                        m.post("/v1/hosts", json={"url": agent_url, "name": name}).status_code
                        == 201
                    )
                assert m.post("/v1/poll").status_code == 200
                answer = m.post("/v1/place", json={"vm": [{"device": f"host-a/{device['id']}"}]})
                assert answer.status_code == 200, answer.text
                placed = answer.json()
            assert [x["host"] for x in placed["accepted"]] == ["host-b"], placed
            assert {p["code"] for p in placed["rejected"]["host-c"]} == {"NO_MIGRATION_INFO"}
        finally:
            reap(manager)
        assert a.delete(f"/v1/devices/{device['id']}").status_code == 204

    # devmig check: the same program is compatible, another one is NO_MIGRATION_INFO
    def check(dest: str) -> tuple[int, dict]:  # type: ignore[type-arg]
        run = subprocess.run(
            devmig_command("check", str(tmp_path / "host-a.report.json"),
                           str(tmp_path / f"{dest}.report.json"), model, "--json"),
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        return run.returncode, json.loads(run.stdout)

    code, same = check("host-b")
    assert code == 0, same
    code, other = check("host-c")
    assert code == 1 and "NO_MIGRATION_INFO" in json.dumps(other), other

    # placement over the three reports: only the same program's host accepts it
    loaded = [load_host_report(r) for r in reports.values()]
    snapshot = FleetSnapshot.of_reports(loaded)
    definition = load_host_report(reports["host-a"]).implementations[-1].models[0]
    device_ = RunningDevice(model, expand(definition, ""), definition, "host-a")
    placement = place(snapshot, [device_])
    assert "host-b" in placement.accepted and "host-c" not in placement.accepted
    assert [r.code for r in placement.rejected["host-c"]] == ["NO_MIGRATION_INFO"]
