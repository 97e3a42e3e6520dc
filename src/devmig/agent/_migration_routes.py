"""Migration endpoints (``/v1/migrations``) and the engine's lifecycle.

Placeholder until the migration engine lands: no routes, nothing to start.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI

from devmig.agent._host import Host
from devmig.agent._settings import AgentSettings

__all__ = ["attach_migrations", "migrations_router"]

migrations_router = APIRouter()


@asynccontextmanager
async def attach_migrations(app: FastAPI, host: Host, settings: AgentSettings) -> AsyncIterator[None]:
    """Start the migration engine for ``app`` and stop it on exit."""
    yield
