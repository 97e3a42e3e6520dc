"""The asyncio edge: a Unix stream socket that carries descriptors (``SCM_RIGHTS``).

asyncio's streams cannot pass descriptors, so :class:`FdSocket` drives a
non-blocking ``AF_UNIX``/``SOCK_STREAM`` socket with ``recvmsg``/``sendmsg``
itself, waiting with ``add_reader``/``add_writer``. A message's descriptors
travel in the ``sendmsg`` carrying its first bytes (what the codec's fd
attribution relies on); received descriptors arrive close-on-exec. When the
control buffer was too small (``MSG_CTRUNC``) the descriptors that did arrive
are closed and the read reports it, as libvfio-user's client does (EFAULT).
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import errno
import os
import socket
from collections.abc import Callable, Iterable
from typing import Final

from devmig.state import Buffer
from devmig.vfio_user._errors import VfioUserError

__all__ = ["FdSocket", "close_fds"]

RECV_CHUNK: Final = 64 << 10
"""Bytes read per ``recvmsg``: small messages come many at a time; the rest of a large one is read
straight into its own buffer (``Connection.get_buffer``), so this need not hold one."""
SOCKET_BUFFER: Final = 4 << 20
"""Requested kernel buffer per direction: a 1 MiB message goes in one ``sendmsg`` (capped by wmem_max)."""
IOV_MAX: Final = 1024


def close_fds(fds: Iterable[int]) -> None:
    """Close descriptors, ignoring ones already closed."""
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


def _rights(fds: tuple[int, ...]) -> list[tuple[int, int, bytes]]:
    """The ``SCM_RIGHTS`` ancillary item carrying ``fds`` (none when there are none)."""
    return [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())] if fds else []


def _received_fds(ancdata: list[tuple[int, int, bytes]], flags: int) -> tuple[int, ...]:
    """The descriptors a ``recvmsg`` brought; on ``MSG_CTRUNC`` close them and raise ``EFAULT``."""
    fds: list[int] = []
    for level, kind, cdata in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            usable = len(cdata) - len(cdata) % array.array("i").itemsize
            fds.extend(array.array("i", cdata[:usable]))
    if flags & socket.MSG_CTRUNC:
        close_fds(fds)
        raise VfioUserError("descriptors were truncated (MSG_CTRUNC)", errno=errno.EFAULT)
    return tuple(fds)


def _consume(views: list[memoryview], sent: int) -> None:
    """Drop the ``sent`` leading bytes from ``views`` in place."""
    while views and sent >= len(views[0]):
        sent -= len(views[0])
        views.pop(0)
    if views and sent:
        views[0] = views[0][sent:]


class FdSocket:
    """Async ``recv``/``send`` with descriptors over a connected Unix stream socket.

    Args:
        sock: a connected ``AF_UNIX``/``SOCK_STREAM`` socket (made non-blocking).
        max_fds: descriptors one read can receive (the advertised ``max_msg_fds``).
    """

    def __init__(self, sock: socket.socket, *, max_fds: int = 8) -> None:
        sock.setblocking(False)
        for option in (socket.SO_SNDBUF, socket.SO_RCVBUF):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER)
        self.sock = sock
        self.max_fds = max_fds
        self._cmsg_space = socket.CMSG_SPACE(max(1, max_fds) * array.array("i").itemsize)
        self._reading: asyncio.Future[None] | None = None
        self._reader_on = False

    def _on_readable(self) -> None:
        waiter = self._reading
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        elif self._reader_on:  # nobody waits: stop watching (level-triggered) until the next recv
            asyncio.get_running_loop().remove_reader(self.sock.fileno())
            self._reader_on = False

    async def _wait_readable(self) -> None:
        """Wait until readable; the registration stays while reads keep waiting (no epoll_ctl per read)."""
        loop = asyncio.get_running_loop()
        if not self._reader_on:
            loop.add_reader(self.sock.fileno(), self._on_readable)
            self._reader_on = True
        self._reading = loop.create_future()
        try:
            await self._reading
        finally:
            self._reading = None

    async def _wait(self, add: Callable[..., None], remove: Callable[[int], object]) -> None:
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()
        fileno = self.sock.fileno()

        def wake() -> None:
            if not ready.done():
                ready.set_result(None)

        add(fileno, wake)
        try:
            await ready
        finally:
            remove(fileno)

    def recv_nowait(self, size: int = RECV_CHUNK) -> tuple[bytes, tuple[int, ...]]:
        """One ``recvmsg`` that does not wait (``b""`` at end of file).

        Raises:
            BlockingIOError: nothing to read now.
            VfioUserError: ``EFAULT`` when descriptors were truncated (MSG_CTRUNC).
        """
        try:
            data, ancdata, flags, _ = self.sock.recvmsg(
                size, self._cmsg_space, socket.MSG_CMSG_CLOEXEC
            )
        except ConnectionResetError:
            return b"", ()
        return data, _received_fds(ancdata, flags)

    def recv_into_nowait(self, view: memoryview) -> tuple[int, tuple[int, ...]]:
        """One ``recvmsg_into`` that does not wait: bytes read into ``view`` (0 at end of file), descriptors.

        Raises:
            BlockingIOError: nothing to read now.
            VfioUserError: ``EFAULT`` when descriptors were truncated (MSG_CTRUNC).
        """
        try:
            n, ancdata, flags, _ = self.sock.recvmsg_into(
                [view], self._cmsg_space, socket.MSG_CMSG_CLOEXEC
            )
        except ConnectionResetError:
            return 0, ()
        return n, _received_fds(ancdata, flags)

    async def recv_into(self, view: memoryview) -> tuple[int, tuple[int, ...]]:
        """Read into ``view`` (0 at end of file), waiting until something is there."""
        while True:
            try:
                return self.recv_into_nowait(view)
            except (BlockingIOError, InterruptedError):
                await self._wait_readable()

    def send_nowait(self, views: list[memoryview], fds: tuple[int, ...] = ()) -> list[memoryview]:
        """Send what the socket takes now; return the views left to send (``fds`` go with the first byte)."""
        ancillary = _rights(fds)
        while views:
            try:
                sent = self.sock.sendmsg(views[:IOV_MAX], ancillary)
            except (BlockingIOError, InterruptedError):
                if ancillary:
                    raise
                return views
            ancillary = []
            _consume(views, sent)
        return views

    async def recv(self, size: int = RECV_CHUNK) -> tuple[bytes, tuple[int, ...]]:
        """Read what is there (``b""`` at end of file) and the descriptors that came with it.

        Raises:
            VfioUserError: ``EFAULT`` when descriptors were truncated (MSG_CTRUNC).
        """
        while True:
            try:
                return self.recv_nowait(size)
            except (BlockingIOError, InterruptedError):
                await self._wait_readable()

    async def send(
        self, data: bytes, fds: tuple[int, ...] = (), tail: tuple[Buffer, ...] = ()
    ) -> None:
        """Send ``data`` then the ``tail`` buffers whole (one gathering ``sendmsg`` when they fit), ``fds`` first."""
        loop = asyncio.get_running_loop()
        views = [memoryview(data).cast("B")] + [memoryview(t).cast("B") for t in tail]
        ancillary = _rights(fds)
        while views:
            try:
                sent = self.sock.sendmsg(views[:IOV_MAX], ancillary)
            except (BlockingIOError, InterruptedError):
                await self._wait(loop.add_writer, loop.remove_writer)
                continue
            ancillary = []
            _consume(views, sent)

    def close(self) -> None:
        """Close the socket (idempotent)."""
        if self._reader_on and self.sock.fileno() >= 0:
            with contextlib.suppress(RuntimeError):
                asyncio.get_running_loop().remove_reader(self.sock.fileno())
        self._reader_on = False
        self.sock.close()
