"""The per-host agent: the uniform query mechanism, devices, and migrations over HTTP.

Build the app with :func:`create_app` (``devmig agent`` runs it on uvicorn);
talk to an agent with :class:`AgentClient` (over HTTP, or in process with
``transport=httpx2.ASGITransport(app=...)``). The manager's service reuses the agent's HTTP edges: :func:`require_token`
and the problem-details handlers (:func:`problem_response`, :func:`status_for`,
:func:`devmig_error_handler`, :func:`http_error_handler`, :func:`validation_error_handler`).

The names are loaded on first use, so that importing a light part of the
package (the HTTP client the CLI uses, the settings) does not import the web
framework: every ``devmig`` command would otherwise pay for it at start-up.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from devmig._lazy import lazy_names

if TYPE_CHECKING:
    from devmig.agent._app import create_app
    from devmig.agent._auth import require_token
    from devmig.agent._client import AgentClient, remote_error
    from devmig.agent._host import Host, HostedDevice
    from devmig.agent._limits import BoundedRequests
    from devmig.agent._loop_errors import quiet_accept_errors
    from devmig.agent._problems import (
        devmig_error_handler,
        http_error_handler,
        problem_response,
        status_for,
        validation_error_handler,
    )
    from devmig.agent._settings import AgentSettings, PrecopyPolicy, parse_releases, parse_size
    from devmig.agent._urls import MAX_URL, agent_url

__all__ = [
    "MAX_URL",
    "AgentClient",
    "AgentSettings",
    "BoundedRequests",
    "Host",
    "HostedDevice",
    "PrecopyPolicy",
    "agent_url",
    "create_app",
    "devmig_error_handler",
    "http_error_handler",
    "parse_releases",
    "parse_size",
    "problem_response",
    "quiet_accept_errors",
    "remote_error",
    "require_token",
    "status_for",
    "validation_error_handler",
]

_WHERE = {
    "create_app": "devmig.agent._app",
    "require_token": "devmig.agent._auth",
    "AgentClient": "devmig.agent._client",
    "remote_error": "devmig.agent._client",
    "devmig_error_handler": "devmig.agent._problems",
    "http_error_handler": "devmig.agent._problems",
    "problem_response": "devmig.agent._problems",
    "status_for": "devmig.agent._problems",
    "validation_error_handler": "devmig.agent._problems",
    "Host": "devmig.agent._host",
    "HostedDevice": "devmig.agent._host",
    "BoundedRequests": "devmig.agent._limits",
    "quiet_accept_errors": "devmig.agent._loop_errors",
    "MAX_URL": "devmig.agent._urls",
    "agent_url": "devmig.agent._urls",
    "AgentSettings": "devmig.agent._settings",
    "PrecopyPolicy": "devmig.agent._settings",
    "parse_releases": "devmig.agent._settings",
    "parse_size": "devmig.agent._settings",
}


__getattr__, __dir__ = lazy_names(__name__, _WHERE, __all__)
