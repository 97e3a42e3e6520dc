"""The server loop: one connection, one handler, in order, driven by readiness callbacks.

:func:`serve_connection` registers one reader on the socket. When it is
readable the callback reads what is there (``recvmsg``, descriptors
included), feeds the sans-IO :class:`~devmig.vfio_user.Connection`, and
handles every complete command right there: VERSION by the connection, every
other command by a :class:`Handler` — a plain synchronous object (the device
backend) whose return value becomes the reply and whose
:class:`~devmig.vfio_user.VfioUserError` becomes the error reply with its
errno. Commands are handled in the order they arrive, one at a time, as the
specification requires; no task switch sits between a command and its reply.

Replies are sent at once (``sendmsg``, gathering a reply's buffers). What
the socket does not take is queued and flushed when it is writable; while
anything is queued the reader is paused (backpressure), so no command runs
before the replies before it are out — which also keeps views of device
memory in a queued reply valid. A rejected message is answered (unless
NO_REPLY) and its descriptors closed; a fatal framing error or the peer's
close ends the loop. Descriptors of an accepted command belong to the
handler; when the handler refuses the command they are closed here.

The handler may send commands of its own (DMA_READ/WRITE) through
:meth:`ServerSession.command`; their replies go to :meth:`Handler.on_reply`.
"""

from __future__ import annotations

import asyncio
import errno
from collections.abc import Callable
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
    """The server side of one connection: the codec, the socket, the queue of unsent bytes."""

    def __init__(self, sock: FdSocket, conn: Connection) -> None:
        self.sock = sock
        self.conn = conn
        self.closed = False
        self._queue: list[memoryview] = []
        self.on_drained: Callable[[], None] | None = None

    @property
    def backed_up(self) -> bool:
        """Whether bytes wait for the socket."""
        return bool(self._queue)

    def send_now(self, out: Outgoing | None) -> None:
        """Send one framed message now; queue what the socket does not take."""
        if out is None or self.closed:
            return
        views = [memoryview(out.data).cast("B"), *(memoryview(t).cast("B") for t in out.tail)]
        if self._queue:
            if out.fds:  # descriptors must ride with their message's first byte: flush in order
                close_fds(out.fds)
                raise VfioUserError(
                    "cannot queue descriptors behind unsent bytes", errno=errno.EAGAIN
                )
            self._queue += [memoryview(bytes(v)) for v in views]
            return
        left = self.sock.send_nowait(views, out.fds)
        if left:
            self._queue = [memoryview(bytes(v)) for v in left]  # never keep views of device memory
            loop = asyncio.get_running_loop()
            loop.add_writer(self.sock.sock.fileno(), self._flush)

    def _flush(self) -> None:
        try:
            self._queue = self.sock.send_nowait(self._queue)
        except OSError:
            self._queue = []
            self.closed = True
        if not self._queue:
            loop = asyncio.get_running_loop()
            loop.remove_writer(self.sock.sock.fileno())
            if self.on_drained is not None:
                self.on_drained()

    async def send(self, out: Outgoing | None) -> None:
        """Send one framed message (nothing for ``None``)."""
        self.send_now(out)

    async def command(self, body: RequestBody) -> None:
        """Send a command of the server's own (its reply reaches ``Handler.on_reply``)."""
        self.send_now(self.conn.send_command(body))


async def serve_connection(session: ServerSession, handler: Handler) -> None:
    """Serve ``session`` until the peer closes or the stream breaks; never raises for peer input."""
    loop = asyncio.get_running_loop()
    finished: asyncio.Future[BaseException | None] = loop.create_future()
    fileno = session.sock.sock.fileno()
    reading = False

    def finish(error: BaseException | None = None) -> None:
        nonlocal reading
        if reading:
            loop.remove_reader(fileno)
            reading = False
        if not finished.done():
            finished.set_result(error)

    def resume() -> None:
        nonlocal reading
        if not reading and not finished.done():
            loop.add_reader(fileno, on_readable)
            reading = True
            on_readable()

    def on_readable() -> None:
        nonlocal reading
        try:
            while True:
                if session.backed_up:  # backpressure: read again once the replies are out
                    if reading:
                        loop.remove_reader(fileno)
                        reading = False
                    return
                event = session.conn.next_event()
                if event is NEED_DATA:
                    view = session.conn.get_buffer()
                    try:
                        if (
                            view is not None
                        ):  # the rest of a large command, read straight into place
                            n, fds = session.sock.recv_into_nowait(view)
                            session.conn.buffer_updated(n, fds)
                        else:
                            data, fds = session.sock.recv_nowait()
                            session.conn.receive_data(data, fds)
                    except BlockingIOError:
                        return
                    continue
                if not _dispatch(session, handler, event):  # type: ignore[arg-type]
                    finish()
                    return
        except (VfioUserError, OSError):
            finish()
        except Exception as exc:  # a bug in the handler: stop serving, let the caller see it
            finish(exc)

    session.on_drained = resume
    resume()
    try:
        error = await finished
    finally:
        session.closed = True
        if reading:
            loop.remove_reader(fileno)
        if session.backed_up:
            loop.remove_writer(fileno)
    if error is not None:
        raise error


def _dispatch(session: ServerSession, handler: Handler, event: Event) -> bool:
    conn = session.conn
    if isinstance(event, Closed):
        close_fds(event.fds)
        return False
    if isinstance(event, Rejected):
        close_fds(event.fds)
        session.send_now(conn.send_error(event))
        return not event.fatal
    if isinstance(event, Reply):
        handler.on_reply(event)
        return True
    if isinstance(event.body, VersionRequest):
        session.send_now(conn.send_reply(event, conn.version_reply(event)))
        return True
    try:
        reply = handler.handle(event)
    except VfioUserError as exc:
        close_fds(request_fds(event.body))
        session.send_now(conn.send_error(event, exc.errno))
        return True
    except Exception:  # a bug in a device: answer EIO, then let the loop end with it
        close_fds(request_fds(event.body))
        session.send_now(conn.send_error(event, errno.EIO))
        raise
    session.send_now(conn.send_reply(event, reply))
    return True
