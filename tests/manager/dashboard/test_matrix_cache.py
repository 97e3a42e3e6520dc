"""The matrix cache and the drains section, in process on the inventory twin (no agents, no browser).

The matrix is computed once per state of the fleet: the same object is served while nothing changed,
and it is computed again after a finished migration (the journal), a cordon, a device list or a
profile change — each of which changes a verdict here, so a cache that is never invalidated fails.
The scenario is the one of ``tests/orchestration/test_rollback_history.py``: releases 2.1.0 and 2.2.0 of the
NIC disagree on the off value of a parameter, so a device that came from 2.1.0 can go to 2.2.0 only
one way, while a device without that past goes there and back.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from typing import Any

import pytest
from example_docs import host_report
from fastapi import FastAPI
from fastapi.testclient import TestClient
from matrix_scenario import NIC, at, migration, nic, wol_fleet

from devmig._examples import load_example
from devmig.inventory import MemoryInventory
from devmig.manager import ManagerSettings, create_manager_app
from devmig.manager._dashboard import DRAINS_SHOWN, drain_row
from devmig.manager._matrix import MatrixCache, compatibility_matrix
from devmig.orchestration import MIGRATIONS


@pytest.fixture()
def twin() -> Iterator[tuple[MemoryInventory, TestClient, FastAPI]]:
    """Four hosts on the twin (old: 2.1.0, mid and twin: 2.0.0, x: 2.2.0), a NIC on mid and one on twin."""
    inventory = MemoryInventory()
    inventory.open()
    wol_fleet(inventory)
    app = create_manager_app(ManagerSettings(db_url="memory://twin"), inventory=inventory, poll=False)
    with TestClient(app) as client:
        yield inventory, client, app
    inventory.close()


def _served(client: TestClient, cache: MatrixCache, window: int = 0) -> tuple[dict[str, Any], str]:
    response = client.get("/v1/matrix", params={"window": window})
    assert response.status_code == 200, response.text
    return response.json(), response.headers["X-Devmig-Matrix-Cache"]


def _cells(matrix: dict[str, Any]) -> dict[str, dict[str, tuple[str, list[str]]]]:
    return {r["device"]: {h: (c["verdict"], c["codes"]) for h, c in r["cells"].items()} for r in matrix["devices"]}


def test_the_matrix_is_served_from_the_cache_until_the_fleet_or_the_journal_changes(
        twin: tuple[MemoryInventory, TestClient, FastAPI]) -> None:
    inventory, client, app = twin
    cache: MatrixCache = app.state.matrix_cache
    assert cache.computations == 0

    first, how = _served(client, cache)
    assert how == "miss" and cache.computations == 1
    assert _cells(first)["mid/d1"]["x"] == ("round_trip", [])  # no known past: 2.2.0 and back is fine
    again, how = _served(client, cache)
    assert how == "hit" and again == first and cache.computations == 1
    shared, hit = cache.get(inventory, inventory.snapshot(), 0)
    assert hit and cache.get(inventory, inventory.snapshot(), 0)[0] is shared  # the very same object
    page = client.get("/dashboard/matrix")  # the dashboard's poll reads the same entry
    assert page.status_code == 200 and 'data-device="mid/d1"' in page.text and cache.computations == 1

    # a finished migration: mid/d1 came from old (2.1.0), so 2.2.0 is one-way for it now
    inventory.journal(MIGRATIONS).put("m1", "done", migration("old", "d0", "mid", "d1"), at(12))
    after, how = _served(client, cache)
    assert how == "miss" and cache.computations == 2
    assert _cells(after)["mid/d1"]["x"][0] == "one_way" and _cells(after)["twin/fresh"]["x"][0] == "round_trip"
    assert _served(client, cache)[1] == "hit"
    inventory.journal(MIGRATIONS).put(
        "m2", "rolled_back", migration("twin", "z", "mid", "z2"), at(13)
    )  # created nothing
    assert _served(client, cache)[1] == "hit" and cache.computations == 2

    # a host change: x cordoned
    inventory.cordon("x")
    cordoned, how = _served(client, cache)
    assert how == "miss" and _cells(cordoned)["twin/fresh"]["x"] == ("refused", ["HOST_CORDONED"])
    # a device list change: a second NIC on twin
    inventory.record_devices("twin", [nic("fresh"), nic("more")])
    more, how = _served(client, cache)
    assert how == "miss" and "twin/more" in _cells(more)
    # a profile change: old upgraded to 2.0.0 (its host row and the fleet's profiles)
    inventory.register_reports([("old", "http://old", host_report("old", load_example("acme-nic/2.0.0")))], at(100))
    upgraded, how = _served(client, cache)
    assert how == "miss" and _cells(upgraded)["twin/fresh"]["old"] == ("round_trip", [])
    assert cache.computations == 5

    # one entry per window: window 1 is computed once, window 0 is still cached
    assert _served(client, cache, 1)[1] == "miss" and _served(client, cache, 1)[1] == "hit"
    assert _served(client, cache, 0)[1] == "hit" and cache.computations == 6
    # and every served matrix is the one computed afresh
    for window in (0, 1):
        assert _served(client, cache, window)[0] == compatibility_matrix(inventory, inventory.snapshot(), window)


def test_the_cache_keeps_one_entry_per_window_and_drops_the_least_recently_used(
        twin: tuple[MemoryInventory, TestClient, FastAPI]) -> None:
    inventory, _client, _app = twin
    cache = MatrixCache(max_windows=2)
    for window in (0, 1, 0, 2):  # 1 is the least recently used when 2 comes
        cache.get(inventory, inventory.snapshot(), window)
    assert cache.computations == 3 and cache.hits == 1
    assert cache.get(inventory, inventory.snapshot(), 0)[1] is True
    assert cache.get(inventory, inventory.snapshot(), 1)[1] is False  # dropped
    with pytest.raises(ValueError):
        MatrixCache(max_windows=0)


# -- the drains section ---------------------------------------------------------------------------

_EVIL = '<script>alert("x")</script>'


def _drain_payload(host: str, **extra: Any) -> dict[str, Any]:
    return {"host": host, "partial": True, "parallel": 2, "dry_run": False, "plan": [], "stranded": [],
            "migrations": [], "results": {}, "error": None, "created_at": at(0).isoformat(),
            "history": [{"phase": "planned", "at": at(0).isoformat()}], **extra}


def test_drain_row_counts_moved_devices_and_lists_what_stayed() -> None:
    record = {
        "id": "drain-1",
        "phase": "partial",
        "finished": True,
        "host": "h",
        "partial": True,
        "parallel": 3,
        "created_at": at(0).isoformat(),
        "plan": [
            {"device": "h/a", "model": NIC, "destination": "d"},
            {"device": "h/b", "model": NIC, "destination": "d"},
        ],
        "stranded": [
            {
                "device": "h/c",
                "model": NIC,
                "errors": [
                    {"code": "INCOMPATIBLE", "message": "no"},
                    {"code": "HOST_CORDONED", "message": "c"},
                    {"code": "INCOMPATIBLE", "message": "again"},
                ],
            }
        ],
        "results": {
            "h/a": {"migration": "drain-1-0", "outcome": "migrated"},
            "h/b": {
                "migration": "drain-1-1",
                "outcome": "rolled_back",
                "error": {"code": "AGENT_ERROR", "message": "gone"},
            },
        },
    }
    row = drain_row(record, at(75))
    assert (row["moved"], row["total"], row["bar"]) == (1, 3, {"percent": 33, "state": "partial"})
    assert row["options"] == ["--partial", "--parallel 3"] and row["started"] == "1 min ago"
    assert row["stranded_view"] == [{"device": "h/c", "model": NIC, "code": "STRANDED",
                                     "codes": ["INCOMPATIBLE", "HOST_CORDONED"],
                                     "reasons": record["stranded"][0]["errors"]}]
    assert [(f["device"], f["code"]) for f in row["failures"]] == [("h/b", "AGENT_ERROR")]
    empty = drain_row({"id": "drain-2", "phase": "done", "host": "h", "dry_run": True}, at(0))
    assert empty["bar"] == {"percent": 100, "state": "done"} and empty["options"] == ["--dry-run", "--parallel 1"]


def test_drains_section_is_hidden_without_drains_then_newest_first_capped_and_escaped(
        twin: tuple[MemoryInventory, TestClient, FastAPI]) -> None:
    _inventory, client, app = twin
    empty = client.get("/dashboard/drains")
    assert empty.status_code == 200
    assert re.search(r'<section[^>]*id="section-drains"[^>]*hidden', empty.text), empty.text
    assert 'hx-swap="outerHTML"' in empty.text and 'hx-trigger="every 1s' in empty.text  # it keeps polling
    page = client.get("/")
    assert re.search(r'<section[^>]*id="section-drains"[^>]*hidden', page.text)

    store = app.state.drainer.store  # the drainer's own store: the records GET /v1/drains lists
    for i in range(DRAINS_SHOWN + 2):
        store.put(f"drain-{i:02d}", "done", {**_drain_payload(f"h{i}"), "created_at": at(i).isoformat()}, at(i))
    store.put("drain-evil", "partial", _drain_payload(_EVIL, created_at=at(100).isoformat(), stranded=[
        {"device": f"{_EVIL}/d", "model": NIC, "errors": [{"code": "INCOMPATIBLE", "message": f"no {_EVIL}"}]}]),
        at(100))
    fragment = client.get("/dashboard/drains")
    assert fragment.status_code == 200 and "<html" not in fragment.text
    assert not re.search(r'<section[^>]*id="section-drains"[^>]*hidden', fragment.text)
    shown = re.findall(r'data-drain="([^"]+)"', fragment.text)
    listed = [d["id"] for d in client.get("/v1/drains").json()["drains"]]
    assert shown == listed[:DRAINS_SHOWN] and shown[0] == "drain-evil"  # newest first, capped
    assert f"newest {DRAINS_SHOWN} shown" in fragment.text and f"{DRAINS_SHOWN + 3} in the journal" in fragment.text
    assert "<script>" not in fragment.text and "&lt;script&gt;" in fragment.text  # autoescaped
    stranded = re.search(r'<span class="left stranded"[^>]*title="([^"]*)"', fragment.text)
    assert stranded is not None and "INCOMPATIBLE: no " + _EVIL in html.unescape(stranded.group(1))
