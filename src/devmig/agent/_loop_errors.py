"""Errors of a listening socket's ``accept()``, logged at most once a minute, counted in between.

When ``accept()`` fails (no file descriptors left: ``EMFILE``), asyncio
reports it through the loop's exception handler with a traceback each time
it retries, for the agent's stream port and for uvicorn's HTTP port alike:
under a low descriptor limit a slowloris client once made an agent write
~100 MB of them. :func:`quiet_accept_errors` installs a handler that logs
the first such error of each kind, then one line per ``interval`` with how
many came meanwhile (no traceback), and passes every other error on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

__all__ = ["AcceptErrorLog", "quiet_accept_errors"]

log = logging.getLogger("devmig.accept")


def _is_accept_error(context: dict[str, Any]) -> bool:
    if "accept" in str(context.get("message", "")):
        return True
    return "_accept_connection" in repr(context.get("handle", ""))


class AcceptErrorLog:
    """Counts accept errors and logs a line per ``interval`` seconds (see the module docstring).

    Args:
        interval: seconds between two lines about one kind of error.
        clock: monotonic seconds (a test gives its own).
    """

    def __init__(self, interval: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self.clock = clock
        self.total = 0
        """Accept errors seen since installed."""
        self.logged = 0
        """Lines logged about them."""
        self._last: dict[str, tuple[float, int]] = {}

    def record(self, context: dict[str, Any]) -> None:
        """Count one accept error; log it unless a line about its kind was logged within ``interval``."""
        self.total += 1
        exc = context.get("exception")
        kind = f"{context.get('message', 'accept failed')}: {type(exc).__name__ if exc else ''} {exc or ''}".strip()
        now = self.clock()
        last, since = self._last.get(kind, (float("-inf"), 0))
        if now - last < self.interval:
            self._last[kind] = (last, since + 1)
            return
        self._last[kind] = (now, 0)
        self.logged += 1
        extra = f" ({since} more since the last report)" if since else ""
        log.error("%s%s; the next ones are counted for %g s", kind, extra, self.interval)


def quiet_accept_errors(loop: asyncio.AbstractEventLoop, interval: float = 60.0) -> AcceptErrorLog:
    """Install, on ``loop``, an exception handler that rate-limits accept errors; return its counter."""
    errors = AcceptErrorLog(interval)
    previous = loop.get_exception_handler()

    def handler(the_loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if _is_accept_error(context):
            errors.record(context)
        elif previous is not None:
            previous(the_loop, context)
        else:
            the_loop.default_exception_handler(context)

    loop.set_exception_handler(handler)
    return errors
