"""The socket under a migration connection: zero-copy ``sendmsg`` and the receive low-water mark.

Theory of operation
-------------------
A :class:`SocketIO` holds a duplicate of an asyncio transport's socket, taken
when the connection is made, and does on it the two things asyncio does not:

**Sending** (:meth:`SocketIO.load`, :meth:`SocketIO.push`): the device's
buffers (record heads, zero-copy views of region memory, digests) go straight
to the kernel with scatter/gather ``sendmsg``, at most :data:`_IOV_MAX` of
them per call -- ``writelines`` would join them into one new buffer on
Python 3.11, a copy of every byte. A push happens only while the transport
has nothing queued (the caller checks), so order is kept. When the socket is
full, a small head (:data:`_NUDGE` bytes) of what is left goes to the
transport, which queues it and pauses the protocol (its write-buffer limit is
0); it resumes the protocol once the socket drained that head, and pushing
goes on. :meth:`SocketIO.flush_to` hands the rest of a send in progress to
the transport, so that a control frame queued behind it does not cut a record.

**Receiving** (:meth:`SocketIO.expect`, :meth:`SocketIO.received`): on TCP,
while the buffer lent to the transport is a long payload's remaining bytes,
the socket's receive low-water mark (``SO_RCVLOWAT``) is set to them (up to
1 MiB): the loop is woken once the kernel holds the whole payload, so a 1 MiB
record lands in one receive instead of one per arriving train of segments
(fewer callbacks, fewer window updates for the sender to handle). The mark
never exceeds what the current buffer still expects (the stream may end right
after it), and a 10 ms watchdog lowers it (halving its cap) when bytes queued
below it stop growing -- a kernel that holds the sender back before the mark
is reached must not hang the stream. AF_UNIX ignores the mark for readiness,
so it is only set on TCP.

Socket buffers: the send buffer is raised to :data:`_SOCKET_BUFFER` (the
kernel caps it at ``net.core.wmem_max``); the receive buffer is left to the
kernel's autotuning, which may grow past what ``SO_RCVBUF`` may ask for.

Errors are not mapped here: an ``OSError`` from ``sendmsg`` or a
``RuntimeError`` from the transport reaches the channel, which maps it once.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import socket
import struct
import termios
from collections.abc import Sequence

__all__ = ["READ_AHEAD", "SocketIO"]

_SOCKET_BUFFER = 8 << 20
#: Bytes handed to the transport when the socket is full (it wakes us when they are sent).
_NUDGE = 64 * 1024
#: Buffers per ``sendmsg`` (the kernel's ``IOV_MAX`` is 1024).
_IOV_MAX = 512
#: After a small record, receive up to this much at once (see ``StreamDecoder.get_buffer``).
READ_AHEAD = 64 * 1024
#: The most stream bytes a TCP receive waits for (``SO_RCVLOWAT``).
_LOWAT_MAX = 2 << 20
#: A framing buffer's read-ahead beyond what the record needs (the decoder's lookahead).
_LOWAT_SLACK = 64
#: Seconds between checks that bytes waiting below the low-water mark still grow.
_LOWAT_WATCH = 0.01


class SocketIO:
    """The socket of one connection, for ``sendmsg`` and ``SO_RCVLOWAT`` (see the module).

    Build it with :meth:`attach`, which returns ``None`` when the transport
    has no socket to duplicate (the channel then writes through the transport).
    """

    def __init__(self, raw: socket.socket, *, tcp: bool) -> None:
        self._raw: socket.socket | None = raw
        # SO_RCVLOWAT is honoured (TCP; AF_UNIX ignores it for readiness).
        self._tcp = tcp
        self._lowat = 1
        self._handed = 0  # the size of the buffer last lent to the transport
        # Halved whenever the kernel stopped short of the mark (see _watch_lowat).
        self._lowat_cap = _LOWAT_MAX
        self._expecting = False  # a stream buffer is lent (the watchdog has something to watch)
        self._received = 0
        self._watch: asyncio.TimerHandle | None = None
        self._watch_queued = -1
        self._watch_received = -1
        self.lowat_fallbacks = 0
        """Times bytes stopped growing below the low-water mark, so it was lowered."""
        self._unsent: list[memoryview] = []  # a send in progress: its buffers, from index _first on
        self._first = 0

    @classmethod
    def attach(cls, transport: asyncio.BaseTransport) -> SocketIO | None:
        """Raise the send buffer of the transport's socket and duplicate it (``None``: none)."""
        sock = transport.get_extra_info("socket")
        if sock is None or not isinstance(transport, asyncio.WriteTransport):
            return None
        if transport.get_extra_info("ssl_object") is not None:  # TLS: bytes must go through the transport
            return None
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _SOCKET_BUFFER)
        try:
            raw = sock.dup()
        except OSError:
            return None
        return cls(raw, tcp=sock.family in (socket.AF_INET, socket.AF_INET6))

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._raw is None

    def close(self) -> None:
        """Stop the watchdog and close the duplicate (idempotent)."""
        watch, self._watch = self._watch, None
        if watch is not None:
            watch.cancel()
        raw, self._raw = self._raw, None
        if raw is not None:
            with contextlib.suppress(OSError):
                raw.close()

    # -- receiving -----------------------------------------------------------------

    def expect(self, nbytes: int) -> None:
        """A stream buffer of ``nbytes`` is lent: wait for its payload's bytes (TCP)."""
        if self._tcp:
            # Inside a long payload, be woken only once the kernel holds all of it (up to the
            # cap): one receive per record instead of one per arriving train of segments.
            self._expecting = True
            self._handed = nbytes
            self._set_lowat(self._lowat_for(nbytes))

    def received(self, nbytes: int) -> None:
        """``nbytes`` of stream landed in the lent buffer."""
        self._received += nbytes
        if self._lowat > 1:
            # The mark must never exceed what the buffer still expects: the stream may end there.
            self._set_lowat(self._lowat_for(self._handed - nbytes))

    def rest(self) -> None:
        """No stream buffer is lent any more: be woken by every byte again."""
        self._expecting = False
        self._set_lowat(1)

    def queued(self) -> int:
        """Bytes the kernel holds for us, not yet read (0 when unknown)."""
        raw = self._raw
        if raw is None:
            return 0
        try:
            buf = fcntl.ioctl(raw.fileno(), termios.FIONREAD, b"\0\0\0\0")
        except OSError:
            return 0
        return int(struct.unpack("i", buf)[0])

    def _lowat_for(self, expected: int) -> int:
        """The low-water mark for a receive into a buffer of ``expected`` bytes.

        A stream buffer longer than the read-ahead is a payload's remaining bytes (plus at most the
        decoder's lookahead), which the peer must send; a shorter one may be a read-ahead, which
        it need not: then 1.
        """
        return min(expected - _LOWAT_SLACK, self._lowat_cap) if expected > READ_AHEAD else 1

    def _set_lowat(self, nbytes: int) -> None:
        """Set the TCP receive low-water mark: readable once ``nbytes`` are queued (or FIN)."""
        if nbytes == self._lowat:
            return
        raw = self._raw
        if raw is None:
            return
        try:
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, nbytes)
        except OSError:
            self._tcp = False
            return
        self._lowat = nbytes
        if nbytes > 1 and self._watch is None:
            self._watch_queued = self._watch_received = -1
            self._watch = asyncio.get_running_loop().call_later(_LOWAT_WATCH, self._watch_lowat)

    def _watch_lowat(self) -> None:
        """Lower the low-water mark when bytes below it stopped growing.

        The kernel may hold back a sender before the mark is reached (its receive window may be
        smaller than the mark: it grows slowly, and raising the mark clamps it), in which case
        the receive would wait for ever. Bytes queued but not growing for a whole period mean
        exactly that: the mark drops to 1 (the kernel then wakes us at once) and its cap halves,
        down to no mark at all.
        """
        self._watch = None
        if self._lowat <= 1 or not self._expecting or self._raw is None:
            return
        queued = self.queued()
        if queued > 0 and queued == self._watch_queued and self._received == self._watch_received:
            self.lowat_fallbacks += 1
            self._lowat_cap = self._lowat_cap // 2 if self._lowat_cap > READ_AHEAD else 0
            if not self._lowat_cap:
                self._tcp = False
            self._set_lowat(1)
            return
        self._watch_queued, self._watch_received = queued, self._received
        self._watch = asyncio.get_running_loop().call_later(_LOWAT_WATCH, self._watch_lowat)

    # -- sending -------------------------------------------------------------------

    def load(self, buffers: Sequence[bytes | bytearray | memoryview]) -> None:
        """Start a send of ``buffers`` (their memory must not change until it is done)."""
        views = [
            v
            if isinstance(v, memoryview) and v.format == "B" and v.ndim == 1
            else memoryview(v).cast("B")
            for v in buffers
        ]
        self._unsent = [v for v in views if v.nbytes]
        self._first = 0

    @property
    def unsent(self) -> bool:
        """Whether the send in progress has buffers left."""
        return self._first < len(self._unsent)

    def forget(self) -> None:
        """End the send in progress (done, or abandoned)."""
        self._unsent, self._first = [], 0

    def push(self, transport: asyncio.WriteTransport) -> int:
        """One ``sendmsg`` of what is unsent; the socket full, queue a small head in the transport.

        Returns:
            The bytes handed to the kernel or the transport.

        Raises:
            OSError: the socket is gone (``sendmsg``); ``RuntimeError``: the transport is closed.
        """
        raw = self._raw
        if raw is None:
            raise ConnectionResetError("the socket is closed")
        views, first = self._unsent, self._first
        try:
            sent = raw.sendmsg(views[first : first + _IOV_MAX])
        except (BlockingIOError, InterruptedError):
            sent = 0
        total = sent
        while sent and first < len(views):
            n = views[first].nbytes
            if sent >= n:
                sent -= n
                first += 1
            else:
                views[first] = views[first][sent:]
                sent = 0
        self._first = first
        if first < len(views):
            # The socket is full: the transport sends this head when it drains and resumes us
            # (its write-buffer limit is 0).
            head = views[first][:_NUDGE]
            transport.write(head)
            total += head.nbytes
            if head.nbytes == views[first].nbytes:
                first += 1
            else:
                views[first] = views[first][head.nbytes :]
            self._first = first
        return total

    def flush_to(self, transport: asyncio.WriteTransport) -> int:
        """Queue the rest of a send in progress in the transport; return its size."""
        rest = self._unsent[self._first :]
        self._first = len(self._unsent)
        total = 0
        for view in rest:
            transport.write(view)
            total += view.nbytes
        return total
