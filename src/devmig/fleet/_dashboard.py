"""The manager's read-only dashboard at ``/`` (server-rendered Jinja2 with vendored htmx).

Not built yet: :func:`mount_dashboard` adds nothing so far.
"""

from __future__ import annotations

from fastapi import FastAPI

__all__ = ["mount_dashboard"]


def mount_dashboard(app: FastAPI) -> None:
    """Add the dashboard's routes (``/`` and its fragments) to the manager's app."""
    del app
