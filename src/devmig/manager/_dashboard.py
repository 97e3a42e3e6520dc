"""The manager's read-only dashboard at ``/`` (server-rendered Jinja2 with vendored htmx).

Theory of operation
-------------------
``GET /`` renders the whole page from one inventory snapshot: hosts (releases,
pools, health, last seen), the compatibility matrix of running devices by
hosts (:mod:`devmig.manager._matrix`, also served as JSON at ``GET /v1/matrix``),
the pool baselines per model (:func:`~devmig.orchestration._queries.answer_baseline`),
the drains (the drainer's records, as ``GET /v1/drains`` lists them; the section
is hidden while there is none) and the migrations (the orchestrator's
records). Each section is also a
fragment under ``/dashboard/`` that the page re-fetches with htmx
(``hx-get`` + ``hx-trigger="every Ns"``): migrations and drains every second, the rest
every few seconds, and the hosts, the drains and the matrix also as soon as a migration
finishes (the migrations fragment's ``HX-Trigger`` header). The drains fragment is
the whole section (swapped ``outerHTML``), so that it can show itself when the
first drain starts. No JavaScript is built or written: htmx
(``static/htmx.min.js``, see ``static/README.md``) does the polling.

The matrix comes from the app's :class:`~devmig.manager._matrix.MatrixCache`
(``state.matrix_cache``, built by the manager's lifespan): computed again only
when the hosts, their devices or the finished migrations changed.

Reads only, so no token. A fragment that cannot be computed (the database is
down) renders its problems in place with status 200, so the page keeps polling
and recovers by itself.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Annotated, Any

import jinja2
from fastapi import FastAPI, Query, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from devmig import __version__
from devmig._errors import DevmigError
from devmig._humanize import ago, seconds_since, size
from devmig.inventory import Inventory, InventorySnapshot
from devmig.manager._matrix import MatrixCache
from devmig.orchestration import (
    FORWARD,
    Drainer,
    Orchestrator,
    answer_baseline,
    host_dict,
    profile_docs,
)

__all__ = ["drain_row", "mount_dashboard", "progress_of"]

MIGRATIONS_SHOWN = 15
"""The newest migrations the dashboard lists."""

DRAINS_SHOWN = 10
"""The newest drains the dashboard lists."""

REFRESH_S = {"hosts": 3, "matrix": 5, "baselines": 10, "drains": 1, "migrations": 1}
"""Seconds between two fetches of each fragment."""

MATRIX_CACHE_HEADER = "X-Devmig-Matrix-Cache"
"""Header of ``GET /v1/matrix``: ``hit`` (served from the cache) or ``miss`` (computed for this request)."""

MOVED_EVENT = "devmig-moved"
"""The htmx event (``HX-Trigger``) of a migrations fragment showing a migration finished in the last
:data:`MOVED_RECENT_S` seconds: the hosts, the drains and the matrix fetch themselves again at once."""

MOVED_RECENT_S = 2.0

VERDICT_VIEW: dict[str, tuple[str, str, str]] = {
    "current": ("●", "current", "runs here now"),
    "round_trip": ("⇄", "round-trip", "can move here and come back"),
    "one_way": ("→", "one-way", "can move here but not come back"),
    "refused": ("✕", "refused", "cannot move here"),
}
"""Per matrix verdict: its symbol, its label and what it means."""


Window = Annotated[int, Query(ge=0, le=8, description="A round trip also returns to this many previous releases "
                                                   "of each implementation (the rollback set's window).")]
"""The ``window`` query parameter of the matrix (as the rollback set's)."""


def _number(value: object) -> float | int | None:
    return value if isinstance(value, (int, float)) else None


def _size(n: float | int | None) -> str:
    return size(n) if n else "—"


def health_of(host: Mapping[str, Any]) -> list[str]:
    """A host's health badges: ``unreachable`` or ``reachable``, and ``cordoned``.

    ``not reported`` stands for reachability before the host's first report.
    """
    badges = []
    if not host["reachable"]:
        badges.append("unreachable")
    elif host["fingerprint"] is None:
        badges.append("not reported")
    else:
        badges.append("reachable")
    if host["cordoned"]:
        badges.append("cordoned")
    return badges


def hosts_view(inventory: Inventory, snap: InventorySnapshot, now: datetime) -> list[dict[str, Any]]:
    """Every host as the dashboard shows it (the API's host dict, health and last seen)."""
    out = []
    for view in inventory.list_hosts():
        host = host_dict(view, profile_docs(snap, view.fingerprint))
        host.update(health=health_of(host), seen=ago(host["last_seen"], now))
        out.append(host)
    return out


def baselines_view(inventory: Inventory, snap: InventorySnapshot) -> list[dict[str, Any]]:
    """Per pool, the baseline of every model one of its members knows (or the problems of the question)."""
    models_of = {fp: sorted({m.model for d in docs for m in d.models}) for fp, docs in snap.profiles.items()}
    fingerprints = {h.name: h.fingerprint for h in snap.hosts}
    pools = []
    for pool, members in sorted(inventory.list_pools().items()):
        models = sorted({m for h in members for m in models_of.get(fingerprints.get(h) or "", [])})
        entry: dict[str, Any] = {"pool": pool, "hosts": members, "models": [], "errors": []}
        for model in models:
            try:
                entry["models"].append(answer_baseline(inventory, snap, pool, model))
            except DevmigError as exc:
                entry["models"].append({"model": model, "errors": exc.to_dicts()})
        pools.append(entry)
    return pools


def progress_of(record: Mapping[str, Any]) -> dict[str, Any]:
    """A migration's progress as the dashboard draws it.

    The percentage is the share of the forward journal phases walked
    (``planned`` 0 %, ``done`` 100 %); a migration rolling back, rolled back or
    resolving keeps the share of the last forward phase its history shows.

    Returns:
        ``{"percent": int, "state": "active"|"done"|"rolled_back"|"resolving"|"rolling_back"}``.
    """
    phase = str(record.get("phase"))
    last = 0
    for entry in record.get("history") or []:
        if entry.get("phase") in FORWARD:
            last = max(last, FORWARD.index(entry["phase"]))
    if phase in FORWARD:
        last = FORWARD.index(phase)
    percent = round(100 * last / (len(FORWARD) - 1))
    state = {"done": "done", "rolled_back": "rolled_back", "resolving": "resolving",
             "rolling_back": "rolling_back"}.get(phase, "active")
    return {"percent": percent, "state": state}


def migrations_view(app: FastAPI, now: datetime) -> dict[str, Any]:
    """The newest migrations (:data:`MIGRATIONS_SHOWN`) with their progress; how many there are, and how many run.

    Polled every second: only those migrations are read, with the two counts
    (:meth:`~devmig.orchestration._orchestrator.Orchestrator.newest`), not every migration of the journal.
    """
    orchestrator: Orchestrator = app.state.orchestrator
    records, total, active = orchestrator.newest(MIGRATIONS_SHOWN)
    rows = []
    for record in records:
        progress = record.get("progress")
        sent, rate = (progress.get("bytes_sent"), progress.get("rate")) if isinstance(progress, dict) else (None, None)
        created = record.get("created_at")
        rows.append({
            **record, "bar": progress_of(record), "sent": _size(_number(sent)),
            "rate_text": _size(_number(rate)) + "/s" if rate else "—",
            "started": ago(created if isinstance(created, str) else None, now),
        })
    moved = any(r.get("finished") and seconds_since(str(r["updated_at"]), now) < MOVED_RECENT_S for r in records)
    return {"migrations": rows, "total": total, "active": active, "moved": moved}


def drain_row(record: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    """A drain record (``GET /v1/drains``) as the dashboard draws it.

    Returns:
        The record with ``moved`` (devices migrated), ``total`` (planned and stranded devices),
        ``bar`` (``{"percent", "state"}``: the share moved; state ``active``, ``done``,
        ``partial``, ``failed`` or ``planned``), ``options`` (the CLI flags it was started with),
        ``started`` ("N s ago"), ``stranded_view`` (per stranded device: its code ``STRANDED``, the
        distinct reason codes and every reason) and ``failures`` (per migration that did not move
        its device: device, migration, code, message).
    """
    plan = list(record.get("plan") or [])
    stranded = list(record.get("stranded") or [])
    results: Mapping[str, Mapping[str, Any]] = record.get("results") or {}
    moved = sum(1 for r in results.values() if r.get("outcome") == "migrated")
    total = len(plan) + len(stranded)
    phase = str(record.get("phase"))
    percent = round(100 * moved / total) if total else (100 if phase == "done" else 0)
    state = {"running": "active", "done": "done", "partial": "partial", "failed": "failed"}.get(phase, "planned")
    options = [*(["--dry-run"] if record.get("dry_run") else []), *(["--partial"] if record.get("partial") else []),
               f"--parallel {record.get('parallel', 1)}"]
    stranded_view = []
    for s in stranded:
        reasons = list(s.get("errors") or [])
        stranded_view.append({"device": s.get("device"), "model": s.get("model"), "code": "STRANDED",
                              "codes": list(dict.fromkeys(str(p.get("code")) for p in reasons)), "reasons": reasons})
    failures = []
    for device, result in sorted(results.items()):
        if result.get("outcome") == "migrated":
            continue
        error = result.get("error") or {}
        failures.append({"device": device, "migration": result.get("migration"),
                         "outcome": result.get("outcome"), "code": error.get("code") or str(result.get("outcome")),
                         "message": error.get("message") or ""})
    return {**record, "moved": moved, "total": total, "bar": {"percent": percent, "state": state},
            "options": options, "started": ago(record.get("created_at"), now),
            "stranded_view": stranded_view, "failures": failures}


def drains_view(app: FastAPI, now: datetime) -> dict[str, Any]:
    """The newest drains (:data:`DRAINS_SHOWN`) drawn by :func:`drain_row`; how many there are, and how many run.

    Polled every second: only those drains are read, with the two counts
    (:meth:`~devmig.orchestration._drain.Drainer.newest`), not every drain of the journal.
    """
    drainer: Drainer = app.state.drainer
    records, total, running = drainer.newest(DRAINS_SHOWN)
    return {"drains": [drain_row(r, now) for r in records], "total": total, "running": running}


def _json_body(value: dict[str, Any]) -> bytes:
    """A JSON body as FastAPI would send it (its encoder, then compact UTF-8 JSON)."""
    return json.dumps(jsonable_encoder(value), ensure_ascii=False, allow_nan=False,
                      separators=(",", ":")).encode("utf-8")


def _guarded(build: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    try:
        return build()
    except DevmigError as exc:
        return {"problems": exc.to_dicts()}


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("devmig.manager", "templates"),
        autoescape=jinja2.select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals.update(verdicts=VERDICT_VIEW, refresh=REFRESH_S, version=__version__, moved_event=MOVED_EVENT)
    return env


def mount_dashboard(app: FastAPI) -> None:
    """Add the dashboard to the manager's app.

    Routes: ``GET /`` (the page), ``GET /dashboard/{hosts,matrix,baselines,drains,migrations}``
    (its fragments), ``GET /dashboard/static/...`` (htmx and the style sheet), and
    ``GET /v1/matrix`` (the compatibility matrix as JSON). Everything reads the
    app's ``state.inventory``, ``state.orchestrator`` and ``state.drainer`` (set by the
    manager's lifespan), and the matrix cache in ``state.matrix_cache`` (set there too).
    """
    templates = Jinja2Templates(env=_environment())
    app.mount("/dashboard/static", StaticFiles(packages=[("devmig.manager", "static")]), name="dashboard-static")

    def inventory(request: Request) -> Inventory:
        inv: Inventory = request.app.state.inventory
        return inv

    def matrix_of(request: Request, window: int) -> tuple[dict[str, Any], bool]:
        inv = inventory(request)
        cache: MatrixCache = request.app.state.matrix_cache
        return cache.get(inv, inv.snapshot(), window)

    def section(request: Request, name: str, window: int) -> dict[str, Any]:
        inv = inventory(request)
        now = datetime.now(UTC)

        def build() -> dict[str, Any]:
            if name == "matrix":
                return {"matrix": matrix_of(request, window)[0]}
            if name == "drains":
                return drains_view(request.app, now)
            if name == "migrations":
                return migrations_view(request.app, now)
            snap = inv.snapshot()
            if name == "hosts":
                return {"hosts": hosts_view(inv, snap, now)}
            return {"pools": baselines_view(inv, snap)}

        return {"problems": [], **_guarded(build)}

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def dashboard(request: Request, window: Window = 0) -> HTMLResponse:
        """The dashboard page (``?window=N``: the matrix's rollback window)."""
        context = {name: section(request, name, window) for name in REFRESH_S}
        return templates.TemplateResponse(request, "dashboard.html", {"sections": context, "window": window})

    @app.get("/dashboard/{name}", response_class=HTMLResponse, include_in_schema=False)
    async def fragment(request: Request, name: str, window: Window = 0) -> HTMLResponse:
        """One section of the page (what htmx polls); 404 for an unknown section."""
        if name not in REFRESH_S:
            return HTMLResponse("<p>no such section</p>", status_code=404)
        context = section(request, name, window)
        response = templates.TemplateResponse(request, f"_{name}.html", {"s": context})
        if context.get("moved"):
            response.headers["HX-Trigger"] = MOVED_EVENT
        return response

    @app.get("/v1/matrix", tags=["questions"], response_model=dict[str, Any],
             responses={200: {"headers": {MATRIX_CACHE_HEADER: {
                 "description": "`hit`: served from the cache; `miss`: computed for this request",
                 "schema": {"type": "string", "enum": ["hit", "miss"]}}}}})
    async def matrix(request: Request, window: Window = 0) -> Response:
        """The compatibility matrix: every running device against every host.

        A cell's ``verdict`` is ``current`` (the device runs there), ``round_trip`` (it can move
        there and come back), ``one_way`` (it can move there, not back) or ``refused``, with the
        reasons' ``codes`` and ``reasons`` — the answers of the device's rollback set with the same
        ``window``. Computed once per state of the fleet (hosts, devices, finished migrations), and
        encoded once: the ``X-Devmig-Matrix-Cache`` header says ``hit`` or ``miss``.
        """
        inv = inventory(request)
        cache: MatrixCache = request.app.state.matrix_cache
        body, hit = cache.get_json(inv, inv.snapshot(), window, _json_body)
        return Response(body, media_type="application/json", headers={MATRIX_CACHE_HEADER: "hit" if hit else "miss"})
