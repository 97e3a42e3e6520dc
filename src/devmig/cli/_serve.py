"""Running a service (agent, manager) on uvicorn: bind, serve, announce where it listens."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from devmig._errors import DevmigError, Problem
from devmig._json import JsonObject
from devmig._tls import TlsConfig, is_loopback, server_tls
from devmig.cli._output import Output

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["bind", "refuse_plain", "serve", "tls_config"]


def tls_config(cert: Path | None, key: Path | None, ca: Path | None, client_certs: bool) -> TlsConfig | None:
    """The TLS configuration of ``--tls-cert``, ``--tls-key``, ``--tls-ca``, ``--tls-client-certs``.

    ``None`` when none is given (plain TCP). Raises:
        DevmigError: ``USAGE`` for a certificate without its key (or the reverse), client
            certificates without a CA, or a file that cannot be loaded.
    """
    if cert is None and key is None and ca is None and not client_certs:
        return None
    problem = None
    if (cert is None) != (key is None):
        problem = "--tls-cert and --tls-key go together"
    elif cert is None:
        problem = "a TLS server needs --tls-cert and --tls-key"
    elif client_certs and ca is None:
        problem = "--tls-client-certs needs --tls-ca (the CA client certificates are signed by)"
    if problem is None:
        config = TlsConfig(cert=cert, key=key, ca=ca, client_certs=client_certs)
        try:
            server_tls(config)  # load the files now: a bad one is a usage error, not a failed start
            return config
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            problem = f"cannot load the TLS files: {exc}"
    raise DevmigError([Problem("USAGE", ("tls",), problem, hint="e.g. --tls-cert me.pem --tls-key me-key.pem")])


def refuse_plain(listen: str, tls: TlsConfig | None, insecure_plain_tcp: bool, option: str = "listen") -> None:
    """Refuse plain TCP on an address other hosts can reach unless ``--insecure-plain-tcp`` says so.

    Loopback and Unix sockets stay on this host and may be plain. Raises:
        DevmigError: ``PLAIN_TCP_REFUSED``.
    """
    if tls is not None or insecure_plain_tcp or listen.startswith("unix:"):
        return
    host = listen.rpartition(":")[0] or "127.0.0.1"
    if not is_loopback(host):
        raise DevmigError(
            [Problem("PLAIN_TCP_REFUSED", (option,),
                     f"--{option.replace('_', '-')} {listen} is reachable from other hosts and no TLS is configured",
                     value=listen,
                     hint="give --tls-cert/--tls-key (and --tls-ca), or --insecure-plain-tcp on a trusted network")]
        )


def bind(listen: str, *, tls: bool = False) -> tuple[socket.socket, str]:
    """Bind a listening socket for ``HOST:PORT`` or ``unix:/path``; return it and its URL (``https`` with ``tls``).

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
        return sock, f"{'https' if tls else 'http'}://{shown}:{bound[1]}"
    except (OSError, ValueError) as exc:
        raise DevmigError(
            [Problem("LISTEN_FAILED", ("listen",), f"cannot listen on {listen}: {exc}", value=listen,
                     hint="give HOST:PORT (port 0 picks a free one) or unix:/path")]
        ) from exc


Announcement = tuple[JsonObject, list[str]]
"""What a started service says: one JSON object for programs, lines for people."""


async def serve(
    app: FastAPI,
    sock: socket.socket,
    out: Output,
    announce: Callable[[], Announcement],
    tls: TlsConfig | None = None,
) -> None:
    """Serve ``app`` on ``sock`` (over TLS with ``tls``) until it is stopped; once listening, print ``announce()``.

    ``announce`` is called after the app's lifespan started (so it can read
    what the lifespan set up, such as the agent's stream address). In JSON
    mode its object is printed as one line on stdout — what tests and
    ``devmig up`` read to learn the URL.
    """
    import uvicorn

    # log_config=None: uvicorn keeps the handlers --log-format set up (devmig._logs) instead of its own
    config = uvicorn.Config(app, log_level="warning", lifespan="on", access_log=False, log_config=None)
    config.load()
    if tls is not None:
        config.ssl = server_tls(tls)  # the process's one server context (the stream port shares it)
    server = uvicorn.Server(config)
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
