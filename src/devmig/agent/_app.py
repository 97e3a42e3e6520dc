"""The agent's HTTP API: the uniform query mechanism, devices, and migrations (``/v1``).

Built by :func:`create_app` with one lifespan that starts and stops what the
agent owns: the :class:`~devmig.agent._host.Host` (devices and their
workload) and the migration engine (stream listener, journal).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from devmig import __version__
from devmig._errors import DevmigError
from devmig._tls import use
from devmig.agent._auth import require_token
from devmig.agent._host import Host
from devmig.agent._limits import BoundedRequests
from devmig.agent._loop_errors import quiet_accept_errors
from devmig.agent._metrics import CONTENT_TYPE, AgentMetrics
from devmig.agent._migration_routes import attach_migrations, migrations_router
from devmig.agent._problems import (
    devmig_error_handler,
    http_error_handler,
    validation_error_handler,
)
from devmig.agent._settings import AgentSettings
from devmig.model import Config, expand, parse_canonical, version_of

__all__ = ["create_app"]

Scalar = bool | int | str


class DeviceCreate(BaseModel):
    """A request to create a device."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, max_length=256, description="The model id.")
    config: Annotated[str, Field(max_length=65536)] | dict[str, Scalar] | None = Field(
        None, description="An option string (version=2,rx-table-size=48; at most 64 KiB) or an object; "
                          "null: init values."
    )
    host: dict[str, Scalar] = Field(
        default_factory=dict,
        description="Host-only settings: a block device's `image`, an existing file inside the agent's image "
                    "directory (relative to it, or an absolute path under it; never through a symbolic link; "
                    "one device per image). Without one the agent makes an image and removes it with the device.",
    )
    implementation: str | None = Field(
        None, max_length=256, description="The release to create it with, NAME/RELEASE, when more than one "
        "provider here serves the model (a vfio-user backend beside the sdk release); default: the sdk's.")
    canonical: bool = Field(
        False,
        description="config is a source's canonical configuration (omitted parameters at their off values): "
        "how a migration destination is created.",
    )


class Implementation(BaseModel):
    """An implementation release."""

    name: str
    release: str


class DeviceView(BaseModel):
    """A device as the API shows it."""

    id: str
    model: str
    implementation: Implementation
    config: dict[str, Scalar]
    string: str
    version: str | None
    state: str
    running: bool
    busy: str | None
    origin: str | None
    memory_bytes: int
    counters: dict[str, int]
    host: dict[str, Scalar]
    digest: str | None = None
    provider: str = Field("sdk", description="The provider hosting it: sdk, kernel or vfio-user (DESIGN §9).")
    carrier: str = Field("agent", description="Who carries its migration data: agent or vmm.")
    exit_status: int | None = Field(None, description="A LOST vfio-user backend's exit status (negative: signal).")


class DeviceList(BaseModel):
    """Every device on the host."""

    devices: list[DeviceView]


class VersionView(BaseModel):
    """A published version and what it expands to."""

    name: str
    config: dict[str, Scalar]
    string: str


class ModelView(BaseModel):
    """One model as this host serves it: every version expanded, and the latest."""

    model: str
    implementation: Implementation
    versions: list[VersionView]
    latest: str | None
    init: VersionView


class ProvidedView(BaseModel):
    """One implementation release of the host report, and its provider."""

    implementation: Implementation
    provider: str
    carrier: str = Field(description="Who carries its devices' migration data: agent or vmm.")
    source: str
    capacity: int | None = Field(None, description="How many more devices could be created now, where known.")


class ProvidersView(BaseModel):
    """Who publishes each release of the host report, and what could not be published."""

    implementations: list[ProvidedView]
    problems: list[dict[str, Any]]


class Health(BaseModel):
    """Liveness and identity."""

    status: str
    host: str
    version: str
    devices: int


def host_of(request: Request) -> Host:
    """FastAPI dependency: the app's :class:`Host`."""
    host: Host = request.app.state.host
    return host


HostDep = Annotated[Host, Depends(host_of)]

_PROBLEM = {"content": {"application/problem+json": {}}, "description": "Problem details with the core's codes"}


def create_app(settings: AgentSettings) -> FastAPI:
    """Build the agent's FastAPI application.

    Args:
        settings: releases to host, token, limits, stream listener, policies.

    Returns:
        The app; its lifespan starts the workload and the migration engine.
    """

    if settings.tls is not None:
        use(settings.tls)  # every client the agent opens (peers' APIs) trusts its CA and shows its certificate

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.accept_errors = quiet_accept_errors(asyncio.get_running_loop())
        host = Host(settings)
        app.state.host = host
        await host.start()
        async with attach_migrations(app, host, settings):
            try:
                yield
            finally:
                await host.close()

    app = FastAPI(
        title="devmig agent",
        version=__version__,
        lifespan=lifespan,
        description=(
            "One agent per host: the uniform query mechanism (GET /v1/report), the devices living here, "
            "and migrations between agents. Mutating endpoints need `Authorization: Bearer TOKEN`."
        ),
    )
    app.state.settings = settings
    app.add_middleware(BoundedRequests, max_body=settings.max_body_bytes,
                       open_routes=[("POST", r"/v1/migrations/[^/]+/query")])  # per-migration tokens: its own check
    app.add_exception_handler(DevmigError, devmig_error_handler)
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.add_exception_handler(StarletteHTTPException, http_error_handler)

    @app.get("/v1/health", response_model=Health, tags=["query"])
    async def health(host: HostDep) -> Health:
        """Liveness: the host name, devmig's version and the device count."""
        kernel = len(host.kernel.devices) if host.kernel is not None else 0
        kernel += len(host.vfio_user.devices) if host.vfio_user is not None else 0
        return Health(status="ok", host=settings.host_name, version=__version__, devices=len(host.devices) + kernel)

    @app.get(
        "/v1/report",
        tags=["query"],
        responses={304: {"description": "Not modified (If-None-Match matched the ETag)"}},
    )
    async def report(
        host: HostDep, if_none_match: Annotated[str | None, Header()] = None
    ) -> Response:
        """The host report (DESIGN §7): every model document of every implementation on this host.

        The ETag is the report's profile fingerprint (the digest of its
        canonical documents); send it back in If-None-Match to get 304 while
        nothing changed.
        """
        etag = f'"{host.report_etag}"'
        if if_none_match is not None and etag in [t.strip() for t in if_none_match.split(",")]:
            return Response(status_code=304, headers={"ETag": etag})
        body = json.dumps(host.report().to_json(), separators=(",", ":"))
        return Response(body, media_type="application/json", headers={"ETag": etag})

    @app.get("/v1/models/{model_id:path}", response_model=ModelView, tags=["query"], responses={404: _PROBLEM})
    async def model(model_id: str, host: HostDep) -> ModelView:
        """Every version of a model with its expanded configuration, the latest, and the init configuration."""
        impl, definition = host.definition_of(model_id)
        versions = []
        for v in definition.versions:
            config = expand(definition, f"version={v.name}")
            versions.append(VersionView(name=v.name, config=config.values, string=config.string))
        init = expand(definition, "")
        return ModelView(
            model=model_id,
            implementation=Implementation(name=impl.name, release=impl.release),
            versions=versions,
            latest=definition.latest.name if definition.latest else None,
            init=VersionView(name=version_of(definition, init) or "init", config=init.values, string=init.string),
        )

    @app.post(
        "/v1/devices",
        status_code=201,
        response_model=DeviceView,
        tags=["devices"],
        dependencies=[Depends(require_token)],
        responses={401: _PROBLEM, 404: _PROBLEM, 422: _PROBLEM, 507: _PROBLEM},
    )
    async def create_device(body: DeviceCreate, host: HostDep) -> DeviceView:
        """Create a device from a configuration; 422 with every problem, and nothing created."""
        backends = host.vfio_user
        if backends is not None and backends.definition(body.model, body.implementation) is not None and (
            body.implementation is not None or body.model not in host.models
        ):
            made_v = await backends.create(body.model, body.config, body.host, canonical=body.canonical,
                                           implementation=body.implementation)
            return DeviceView.model_validate(await made_v.to_dict())
        if host.kernel is not None and body.model not in host.models:
            made = await host.kernel.create(body.model, body.config, body.host, canonical=body.canonical)
            return DeviceView.model_validate(made.to_dict())
        config: str | dict[str, Scalar] | Config | None = body.config
        if body.canonical and isinstance(config, str):
            config = parse_canonical(host.definition_of(body.model)[1], config)
        hosted = host.create_device(body.model, config, body.host, canonical=body.canonical)
        return DeviceView.model_validate(hosted.to_dict())

    @app.get("/v1/devices", response_model=DeviceList, tags=["devices"])
    async def list_devices(host: HostDep) -> DeviceList:
        """Every device on this host."""
        views = [DeviceView.model_validate(h.to_dict()) for h in host.devices.values()]
        if host.kernel is not None:
            views += [DeviceView.model_validate(k.to_dict()) for k in host.kernel.devices.values()]
        if host.vfio_user is not None:
            views += [DeviceView.model_validate(await v.to_dict()) for v in host.vfio_user.devices.values()]
        return DeviceList(devices=views)

    @app.get("/v1/devices/{device_id}", response_model=DeviceView, tags=["devices"], responses={404: _PROBLEM})
    async def get_device(
        device_id: str,
        host: HostDep,
        digest: Annotated[bool, Query(description="Include the state digest (costs a pass over memory).")] = False,
    ) -> DeviceView:
        """One device: state, configuration, workload counters, and optionally its state digest."""
        if host.kernel is not None and device_id in host.kernel.devices:
            return DeviceView.model_validate(host.kernel.devices[device_id].to_dict())
        if host.vfio_user is not None and device_id in host.vfio_user.devices:
            return DeviceView.model_validate(await host.vfio_user.devices[device_id].to_dict(digest=digest))
        return DeviceView.model_validate(host.get(device_id).to_dict(digest=digest))

    @app.delete(
        "/v1/devices/{device_id}",
        status_code=204,
        tags=["devices"],
        dependencies=[Depends(require_token)],
        responses={401: _PROBLEM, 404: _PROBLEM, 409: _PROBLEM},
    )
    async def delete_device(device_id: str, host: HostDep) -> Response:
        """Delete a device; 409 while a migration holds it. A block device's image goes with it when the
        agent made it (no ``image`` given at creation); an image the client named stays."""
        if host.kernel is not None and device_id in host.kernel.devices:
            await host.kernel.delete(device_id)
        elif host.vfio_user is not None and device_id in host.vfio_user.devices:
            await host.vfio_user.delete(device_id)  # the connection closes: the backend exits
        else:
            host.delete_device(device_id, remove_image=True)
        return Response(status_code=204)

    @app.get("/v1/providers", response_model=ProvidersView, tags=["query"])
    async def providers(host: HostDep) -> ProvidersView:
        """Which provider publishes each release of the report (DESIGN §9), who carries its devices' data
        (the VMM for kernel devices), and what could not be published (a driver's malformed document)."""
        offers = [host.kernel.offer()] if host.kernel is not None else []
        offers += [host.vfio_user.offer()] if host.vfio_user is not None else []
        capacity = {k: v for o in offers for k, v in o.capacity.items()}
        return ProvidersView(
            implementations=[
                ProvidedView(
                    implementation=Implementation(name=impl.name, release=impl.release),
                    provider=host.catalog.owners[impl],
                    carrier=p.carrier,
                    source=p.source,
                    capacity=capacity.get(impl.render()),
                )
                for impl, p in host.catalog.provided.items()
            ],
            problems=[p.to_dict() for o in offers for p in o.problems] + [p.to_dict() for p in host.catalog.conflicts],
        )

    @app.get(
        "/metrics",
        tags=["query"],
        response_class=Response,
        responses={200: {"content": {CONTENT_TYPE: {}}, "description": "Prometheus text exposition"}},
    )
    async def metrics(request: Request) -> Response:
        """Prometheus metrics: finished migrations by role, outcome and phase; bytes, downtime and pre-copy
        rounds (histograms); discarded pre-copy records; devices by provider and model; running migrations
        and the journal backlog."""
        agent_metrics: AgentMetrics = request.app.state.metrics
        return Response(agent_metrics.render(), media_type=CONTENT_TYPE)

    app.include_router(migrations_router)
    return app

