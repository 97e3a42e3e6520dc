"""What both sides of a live hand-off do alike: feed the connection to the protocol, retry queries."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

from devmig._errors import DevmigError
from devmig.agent._transport import Channel

__all__ = ["QueryBackoff", "receive_into"]

QUERY_DELAY_S = 0.2
QUERY_MAX_DELAY_S = 5.0


class _Handoff(Protocol):
    def receive_data(self, data: bytes) -> None: ...
    def timeout(self) -> bytes: ...


async def receive_into(handoff: _Handoff, channel: Channel, on_error: Callable[[DevmigError], None]) -> None:
    """Feed the next bytes the peer sent to ``handoff``.

    A channel error (peer lost, stalled) is reported to ``on_error``; the
    hand-off then times out — its reply, if any, is written — and the
    connection is closed. End of input is fed as ``b""`` by the channel.
    """
    try:
        data = await channel.recv()
    except DevmigError as exc:
        on_error(exc)
        reply = handoff.timeout()
        if reply:
            channel.write_nowait(reply)
        channel.close()
        return
    if data is not None:
        handoff.receive_data(data)


class QueryBackoff:
    """Delays between the queries of a side in doubt: none first, then 0.2 s doubling up to 5 s."""

    def __init__(self) -> None:
        self.delay = 0.0

    async def wait(self) -> None:
        """Sleep the current delay, then lengthen it for the next query."""
        if self.delay:
            await asyncio.sleep(self.delay)
        self.delay = min(QUERY_MAX_DELAY_S, max(QUERY_DELAY_S, self.delay * 2))
