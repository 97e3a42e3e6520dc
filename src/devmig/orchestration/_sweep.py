"""The manager's periodic resume sweeps: the orchestrator's and the drainer's background loop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from devmig._errors import DevmigError

__all__ = ["sweep_forever"]


async def sweep_forever(interval: float, sweep: Callable[[], Awaitable[None]], log: logging.Logger,
                        what: str) -> None:
    """Run ``sweep`` every ``interval`` seconds until cancelled (the manager's resume sweeps).

    A sweep that fails with a :class:`~devmig.DevmigError` (the database went away) is logged as
    ``what`` and the next one runs on time.
    """
    while True:
        await asyncio.sleep(interval)
        try:
            await sweep()
        except DevmigError as exc:
            log.warning("%s failed: %s", what, exc)
