"""The per-host agent: the uniform query mechanism, devices, and migrations over HTTP.

Build the app with :func:`create_app` (``devmig agent`` runs it on uvicorn).
"""

from devmig.agent._app import create_app
from devmig.agent._host import Host, HostedDevice
from devmig.agent._settings import AgentSettings, PrecopyPolicy, parse_releases, parse_size

__all__ = ["AgentSettings", "Host", "HostedDevice", "PrecopyPolicy", "create_app", "parse_releases", "parse_size"]
