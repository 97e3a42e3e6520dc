"""The migration connection: an asyncio stream server, a client connect, and their in-memory twin.

Theory of operation
-------------------
One migration is one connection, opened by the source agent to the
destination agent's stream address (``settings.stream_listen``: ``HOST:PORT``
or ``unix:/path``). Both ends use :class:`Channel`, an
:class:`asyncio.BufferedProtocol` with two receive modes:

* **control** (the default): received bytes are queued for :meth:`Channel.recv`,
  which the agent feeds to its hand-off protocol object. On the destination,
  before the HELLO is proved, the channel reads *exactly* the preamble and the
  HELLO frame -- 8 bytes, a 5-byte frame header, then the announced payload
  (capped at 256 bytes) -- and nothing more (:meth:`Channel.limit_to_hello`),
  so a connection that fails the secret is closed before a byte of state is
  read. The control queue is bounded: past ``control_limit`` bytes the
  channel stops reading (backpressure) until the agent takes them.
* **stream** (:meth:`Channel.route_to`): ``get_buffer``/``buffer_updated``
  delegate to the destination device's own ``get_buffer``/``buffer_updated``,
  so bulk data lands in the device's region memory without a copy. Decoding
  is synchronous inside ``buffer_updated``, so the socket is read no faster
  than the device consumes (nothing piles up). The mode ends when the device
  reports ``load_complete`` (the TRAILER validated) or refuses the stream.
  On TCP, while the device's buffer is a long payload's remaining bytes, the
  socket's receive low-water mark (``SO_RCVLOWAT``) is set to them (up to
  1 MiB): the loop is woken once the kernel holds the whole payload, so a
  1 MiB record lands in one receive instead of one per arriving train of
  segments (fewer callbacks, fewer window updates for the sender to handle).
  The mark never exceeds what the current buffer still expects (the stream
  may end right after it), and a 10 ms watchdog lowers it (halving its cap)
  when bytes queued below it stop growing -- a kernel that holds the sender
  back before the mark is reached must not hang the stream.

Sending: on a socket, :meth:`Channel.send` hands the device's buffers
(record heads, zero-copy views of region memory, digests) straight to the
kernel with scatter/gather ``sendmsg`` on a duplicate of the transport's
socket, whenever the transport has nothing queued -- ``writelines`` would
join them into one new buffer on Python 3.11, a copy of every byte. When the
socket is full, a small head of what is left goes to the transport, which
queues it and pauses us (the write-buffer limit is 0); it resumes us once
the socket drained that head, and ``sendmsg`` goes on. Order is kept because
``sendmsg`` runs only while the transport's queue is empty. Without a socket
(the in-memory twin) it falls back to ``transport.writelines``. Either way a
slow destination slows the source instead of filling its memory.

Socket buffers: the send buffer is raised to :data:`_SOCKET_BUFFER` (the
kernel caps it at ``net.core.wmem_max``); the receive buffer is left to the
kernel's autotuning, which may grow past what ``SO_RCVBUF`` may ask for.

Time: a peer that sends nothing (while we wait to receive), or reads nothing
(while we wait to send), for ``stall_timeout`` seconds raises
``PEER_STALLED`` (bytes still growing in the kernel below the low-water mark
count as progress). Foreign errors are mapped here, once: a reset, a closed
connection or an ``OSError`` is ``PEER_LOST``; a refused or unreachable
address is ``CONNECT_FAILED``; a malformed address is ``ADDRESS_INVALID``.

:func:`memory_pair` gives two channels joined in memory (no socket), the
twin used by tests of the engine's logic.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import socket
import struct
import termios
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from devmig._errors import DevmigError, Problem, StreamError

__all__ = [
    "Channel",
    "StreamServer",
    "connect",
    "memory_pair",
    "transport_error",
]

_PREAMBLE = 8
_FRAME_HEADER = 5
_MAX_HELLO = 256
_SCRATCH = 64 * 1024
_CONTROL_LIMIT = 64 * 1024
_WRITE_HIGH = 4 << 20
_SOCKET_BUFFER = 8 << 20
_NUDGE = 64 * 1024  # bytes handed to the transport when the socket is full (it wakes us when sent)
_IOV_MAX = 512  # buffers per sendmsg (the kernel's IOV_MAX is 1024)
_READ_AHEAD = 64 * 1024  # after a small record, receive up to this much at once (see StreamDecoder.get_buffer)
_LOWAT_MAX = 1 << 20  # the most stream bytes a TCP receive waits for (SO_RCVLOWAT)
_LOWAT_SLACK = 64  # a framing buffer's read-ahead beyond what the record needs (the decoder's lookahead)
_LOWAT_WATCH = 0.01  # seconds between checks that bytes waiting below the low-water mark still grow


class StreamSink(Protocol):
    """What a channel in stream mode writes into (a :class:`~devmig.device.Device`)."""

    def get_buffer(self, sizehint: int = -1) -> memoryview:
        """A buffer to receive the next bytes into."""

    def buffer_updated(self, nbytes: int) -> None:
        """``nbytes`` were written into the last buffer."""

    def write_data(self, data: bytes) -> None:
        """Feed bytes already received."""

    @property
    def load_complete(self) -> bool:
        """Whether the whole stream validated."""


def transport_error(code: str, message: str, phase: str | None = None, *, hint: str | None = None) -> DevmigError:
    """Build the transport's error: one problem, ``loc`` names the phase when known."""
    loc: tuple[str, ...] = ("phase", phase) if phase else ("connection",)
    return DevmigError([Problem(code, loc, message, value=phase, hint=hint)])


class Channel(asyncio.BufferedProtocol):
    """One end of a migration connection (see the module's theory of operation).

    Args:
        stall_timeout: seconds without progress before ``PEER_STALLED``.
        control_limit: the most control bytes queued before reading pauses.
    """

    def __init__(self, *, stall_timeout: float, control_limit: int = _CONTROL_LIMIT) -> None:
        self.stall_timeout = stall_timeout
        self.phase: str | None = None
        """The caller's phase, named in errors (e.g. ``STREAMING``)."""
        self._limit = control_limit
        self._transport: asyncio.BaseTransport | None = None
        self._scratch = bytearray(_SCRATCH)
        self._control = bytearray()
        self._hello_limit: int | None = None  # bytes the HELLO may still take, None: no limit
        self._hello_seen = bytearray()
        self._sink: StreamSink | None = None
        self._sink_error: StreamError | None = None
        self._stream_done = False
        self._eof = False
        self._lost: Exception | None = None
        self._closed = False
        self._reading_paused = False
        self._woken = False
        self._waiter: asyncio.Future[None] | None = None
        self._can_write = asyncio.Event()
        self._can_write.set()
        self.last_received = time.monotonic()
        self.bytes_received = 0
        self.bytes_sent = 0
        self.stream_first_at: float | None = None
        """When the first stream byte reached the sink (epoch seconds)."""
        self.stream_done_at: float | None = None
        """When the sink reported the whole stream loaded (epoch seconds)."""
        self.stream_cpu = 0.0
        """CPU seconds this process used from the first stream byte to the loaded stream (all threads)."""
        self.stream_reads = 0
        """Receives (``buffer_updated`` calls) that carried stream bytes."""
        self._raw: socket.socket | None = None  # a duplicate of the transport's socket, for sendmsg
        self._tcp = False  # SO_RCVLOWAT is honoured (TCP; AF_UNIX ignores it for readiness)
        self._lowat = 1
        self._handed = 0  # the size of the sink buffer last handed to the transport
        self._lowat_cap = _LOWAT_MAX  # halved whenever the kernel stopped short of the mark (see _watch_lowat)
        self._watch: asyncio.TimerHandle | None = None
        self._watch_queued = -1
        self._watch_received = -1
        self.lowat_fallbacks = 0
        """Times bytes stopped growing below the receive low-water mark, so it was lowered (see _watch_lowat)."""
        self._pending_seen = 0  # bytes the kernel held for us at the last stall check (see wait_stream)
        self._unsent: list[memoryview] = []  # a send in progress: its buffers, from index _first on
        self._first = 0
        self.connected = asyncio.Event()

    # -- asyncio callbacks -------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None and isinstance(transport, asyncio.WriteTransport):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _SOCKET_BUFFER)
            try:
                self._raw = sock.dup()
            except OSError:
                self._raw = None
            self._tcp = self._raw is not None and sock.family in (socket.AF_INET, socket.AF_INET6)
        if isinstance(transport, asyncio.WriteTransport):
            transport.set_write_buffer_limits(high=0 if self._raw is not None else _WRITE_HIGH)
        self.connected.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self._eof = True
        self._lost = exc
        self._closed = True
        self._close_raw()
        self._can_write.set()
        self._wake()

    def _close_raw(self) -> None:
        watch, self._watch = self._watch, None
        if watch is not None:
            watch.cancel()
        raw, self._raw = self._raw, None
        if raw is not None:
            with contextlib.suppress(OSError):
                raw.close()

    def eof_received(self) -> bool:
        self._eof = True
        self._wake()
        return False

    def pause_writing(self) -> None:
        self._can_write.clear()

    def resume_writing(self) -> None:
        self._can_write.set()

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._sink is not None:
            try:
                view = self._sink.get_buffer(_READ_AHEAD)
            except StreamError as exc:
                self._fail_sink(exc)
            else:
                if self._tcp:
                    # Inside a long payload, be woken only once the kernel holds all of it (up to the
                    # cap): one receive per record instead of one per arriving train of segments.
                    self._handed = view.nbytes
                    self._set_lowat(self._lowat_for(self._handed))
                return view
        if self._lowat != 1:
            self._set_lowat(1)
        view = memoryview(self._scratch)
        if self._hello_limit is not None:
            return view[: max(1, self._hello_need())]
        return view

    def buffer_updated(self, nbytes: int) -> None:
        self.last_received = time.monotonic()
        self.bytes_received += nbytes
        sink = self._sink
        if sink is not None:
            if self.stream_first_at is None:
                self.stream_first_at = time.time()
                self.stream_cpu = -time.process_time()
            self.stream_reads += 1
            self._pending_seen = 0
            if self._lowat > 1:
                # The mark must never exceed what the buffer still expects: the stream may end there.
                self._set_lowat(self._lowat_for(self._handed - nbytes))
            try:
                sink.buffer_updated(nbytes)
            except StreamError as exc:
                self._fail_sink(exc)
                return
            if sink.load_complete:
                self._set_lowat(1)
                self.stream_done_at = time.time()
                self.stream_cpu += time.process_time()
                self._sink = None
                self._stream_done = True
                self._wake()
            return
        data = bytes(self._scratch[:nbytes])
        if self._hello_limit is not None:
            self._hello_seen += data
        self._control += data
        if len(self._control) >= self._limit or (self._hello_limit is not None and self._hello_need() <= 0):
            self._pause_reading()
        self._wake()

    # -- helpers -----------------------------------------------------------------

    def _hello_need(self) -> int:
        """Bytes still to read for the preamble and the HELLO frame (nothing beyond)."""
        seen = len(self._hello_seen)
        head = _PREAMBLE + _FRAME_HEADER
        if seen < head:
            return head - seen
        length = int(struct.unpack_from(">I", self._hello_seen, _PREAMBLE + 1)[0])
        return head + min(length, _MAX_HELLO) - seen

    def _lowat_for(self, expected: int) -> int:
        """The low-water mark for a receive into a buffer of ``expected`` bytes.

        A sink buffer longer than the read-ahead is a payload's remaining bytes (plus at most the
        decoder's lookahead), which the peer must send; a shorter one may be a read-ahead, which
        it need not: then 1.
        """
        return min(expected - _LOWAT_SLACK, self._lowat_cap) if expected > _READ_AHEAD else 1

    def _set_lowat(self, nbytes: int) -> None:
        """Set the TCP receive low-water mark: readable once ``nbytes`` are queued (or FIN, or a full window)."""
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
        if nbytes > 1 and self._watch is None and self._transport is not None:
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
        if self._lowat <= 1 or self._sink is None or self._closed:
            return
        queued = self._queued()
        if queued > 0 and queued == self._watch_queued and self.bytes_received == self._watch_received:
            self.lowat_fallbacks += 1
            self._lowat_cap = self._lowat_cap // 2 if self._lowat_cap > _READ_AHEAD else 0
            if not self._lowat_cap:
                self._tcp = False
            self._set_lowat(1)
            return
        self._watch_queued, self._watch_received = queued, self.bytes_received
        self._watch = asyncio.get_running_loop().call_later(_LOWAT_WATCH, self._watch_lowat)

    def _queued(self) -> int:
        """Bytes the kernel holds for us, not yet read (0 when unknown)."""
        raw = self._raw
        if raw is None:
            return 0
        try:
            buf = fcntl.ioctl(raw.fileno(), termios.FIONREAD, b"\0\0\0\0")
        except OSError:
            return 0
        return int(struct.unpack("i", buf)[0])

    def _fail_sink(self, exc: StreamError) -> None:
        self._set_lowat(1)
        self._sink = None
        self._sink_error = exc
        self._wake()

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def wake(self) -> None:
        """Make a pending (or the next) :meth:`recv` return ``None``: the agent has something else to do."""
        self._woken = True
        self._wake()

    def _pause_reading(self) -> None:
        transport = self._transport
        if not self._reading_paused and isinstance(transport, asyncio.ReadTransport) and not self._closed:
            self._reading_paused = True
            with contextlib.suppress(RuntimeError, AttributeError):
                transport.pause_reading()

    def _resume_reading(self) -> None:
        transport = self._transport
        if self._reading_paused and isinstance(transport, asyncio.ReadTransport) and not self._closed:
            self._reading_paused = False
            with contextlib.suppress(RuntimeError, AttributeError):
                transport.resume_reading()

    def _lost_error(self) -> DevmigError:
        why = f": {self._lost}" if self._lost else ""
        return transport_error("PEER_LOST", f"the peer closed the connection{why}", self.phase)

    def _stalled(self, what: str) -> DevmigError:
        return transport_error(
            "PEER_STALLED", f"the peer {what} for {self.stall_timeout:g} s", self.phase,
            hint="the peer is overloaded, hung, or the network dropped it",
        )

    async def _wait(self, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        self._waiter = loop.create_future()
        timeout = deadline - time.monotonic()
        try:
            await asyncio.wait_for(asyncio.shield(self._waiter), max(0.0, timeout))
        except TimeoutError:
            pass
        finally:
            self._waiter = None

    # -- receiving -----------------------------------------------------------------

    @property
    def at_eof(self) -> bool:
        """Whether the peer closed its side (or the connection is gone)."""
        return self._eof

    def limit_to_hello(self) -> None:
        """Read only the preamble and one HELLO frame until :meth:`lift_hello_limit`."""
        self._hello_limit = _PREAMBLE + _FRAME_HEADER + _MAX_HELLO
        self._hello_seen.clear()

    def lift_hello_limit(self) -> None:
        """Read freely again (the HELLO was proved)."""
        self._hello_limit = None
        self._hello_seen.clear()
        self._resume_reading()

    async def recv(self, timeout: float | None = None) -> bytes | None:
        """Return the control bytes received so far, waiting for some.

        Args:
            timeout: seconds to wait (default: the stall timeout).

        Returns:
            The bytes; ``b""`` once the peer closed and everything was taken;
            ``None`` when :meth:`wake` was called.

        Raises:
            DevmigError: ``PEER_STALLED`` when nothing came in time.
        """
        limit = self.stall_timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        while True:
            if self._control:
                data = bytes(self._control)
                self._control.clear()
                if self._hello_limit is None or self._hello_need() > 0:
                    self._resume_reading()
                return data
            if self._eof:
                return b""
            if self._woken:
                self._woken = False
                return None
            if time.monotonic() >= deadline:
                raise self._stalled("sent nothing")
            await self._wait(deadline)

    def take(self) -> bytes:
        """Return (without waiting) the control bytes received so far."""
        data = bytes(self._control)
        self._control.clear()
        if data and (self._hello_limit is None or self._hello_need() > 0):
            self._resume_reading()
        return data

    def route_to(self, sink: StreamSink, already: bytes = b"") -> None:
        """Switch to stream mode: received bytes go to ``sink`` in place.

        Args:
            sink: the destination device (RESUMING).
            already: stream bytes received with the HELLO (fed first).

        Raises:
            StreamError: the sink refused ``already``.
        """
        self.lift_hello_limit()
        pending = already + bytes(self._control)
        self._control.clear()
        self._stream_done = False
        self._sink_error = None
        if pending:
            self.stream_first_at = time.time()
            sink.write_data(pending)
        if sink.load_complete:
            self.stream_done_at = time.time()
            self._stream_done = True
        else:
            self._sink = sink

    async def wait_stream(self) -> None:
        """Wait until the sink has the whole stream (its TRAILER validated).

        Raises:
            StreamError: the sink refused the stream.
            DevmigError: ``PEER_LOST`` when the connection ended first,
                ``PEER_STALLED`` when nothing came for the stall timeout.
        """
        while True:
            if self._sink_error is not None:
                raise self._sink_error
            if self._stream_done:
                return
            if self._eof:
                self._sink = None
                raise self._lost_error()
            deadline = self.last_received + self.stall_timeout
            if time.monotonic() >= deadline:
                queued = self._queued()
                if queued > self._pending_seen:
                    # Bytes still arrive, below the low-water mark (a slow peer): that is progress.
                    self._pending_seen = queued
                    self.last_received = time.monotonic()
                    continue
                self._sink = None
                self._set_lowat(1)
                raise self._stalled("sent nothing")
            await self._wait(deadline)

    # -- sending -------------------------------------------------------------------

    async def send(self, buffers: Sequence[bytes | bytearray | memoryview]) -> None:
        """Write buffers, zero-copy where possible (see the module), waiting while the peer is behind.

        The caller must not change the buffers' memory until this returns.

        Raises:
            DevmigError: ``PEER_LOST`` when the connection is gone,
                ``PEER_STALLED`` when the peer read nothing for the stall timeout.
        """
        transport = self._transport
        if self._closed or not isinstance(transport, asyncio.WriteTransport) or transport.is_closing():
            raise self._lost_error()
        if self._raw is not None:
            await self._sendmsg(transport, buffers)
            return
        size = 0
        for b in buffers:
            size += len(b) if not isinstance(b, memoryview) else b.nbytes
        try:
            transport.writelines(buffers)
        except (OSError, RuntimeError) as exc:
            raise transport_error("PEER_LOST", f"cannot write to the peer: {exc}", self.phase) from exc
        self.bytes_sent += size
        await self.drain()

    async def _sendmsg(self, transport: asyncio.WriteTransport, buffers: Sequence[bytes | bytearray | memoryview]) -> None:
        """Scatter/gather straight to the socket; the transport only wakes us when it is full."""
        views = [v if isinstance(v, memoryview) and v.format == "B" and v.ndim == 1 else memoryview(v).cast("B")
                 for v in buffers]
        self._unsent = [v for v in views if v.nbytes]
        self._first = 0
        try:
            while self._first < len(self._unsent):
                raw = self._raw
                if raw is None or self._closed or transport.is_closing():
                    raise self._lost_error()
                if transport.get_write_buffer_size() == 0:
                    self._sendmsg_once(raw, transport)
                    if self._first == len(self._unsent):
                        break  # all in the kernel: one yield to the loop below, not two
                await self.drain()
        finally:
            self._unsent, self._first = [], 0
        await self.drain()

    def _sendmsg_once(self, raw: socket.socket, transport: asyncio.WriteTransport) -> None:
        """One ``sendmsg`` of what is unsent; when the socket is full, queue a small head in the transport."""
        views, first = self._unsent, self._first
        try:
            sent = raw.sendmsg(views[first : first + _IOV_MAX])
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError as exc:
            raise transport_error("PEER_LOST", f"cannot write to the peer: {exc}", self.phase) from exc
        self.bytes_sent += sent
        while sent and first < len(views):
            n = views[first].nbytes
            if sent >= n:
                sent -= n
                first += 1
            else:
                views[first] = views[first][sent:]
                sent = 0
        if first < len(views):
            # The socket is full: the transport sends this head when it drains and resumes us
            # (its write-buffer limit is 0).
            head = views[first][:_NUDGE]
            try:
                transport.write(head)
            except (OSError, RuntimeError) as exc:
                raise transport_error("PEER_LOST", f"cannot write to the peer: {exc}", self.phase) from exc
            self.bytes_sent += head.nbytes
            if head.nbytes == views[first].nbytes:
                first += 1
            else:
                views[first] = views[first][head.nbytes :]
        self._first = first

    def _flush_unsent(self, transport: asyncio.WriteTransport) -> None:
        """Queue the rest of a send in progress in the transport (a control frame must not cut a record)."""
        rest = self._unsent[self._first :]
        self._first = len(self._unsent)
        for view in rest:
            transport.write(view)
            self.bytes_sent += view.nbytes

    def write_nowait(self, data: bytes) -> None:
        """Queue a small control frame without waiting (ignored when closed or empty)."""
        transport = self._transport
        if not data or self._closed or not isinstance(transport, asyncio.WriteTransport) or transport.is_closing():
            return
        with contextlib.suppress(OSError, RuntimeError):
            if self._first < len(self._unsent):
                self._flush_unsent(transport)
            transport.write(data)
            self.bytes_sent += len(data)

    async def drain(self) -> None:
        """Wait until the transport accepts more (``resume_writing``).

        Raises:
            DevmigError: ``PEER_LOST`` or ``PEER_STALLED`` (see :meth:`send`).
        """
        if self._can_write.is_set():
            if self._closed:
                raise self._lost_error()
            await asyncio.sleep(0)
            return
        try:
            await asyncio.wait_for(self._can_write.wait(), self.stall_timeout)
        except TimeoutError:
            raise self._stalled("read nothing") from None
        if self._closed:
            raise self._lost_error()

    def close(self) -> None:
        """Close the connection (idempotent)."""
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.close()
        self._close_raw()
        self._closed = True
        self._eof = True
        self._can_write.set()
        self._wake()

    def abort(self) -> None:
        """Drop the connection without flushing (a reset)."""
        transport = self._transport
        if isinstance(transport, asyncio.WriteTransport):
            transport.abort()
        self.close()


# -- server and client ----------------------------------------------------------------


def _split(address: str) -> tuple[str, int] | str:
    """Return ``(host, port)`` or a unix path.

    Raises:
        DevmigError: ``ADDRESS_INVALID``.
    """
    if address.startswith("unix:"):
        return address[len("unix:") :]
    host, sep, port = address.rpartition(":")
    try:
        if not sep:
            raise ValueError("no port")
        return host.strip("[]") or "127.0.0.1", int(port)
    except ValueError:
        raise transport_error(
            "ADDRESS_INVALID", f"not a stream address: {address!r}",
            hint="HOST:PORT or unix:/path",
        ) from None


class StreamServer:
    """The destination agent's listener for migration connections.

    Args:
        listen: ``HOST:PORT`` (port 0 picks one) or ``unix:/path``.
        on_channel: called (as a task) with each accepted :class:`Channel`.
        stall_timeout: given to every channel.

    Run-state: created → :meth:`start` → serving → :meth:`close` → closed.
    """

    def __init__(self, listen: str, on_channel: Callable[[Channel], Awaitable[None]], *, stall_timeout: float) -> None:
        self.listen = listen
        self._on_channel = on_channel
        self._stall = stall_timeout
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.address: str | None = None
        """The bound address (``127.0.0.1:40123`` or ``unix:/path``) once serving."""

    def _factory(self) -> Channel:
        channel = Channel(stall_timeout=self._stall)
        task = asyncio.get_running_loop().create_task(self._serve(channel))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return channel

    async def _serve(self, channel: Channel) -> None:
        await channel.connected.wait()
        try:
            await self._on_channel(channel)
        finally:
            channel.close()

    async def start(self) -> str:
        """Bind and serve; return the bound address.

        Raises:
            DevmigError: ``LISTEN_FAILED`` naming the address and the reason.
        """
        where = _split(self.listen)
        loop = asyncio.get_running_loop()
        try:
            if isinstance(where, str):
                if os.path.exists(where):
                    os.unlink(where)
                self._server = await loop.create_unix_server(self._factory, where)
                self.address = f"unix:{where}"
            else:
                self._server = await loop.create_server(self._factory, where[0], where[1])
                sockname: Any = self._server.sockets[0].getsockname()
                self.address = f"{sockname[0]}:{sockname[1]}"
        except OSError as exc:
            raise DevmigError(
                [Problem("LISTEN_FAILED", ("stream_listen",), f"cannot listen on {self.listen}: {exc.strerror or exc}",
                         value=self.listen)]
            ) from exc
        return self.address

    async def close(self) -> None:
        """Stop listening and end every connection's task."""
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


async def connect(address: str, *, stall_timeout: float, timeout: float = 10.0) -> Channel:
    """Open a migration connection to a destination's stream address.

    Raises:
        DevmigError: ``CONNECT_FAILED`` (refused, unreachable, timed out),
            ``ADDRESS_INVALID``.
    """
    where = _split(address)
    loop = asyncio.get_running_loop()
    channel = Channel(stall_timeout=stall_timeout)
    try:
        if isinstance(where, str):
            await asyncio.wait_for(loop.create_unix_connection(lambda: channel, where), timeout)
        else:
            await asyncio.wait_for(loop.create_connection(lambda: channel, where[0], where[1]), timeout)
    except (OSError, TimeoutError) as exc:
        raise DevmigError(
            [Problem("CONNECT_FAILED", ("stream",), f"cannot connect to {address}: {exc}", value=address,
                     hint="is the destination agent running, and its stream address reachable?")]
        ) from exc
    return channel


# -- the in-memory twin ---------------------------------------------------------------


class _MemoryTransport(asyncio.Transport):
    """Delivers writes to the peer channel through its ``get_buffer``/``buffer_updated``."""

    def __init__(self, peer: Channel) -> None:
        super().__init__()
        self._peer = peer
        self._closing = False
        self.owner: Channel | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closing:
            return
        view = memoryview(bytes(data))
        loop = asyncio.get_running_loop()
        loop.call_soon(self._deliver, view)

    def writelines(self, list_of_data: Any) -> None:
        self.write(b"".join(bytes(b) for b in list_of_data))

    def _deliver(self, view: memoryview) -> None:
        while view.nbytes and not self._peer._closed:
            buf = self._peer.get_buffer(view.nbytes)
            n = min(buf.nbytes, view.nbytes)
            buf[:n] = view[:n]
            self._peer.buffer_updated(n)
            view = view[n:]

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        loop = asyncio.get_running_loop()
        loop.call_soon(self._peer.connection_lost, None)
        if self.owner is not None:
            loop.call_soon(self.owner.connection_lost, None)

    def abort(self) -> None:
        self.close()

    def is_closing(self) -> bool:
        return self._closing

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0


def memory_pair(*, stall_timeout: float) -> tuple[Channel, Channel]:
    """Return two connected channels (source end, destination end), joined in memory.

    Writes are delivered on the next loop iteration through the peer's
    ``get_buffer``/``buffer_updated`` -- the same path a socket takes.
    """
    a = Channel(stall_timeout=stall_timeout)
    b = Channel(stall_timeout=stall_timeout)
    ta, tb = _MemoryTransport(b), _MemoryTransport(a)
    ta.owner, tb.owner = a, b
    a.connection_made(ta)
    b.connection_made(tb)
    return a, b
