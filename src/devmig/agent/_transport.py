"""The migration connection: a stream server, a client connect, and the channel both ends use.

Theory of operation
-------------------
One migration is one connection, opened by the source agent to the
destination agent's stream address (``settings.stream_listen``: ``HOST:PORT``
or ``unix:/path``). Both ends use :class:`Channel`, an
:class:`asyncio.BufferedProtocol` with two receive modes:

* **control** (the default): received bytes are queued for :meth:`Channel.recv`,
  which the agent feeds to its hand-off protocol object. The channel knows
  nothing of frames: on the destination, before the HELLO is proved, it is
  limited to a reader (:meth:`Channel.limit_to`, the
  :class:`~devmig.migration.DestinationHandoff`) and reads only the bytes
  the reader says it still needs (``bytes_needed()``: the preamble and the
  HELLO frame, capped at the HELLO's largest payload) and nothing more, so a
  connection that fails the secret is closed before a byte of state is read.
  The control queue is bounded: past ``control_limit`` bytes the channel
  stops reading (backpressure) until the agent takes them.
* **stream** (:meth:`Channel.route_to`): ``get_buffer``/``buffer_updated``
  delegate to the destination device's own ``get_buffer``/``buffer_updated``,
  so bulk data lands in the device's region memory without a copy. Decoding
  is synchronous inside ``buffer_updated``, so the socket is read no faster
  than the device consumes (nothing piles up). The mode ends when the device
  reports ``load_complete`` (the TRAILER validated) or refuses the stream.
  Each buffer the device lends is announced to the socket's receive
  low-water mark (``SO_RCVLOWAT``, see :mod:`devmig.agent._socket_io`), so
  a 1 MiB record lands in one receive.

Sending: on a socket, :meth:`Channel.send` hands the buffers to
:class:`~devmig.agent._socket_io.SocketIO`, which writes them with
scatter/gather ``sendmsg`` whenever the transport has nothing queued, and
queues a small head in the transport when the socket is full; the transport
pauses us (its write-buffer limit is 0) and resumes us once the socket
drained that head. Without a socket it falls back to
``transport.writelines``. Either way a slow destination slows the source
instead of filling its memory.

Time: a peer that sends nothing (while we wait to receive), or reads nothing
(while we wait to send), for ``stall_timeout`` seconds raises
``PEER_STALLED`` (bytes still growing in the kernel below the low-water mark
count as progress). Foreign errors are mapped here, once: a reset, a closed
connection or an ``OSError`` is ``PEER_LOST``; a refused or unreachable
address is ``CONNECT_FAILED``; a malformed address is ``ADDRESS_INVALID``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from devmig._errors import DevmigError, Problem, StreamError
from devmig.agent._socket_io import READ_AHEAD, SocketIO

__all__ = [
    "DEFAULT_MAX_PENDING",
    "Channel",
    "ReadLimit",
    "StreamServer",
    "connect",
    "transport_error",
]

_SCRATCH = 64 * 1024
_CONTROL_LIMIT = 64 * 1024
_WRITE_HIGH = 4 << 20
DEFAULT_MAX_PENDING = 32
"""Stream connections accepted and not yet admitted (HELLO unproved) at once; more are closed at accept."""


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


class ReadLimit(Protocol):
    """What a limited channel asks (a :class:`~devmig.migration.DestinationHandoff`)."""

    def bytes_needed(self) -> int | None:
        """Bytes needed beyond those fed, never past the current frame; ``None``: no limit."""


def transport_error(
    code: str, message: str, phase: str | None = None, *, hint: str | None = None
) -> DevmigError:
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
        # The socket's sendmsg and low-water mark; None without a socket.
        self._io: SocketIO | None = None
        self._scratch = bytearray(_SCRATCH)
        self._control = bytearray()
        # What limits control reads (see limit_to); None: no limit.
        self._reader: ReadLimit | None = None
        self._sink: StreamSink | None = None
        self._sink_error: StreamError | None = None
        self._stream_done = False
        self._discarding = False  # lingering after a refusal: what comes is dropped
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
        """CPU seconds of this process from the first stream byte to the loaded stream."""
        self.stream_reads = 0
        """Receives (``buffer_updated`` calls) that carried stream bytes."""
        # Bytes the kernel held for us at the last stall check (see wait_stream).
        self._pending_seen = 0
        self.connected = asyncio.Event()
        self.on_admit: Callable[[], None] | None = None
        """Set by :class:`StreamServer`: called once by :meth:`admit`."""

    @property
    def lowat_fallbacks(self) -> int:
        """Times bytes stopped growing below the receive low-water mark, so it was lowered."""
        return self._io.lowat_fallbacks if self._io is not None else 0

    # -- asyncio callbacks -------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        self._io = SocketIO.attach(transport)
        if isinstance(transport, asyncio.WriteTransport):
            transport.set_write_buffer_limits(high=0 if self._io is not None else _WRITE_HIGH)
        self.connected.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self._eof = True
        self._lost = exc
        self._closed = True
        if self._io is not None:
            self._io.close()
        self._can_write.set()
        self._wake()

    def eof_received(self) -> bool:
        self._eof = True
        self._wake()
        return False

    def pause_writing(self) -> None:
        self._can_write.clear()

    def resume_writing(self) -> None:
        self._can_write.set()

    def get_buffer(self, sizehint: int) -> memoryview:
        io = self._io
        if self._sink is not None:
            try:
                view = self._sink.get_buffer(READ_AHEAD)
            except StreamError as exc:
                self._fail_sink(exc)
            else:
                if io is not None:
                    io.expect(view.nbytes)
                return view
        if io is not None:
            io.rest()
        view = memoryview(self._scratch)
        if self._reader is not None:
            need = self._needed()
            if need is not None:
                return view[: max(1, need)]
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
            io = self._io
            if io is not None:
                io.received(nbytes)
            try:
                sink.buffer_updated(nbytes)
            except StreamError as exc:
                self._fail_sink(exc)
                return
            if sink.load_complete:
                if io is not None:
                    io.rest()
                self.stream_done_at = time.time()
                self.stream_cpu += time.process_time()
                self._sink = None
                self._stream_done = True
                self._wake()
            return
        if self._discarding:
            return
        self._control += self._scratch[:nbytes]
        if len(self._control) >= self._limit or self._satisfied():
            self._pause_reading()
        self._wake()

    # -- helpers -----------------------------------------------------------------

    def _needed(self) -> int | None:
        """Bytes the reader still needs beyond those queued for it; ``None``: no limit."""
        assert self._reader is not None
        need = self._reader.bytes_needed()
        return None if need is None else need - len(self._control)

    def _satisfied(self) -> bool:
        """Whether a limited channel holds all the reader needs (it reads on once they are fed)."""
        if self._reader is None:
            return False
        need = self._needed()
        return need is not None and need <= 0

    def _fail_sink(self, exc: StreamError) -> None:
        if self._io is not None:
            self._io.rest()
        self._sink = None
        self._sink_error = exc
        self._wake()

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def wake(self) -> None:
        """Make a pending (or the next) :meth:`recv` return ``None``: the agent has other work."""
        self._woken = True
        self._wake()

    def _pause_reading(self) -> None:
        transport = self._transport
        if (
            not self._reading_paused
            and isinstance(transport, asyncio.ReadTransport)
            and not self._closed
        ):
            self._reading_paused = True
            with contextlib.suppress(RuntimeError, AttributeError):
                transport.pause_reading()

    def _resume_reading(self) -> None:
        transport = self._transport
        if (
            self._reading_paused
            and isinstance(transport, asyncio.ReadTransport)
            and not self._closed
        ):
            self._reading_paused = False
            with contextlib.suppress(RuntimeError, AttributeError):
                transport.resume_reading()

    def _lost_error(self) -> DevmigError:
        why = f": {self._lost}" if self._lost else ""
        return transport_error("PEER_LOST", f"the peer closed the connection{why}", self.phase)

    def _stalled(self, what: str) -> DevmigError:
        return transport_error(
            "PEER_STALLED",
            f"the peer {what} for {self.stall_timeout:g} s",
            self.phase,
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

    def admit(self) -> None:
        """The connection proved its HELLO: it no longer counts as pending (see :class:`StreamServer`)."""
        if self.on_admit is not None:
            self.on_admit()
            self.on_admit = None

    def limit_to(self, reader: ReadLimit) -> None:
        """Read only the bytes ``reader.bytes_needed()`` asks for, until :meth:`route_to`.

        The caller feeds ``reader`` every byte :meth:`recv` returns before it
        calls :meth:`recv` again: the channel then asks it afresh (reading
        pauses once the queued bytes are all it needs).
        """
        self._reader = reader

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
                return self.take()
            if self._reading_paused and not self._satisfied():
                self._resume_reading()  # a limited channel's reader took what it needed so far
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
        if data and self._reader is None:
            self._resume_reading()
        return data

    def route_to(self, sink: StreamSink, already: bytes = b"") -> None:
        """Switch to stream mode: received bytes go to ``sink`` in place (the read limit is lifted).

        Args:
            sink: the destination device (RESUMING).
            already: stream bytes received with the HELLO (fed first).

        Raises:
            StreamError: the sink refused ``already``.
        """
        self._reader = None
        self._resume_reading()
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
        io = self._io
        while True:
            if self._sink_error is not None:
                raise self._sink_error
            if self._stream_done:
                return
            if self._eof:
                self._sink = None
                if io is not None:
                    io.rest()
                raise self._lost_error()
            deadline = self.last_received + self.stall_timeout
            if time.monotonic() >= deadline:
                queued = io.queued() if io is not None else 0
                if queued > self._pending_seen:
                    # Bytes still arrive, below the low-water mark (a slow peer): that is progress.
                    self._pending_seen = queued
                    self.last_received = time.monotonic()
                    continue
                self._sink = None
                if io is not None:
                    io.rest()
                raise self._stalled("sent nothing")
            await self._wait(deadline)

    # -- sending -------------------------------------------------------------------

    async def send(self, buffers: Sequence[bytes | bytearray | memoryview]) -> None:
        """Write buffers, zero-copy where possible, waiting while the peer is behind.

        The caller must not change the buffers' memory until this returns.

        Raises:
            DevmigError: ``PEER_LOST`` when the connection is gone,
                ``PEER_STALLED`` when the peer read nothing for the stall timeout.
        """
        transport = self._transport
        if (
            self._closed
            or not isinstance(transport, asyncio.WriteTransport)
            or transport.is_closing()
        ):
            raise self._lost_error()
        if self._io is not None:
            await self._sendmsg(self._io, transport, buffers)
            return
        size = 0
        for b in buffers:
            size += len(b) if not isinstance(b, memoryview) else b.nbytes
        try:
            transport.writelines(buffers)
        except (OSError, RuntimeError) as exc:
            raise transport_error(
                "PEER_LOST", f"cannot write to the peer: {exc}", self.phase
            ) from exc
        self.bytes_sent += size
        await self.drain()

    async def _sendmsg(
        self,
        io: SocketIO,
        transport: asyncio.WriteTransport,
        buffers: Sequence[bytes | bytearray | memoryview],
    ) -> None:
        """Scatter/gather straight to the socket; the transport only wakes us when it is full."""
        io.load(buffers)
        try:
            while io.unsent:
                if io.closed or self._closed or transport.is_closing():
                    raise self._lost_error()
                if transport.get_write_buffer_size() == 0:
                    try:
                        self.bytes_sent += io.push(transport)
                    except (OSError, RuntimeError) as exc:
                        raise transport_error(
                            "PEER_LOST", f"cannot write to the peer: {exc}", self.phase
                        ) from exc
                    if not io.unsent:
                        break  # all in the kernel: one yield to the loop below, not two
                await self.drain()
        finally:
            io.forget()
        await self.drain()

    def write_nowait(self, data: bytes) -> None:
        """Queue a small control frame without waiting (ignored when closed or empty)."""
        transport = self._transport
        if (
            not data
            or self._closed
            or not isinstance(transport, asyncio.WriteTransport)
            or transport.is_closing()
        ):
            return
        with contextlib.suppress(OSError, RuntimeError):
            if self._io is not None and self._io.unsent:
                # The rest of a send in progress goes first: a control frame must not cut a record.
                self.bytes_sent += self._io.flush_to(transport)
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

    async def linger(self, timeout: float) -> None:
        """Drop what the peer still sends until it closes, or ``timeout`` seconds; then return.

        A destination that refused a stream calls it before :meth:`close`: the
        source may still be streaming, and closing a socket with unread bytes
        sends a reset, which can destroy the refusal frame before the source
        read it (it then knows only that the connection was lost).
        """
        self._sink = None
        self._discarding = True
        self._control.clear()
        self._resume_reading()
        deadline = time.monotonic() + timeout
        while not (self._eof or self._closed) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)

    def close(self) -> None:
        """Close the connection (idempotent)."""
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.close()
        if self._io is not None:
            self._io.close()
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
            "ADDRESS_INVALID",
            f"not a stream address: {address!r}",
            hint="HOST:PORT or unix:/path",
        ) from None


class _Refused(asyncio.Protocol):
    """A connection past the pending cap: closed as soon as it is accepted, nothing read."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if isinstance(transport, asyncio.WriteTransport):
            transport.abort()
        else:
            transport.close()


class StreamServer:
    """The destination agent's listener for migration connections.

    A connection is *pending* from its accept until :meth:`Channel.admit`
    (its HELLO proved a secret). At most ``max_pending`` are pending at once;
    one more is closed at accept, before anything is read, and counted in
    :attr:`refused` (a slowloris client holds no more than the cap of file
    descriptors, and the HTTP API keeps answering).

    Args:
        listen: ``HOST:PORT`` (port 0 picks one) or ``unix:/path``.
        on_channel: called (as a task) with each accepted :class:`Channel`.
        stall_timeout: given to every channel.
        max_pending: most connections accepted and not yet admitted.

    Run-state: created → :meth:`start` → serving → :meth:`close` → closed.
    """

    def __init__(
        self,
        listen: str,
        on_channel: Callable[[Channel], Awaitable[None]],
        *,
        stall_timeout: float,
        tls: ssl.SSLContext | None = None,
        max_pending: int = DEFAULT_MAX_PENDING,
    ) -> None:
        self.listen = listen
        self._tls = tls
        self._handshake = stall_timeout if tls is not None else None
        self._on_channel = on_channel
        self._stall = stall_timeout
        self.max_pending = max_pending
        self._pending: set[Channel] = set()
        self.refused = 0
        """Connections closed at accept because ``max_pending`` were pending."""
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.address: str | None = None
        """The bound address (``127.0.0.1:40123`` or ``unix:/path``) once serving."""

    @property
    def pending(self) -> int:
        """Connections accepted whose HELLO is not proved yet."""
        return len(self._pending)

    def _factory(self) -> asyncio.BaseProtocol:
        if len(self._pending) >= self.max_pending:
            self.refused += 1
            return _Refused()
        channel = Channel(stall_timeout=self._stall)
        self._pending.add(channel)
        channel.on_admit = lambda: self._pending.discard(channel)
        task = asyncio.get_running_loop().create_task(self._serve(channel))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return channel

    async def _serve(self, channel: Channel) -> None:
        try:
            if self._tls is None:
                # Plain TCP: connection_made follows at once. No wait_for here: its extra loop
                # iterations let a peer's HELLO and FIN arrive first, and the transport closes
                # itself at EOF before the refusal is written (a raw-socket AUTH_FAILED was lost).
                await channel.connected.wait()
            else:
                try:  # over TLS a failed handshake never connects the channel: do not wait for ever
                    await asyncio.wait_for(channel.connected.wait(), self._stall)
                except TimeoutError:
                    return
            await self._on_channel(channel)
        finally:
            self._pending.discard(channel)
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
                self._server = await loop.create_unix_server(
                    self._factory, where, ssl=self._tls, ssl_handshake_timeout=self._handshake
                )
                self.address = f"unix:{where}"
            else:
                self._server = await loop.create_server(
                    self._factory, where[0], where[1], ssl=self._tls, ssl_handshake_timeout=self._handshake
                )
                sockname: Any = self._server.sockets[0].getsockname()
                self.address = f"{sockname[0]}:{sockname[1]}"
        except OSError as exc:
            raise DevmigError(
                [
                    Problem(
                        "LISTEN_FAILED",
                        ("stream_listen",),
                        f"cannot listen on {self.listen}: {exc.strerror or exc}",
                        value=self.listen,
                    )
                ]
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


async def connect(
    address: str, *, stall_timeout: float, timeout: float = 10.0, tls: ssl.SSLContext | None = None
) -> Channel:
    """Open a migration connection to a destination's stream address (over TLS with ``tls``).

    Raises:
        DevmigError: ``CONNECT_FAILED`` (refused, unreachable, timed out),
            ``ADDRESS_INVALID``.
    """
    where = _split(address)
    loop = asyncio.get_running_loop()
    channel = Channel(stall_timeout=stall_timeout)
    try:
        if isinstance(where, str):
            await asyncio.wait_for(
                loop.create_unix_connection(
                    lambda: channel, where, ssl=tls, server_hostname="localhost" if tls else None
                ),
                timeout,
            )
        else:
            await asyncio.wait_for(
                loop.create_connection(lambda: channel, where[0], where[1], ssl=tls), timeout
            )
    except (OSError, TimeoutError, ssl.SSLError) as exc:
        raise DevmigError(
            [
                Problem(
                    "CONNECT_FAILED",
                    ("stream",),
                    f"cannot connect to {address}: {exc}",
                    value=address,
                    hint="is the destination agent running, and its stream address reachable?",
                )
            ]
        ) from exc
    return channel
