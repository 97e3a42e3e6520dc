"""`devmig migrate HOST/ID` through a manager, `devmig migrations`, `devmig drain`: exit codes and output.

A real fleet for the module: agents ``a`` (acme-nic 3.0.0) and ``b``, ``c`` (2.0.0) and a manager on a
SQLite file; the commands run as processes with ``DEVMIG_MANAGER``/``DEVMIG_TOKEN`` set. Exit codes:
0 done, 1 refused/stranded/rolled back, 2 bad input, 3 partial.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
from drain_env import NIC, Fleet, database, wait_drain


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    root = tmp_path_factory.mktemp("cli-fleet")
    with database("sqlite", root) as url:
        fleet = Fleet(root)
        try:
            fleet.start(url, {"a": "nic=3.0.0", "b": "nic=2.0.0", "c": "nic=2.0.0"})
            yield fleet
        finally:
            fleet.close()


def _no_traceback(run: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in run.stdout + run.stderr, run.stdout + run.stderr


def test_migrate_through_the_manager_then_list_and_show(fleet: Fleet) -> None:
    device = fleet.create("a", NIC, "version=2")["id"]
    run = fleet.cli("migrate", f"a/{device}", "--to", "b", "--json", "--migration-id", f"cli-{device}")
    assert run.returncode == 0, run.stdout + run.stderr
    record = json.loads(run.stdout)
    assert record["id"] == f"cli-{device}" and record["outcome"] == "migrated" and record["exit"] == 0
    assert record["destination_device_id"] in fleet.devices("b") and device not in fleet.devices("a")
    again = fleet.cli("migrate", f"a/{device}", "--to", "b", "--json", "--migration-id", f"cli-{device}")
    assert again.returncode == 0 and json.loads(again.stdout)["id"] == f"cli-{device}"  # idempotent by id

    # the best host by placement when --to is not given; people get progress and the new id
    moved = f"b/{record['destination_device_id']}"
    human = fleet.cli("migrate", moved)
    assert human.returncode == 0, human.stdout + human.stderr
    assert "migrated" in human.stdout and "journalled by the manager" in human.stdout
    last = human.stdout.strip().splitlines()[-1]
    assert last.startswith("c/") and last.split("/", 1)[1] in fleet.devices("c")  # c: the only other 2.0.0-like host

    listed = fleet.cli("migrations", "--json")
    assert listed.returncode == 0
    ids = [m["id"] for m in json.loads(listed.stdout)["migrations"]]
    assert f"cli-{device}" in ids
    table = fleet.cli("migrations")
    assert table.returncode == 0 and f"cli-{device}" in table.stdout and "done" in table.stdout
    shown = fleet.cli("migrations", f"cli-{device}")
    assert shown.returncode == 0 and "history: planned → destination_created" in shown.stdout, shown.stdout
    active = fleet.cli("migrations", "--active", "--json")
    assert active.returncode == 0 and json.loads(active.stdout)["migrations"] == []


def test_refusals_exit_1_and_bad_input_exit_2(fleet: Fleet) -> None:
    v4 = fleet.create("a", NIC, "version=4")["id"]  # only acme-nic 3.0.0 runs it
    refused = fleet.cli("migrate", f"a/{v4}", "--to", "b", "--json")
    assert refused.returncode == 1, refused.stdout + refused.stderr
    codes = [p["code"] for p in json.loads(refused.stdout)["errors"]]
    assert codes[0] == "INCOMPATIBLE" and len(codes) > 1
    nowhere = fleet.cli("migrate", f"a/{v4}")
    assert nowhere.returncode == 1 and "NO_HOST" in nowhere.stderr, nowhere.stdout + nowhere.stderr
    assert v4 in fleet.devices("a") and fleet.device("a", v4)["running"]

    for args in (("migrate", "nohost/x", "--to", "b"), ("migrate", "a/no-such-device", "--to", "b"),
                 ("migrate", "not-a-ref"), ("migrate",), ("migrations", "no-such-migration"),
                 ("drain", "nohost"), ("drain", "a", "--parallel", "0")):
        run = fleet.cli(*args)
        assert run.returncode == 2, (args, run.stdout, run.stderr)
        _no_traceback(run)
    # no manager at all: the HOST/ID form needs one
    env = {k: v for k, v in os.environ.items() if k != "DEVMIG_MANAGER"}
    bare = subprocess.run([sys.executable, "-m", "devmig", "migrate", f"a/{v4}"], capture_output=True, text=True,
                          env=env, timeout=120, check=False)
    assert bare.returncode == 2 and "needs a manager" in bare.stdout + bare.stderr
    _no_traceback(bare)
    # a drain that would strand the version=4 NIC is refused; the host stays cordoned
    stranded = fleet.cli("drain", "a")
    assert stranded.returncode == 1, stranded.stdout + stranded.stderr
    assert "refused" in stranded.stdout and "stranded" in stranded.stdout and f"a/{v4}" in stranded.stdout
    as_json = fleet.cli("drain", "a", "--json")
    assert as_json.returncode == 1 and json.loads(as_json.stdout)["errors"][0]["code"] == "STRANDED"
    with fleet.m() as m:
        assert m.get("/v1/hosts/a").json()["cordoned"] is True
        assert m.post("/v1/hosts/a/uncordon").status_code == 200


def test_drain_with_progress_and_no_wait(fleet: Fleet) -> None:
    fleet.create("b", NIC, "version=2")
    fleet.create("b", NIC, "version=1")
    fleet.poll()
    plan = fleet.cli("drain", "b", "--dry-run")
    assert plan.returncode == 0 and "dry run" in plan.stdout and "b/" in plan.stdout, plan.stdout
    run = fleet.cli("drain", "b", "--parallel", "2")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "drain done" in run.stdout and "stays cordoned" in run.stdout
    assert fleet.devices("b") == {}
    with fleet.m() as m:
        assert m.post("/v1/hosts/b/uncordon").status_code == 200
    started = fleet.cli("drain", "c", "--no-wait", "--json")
    assert started.returncode == 0, started.stdout + started.stderr
    drain = json.loads(started.stdout)
    assert drain["host"] == "c" and drain["phase"] in ("running", "done")
    with fleet.m() as m:
        done = wait_drain(m, drain["id"])
    assert done["phase"] == "done" and fleet.devices("c") == {}
    listed = json.loads(fleet.cli("migrations", "--json").stdout)["migrations"]
    assert {m["id"] for m in listed if m["drain"] == drain["id"]} == set(done["migrations"])
