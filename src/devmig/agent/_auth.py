"""Bearer-token authentication of mutating endpoints (compared in constant time)."""

from __future__ import annotations

import hmac

from fastapi import Request

from devmig._errors import DevmigError, Problem

__all__ = ["check_bearer", "require_token"]


async def require_token(request: Request) -> None:
    """FastAPI dependency: refuse a request without the agent's bearer token.

    (:class:`~devmig.agent._limits.BoundedRequests` checks the routes that
    declare it before their body is read; this is the same check again, for
    an app built without it.)

    Raises:
        DevmigError: ``AUTH_REQUIRED`` without a token, ``AUTH_FAILED`` with a wrong one (HTTP 401).
    """
    check_bearer(request.headers.get("authorization", ""), request.app.state.settings.token)


def check_bearer(header: str, expected: str) -> None:
    """Check an ``Authorization`` header against the expected bearer token (in constant time).

    Raises:
        DevmigError: ``AUTH_REQUIRED`` without a token, ``AUTH_FAILED`` with a wrong one (HTTP 401).
    """
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise DevmigError(
            [Problem("AUTH_REQUIRED", ("headers", "authorization"), "this endpoint needs a bearer token",
                     hint="send Authorization: Bearer TOKEN (devmig agent prints it; DEVMIG_TOKEN)")]
        )
    if not hmac.compare_digest(token.strip().encode(), expected.encode()):
        raise DevmigError([Problem("AUTH_FAILED", ("headers", "authorization"), "wrong bearer token")])
