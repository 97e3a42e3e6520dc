"""Services answer keep-alive requests without waiting for a delayed ACK.

uvicorn writes a response's head and body separately. asyncio turns Nagle's
algorithm off (``TCP_NODELAY``) only on sockets whose protocol says TCP, so
a listening socket made with protocol 0 left it on for every accepted
connection, and each request after the first on a connection waited about
40 ms for the client's delayed ACK.
"""

from __future__ import annotations

import asyncio
import socket

import pytest

from devmig._errors import DevmigError
from devmig.cli._serve import bind


async def _accepted_nodelay(sock: socket.socket) -> int:
    loop = asyncio.get_running_loop()
    seen: asyncio.Future[int] = loop.create_future()

    class Probe(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            accepted = transport.get_extra_info("socket")
            seen.set_result(accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            transport.close()

    server = await loop.create_server(Probe, sock=sock)
    host, port = sock.getsockname()[:2]
    _, writer = await asyncio.open_connection(host, port)
    try:
        return await asyncio.wait_for(seen, 5)
    finally:
        writer.close()
        server.close()
        await server.wait_closed()


def test_accepted_connections_have_nagle_off() -> None:
    sock, url = bind("127.0.0.1:0")
    assert url.startswith("http://127.0.0.1:")
    assert sock.proto == socket.IPPROTO_TCP
    assert asyncio.run(_accepted_nodelay(sock)) != 0


def test_bind_refuses_a_bad_address_with_its_code() -> None:
    with pytest.raises(DevmigError) as info:
        bind("127.0.0.1:notaport")
    assert info.value.problems[0].code == "LISTEN_FAILED"
