"""The fleet manager's service: its HTTP API (``/v1``), the poller's loop, the dashboard and the matrix.

:func:`create_manager_app` builds the FastAPI application from :class:`ManagerSettings`; its one
lifespan opens the inventory (:mod:`devmig.inventory`), runs the poller, and opens the orchestrator
and the drainer (:mod:`devmig.orchestration`) and the dashboard's matrix cache; ``devmig manager``
serves it on uvicorn.

The names are loaded on first use: importing the package does not import the web framework.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from devmig._lazy import lazy_names

if TYPE_CHECKING:
    from devmig.manager._app import ManagerSettings, create_manager_app
    from devmig.manager._matrix import VERDICTS, MatrixCache, compatibility_matrix

__all__ = ["VERDICTS", "ManagerSettings", "MatrixCache", "compatibility_matrix", "create_manager_app"]

_WHERE = {
    "ManagerSettings": "devmig.manager._app",
    "create_manager_app": "devmig.manager._app",
    "VERDICTS": "devmig.manager._matrix",
    "MatrixCache": "devmig.manager._matrix",
    "compatibility_matrix": "devmig.manager._matrix",
}


__getattr__, __dir__ = lazy_names(__name__, _WHERE, __all__)
