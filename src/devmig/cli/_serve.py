"""Running a service (agent, manager) on uvicorn: bind, serve, announce where it listens."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from devmig._errors import DevmigError, Problem
from devmig.cli._output import Output

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["bind", "serve"]


def bind(listen: str) -> tuple[socket.socket, str]:
    """Bind a listening socket for ``HOST:PORT`` or ``unix:/path``; return it and its URL.

    Raises:
        DevmigError: ``LISTEN_FAILED`` naming the address and the reason.
    """
    try:
        if listen.startswith("unix:"):
            path = listen[len("unix:") :]
            if os.path.exists(path):
                os.unlink(path)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.bind(path)
            sock.listen(128)
            return sock, f"unix:{path}"
        host, _, port = listen.rpartition(":")
        host = host.strip("[]") or "127.0.0.1"
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say they are TCP, and
        # without it a keep-alive response written in two parts waits ~40 ms for a delayed ACK
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, int(port or 0)))
        sock.listen(128)
        bound = sock.getsockname()
        shown = f"[{bound[0]}]" if family == socket.AF_INET6 else bound[0]
        return sock, f"http://{shown}:{bound[1]}"
    except (OSError, ValueError) as exc:
        raise DevmigError(
            [Problem("LISTEN_FAILED", ("listen",), f"cannot listen on {listen}: {exc}", value=listen,
                     hint="give HOST:PORT (port 0 picks a free one) or unix:/path")]
        ) from exc


Announcement = tuple[dict[str, Any], list[str]]
"""What a started service says: one JSON object for programs, lines for people."""


async def serve(app: FastAPI, sock: socket.socket, out: Output, announce: Callable[[], Announcement]) -> None:
    """Serve ``app`` on ``sock`` until it is stopped; once listening, print ``announce()``.

    ``announce`` is called after the app's lifespan started (so it can read
    what the lifespan set up, such as the agent's stream address). In JSON
    mode its object is printed as one line on stdout — what tests and
    ``devmig up`` read to learn the URL.
    """
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on", access_log=False))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started and not task.done():
        await asyncio.sleep(0.01)
    if server.started:
        data, lines = announce()
        if out.json_mode:
            sys.stdout.write(json.dumps(data) + "\n")
            sys.stdout.flush()
        else:
            for line in lines:
                out.console.print(line)
    await task
