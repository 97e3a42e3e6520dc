"""A channel limited by the destination's hand-off reads the preamble and HELLO, no byte more.

The channel knows nothing of frames: it asks the real
:class:`~devmig.migration.DestinationHandoff` how many bytes it still needs.
A peer sends the preamble, the HELLO and state bytes at once over a REAL
loopback TCP socket; whatever the HELLO proves, the bytes behind it stay in
the kernel until the connection is handed to its migration.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time

from devmig.agent._transport import Channel, StreamServer
from devmig.migration import (
    NEED_DATA,
    ConnectionRejected,
    DestinationHandoff,
    SourceHandoff,
    StreamStarted,
    Tickets,
)

MIGRATION = "m-limit"
SECRET = bytes(range(32))
STATE = b"\x5a" * 4096  # what a source streams right behind its HELLO


async def serve_one(sent: bytes) -> tuple[object, int, bytes]:
    """Accept one connection as the agent does: the hand-off's event, bytes read, bytes left."""
    tickets = Tickets(time.monotonic)
    tickets.issue(MIGRATION, SECRET, expires_at=time.monotonic() + 60)
    loop = asyncio.get_running_loop()
    done: asyncio.Future[tuple[object, int, bytes]] = loop.create_future()

    async def on_channel(channel: Channel) -> None:
        handoff = DestinationHandoff(tickets)
        channel.limit_to(handoff)
        while (event := handoff.next_event()) is NEED_DATA:
            data = await channel.recv()
            assert data is not None
            handoff.receive_data(data)
        await asyncio.sleep(0.05)  # time for a channel that reads too much to do so
        read = channel.bytes_received
        left = b""
        if isinstance(event, StreamStarted):
            channel.route_to(Sink(), event.data)  # the limit is lifted: the rest comes
            left = await channel_rest(channel)
        done.set_result((event, read, left))

    server = StreamServer("127.0.0.1:0", on_channel, stall_timeout=5.0)
    host, port = (await server.start()).rsplit(":", 1)
    sock = socket.create_connection((host, int(port)))
    try:
        sock.sendall(sent)
        sock.shutdown(socket.SHUT_WR)
        return await asyncio.wait_for(done, 10)
    finally:
        sock.close()
        await server.close()


class Sink:
    """A stream sink that keeps what it is given (the stream ends when the peer closes)."""

    def __init__(self) -> None:
        self.data = bytearray()
        self._buffer = bytearray(64 * 1024)

    def get_buffer(self, sizehint: int = -1) -> memoryview:
        return memoryview(self._buffer)

    def buffer_updated(self, nbytes: int) -> None:
        self.data += self._buffer[:nbytes]

    def write_data(self, data: bytes) -> None:
        self.data += data

    @property
    def load_complete(self) -> bool:
        return False


async def channel_rest(channel: Channel) -> bytes:
    sink = channel._sink
    assert isinstance(sink, Sink)
    while not channel.at_eof:
        await asyncio.sleep(0.01)
    return bytes(sink.data)


def test_a_proved_hello_leaves_the_state_unread_until_routed() -> None:
    hello = SourceHandoff(MIGRATION, SECRET).hello()
    event, read, left = asyncio.run(serve_one(hello + STATE))
    assert isinstance(event, StreamStarted) and event.data == b""
    assert read == len(hello)
    assert left == STATE


def test_a_wrong_secret_is_refused_having_read_only_the_hello() -> None:
    hello = SourceHandoff(MIGRATION, bytes(32)).hello()
    event, read, _ = asyncio.run(serve_one(hello + STATE))
    assert isinstance(event, ConnectionRejected) and event.failure.code == "AUTH_FAILED"
    assert read == len(hello)


def test_an_oversized_hello_header_is_refused_from_the_header() -> None:
    preamble = SourceHandoff(MIGRATION, SECRET).hello()[:8]
    header = struct.pack(">BI", 1, 1 << 20)  # a HELLO announcing 1 MiB
    event, read, _ = asyncio.run(serve_one(preamble + header + STATE))
    assert isinstance(event, ConnectionRejected) and event.failure.code == "HELLO_INVALID"
    assert read == len(preamble) + len(header)
