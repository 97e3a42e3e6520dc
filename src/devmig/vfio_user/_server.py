"""The asyncio server loop: one connection, one handler, in order.

:func:`serve_connection` reads the socket, feeds the sans-IO
:class:`~devmig.vfio_user.Connection`, answers VERSION itself and hands every
other command to a :class:`Handler` — a plain synchronous object (the device
backend) whose return value becomes the reply and whose
:class:`~devmig.vfio_user.VfioUserError` becomes the error reply with its
errno. Commands are handled in the order they arrive, one at a time, as the
specification requires. A rejected message is answered (unless NO_REPLY) and
its descriptors closed; a fatal framing error or the peer's close ends the
loop. Descriptors of an accepted command belong to the handler; when the
handler refuses the command they are closed here.

The handler may send commands of its own (DMA_READ/WRITE) through
:meth:`ServerSession.command`; their replies go to :meth:`Handler.on_reply`.
"""

from __future__ import annotations

import asyncio
import errno
from typing import Protocol

from devmig.vfio_user._connection import (
    NEED_DATA,
    Closed,
    Connection,
    Event,
    Outgoing,
    Rejected,
    Reply,
    Request,
)
from devmig.vfio_user._errors import VfioUserError
from devmig.vfio_user._fdsocket import FdSocket, close_fds
from devmig.vfio_user._replies import ReplyBody
from devmig.vfio_user._requests import DmaMap, RequestBody, SetIrqs, VersionRequest

__all__ = ["Handler", "ServerSession", "serve_connection"]


class Handler(Protocol):
    """What a device backend offers the server loop."""

    def handle(self, request: Request) -> ReplyBody:
        """Execute a command and return its reply; raise :class:`VfioUserError` to refuse it."""
        ...

    def on_reply(self, reply: Reply) -> None:
        """A reply to a command the backend sent (DMA_READ/WRITE)."""
        ...


def request_fds(body: RequestBody) -> tuple[int, ...]:
    """The descriptors a command body carries."""
    if isinstance(body, DmaMap):
        return () if body.fd is None else (body.fd,)
    if isinstance(body, SetIrqs):
        return body.fds
    return ()


class ServerSession:
    """The server side of one connection: the codec, the socket and a send lock."""

    def __init__(self, sock: FdSocket, conn: Connection) -> None:
        self.sock = sock
        self.conn = conn
        self._lock = asyncio.Lock()
        self.closed = False

    async def send(self, out: Outgoing | None) -> None:
        """Send one framed message (nothing for ``None``)."""
        if out is None or self.closed:
            return
        async with self._lock:
            await self.sock.send(out.data, out.fds, out.tail)

    async def command(self, body: RequestBody) -> None:
        """Send a command of the server's own (its reply reaches ``Handler.on_reply``)."""
        await self.send(self.conn.send_command(body))


async def serve_connection(session: ServerSession, handler: Handler) -> None:
    """Serve ``session`` until the peer closes or the stream breaks; never raises for peer input."""
    conn = session.conn
    try:
        while True:
            try:
                data, fds = await session.sock.recv()
            except VfioUserError:
                return
            except OSError:
                return
            conn.receive_data(data, fds)
            while True:
                try:
                    event = conn.next_event()
                except VfioUserError:
                    return
                if event is NEED_DATA:
                    break
                if not await _dispatch(session, handler, event):  # type: ignore[arg-type]
                    return
    finally:
        session.closed = True


async def _dispatch(session: ServerSession, handler: Handler, event: Event) -> bool:
    conn = session.conn
    if isinstance(event, Closed):
        close_fds(event.fds)
        return False
    if isinstance(event, Rejected):
        close_fds(event.fds)
        await session.send(conn.send_error(event))
        return not event.fatal
    if isinstance(event, Reply):
        handler.on_reply(event)
        return True
    if isinstance(event.body, VersionRequest):
        await session.send(conn.send_reply(event, conn.version_reply(event)))
        return True
    try:
        reply = handler.handle(event)
    except VfioUserError as exc:
        close_fds(request_fds(event.body))
        await session.send(conn.send_error(event, exc.errno))
        return True
    except Exception:  # a bug in a device must not kill the connection silently; answer, then go on
        close_fds(request_fds(event.body))
        await session.send(conn.send_error(event, errno.EIO))
        raise
    await session.send(conn.send_reply(event, reply))
    return True
