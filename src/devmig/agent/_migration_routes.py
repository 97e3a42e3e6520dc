"""Migration endpoints (``/v1/migrations``) and the migration engine's lifecycle.

Mutating endpoints need the agent's bearer token. ``POST
/v1/migrations/{id}/query`` (agent to agent, a QUERY frame in and a STATUS
frame out) also accepts the per-migration token this agent issued to the
peer: on a source, the callback token it handed the destination; on a
destination, the query token it returned from ``incoming``. See :mod:`devmig.agent._migrations` for the theory of
operation.
"""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Path, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from devmig._errors import DevmigError, Problem
from devmig.agent._auth import require_token
from devmig.agent._host import Host
from devmig.agent._metrics import AgentMetrics
from devmig.agent._migrations import Migration, MigrationEngine
from devmig.agent._settings import AgentSettings
from devmig.agent._urls import agent_url

__all__ = ["attach_migrations", "migrations_router"]

Scalar = bool | int | str
_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
_PROBLEM = {"content": {"application/problem+json": {}}, "description": "Problem details with the core's codes"}

migrations_router = APIRouter(prefix="/v1/migrations", tags=["migrations"])


class PeerSource(BaseModel):
    """Who sends the migration (the source agent)."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field("", max_length=512, description="The source agent's URL (for in-doubt queries).")
    host: str = Field("", max_length=256, description="The source host's name.")
    callback_token: str | None = Field(None, max_length=256,
                                       description="A per-migration token this agent uses to query the source.")


class IncomingRequest(BaseModel):
    """The destination's side of a migration: create the copy in RESUMING and issue a secret."""

    model_config = ConfigDict(extra="forbid")

    migration_id: str = Field(pattern=_ID_PATTERN)
    model: str = Field(min_length=1, max_length=256)
    config: dict[str, Scalar] = Field(description="The source device's canonical configuration.")
    source: PeerSource
    host: dict[str, Scalar] = Field(
        default_factory=dict,
        description="The source device's host settings: a block device's `image` is relative to the image "
                    "directory, which both agents share; it is opened inside this agent's image directory, "
                    "like in POST /v1/devices.",
    )
    owns_image: bool = Field(False, description="The source agent made the image: deleting the device here "
                                                "removes it (it moves with the device).")
    lease: str | None = Field(None, max_length=256,
                              description="The controller's lease, as the source got it (see OutgoingRequest.lease).")


class IncomingResponse(BaseModel):
    """Where and how the source connects."""

    migration_id: str
    device_id: str
    stream: str = Field(description="The stream address: HOST:PORT or unix:/path.")
    secret: str = Field(description="Hex; single use; valid secret_ttl_s.")
    expires_in_s: float
    query_token: str = Field(
        description="A per-migration token the source agent uses to ask this agent for the outcome "
                    "(POST /v1/migrations/{id}/query), also after either agent restarted. Never shown afterwards.",
    )


class Destination(BaseModel):
    """The destination agent."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(min_length=1, max_length=512)
    token: str | None = Field(None, max_length=256)


class OutgoingRequest(BaseModel):
    """Start migrating a device of this host to another agent."""

    model_config = ConfigDict(extra="forbid")

    migration_id: str | None = Field(None, pattern=_ID_PATTERN, description="Default: a new id.")
    device_id: str = Field(min_length=1, max_length=128)
    destination: Destination
    source_url: str | None = Field(
        None, max_length=512,
        description="Where the destination reaches this agent (sent as source.url; default: the agent's "
                    "--advertise-url, else the address it listens on). http or https, no credentials.",
    )
    lease: str | None = Field(
        None, max_length=256,
        description="Who drives the migration (the fleet manager: its instance and the migration id). "
                    "The same id under another lease, or none, is refused with 409 LEASE_HELD.",
    )


class CancelRequest(BaseModel):
    """Optional body of a cancel: who cancels, and what to fence."""

    model_config = ConfigDict(extra="forbid")

    lease: str | None = Field(None, max_length=256, description="The controller's lease (must match when given).")
    device_id: str | None = Field(
        None, min_length=1, max_length=128,
        description="With a lease, for an id this agent never heard of: record it as a rolled-back migration of "
                    "this device (a fence), so a late outgoing call with this id cannot start it.",
    )


class MigrationError(BaseModel):
    """Why a migration left its happy path."""

    code: str
    message: str
    phase: str | None
    side: str | None = None


class MigrationView(BaseModel):
    """One migration as this agent sees it."""

    migration_id: str
    role: str = Field(description="source or destination")
    phase: str = Field(description="The hand-off protocol's phase on this side.")
    stage: str
    outcome: str | None = Field(description="migrated, rolled_back, in_doubt, destroyed; null while running")
    device_is: str | None = Field(
        None,
        description="Once finished, where the device is as this agent knows it: here (it runs or waits on "
                    "this host), peer (on the other agent), nowhere (it died with an agent that held its "
                    "only copy: a source killed before it committed, a destination killed after it started), "
                    "unknown (in doubt); null while running.",
    )
    finished: bool
    round: int
    bytes_sent: int
    bytes_received: int
    discarded_records: int = Field(
        0, description="Destination: pre-copy (LIVE) records discarded for a wrong digest (torn by a write at "
                       "the source; their pages came again)."
    )
    discarded_bytes: int = Field(0, description="Destination: the bytes of the discarded records.")
    rate: float = Field(description="bytes/s")
    expected_downtime_ms: float | None
    downtime_ms: float | None
    device_id: str | None
    destination_device_id: str | None
    model: str | None
    config: dict[str, Any]
    source: dict[str, Any]
    destination: dict[str, Any]
    digest: str | None = Field(description="The state digest at switch-over.")
    error: MigrationError | None
    started_at: float
    finished_at: float | None
    from_journal: bool
    precopy: list[dict[str, Any]]
    secret_outstanding: bool = Field(
        False, description="Destination: whether its single-use secret could still admit a connection."
    )
    timings: dict[str, float] = Field(default_factory=dict,
                                      description="Milestones (epoch seconds) and a few measurements.")


class MigrationList(BaseModel):
    """Every migration this agent knows."""

    migrations: list[MigrationView]


def engine_of(request: Request) -> MigrationEngine:
    """FastAPI dependency: the app's engine."""
    engine: MigrationEngine = request.app.state.engine
    return engine


EngineDep = Annotated[MigrationEngine, Depends(engine_of)]
MigrationId = Annotated[str, Path(pattern=_ID_PATTERN)]


def _view(m: Migration, engine: MigrationEngine) -> MigrationView:
    return MigrationView.model_validate({**m.to_dict(), "device_is": engine.device_is(m)})


@migrations_router.get("", response_model=MigrationList)
async def list_migrations(engine: EngineDep) -> MigrationList:
    """Every migration this agent knows (live ones and those in its journal)."""
    return MigrationList(migrations=[_view(m, engine) for m in engine.migrations.values()])


@migrations_router.post(
    "/incoming",
    response_model=IncomingResponse,
    dependencies=[Depends(require_token)],
    responses={401: _PROBLEM, 404: _PROBLEM, 409: _PROBLEM, 422: _PROBLEM, 507: _PROBLEM},
)
async def incoming(body: IncomingRequest, engine: EngineDep) -> IncomingResponse:
    """Create the destination's copy (canonical configuration, RESUMING) and issue a single-use secret.

    422 with every problem when this release refuses the configuration; 507
    when the device does not fit. Idempotent by migration id: repeating it
    returns the same device and a fresh secret as long as no connection used
    the old one (which is revoked); afterwards 409 ``MIGRATION_CONFLICT``.
    """
    engine.host.definition_of(body.model)  # 404 MODEL_UNKNOWN first: the request's "what" before its "who"
    if body.source.url:  # the source's own word, in its token-authenticated request
        agent_url(body.source.url, ("body", "source", "url"))
    m, secret = engine.incoming(body.migration_id, body.model, body.config, body.source.model_dump(),
                                body.host, body.source.callback_token, body.lease, owns_image=body.owns_image)
    stream = engine.settings.advertise_stream or engine.stream_address
    assert m.device_id is not None and stream is not None
    return IncomingResponse(migration_id=m.id, device_id=m.device_id, stream=stream,
                            secret=secret.hex(), expires_in_s=engine.settings.secret_ttl_s,
                            query_token=m.query_token)


@migrations_router.post(
    "/outgoing",
    status_code=202,
    response_model=MigrationView,
    dependencies=[Depends(require_token)],
    responses={401: _PROBLEM, 404: _PROBLEM, 409: _PROBLEM, 502: _PROBLEM},
)
async def outgoing(body: OutgoingRequest, request: Request, engine: EngineDep) -> MigrationView:
    """Start migrating a device; it runs in the background (202).

    The destination's report is checked first: 409 ``INCOMPATIBLE`` with every
    reason, before anything is created. 409 ``DEVICE_BUSY`` when another
    migration holds the device. Idempotent by migration id (and lease: the
    same id under another lease is 409 ``LEASE_HELD``).
    """
    # where the destination reaches this agent for in-doubt queries: the controller's word, or this
    # agent's own setting; never the Host header a client sent
    settings: AgentSettings = request.app.state.settings
    source_url = body.source_url or settings.advertise_url or ""
    kernel = engine.host.kernel
    known = body.device_id in engine.host.devices or (kernel is not None and body.device_id in kernel.devices)
    if source_url and known:  # an unknown device is 404 DEVICE_NOT_FOUND first (the URL is not used then)
        source_url = agent_url(source_url, ("body", "source_url"))
    m = await engine.outgoing(body.migration_id, body.device_id, body.destination.url, body.destination.token,
                              source_url, body.lease)
    return _view(m, engine)


@migrations_router.get("/{migration_id}", response_model=MigrationView, responses={404: _PROBLEM})
async def get_migration(migration_id: MigrationId, engine: EngineDep) -> MigrationView:
    """A migration's status: role, phase, round, bytes, rate, downtime, digest at switch-over, error."""
    return _view(engine.get(migration_id), engine)


@migrations_router.post(
    "/{migration_id}/cancel",
    response_model=MigrationView,
    dependencies=[Depends(require_token)],
    responses={401: _PROBLEM, 404: _PROBLEM, 409: _PROBLEM},
)
async def cancel(migration_id: MigrationId, engine: EngineDep, body: CancelRequest | None = None) -> MigrationView:
    """Cancel: before COMMITTED the migration rolls back; afterwards 409 ``TOO_LATE``.

    With a body ``{"lease", "device_id"}`` (a controller): 409 ``LEASE_HELD``
    under another lease; an id this agent never heard of is fenced (recorded
    as rolled back) instead of 404.
    """
    if body is None:
        return _view(engine.cancel(migration_id), engine)
    return _view(engine.cancel(migration_id, lease=body.lease, device_id=body.device_id), engine)


@migrations_router.post("/{migration_id}/query", response_class=Response, include_in_schema=False)
async def query(migration_id: MigrationId, request: Request, engine: EngineDep) -> Response:
    """Agent to agent: a QUERY frame in, the STATUS frame out (in-doubt resolution).

    Not in the OpenAPI document: its bodies are binary protocol frames
    (``devmig.migration``), not JSON, and only agents call it. Needs the agent's token or the
    per-migration token this agent issued (a source's callback token, a destination's query token).
    """
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    settings: AgentSettings = request.app.state.settings
    allowed = scheme.lower() == "bearer" and bool(token) and (
        hmac.compare_digest(token.encode(), settings.token.encode()) or engine.check_callback(migration_id, token)
    )
    if not allowed:
        raise DevmigError([Problem("AUTH_FAILED", ("headers", "authorization"),
                                   "a query needs the agent's token or the migration's own token")])
    body = await request.body()
    if len(body) > 1024:
        raise DevmigError([Problem("REQUEST_INVALID", ("body",), "a QUERY frame is at most 1 KiB")])
    answer = engine.answer_query(migration_id, body)
    return Response(answer, media_type="application/octet-stream")


@asynccontextmanager
async def attach_migrations(app: FastAPI, host: Host, settings: AgentSettings) -> AsyncIterator[None]:
    """Start the migration engine (journal, stream listener) for ``app``; stop it on exit.

    Sets ``app.state.engine``, ``app.state.metrics`` and ``app.state.stream_address``.
    """
    engine = MigrationEngine(host, settings)
    metrics = AgentMetrics(host, engine)
    engine.on_record = metrics.observe
    app.state.metrics = metrics
    await engine.start()
    app.state.engine = engine
    app.state.stream_address = engine.stream_address
    try:
        yield
    finally:
        await engine.close()
