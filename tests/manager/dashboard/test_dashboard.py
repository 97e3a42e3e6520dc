"""The manager's dashboard (issue 6, item 3), on a real fleet of eight hosts in headless Chromium.

The fleet (``conftest.py``): eight agent processes and one manager process on a SQLite file. The
browser is Debian's ``chromium`` driven by Debian's ``chromedriver`` through Selenium (skipped when
they are missing, except under ``CI=true``). The tests run in file order on one page: the overview
with no console errors, every matrix cell against the manager API's answers (rollback sets and
placement), the 1366 x 768 layout, and a migration started with ``devmig migrate`` through the
manager appearing and rising to done. Screenshots go to ``test-artifacts/dashboard/``.
"""

from __future__ import annotations

import html
import json
import re
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2
import pytest
from dashboard_fleet import (
    ARTIFACTS,
    BLK,
    CORDONED,
    GONE,
    HOSTS,
    PACED,
    Dashboard,
    console_errors,
    screenshot,
    viewport,
)

from devmig.manager._dashboard import MATRIX_CACHE_HEADER, VERDICT_VIEW, progress_of
from devmig.orchestration._journal_phases import FORWARD

EDGE_E, EDGE_F = "edge-new-e", "edge-new-f"
"""The drain test drains ``edge-new-e`` with ``edge-new-f`` (the only other nic 3.0.0 host) cordoned."""

JS_CELLS = """
return Array.from(document.querySelectorAll('#matrix td.cell')).map(td => ({
    device: td.dataset.device, host: td.dataset.host, verdict: td.dataset.verdict,
    codes: td.dataset.codes ? td.dataset.codes.split(' ') : [], title: td.title, text: td.textContent.trim(),
    background: getComputedStyle(td).backgroundColor}));
"""
JS_MIGRATION = """
const row = document.querySelector('#migrations tr[data-migration="' + arguments[0] + '"]');
if (!row) return null;
const bar = row.querySelector('progress');
return {phase: row.dataset.phase, progress: Number(row.dataset.progress), finished: row.dataset.finished,
        bar: bar ? Number(bar.value) : null, max: bar ? Number(bar.max) : null, text: row.textContent};
"""


def _open(browser: Any, url: str) -> None:
    """Load a page and wait for htmx to be running on it."""
    browser.get(url)
    deadline = time.monotonic() + 30
    while browser.execute_script("return typeof htmx === 'undefined' || document.readyState !== 'complete'"):
        assert time.monotonic() < deadline, "htmx did not load"
        time.sleep(0.1)


def _samples_until_finished(read: Callable[[], dict[str, Any] | None], keys: tuple[str, ...] | None, *,
                            timeout: float, interval: float) -> list[dict[str, Any]]:
    """Call ``read`` every ``interval`` seconds until the row it returns says ``finished`` (or ``timeout``).

    Returns the distinct rows seen, in order: a row is kept when it differs from the last one kept,
    in ``keys`` (None: in any field). ``read`` returns None while there is no row yet.
    """
    def seen(row: dict[str, Any]) -> object:
        return row if keys is None else [row[k] for k in keys]

    samples: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = read()
        if row is not None:
            if not samples or seen(row) != seen(samples[-1]):
                samples.append(row)
            if row["finished"] == "true":
                break
        time.sleep(interval)
    return samples


def _no_console_errors(browser: Any) -> None:
    errors = console_errors(browser)
    assert errors == [], errors


def _expected_cells(m: httpx2.Client, device: str, window: int) -> dict[str, tuple[str, set[str]]]:
    """Per host: the verdict and codes the manager API gives for one running device."""
    host, device_id = device.split("/", 1)
    response = m.get(f"/v1/devices/{host}/{device_id}/rollback-set", params={"window": window})
    assert response.status_code == 200, response.text
    answer = response.json()
    out: dict[str, tuple[str, set[str]]] = {}
    for name in HOSTS:
        if name == host:
            assert "SAME_HOST" in {p["code"] for p in answer["rejected"][name]}  # (and its own problems)
            out[name] = ("current", set())
        elif name in answer["hosts"]:
            out[name] = ("round_trip", set())
        elif name in answer["one_way"]:
            out[name] = ("one_way", {p["code"] for ps in answer["one_way"][name].values() for p in ps})
        else:
            out[name] = ("refused", {p["code"] for p in answer["rejected"][name]})
    return out


# -- without a browser -------------------------------------------------------------------------


def test_progress_is_the_share_of_forward_phases_walked() -> None:
    assert progress_of({"phase": "planned", "history": []}) == {"percent": 0, "state": "active"}
    assert progress_of({"phase": "streaming"})["percent"] == round(100 * 2 / 7)
    assert progress_of({"phase": "done"}) == {"percent": 100, "state": "done"}
    walked = [progress_of({"phase": p})["percent"] for p in FORWARD]
    assert walked == sorted(walked) and len(set(walked)) == len(FORWARD)
    history = [{"phase": p} for p in ("planned", "destination_created", "streaming", "rolling_back")]
    assert progress_of({"phase": "rolled_back", "history": history}) == {
        "percent": round(100 * 2 / 7), "state": "rolled_back"}
    assert progress_of({"phase": "resolving", "history": history[:2]})["state"] == "resolving"


def test_page_fragments_and_static_files_need_no_token(dashboard: Dashboard) -> None:
    with httpx2.Client(base_url=dashboard.fleet.url, timeout=60) as plain:  # no Authorization header
        page = plain.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        for host in HOSTS:
            assert f'data-host="{host}"' in page.text
        assert 'hx-trigger="every 1s"' in page.text
        for name in ("hosts", "matrix", "baselines", "drains", "migrations"):
            fragment = plain.get(f"/dashboard/{name}")
            assert fragment.status_code == 200 and "<html" not in fragment.text, name
        assert plain.get("/dashboard/nope").status_code == 404
        htmx = plain.get("/dashboard/static/htmx.min.js")
        assert htmx.status_code == 200 and 'version:"2.0.11"' in htmx.text.replace(" ", "")
        assert plain.get("/dashboard/static/dashboard.css").status_code == 200
        bad = plain.get("/v1/matrix", params={"window": 9})
        assert bad.status_code == 422 and bad.headers["content-type"].startswith("application/problem+json")
        openapi = plain.get("/openapi.json").json()
        assert "/v1/matrix" in openapi["paths"] and "/" not in openapi["paths"]


def test_matrix_json_agrees_with_rollback_sets_and_placement(dashboard: Dashboard) -> None:
    with dashboard.fleet.m() as m:
        for window in (0, 1):
            matrix = m.get("/v1/matrix", params={"window": window}).json()
            assert matrix["hosts"] == sorted(HOSTS) and matrix["window"] == window
            assert len(matrix["devices"]) == len(dashboard.devices) + 1  # and the accelerator to move
            for row in matrix["devices"]:
                assert row["errors"] == [], row
                expected = _expected_cells(m, row["device"], window)
                got = {h: (c["verdict"], set(c["codes"])) for h, c in row["cells"].items()}
                assert got == expected, row["device"]
                if window == 0:  # placement accepts exactly the hosts the device can move to
                    place = m.post("/v1/place", json={"vm": [{"device": row["device"]}]}).json()
                    movable = {h for h, (v, _) in expected.items() if v in ("round_trip", "one_way")}
                    assert {a["host"] for a in place["accepted"]} == movable, row["device"]
                    assert set(place["rejected"]) == set(HOSTS) - movable
        # the fleet shows every kind of cell, and the host problems as codes
        everything = [c for w in (0, 1) for r in m.get("/v1/matrix", params={"window": w}).json()["devices"]
                      for c in r["cells"].values()]
    assert {c["verdict"] for c in everything} == set(VERDICT_VIEW)
    codes = {code for c in everything for code in c["codes"]}
    assert {"HOST_CORDONED", "HOST_UNREACHABLE"} <= codes


# -- in Chromium ---------------------------------------------------------------------------------


def test_overview_renders_without_console_errors(dashboard: Dashboard, browser: Any, shots: Path) -> None:
    _open(browser, dashboard.fleet.url + "/")
    time.sleep(2.5)  # the migrations fragment has been fetched again at least twice
    rows = browser.execute_script(
        "return Array.from(document.querySelectorAll('#hosts tr[data-host]'))"
        ".map(r => [r.dataset.host, r.dataset.health, r.textContent])")
    assert [r[0] for r in rows] == sorted(HOSTS)
    health = {r[0]: r[1] for r in rows}
    assert health[GONE] == "unreachable" and health[CORDONED] == "reachable cordoned"
    assert all(health[h] == "reachable" for h in HOSTS if h not in (GONE, CORDONED))
    text = {r[0]: r[2] for r in rows}
    assert "acme-nic 1.0.0" in " ".join(text["old-rack1-a"].split())
    assert "acme-blk 1.1.0" in " ".join(text["mid-rack2-d"].split())
    assert re.search(r"\d+ (s|min) ago", text["old-rack1-a"]), text["old-rack1-a"]
    baselines = browser.execute_script(
        "return Array.from(document.querySelectorAll('#baselines table[data-pool]')).map(t => t.dataset.pool)")
    assert baselines == ["edge", "prod"]
    with dashboard.fleet.m() as m:
        nic = m.get("/v1/pools/prod/baseline", params={"model": "example.org/devices/nic"}).json()
    shown = browser.execute_script(
        "const r = document.querySelector("
        '\'#baselines table[data-pool="prod"] tr[data-model="example.org/devices/nic"]\');'
        "return r ? r.textContent : null"
    )
    assert shown is not None and nic["version_string"] in shown
    screenshot(browser, "overview", shots)
    _no_console_errors(browser)


@pytest.mark.parametrize("window", [0, 1])
def test_every_matrix_cell_agrees_with_the_manager_api(dashboard: Dashboard, browser: Any, shots: Path,
                                                       window: int) -> None:
    _open(browser, f"{dashboard.fleet.url}/?window={window}")
    cells = browser.execute_script(JS_CELLS)
    devices = {c["device"] for c in cells}
    assert len(devices) == len(dashboard.devices) + 1
    assert len(cells) == len(devices) * len(HOSTS)
    seen: set[str] = set()
    with dashboard.fleet.m() as m:
        expected = {d: _expected_cells(m, d, window) for d in sorted(devices)}
    for cell in cells:
        verdict, codes = expected[cell["device"]][cell["host"]]
        where = (cell["device"], cell["host"], window)
        assert (cell["verdict"], set(cell["codes"])) == (verdict, codes), where
        symbol, label, _ = VERDICT_VIEW[verdict]
        assert cell["text"] == f"{symbol} {label}", where  # a symbol and a word, not only a colour
        for code in codes:  # the reason codes on hover
            assert code in cell["title"], where
        assert cell["title"].startswith(label), where
        seen.add(verdict)
    backgrounds = {c["verdict"]: c["background"] for c in cells}
    assert len(set(backgrounds.values())) == len(backgrounds), backgrounds  # and a colour per verdict
    assert {"current", "round_trip", "refused"} <= seen
    if window:
        assert "one_way" in seen  # a version-3 NIC can go to nic 3.0.0 but not back to 1.0.0
    screenshot(browser, f"matrix-window-{window}", shots)
    _no_console_errors(browser)


def test_reads_at_1366x768_without_horizontal_scrolling(dashboard: Dashboard, browser: Any, shots: Path) -> None:
    _open(browser, dashboard.fleet.url + "/")
    assert viewport(browser) == (1366, 768)
    columns = browser.execute_script(
        "return Array.from(document.querySelectorAll('#matrix th.host-col')).map(th => th.textContent)")
    assert columns == sorted(HOSTS)  # eight hosts
    sizes = browser.execute_script(
        "const d = document.documentElement;"
        "return {scroll: d.scrollWidth, inner: window.innerWidth, client: d.clientWidth,"
        " body: document.body.scrollWidth}")
    assert sizes["scroll"] <= sizes["inner"], sizes
    assert sizes["scroll"] <= sizes["client"] and sizes["body"] <= sizes["client"], sizes
    overflowing = browser.execute_script(
        "return Array.from(document.querySelectorAll('table, section, td, th'))"
        ".filter(e => e.scrollWidth > e.clientWidth + 1 && getComputedStyle(e).textOverflow !== 'ellipsis')"
        ".map(e => e.tagName + '#' + (e.id || '') + '.' + e.className + ':' + e.scrollWidth + '>' + e.clientWidth)")
    assert overflowing == [], overflowing  # nothing scrolls sideways inside the page either
    clipped = browser.execute_script(
        "return Array.from(document.querySelectorAll('#matrix td.cell'))"
        ".filter(e => e.scrollWidth > e.clientWidth + 1).map(e => e.dataset.host)")
    assert clipped == [], clipped  # every cell's symbol and word is visible at this width
    browser.save_screenshot(str(shots / "viewport-1366x768.png"))
    screenshot(browser, "full-1366", shots)
    _no_console_errors(browser)


def test_cli_migration_appears_within_seconds_and_rises_to_done(dashboard: Dashboard, browser: Any,
                                                                shots: Path) -> None:
    fleet, mover = dashboard.fleet, dashboard.mover
    _open(browser, fleet.url + "/")
    mid = "dashboard-cli-1"
    started = time.monotonic()
    accepted = appeared = None
    with fleet.cli_running("migrate", f"{PACED}/{mover['id']}", "--to", "cur-rack2-c", "--migration-id", mid,
                           "--json") as cli, fleet.m() as m:

        def migration_row() -> dict[str, Any] | None:
            nonlocal accepted, appeared
            if accepted is None and m.get(f"/v1/migrations/{mid}").status_code == 200:
                accepted = time.monotonic()
            row: dict[str, Any] | None = browser.execute_script(JS_MIGRATION, mid)
            if row is not None and appeared is None:
                appeared = time.monotonic()
                screenshot(browser, "migration-appeared", shots)
            return row

        samples = _samples_until_finished(migration_row, ("phase", "progress"), timeout=240, interval=0.1)
        out, err = cli.communicate(timeout=120)
    assert cli.returncode == 0, (out, err)
    assert accepted is not None and appeared is not None, samples
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "migration-progress.json").write_text(json.dumps({
        "cli_started_to_accepted_s": accepted - started, "accepted_to_shown_s": appeared - accepted,
        "samples": [{k: v for k, v in s.items() if k != "text"} for s in samples]}, indent=2))
    # the page polls every second: it shows the migration within ~1 s of the manager accepting it
    assert appeared - accepted <= 3.0, (appeared - accepted)
    progress = [s["progress"] for s in samples]
    assert progress == sorted(progress), samples  # never goes back
    assert samples[-1]["phase"] == "done" and progress[-1] == 100 and samples[-1]["bar"] == 100, samples
    assert progress[0] < 100 and len(samples) >= 2, samples  # seen while it ran, then done
    assert "migrated" in samples[-1]["text"]
    phases = [s["phase"] for s in samples]
    assert set(phases) <= set(FORWARD), phases
    # the hosts and the matrix follow at once (the finished migration triggers them), not after their period
    with fleet.m() as m:
        moved = m.get(f"/v1/migrations/{mid}").json()
    new_ref = f"cur-rack2-c/{moved['destination_device_id']}"
    deadline = time.monotonic() + 4.0  # the matrix's own period is 5 s
    while True:
        rows = browser.execute_script(
            "return Array.from(document.querySelectorAll('#matrix tr[data-device]')).map(r => r.dataset.device)")
        current = browser.execute_script(
            "const td = document.querySelector("
            "'#matrix td[data-device=\"' + arguments[0] + '\"][data-host=\"cur-rack2-c\"]');"
            "return td ? td.dataset.verdict : null",
            new_ref,
        )
        if current == "current" and f"{PACED}/{mover['id']}" not in rows:
            break
        assert time.monotonic() < deadline, (rows, current)
        time.sleep(0.1)
    screenshot(browser, "migration-done", shots)
    _no_console_errors(browser)


def _timed_matrix(m: httpx2.Client, window: int = 0) -> tuple[dict[str, Any], str, float]:
    started = time.perf_counter()
    response = m.get("/v1/matrix", params={"window": window})
    elapsed = time.perf_counter() - started
    assert response.status_code == 200, response.text
    return response.json(), response.headers[MATRIX_CACHE_HEADER], elapsed


def test_matrix_is_computed_once_per_fleet_state(dashboard: Dashboard, browser: Any) -> None:
    """Served from the cache while nothing changes; computed again after a cordon (and after the migration
    above, which the matrix followed). The times of both are written to ``matrix-cache.json``."""
    browser.get("about:blank")  # the page's own polls would fill the cache between our requests
    with dashboard.fleet.m() as m:
        _timed_matrix(m)
        misses: list[float] = []
        hits: list[float] = []
        for i in range(5):  # ends cordoned (the drain test below needs it)
            action = "cordon" if i % 2 == 0 else "uncordon"
            assert m.post(f"/v1/hosts/{EDGE_F}/{action}").status_code == 200
            matrix, how, elapsed = _timed_matrix(m)
            assert how == "miss", (i, action)
            misses.append(elapsed)
            codes = {c for row in matrix["devices"] for c in row["cells"][EDGE_F]["codes"]}
            assert ("HOST_CORDONED" in codes) == (action == "cordon"), (action, codes)
            for _ in range(4):
                again, how, elapsed = _timed_matrix(m)
                assert how == "hit" and again == matrix
                hits.append(elapsed)
    miss_ms, hit_ms = statistics.median(misses) * 1000, statistics.median(hits) * 1000
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "matrix-cache.json").write_text(json.dumps({
        "hosts": len(HOSTS), "devices": len(matrix["devices"]),
        "computed_ms": [round(t * 1000, 2) for t in misses], "cached_ms": [round(t * 1000, 2) for t in hits],
        "computed_median_ms": round(miss_ms, 2), "cached_median_ms": round(hit_ms, 2)}, indent=2))
    print(f"GET /v1/matrix, {len(HOSTS)} hosts, {len(matrix['devices'])} devices: "
          f"computed {miss_ms:.1f} ms, from the cache {hit_ms:.1f} ms (medians)")  # numbers only: no timing assert


JS_DRAIN = """
const s = document.getElementById('section-drains');
const row = document.querySelector('#drains tr[data-drain="' + arguments[0] + '"]');
return {hidden: s ? s.hidden : null, row: row ? {phase: row.dataset.phase, moved: row.dataset.moved,
        total: row.dataset.total, host: row.dataset.host} : null,
        stranded: Array.from(document.querySelectorAll('#drains .stranded')).map(e => [e.dataset.device, e.title])};
"""


def _drain_rows(fragment: str) -> dict[str, dict[str, str]]:
    """The drains fragment's rows: their data attributes, by drain id."""
    rows = {}
    for tr in re.findall(r'<tr id="drain-[^"]*"([^>]*)>', fragment):
        attrs = dict(re.findall(r'data-([a-z]+)="([^"]*)"', tr))
        rows[attrs["drain"]] = attrs
    return rows


def _row_html(fragment: str, drain_id: str) -> str:
    start = fragment.index(f'<tr id="drain-{drain_id}"')
    return fragment[start:fragment.index("</tr>", start)]


def test_a_drain_shows_its_host_progress_final_state_and_stranded_device(dashboard: Dashboard, browser: Any,
                                                                        shots: Path) -> None:
    """``devmig drain edge-new-e --partial --parallel 2``: its blk moves, its version-4 NIC is stranded
    (the only other nic 3.0.0 host is cordoned); a drain without ``--partial`` before it was refused."""
    fleet = dashboard.fleet
    nic4 = f"{EDGE_E}/{dashboard.devices[5]['id']}"
    _open(browser, fleet.url + "/")
    assert browser.execute_script(JS_DRAIN, "none")["hidden"] is True  # no drain yet: no section
    blk = fleet.create(EDGE_E, BLK, "version=2")
    with fleet.m() as m, httpx2.Client(base_url=fleet.url, timeout=60) as plain:
        assert m.post(f"/v1/hosts/{EDGE_F}/cordon").status_code == 200
        refused = m.post("/v1/drains", json={"host": EDGE_E})
        assert refused.status_code == 409 and "STRANDED" in refused.text, refused.text
        (failed,) = m.get("/v1/drains").json()["drains"]
        assert failed["phase"] == "failed" and failed["error"]["code"] == "STRANDED"
        # the page shows the section by itself once a drain exists (its own poll), with the refused drain
        deadline = time.monotonic() + 5.0
        while (seen := browser.execute_script(JS_DRAIN, failed["id"]))["row"] is None:
            assert time.monotonic() < deadline, seen
            time.sleep(0.1)
        assert seen["hidden"] is False and seen["row"]["phase"] == "failed" and seen["row"]["host"] == EDGE_E

        drain_id = None

        def drain_row() -> dict[str, str] | None:
            nonlocal drain_id
            if drain_id is None:
                drains = [d for d in m.get("/v1/drains").json()["drains"] if d["partial"]]
                drain_id = drains[0]["id"] if drains else None
            fragment = plain.get("/dashboard/drains")
            assert fragment.status_code == 200
            return _drain_rows(fragment.text).get(drain_id or "")

        with fleet.cli_running("drain", EDGE_E, "--partial", "--parallel", "2", "--json") as cli:
            samples = _samples_until_finished(drain_row, None, timeout=180, interval=0.2)
            out, err = cli.communicate(timeout=120)
        assert cli.returncode == 3, (out, err)  # partial: a device stayed behind
        assert drain_id is not None and samples, samples
        record = m.get(f"/v1/drains/{drain_id}").json()
        shown = plain.get("/dashboard/drains").text
        migrations = plain.get("/dashboard/migrations").text

    # the rendered row: host, progress (moved/total, never going back), final state, options
    moved = [int(s["moved"]) for s in samples]
    assert moved == sorted(moved), samples
    final = samples[-1]
    assert (final["host"], final["phase"], final["moved"], final["total"], final["progress"]) == (
        EDGE_E, "partial", "1", "2", "50"), samples
    assert record["phase"] == "partial" and record["results"][f"{EDGE_E}/{blk['id']}"]["outcome"] == "migrated"
    row_text = html.unescape(_row_html(shown, drain_id))
    assert "--partial" in row_text and "--parallel 2" in row_text and "1/2" in row_text
    assert re.search(r"\d+ (s|min) ago", row_text), row_text
    # the stranded NIC: its code, and every reason on hover
    (stranded,) = record["stranded"]
    assert stranded["device"] == nic4
    match = re.search(r'<span class="left stranded" data-device="([^"]*)" data-code="STRANDED"[^>]*title="([^"]*)">'
                      r'<code class="err">STRANDED</code>', _row_html(shown, drain_id))
    assert match is not None and html.unescape(match.group(1)) == nic4, row_text
    title = html.unescape(match.group(2))
    assert stranded["errors"] and all(f"{p['code']}: {p['message']}" in title for p in stranded["errors"]), title
    assert "HOST_CORDONED" in title  # edge-new-f, the other nic 3.0.0 host
    # the refused drain: failed, STRANDED
    refused_row = _drain_rows(shown)[failed["id"]]
    assert refused_row["phase"] == "failed" and refused_row["moved"] == "0"
    assert 'class="err" title="' in _row_html(shown, failed["id"]) and ">STRANDED</code>" in _row_html(
        shown, failed["id"]
    )
    # the drain's migrations link to their rows, which link back
    (mid,) = record["migrations"]
    assert f'href="#migration-{mid}"' in shown and f'id="migration-{mid}"' in migrations
    assert f'href="#drain-{drain_id}"' in migrations

    # in the browser: the row reaches its final state, and the page still fits 1366 px
    deadline = time.monotonic() + 5.0
    while (seen := browser.execute_script(JS_DRAIN, drain_id))["row"] is None or seen["row"]["phase"] != "partial":
        assert time.monotonic() < deadline, seen
        time.sleep(0.1)
    assert seen["row"] == {"phase": "partial", "moved": "1", "total": "2", "host": EDGE_E}
    assert any(device == nic4 and "HOST_CORDONED" in title for device, title in seen["stranded"]), seen["stranded"]
    overflowing = browser.execute_script(
        "return Array.from(document.querySelectorAll('#drains table, #drains td, #drains th'))"
        ".filter(e => e.scrollWidth > e.clientWidth + 1).map(e => e.tagName + ':' + e.textContent.slice(0, 40))")
    assert overflowing == [], overflowing
    screenshot(browser, "drains", shots)
    _no_console_errors(browser)
    # and the matrix followed the migration: the blk runs on its destination now
    with fleet.m() as m:
        matrix = m.get("/v1/matrix").json()
    moved_to = record["results"][f"{EDGE_E}/{blk['id']}"]["destination"]
    assert f"{EDGE_E}/{blk['id']}" not in {r["device"] for r in matrix["devices"]}
    assert any(r["host"] == moved_to and r["model"] == BLK and r["cells"][moved_to]["verdict"] == "current"
               for r in matrix["devices"])


# -- in process, on the inventory twin ----------------------------------------------------------


def test_an_empty_fleet_and_a_broken_inventory_render_in_place() -> None:
    from fastapi.testclient import TestClient

    from devmig.inventory import MemoryInventory
    from devmig.manager import ManagerSettings, create_manager_app

    inventory = MemoryInventory()
    inventory.open()
    app = create_manager_app(ManagerSettings(db_url="memory://twin"), inventory=inventory, poll=False)
    with TestClient(app) as client:
        page = client.get("/")
        assert page.status_code == 200
        assert "No hosts yet" in page.text and "No running devices" in page.text and "No pools" in page.text
        assert client.get("/v1/matrix").json() == {"window": 0, "hosts": [], "devices": []}
        inventory.close()  # every read now fails with INVENTORY_STATE: each section says so, and keeps polling
        for name in ("hosts", "matrix", "baselines", "migrations", "drains"):  # the twin keeps the drains'
            fragment = client.get(f"/dashboard/{name}")  # journal with the inventory, as the database does
            assert fragment.status_code == 200 and "INVENTORY_STATE" in fragment.text, (name, fragment.text)
        page = client.get("/")
        assert page.status_code == 200 and page.text.count("INVENTORY_STATE") == 5
        assert page.text.count('hx-trigger="every') == 5
