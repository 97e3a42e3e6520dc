"""The migration connection's receive path over a REAL loopback TCP socket, into a REAL device.

The destination's channel waits (``SO_RCVLOWAT``) until a BULK payload's
remaining bytes are queued before it receives, so a record comes in one
receive. These tests pin what that must never break: a stream that ends
right after a large record still loads (the mark never exceeds what the
buffer still expects), a peer trickling a payload slowly is not reported
stalled, and a peer that stops mid-payload is (``PEER_STALLED``).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Callable

import numpy as np
import pytest

from devmig._errors import DevmigError
from devmig.agent._transport import Channel, StreamServer
from devmig.devices.accel import AccelV1
from devmig.migration import State

CONFIG = "version=1,mem-size-mib=64"


def seeded_stream() -> tuple[bytes, bytes]:
    """A whole stream of a stopped accelerator with pseudo-random memory (1 MiB BULK records), and its digest."""
    device = AccelV1.create(CONFIG, host={})
    rng = np.random.default_rng(3)
    for region in device.regions:
        region.data[:] = rng.integers(0, 256, region.size, dtype=np.uint8)
    device.set_state(State.STOP)
    return device.save_stream(), device.digest()


async def load_over_tcp(send: Callable[[socket.socket], None], stall_timeout: float) -> tuple[AccelV1, Channel]:
    """Serve one connection into a RESUMING device; ``send(sock)`` writes to it from a thread (a separate peer).

    Raises:
        DevmigError: what the channel's ``wait_stream`` raised.
    """
    device = AccelV1.create(CONFIG, host={})
    device.set_state(State.RESUMING)
    loop = asyncio.get_running_loop()
    accepted: asyncio.Future[Channel] = loop.create_future()
    loaded: asyncio.Future[None] = loop.create_future()

    async def on_channel(channel: Channel) -> None:
        channel.route_to(device)
        accepted.set_result(channel)
        try:
            await channel.wait_stream()
        except DevmigError as exc:
            loaded.set_exception(exc)
        else:
            loaded.set_result(None)

    server = StreamServer("127.0.0.1:0", on_channel, stall_timeout=stall_timeout)
    address = await server.start()
    host, port = address.rsplit(":", 1)
    stop = threading.Event()
    sock = socket.create_connection((host, int(port)))

    def peer() -> None:
        with contextlib.suppress(OSError):
            send(sock)
            stop.wait(60)

    thread = threading.Thread(target=peer, daemon=True)
    thread.start()
    try:
        channel = await accepted
        await loaded
        return device, channel
    finally:
        stop.set()
        sock.close()
        await server.close()
        thread.join(5)


def test_a_stream_ending_after_large_records_loads_in_few_receives() -> None:
    stream, digest = seeded_stream()

    def send(sock: socket.socket) -> None:
        view = memoryview(stream)
        for start in range(0, len(view), 1 << 20):
            sock.sendall(view[start : start + (1 << 20)])

    device, channel = asyncio.run(load_over_tcp(send, stall_timeout=5.0))
    assert device.load_complete
    device.set_state(State.STOP)
    assert device.digest() == digest
    # The mark never waited for bytes the stream does not have (the watchdog never had to lower it).
    assert channel.lowat_fallbacks == 0
    records = len(stream) // (1 << 20)
    assert channel.stream_reads <= 4 * records + 16, (channel.stream_reads, records)


def test_a_peer_trickling_a_payload_is_not_stalled() -> None:
    stream, digest = seeded_stream()
    head = 64 << 10  # HEADER and the first BULK's head go at once; then the rest in small, slow pieces

    def send(sock: socket.socket) -> None:
        view = memoryview(stream)
        sock.sendall(view[:head])
        pos = head
        while pos < (2 << 20):
            time.sleep(0.05)
            sock.sendall(view[pos : pos + (32 << 10)])
            pos += 32 << 10
        sock.sendall(view[pos:])

    started = time.monotonic()
    device, _ = asyncio.run(load_over_tcp(send, stall_timeout=0.5))
    assert time.monotonic() - started > 0.5 * 2  # slower than the stall timeout, yet it loaded
    assert device.load_complete
    device.set_state(State.STOP)
    assert device.digest() == digest


def test_a_peer_stopping_mid_payload_is_stalled() -> None:
    stream, _ = seeded_stream()

    def send(sock: socket.socket) -> None:
        sock.sendall(memoryview(stream)[: (1 << 20) + (300 << 10)])  # into the second record; then nothing

    started = time.monotonic()
    with pytest.raises(DevmigError) as caught:
        asyncio.run(load_over_tcp(send, stall_timeout=0.5))
    assert caught.value.code == "PEER_STALLED"
    assert time.monotonic() - started < 5.0
