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

from devmig.vfio_user._errors import VfioUserError

__all__ = ["FdSocket", "close_fds"]

RECV_CHUNK: Final = 1 << 18
"""Bytes read per ``recvmsg``."""


def close_fds(fds: Iterable[int]) -> None:
    """Close descriptors, ignoring ones already closed."""
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


class FdSocket:
    """Async ``recv``/``send`` with descriptors over a connected Unix stream socket.

    Args:
        sock: a connected ``AF_UNIX``/``SOCK_STREAM`` socket (made non-blocking).
        max_fds: descriptors one read can receive (the advertised ``max_msg_fds``).
    """

    def __init__(self, sock: socket.socket, *, max_fds: int = 8) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.max_fds = max_fds
        self._cmsg_space = socket.CMSG_SPACE(max(1, max_fds) * array.array("i").itemsize)

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

    async def recv(self, size: int = RECV_CHUNK) -> tuple[bytes, tuple[int, ...]]:
        """Read what is there (``b""`` at end of file) and the descriptors that came with it.

        Raises:
            VfioUserError: ``EFAULT`` when descriptors were truncated (MSG_CTRUNC).
        """
        loop = asyncio.get_running_loop()
        while True:
            try:
                data, ancdata, flags, _ = self.sock.recvmsg(
                    size, self._cmsg_space, socket.MSG_CMSG_CLOEXEC
                )
                break
            except (BlockingIOError, InterruptedError):
                await self._wait(loop.add_reader, loop.remove_reader)
            except ConnectionResetError:
                return b"", ()
        fds: list[int] = []
        for level, kind, cdata in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                usable = len(cdata) - len(cdata) % array.array("i").itemsize
                fds.extend(array.array("i", cdata[:usable]))
        if flags & socket.MSG_CTRUNC:
            close_fds(fds)
            raise VfioUserError("descriptors were truncated (MSG_CTRUNC)", errno=errno.EFAULT)
        return data, tuple(fds)

    async def send(self, data: bytes, fds: tuple[int, ...] = ()) -> None:
        """Send ``data`` whole, ``fds`` with its first bytes."""
        loop = asyncio.get_running_loop()
        view = memoryview(data)
        if fds:
            ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())]
            while True:
                try:
                    sent = self.sock.sendmsg([view], ancillary)
                    break
                except (BlockingIOError, InterruptedError):
                    await self._wait(loop.add_writer, loop.remove_writer)
            view = view[sent:]
        while view:
            try:
                sent = self.sock.send(view)
            except (BlockingIOError, InterruptedError):
                await self._wait(loop.add_writer, loop.remove_writer)
                continue
            view = view[sent:]

    def close(self) -> None:
        """Close the socket (idempotent)."""
        self.sock.close()
