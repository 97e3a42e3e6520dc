"""``/v1/drains``: start, list and read drains over HTTP (the :class:`~devmig.orchestration.Drainer` behind them).

The manager's lifespan opens the drainer (``app.state.drainer``); these routes only read it.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from devmig._errors import DevmigError
from devmig.agent import problem_response, require_token
from devmig.orchestration import Drainer

__all__ = ["DrainCreate", "drains_router"]


class DrainCreate(BaseModel):
    """Drain a host: move every device it runs to other hosts."""

    model_config = ConfigDict(extra="forbid")

    host: str = Field(min_length=1, max_length=256, description="The host to drain.")
    partial: bool = Field(False, description="Move what can move even if some device would be stranded.")
    dry_run: bool = Field(False, description="Only plan: nothing moves, the host is not cordoned.")
    parallel: int = Field(1, ge=1, le=64, description="Migrations at once.")


drains_router = APIRouter(tags=["drains"])
"""``/v1/drains`` (mounted by :func:`~devmig.manager.create_manager_app`, whose lifespan opens the drainer)."""

_PROBLEM = {"content": {"application/problem+json": {}}, "description": "Problem details with the codes"}


def _drainer(request: Request) -> Drainer:
    drainer: Drainer = request.app.state.drainer
    return drainer


def _problem(exc: DevmigError) -> JSONResponse:
    return problem_response(exc)


@drains_router.post("/v1/drains", status_code=202, dependencies=[Depends(require_token)], response_model=None,
                    responses={200: {"description": "A dry run: the plan, nothing moved"}, 401: _PROBLEM,
                               404: _PROBLEM, 409: _PROBLEM, 422: _PROBLEM})
async def start_drain(body: DrainCreate, request: Request, response: Response) -> dict[str, Any] | JSONResponse:
    """Cordon a host and migrate every device it runs elsewhere (202); runs in the background.

    Each device is placed with the loads of the devices placed before it. 409 ``STRANDED`` (each
    stranded device and its reasons follow) when some device has no destination and not
    ``partial``: nothing moved, the host stays cordoned. ``dry_run``: 200 with the plan, nothing
    moved, the host not cordoned. At most ``parallel`` migrations at once; journalled; resumed
    after a restart.
    """
    try:
        record = await _drainer(request).start(body.host, partial=body.partial, dry_run=body.dry_run,
                                               parallel=body.parallel)
    except DevmigError as exc:
        return _problem(exc)
    if record["finished"]:
        response.status_code = 200
    return record


@drains_router.get("/v1/drains")
async def list_drains(request: Request) -> dict[str, Any]:
    """Every drain, newest first: host, phase, plan, stranded devices, migrations."""
    return {"drains": _drainer(request).list()}


@drains_router.get("/v1/drains/{drain_id}", response_model=None, responses={404: _PROBLEM})
async def get_drain(drain_id: str, request: Request) -> dict[str, Any] | JSONResponse:
    """One drain (phases: planned, running, done, failed, partial)."""
    try:
        return _drainer(request).get(drain_id)
    except DevmigError as exc:
        return _problem(exc)
