"""Bounded requests: one ASGI middleware in front of the agent's and the manager's routes.

FastAPI reads and parses a request's whole body before it runs the route's
dependencies, so a route guarded by :func:`~devmig.agent._auth.require_token`
would parse any body an anonymous client sends (an unauthenticated 260 MiB
body once blocked a destination's event loop for 7.6 s and rolled its
migration back). :class:`BoundedRequests` runs first, in this order:

1. every request that is not a read (``GET``, ``HEAD``, ``OPTIONS``) and
   not one of the app's *open* routes (a table the app gives) gets its token
   checked from the headers alone, before one byte of the body is read
   (401 ``AUTH_REQUIRED`` / ``AUTH_FAILED``): the routes guarded by
   ``require_token``, and any route added later unless it is listed open;
2. a ``Content-Length`` above the limit is 413 ``BODY_TOO_LARGE`` at once;
3. the body is read in the ASGI receive loop, counting as it goes: past the
   limit it stops reading (413 ``BODY_TOO_LARGE``), and a body that takes
   longer than ``body_timeout_s`` in all is 408 ``BODY_TIMEOUT``;
4. the app gets the body it read, replayed.

Open routes (the manager's questions, the agent's ``query`` with its
per-migration tokens) and reads still get steps 2-4.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from devmig._errors import DevmigError, Problem
from devmig.agent._auth import check_bearer
from devmig.agent._problems import problem_response

__all__ = ["DEFAULT_BODY_TIMEOUT_S", "DEFAULT_MAX_BODY", "BoundedRequests"]

DEFAULT_MAX_BODY = 1 << 20
"""Bytes a request body may have (1 MiB: the largest legitimate body, a configuration, is a few KiB)."""
DEFAULT_BODY_TIMEOUT_S = 30.0
"""Seconds a client may take to send a whole body."""

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class BoundedRequests:
    """ASGI middleware: authentication before the body, and a bounded body (see the module docstring).

    Args:
        app: the application it guards (a FastAPI app's middleware stack).
        max_body: most bytes of a request body.
        body_timeout_s: most seconds to receive a whole body.
        open_routes: ``(method, path regex)`` of the routes that are not reads
            and need no bearer token here (they check their own, or are questions).
    """

    def __init__(self, app: ASGIApp, *, max_body: int = DEFAULT_MAX_BODY,
                 body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S,
                 open_routes: Iterable[tuple[str, str]] = ()) -> None:
        self.app = app
        self.max_body = max_body
        self.body_timeout_s = body_timeout_s
        self.open_routes = tuple((method, re.compile(path)) for method, path in open_routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            if self._needs_token(scope):
                headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
                expected: str = scope["app"].state.settings.token
                check_bearer(headers.get("authorization", ""), expected)
            body = await self._read(scope, receive)
        except DevmigError as exc:
            await problem_response(exc)(scope, receive, send)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # http.disconnect, when the client goes

        await self.app(scope, replay, send)

    def _needs_token(self, scope: Scope) -> bool:
        method, path = scope["method"], scope["path"]
        if method in ("GET", "HEAD", "OPTIONS"):
            return False
        return not any(method == m and pattern.fullmatch(path) for m, pattern in self.open_routes)

    async def _read(self, scope: Scope, receive: Receive) -> bytes:
        for key, value in scope["headers"]:
            if key.lower() == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared > self.max_body:
                    raise self._too_large(declared)
        parts: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.body_timeout_s):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        break
                    chunk: bytes = message.get("body", b"")
                    size += len(chunk)
                    if size > self.max_body:
                        raise self._too_large(size)
                    parts.append(chunk)
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            raise DevmigError(
                [Problem("BODY_TIMEOUT", ("body",), f"the request body took longer than {self.body_timeout_s:g} s",
                         value=size, hint="send the whole body at once")]
            ) from None
        return b"".join(parts)

    def _too_large(self, size: int) -> DevmigError:
        return DevmigError(
            [Problem("BODY_TOO_LARGE", ("body",), f"a request body is at most {self.max_body} bytes",
                     value=size, allowed={"max": self.max_body})]
        )
