"""The manager service: the fleet inventory, its poller, the fleet questions and migrations over HTTP (``/v1``).

Built by :func:`create_manager_app` with one lifespan: it opens the inventory
(:class:`~devmig.inventory.SqlInventory` on ``settings.db_url`` unless one is
given), runs the :class:`~devmig.inventory.Poller` every ``poll_interval``
seconds on the real clock (or the one given), opens the
:class:`~devmig.orchestration.Orchestrator` (which resumes every unfinished migration
of the journal first), the :class:`~devmig.orchestration.Drainer` (which resumes every
unfinished drain) and the dashboard's :class:`~devmig.manager.MatrixCache`, and on shutdown
closes them in the reverse order and closes what it opened.

Migrations (``/v1/migrations``) are checked, then journalled phase by phase
ahead of every agent call, driven in the background and resumed after a
restart: see :mod:`devmig.orchestration._orchestrator`. Drains are built on them.

Reads are open; mutating endpoints (hosts, pools, cordons, ``POST /v1/poll``, ``POST /v1/migrations``)
need ``Authorization: Bearer TOKEN``. Every error is problem details
(``application/problem+json``) carrying the problems' codes. The answers
come from one inventory snapshot per request through :mod:`devmig.compat`
(see :mod:`devmig.orchestration._queries`).

Test hook: ``ManagerSettings.crash_at`` (from ``DEVMIG_TEST_CRASH_AT``) makes
the process exit right after committing that journal phase (the SIGKILL tests).
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from devmig import __version__
from devmig._errors import DevmigError
from devmig._tls import TlsConfig, use
from devmig.agent import (
    MAX_URL,
    AgentClient,
    BoundedRequests,
    agent_url,
    devmig_error_handler,
    http_error_handler,
    quiet_accept_errors,
    require_token,
    validation_error_handler,
)
from devmig.inventory import DEFAULT_MAX_MISSED, Clock, Inventory, Poller, SqlInventory, SystemClock
from devmig.manager._dashboard import mount_dashboard
from devmig.manager._drain_routes import drains_router
from devmig.manager._matrix import MatrixCache
from devmig.manager._metrics import CONTENT_TYPE, ManagerMetrics
from devmig.manager._token_vault import TokenVault
from devmig.orchestration import (
    Drainer,
    Orchestrator,
    PlaceRequest,
    UpgradeRequest,
    answer_baseline,
    answer_place,
    answer_plan_upgrade,
    answer_rollback_set,
    host_dict,
    profile_docs,
)

__all__ = ["ManagerSettings", "create_manager_app"]

log = logging.getLogger("devmig.manager")



class HostAdd(BaseModel):
    """Register a host by its agent URL; its name is learned from the agent when omitted."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(min_length=1,
                     description=f"The agent's URL, e.g. http://10.0.0.1:8470: http or https, at most {MAX_URL} "
                                 "characters, no credentials, no query or fragment (else 422 URL_INVALID).")
    name: str | None = Field(None, min_length=1, description="The host name (default: what the agent reports).")
    token: str | None = Field(None, max_length=1024,
                              description="The agent's bearer token: kept in the inventory, encrypted with the "
                                          "manager's token key, for later calls; never shown.")


class PoolCreate(BaseModel):
    """Create an empty pool."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=256)


class ManagerSettings(BaseModel):
    """Everything :func:`create_manager_app` needs; ``devmig manager`` builds it from its options."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    db_url: str = Field(min_length=1, description="SQLAlchemy URL of the inventory (SQLite file or PostgreSQL).")
    poll_interval: float = Field(30.0, gt=0, description="Seconds between the starts of two poll rounds.")
    token: str = Field(default_factory=lambda: secrets.token_urlsafe(24))
    """Bearer token of the manager's mutating endpoints."""
    agent_token: str | None = None
    """Bearer token the poller sends to agents (reads need none by default)."""
    token_key: str | None = None
    """The key sealing the agent tokens kept in the inventory (default: derived from ``token``)."""
    max_missed: int = Field(DEFAULT_MAX_MISSED, ge=1)
    poll_timeout: float = Field(5.0, gt=0)
    migration_interval: float = Field(0.2, gt=0, description="Seconds between two looks at a running migration.")
    migration_concurrency: int = Field(8, ge=1, description="Migrations driven at once.")
    max_body_bytes: int = Field(1 << 20, ge=1024,
                                description="Bytes a request body may have (413 BODY_TOO_LARGE past it).")
    tls: TlsConfig | None = Field(
        None, description="TLS of the API; its CA and certificate also serve calls to agents."
    )
    crash_at: str | None = Field(
        default_factory=lambda: os.environ.get("DEVMIG_TEST_CRASH_AT") or None,
        description="TEST HOOK (env DEVMIG_TEST_CRASH_AT): exit at once right after committing this journal phase.",
    )


class MigrationCreate(BaseModel):
    """Migrate a running device: to a named host, or to the best one placement finds."""

    model_config = ConfigDict(extra="forbid")

    device: str = Field(min_length=3, max_length=400, description="HOST/ID of a running device.")
    destination: str | None = Field(None, min_length=1, max_length=256,
                                    description="The destination host (default: the best by placement).")
    migration_id: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$",
                                     description="Default: a new id. The same id again returns the existing record.")


class Health(BaseModel):
    """Liveness and the size of the fleet."""

    status: str
    version: str
    hosts: int


class PollResult(BaseModel):
    """One host's poll."""

    host: str
    status: str
    reachable: bool
    errors: list[dict[str, Any]] = Field(default_factory=list)


class PoolView(BaseModel):
    """A pool and its hosts."""

    name: str
    hosts: list[str]


_PROBLEM = {"content": {"application/problem+json": {}}, "description": "Problem details with the codes"}
_AUTH = [Depends(require_token)]


def inventory_of(request: Request) -> Inventory:
    """FastAPI dependency: the app's open inventory."""
    inventory: Inventory = request.app.state.inventory
    return inventory


def poller_of(request: Request) -> Poller:
    """FastAPI dependency: the app's poller."""
    poller: Poller = request.app.state.poller
    return poller


def orchestrator_of(request: Request) -> Orchestrator:
    """FastAPI dependency: the app's orchestrator."""
    orchestrator: Orchestrator = request.app.state.orchestrator
    return orchestrator


InventoryDep = Annotated[Inventory, Depends(inventory_of)]
PollerDep = Annotated[Poller, Depends(poller_of)]
OrchestratorDep = Annotated[Orchestrator, Depends(orchestrator_of)]


async def _poll_forever(poller: Poller) -> None:
    """Run the poller until cancelled; a round that fails (database down) is logged and retried."""
    while True:
        try:
            await poller.run()
        except Exception as exc:  # never ends the poller: a database down, or anything a host did
            log.warning("poll round failed: %s", exc)
            await poller.clock.sleep(poller.interval)


def create_manager_app(settings: ManagerSettings, *, inventory: Inventory | None = None,
                       clock: Clock | None = None, poll: bool = True) -> FastAPI:
    """Build the manager's FastAPI application.

    Args:
        settings: database URL, poll interval, tokens.
        inventory: an open inventory to use instead of opening ``settings.db_url``
            (the caller keeps owning it: the app neither opens nor closes it).
        clock: the poller's clock (default: the system clock).
        poll: run the poller in the background (``False``: only ``POST /v1/poll`` polls).

    Returns:
        The app; its lifespan opens the inventory and runs the poller.
    """

    if settings.tls is not None:
        use(settings.tls)  # every client the manager opens (poller, orchestrator) trusts its CA

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.accept_errors = quiet_accept_errors(asyncio.get_running_loop())
        owned = inventory is None
        inv: Inventory = SqlInventory(settings.db_url) if inventory is None else inventory
        if owned:
            inv.open()
        app.state.inventory = inv
        vault = TokenVault(settings.token_key or settings.token)
        app.state.token_vault = vault
        # before the orchestrator resumes unfinished migrations: they need each host's token
        app.state.agent_tokens = {
            name: token for name, sealed in inv.agent_tokens().items() if (token := vault.open(sealed, name))
        }
        try:
            async with Poller(inv, clock or SystemClock(), interval=settings.poll_interval,
                              max_missed=settings.max_missed, token=settings.agent_token,
                              timeout=settings.poll_timeout) as poller:
                app.state.poller = poller
                task = asyncio.create_task(_poll_forever(poller)) if poll else None
                orchestrator = Orchestrator(
                    inv, poller, token_for=lambda host: app.state.agent_tokens.get(host) or settings.agent_token,
                    interval=settings.migration_interval, concurrency=settings.migration_concurrency,
                    crash_at=settings.crash_at, agent_timeout=settings.poll_timeout,
                )
                app.state.orchestrator = orchestrator
                try:
                    async with orchestrator:  # resumes every unfinished migration first
                        drainer = Drainer(inv, orchestrator, poller=poller)
                        app.state.drainer = drainer
                        await drainer.open()  # resumes every unfinished drain
                        app.state.matrix_cache = MatrixCache()
                        try:
                            yield
                        finally:
                            app.state.matrix_cache.clear()
                            await drainer.aclose()
                finally:
                    if task is not None:
                        task.cancel()
                        with suppress(asyncio.CancelledError):
                            await task
        finally:
            if owned:
                inv.close()

    app = FastAPI(
        title="devmig manager",
        version=__version__,
        lifespan=lifespan,
        description=(
            "The fleet: hosts and their agents' reports (polled), pools, cordons, and the fleet questions — "
            "placement, pool baselines, rollback sets and upgrade plans; journalled migrations. "
            "Mutating endpoints need `Authorization: Bearer TOKEN`."
        ),
    )
    app.state.settings = settings
    app.add_middleware(BoundedRequests, max_body=settings.max_body_bytes,
                       open_routes=[("POST", r"/v1/place"), ("POST", r"/v1/pools/[^/]+/plan-upgrade")])  # questions
    app.state.agent_tokens = {}
    app.add_exception_handler(DevmigError, devmig_error_handler)
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.add_exception_handler(StarletteHTTPException, http_error_handler)

    @app.get("/v1/health", response_model=Health, tags=["fleet"])
    async def health(inv: InventoryDep) -> Health:
        """Liveness, devmig's version and the number of hosts."""
        return Health(status="ok", version=__version__, hosts=len(inv.list_hosts()))

    @app.get(
        "/metrics",
        tags=["fleet"],
        response_class=Response,
        responses={200: {"content": {CONTENT_TYPE: {}}, "description": "Prometheus text exposition"}},
    )
    async def metrics(request: Request, inv: InventoryDep) -> Response:
        """Prometheus metrics, read from the inventory: migrations by phase and outcome; bytes, downtime and
        pre-copy rounds of finished ones (histograms); discarded pre-copy records; the journal backlog;
        devices by host and model; hosts, their poll age and the poller's lag."""
        drainer = getattr(request.app.state, "drainer", None)
        return Response(ManagerMetrics(inv, drainer).render(), media_type=CONTENT_TYPE)

    # -- hosts ---------------------------------------------------------------------

    def _host(inv: Inventory, name: str) -> dict[str, Any]:
        view = inv.get_host(name)
        return host_dict(view, inv.profile(view.fingerprint) if view.fingerprint else None)

    @app.get("/v1/hosts", tags=["hosts"])
    async def list_hosts(inv: InventoryDep) -> dict[str, Any]:
        """Every host: profile fingerprint, releases, reachable, cordoned, last seen, load."""
        snap = inv.snapshot()
        return {"hosts": [host_dict(v, profile_docs(snap, v.fingerprint)) for v in inv.list_hosts()]}

    @app.get("/v1/hosts/{name}", tags=["hosts"], responses={404: _PROBLEM})
    async def get_host(name: str, inv: InventoryDep) -> dict[str, Any]:
        """One host."""
        return _host(inv, name)

    @app.post("/v1/hosts", status_code=201, tags=["hosts"], dependencies=_AUTH,
              responses={401: _PROBLEM, 409: _PROBLEM, 502: _PROBLEM})
    async def add_host(body: HostAdd, inv: InventoryDep, poller: PollerDep) -> dict[str, Any]:
        """Register a host and poll it once; without a name, ask the agent for it (502 when unreachable)."""
        url = agent_url(body.url, ("body", "url"))
        token = body.token or settings.agent_token
        name = body.name
        if name is None:
            async with AgentClient(url, token, timeout=settings.poll_timeout) as agent:
                name = str((await agent.health())["host"])
        inv.add_host(name, url)
        if body.token:
            inv.set_agent_token(name, app.state.token_vault.seal(body.token))  # sealed at rest
            app.state.agent_tokens[name] = body.token
        await poller.poll_host(inv.get_host(name))
        return _host(inv, name)

    @app.delete("/v1/hosts/{name}", status_code=204, tags=["hosts"], dependencies=_AUTH,
                responses={401: _PROBLEM, 404: _PROBLEM})
    async def remove_host(name: str, inv: InventoryDep) -> Response:
        """Forget a host, its devices, history and pool memberships."""
        inv.remove_host(name)
        app.state.agent_tokens.pop(name, None)
        return Response(status_code=204)

    @app.post("/v1/hosts/{name}/cordon", tags=["hosts"], dependencies=_AUTH, responses={401: _PROBLEM, 404: _PROBLEM})
    async def cordon(name: str, inv: InventoryDep) -> dict[str, Any]:
        """Take a host out of placement (it keeps its devices and pools)."""
        inv.cordon(name)
        return _host(inv, name)

    @app.post("/v1/hosts/{name}/uncordon", tags=["hosts"], dependencies=_AUTH,
              responses={401: _PROBLEM, 404: _PROBLEM})
    async def uncordon(name: str, inv: InventoryDep) -> dict[str, Any]:
        """Let a cordoned host receive devices again."""
        inv.uncordon(name)
        return _host(inv, name)

    @app.post("/v1/poll", response_model=list[PollResult], tags=["hosts"], dependencies=_AUTH,
              responses={401: _PROBLEM})
    async def poll_now(poller: PollerDep) -> list[PollResult]:
        """Poll every host once, now; return each outcome."""
        return [
            PollResult(host=o.host, status=o.status.value, reachable=o.reachable,
                       errors=o.error.to_dicts() if o.error else [])
            for o in await poller.poll_once()
        ]

    # -- pools ---------------------------------------------------------------------

    @app.get("/v1/pools", response_model=list[PoolView], tags=["pools"])
    async def list_pools(inv: InventoryDep) -> list[PoolView]:
        """Every pool with its hosts."""
        return [PoolView(name=n, hosts=h) for n, h in sorted(inv.list_pools().items())]

    def _pool(inv: Inventory, name: str) -> PoolView:
        return PoolView(name=name, hosts=inv.list_pools().get(name, []))

    @app.post("/v1/pools", status_code=201, response_model=PoolView, tags=["pools"], dependencies=_AUTH,
              responses={401: _PROBLEM, 409: _PROBLEM})
    async def create_pool(body: PoolCreate, inv: InventoryDep) -> PoolView:
        """Create an empty pool (409 when it exists)."""
        inv.create_pool(body.name)
        return _pool(inv, body.name)

    @app.delete("/v1/pools/{pool}", status_code=204, tags=["pools"], dependencies=_AUTH,
                responses={401: _PROBLEM, 404: _PROBLEM})
    async def delete_pool(pool: str, inv: InventoryDep) -> Response:
        """Delete a pool; its hosts stay."""
        inv.delete_pool(pool)
        return Response(status_code=204)

    @app.put("/v1/pools/{pool}/hosts/{host}", response_model=PoolView, tags=["pools"], dependencies=_AUTH,
             responses={401: _PROBLEM, 404: _PROBLEM})
    async def add_member(pool: str, host: str, inv: InventoryDep) -> PoolView:
        """Put a host in a pool (no-op when it is there)."""
        inv.add_to_pool(pool, host)
        return _pool(inv, pool)

    @app.delete("/v1/pools/{pool}/hosts/{host}", response_model=PoolView, tags=["pools"], dependencies=_AUTH,
                responses={401: _PROBLEM, 404: _PROBLEM})
    async def remove_member(pool: str, host: str, inv: InventoryDep) -> PoolView:
        """Take a host out of a pool (no-op when it is not there)."""
        inv.remove_from_pool(pool, host)
        return _pool(inv, pool)

    # -- questions -----------------------------------------------------------------

    @app.post("/v1/place", tags=["questions"], responses={404: _PROBLEM, 409: _PROBLEM, 422: _PROBLEM})
    async def place_vm(body: PlaceRequest, inv: InventoryDep) -> dict[str, Any]:
        """Where a VM's devices can go together: accepted hosts ranked, rejected hosts with reasons.

        Each device is ``{"device": "HOST/ID"}`` (running) or ``{"model", "config"}`` (to create).
        ``profiles`` groups the verdicts by profile.
        """
        return answer_place(inv, inv.snapshot(), body)

    @app.get("/v1/pools/{pool}/baseline", tags=["questions"], responses={404: _PROBLEM, 409: _PROBLEM})
    async def pool_baseline(pool: str, inv: InventoryDep,
                            model: Annotated[str, Query(min_length=1, description="The model id.")]) -> dict[str, Any]:
        """The newest version and the richest configuration every member of the pool accepts."""
        return answer_baseline(inv, inv.snapshot(), pool, model)

    @app.get("/v1/devices/{host}/{device_id}/rollback-set", tags=["questions"],
             responses={404: _PROBLEM, 409: _PROBLEM})
    async def device_rollback_set(
        host: str, device_id: str, inv: InventoryDep,
        window: Annotated[int, Query(ge=0, le=8, description="Previous releases of each implementation.")] = 0,
    ) -> dict[str, Any]:
        """The hosts a running device can move to and come back from: to the profile it runs on and to
        every profile it ran on before (``history``, from the migration journal)."""
        return answer_rollback_set(inv, inv.snapshot(), host, device_id, window)

    @app.post("/v1/pools/{pool}/plan-upgrade", tags=["questions"], responses={404: _PROBLEM, 422: _PROBLEM})
    async def pool_plan_upgrade(pool: str, body: UpgradeRequest, inv: InventoryDep) -> dict[str, Any]:
        """Plan upgrading a pool to target releases: planned profiles, stranded devices, a safe order."""
        return answer_plan_upgrade(inv, inv.snapshot(), pool, body)

    # -- migrations --------------------------------------------------------------------

    @app.post("/v1/migrations", status_code=202, tags=["migrations"], dependencies=_AUTH,
              responses={200: {"description": "The migration id existed: its record"}, 401: _PROBLEM,
                         404: _PROBLEM, 409: _PROBLEM, 422: _PROBLEM})
    async def start_migration(body: MigrationCreate, orchestrator: OrchestratorDep,
                              response: Response) -> dict[str, Any]:
        """Check, journal and start migrating a running device (202); it runs in the background.

        Refused before anything moved: 404 ``DEVICE_NOT_FOUND`` / ``HOST_UNKNOWN``; 409 ``NO_HOST``
        (every rejected host's reasons), the compatibility codes (``INCOMPATIBLE``, then every
        reason) or ``HOST_CORDONED`` / ``HOST_UNREACHABLE`` / ``SAME_HOST`` for a named destination,
        ``DEVICE_BUSY`` while a migration of the device is unfinished. The same ``migration_id``
        again: 200 with the existing record.
        """
        record, created = await orchestrator.submit(body.device, body.destination, migration_id=body.migration_id)
        if not created:
            response.status_code = 200
        return record

    @app.get("/v1/migrations", tags=["migrations"])
    async def list_migrations(
        orchestrator: OrchestratorDep,
        active: Annotated[bool, Query(description="Only unfinished migrations.")] = False,
    ) -> dict[str, Any]:
        """Every migration, newest first: phase, progress, outcome, history of phases."""
        return {"migrations": orchestrator.list(active=active)}

    @app.get("/v1/migrations/{migration_id}", tags=["migrations"], responses={404: _PROBLEM})
    async def get_migration(migration_id: str, orchestrator: OrchestratorDep) -> dict[str, Any]:
        """One migration: its journal phase, progress, downtime, digest, error and history.

        Phases: planned, destination_created, streaming, destination_validated, handed_off,
        destination_running, source_released, done; rolling_back, rolled_back; resolving.
        """
        return orchestrator.get(migration_id)

    app.include_router(drains_router)
    mount_dashboard(app)
    return app
