"""The vfio-user connection as a pure object: bytes and descriptors in, events out (h11's style).

Theory of operation
-------------------
A :class:`Connection` is one side (``Role.CLIENT`` or ``Role.SERVER``) of one
vfio-user socket. It never touches a socket or a descriptor: the edge feeds
it what ``recvmsg`` returned (:meth:`Connection.receive_data` with the bytes
and the descriptors that came with them; ``b""`` at end of file), takes
events from :meth:`Connection.next_event` until :data:`NEED_DATA`, and writes
the :class:`Outgoing` bytes and descriptors that :meth:`Connection.send_command`,
:meth:`Connection.send_reply` and :meth:`Connection.send_error` return, each
in one ``sendmsg`` (descriptors travel with the header's first byte).

Framing: the 16-byte header gives ``msg_size``. A size under 16 cannot be
resynchronised: the connection goes to ``ERROR`` and the event says so
(``fatal``). A size above :attr:`Connection.max_message_size` (derived from
the negotiated ``max_data_xfer_size``) is *skipped* as it arrives — never
buffered — and refused with ``E2BIG``; framing then continues. Descriptors
belong to the message that contains the last byte of the ``recvmsg`` chunk
they arrived with (the kernel delivers them with the first segment of the
sendmsg that carried them, and a read never continues past such a segment).

Incoming commands become :class:`Request` events, or :class:`Rejected`
events carrying the :class:`~devmig.vfio_user.VfioUserError` (and its errno)
for anything the specification forbids: short or inconsistent payloads,
wrong ``argsz``, descriptors where none belong, unknown commands, commands
the role does not accept, anything but VERSION before VERSION, a second
VERSION, REGION_WRITE_MULTI when not negotiated. A rejected command's
descriptors are in the event for the edge to close; the server answers with
:meth:`send_error` (``None`` for a NO_REPLY command: never answered).

Replies are matched to the commands this side sent (in order; ``strict``
requires the reply to answer the *oldest* one, as libvfio-user's helper
does) and decoded against them (:mod:`._replies`). A reply that breaks the
protocol raises :class:`~devmig.vfio_user.VfioUserError` from
:meth:`next_event` and puts the connection in ``ERROR``: nothing after it can
be trusted. A stray reply at a server that sent nothing is refused without
an answer.
"""

from __future__ import annotations

import enum
import errno
from collections import deque
from dataclasses import dataclass, field
from typing import Final

from devmig.state import Buffer
from devmig.vfio_user._capabilities import MAX_VERSION_JSON, PROTOCOL_MINOR, Capabilities
from devmig.vfio_user._errors import VfioUserError
from devmig.vfio_user._features import MAX_LOGGING_RANGES
from devmig.vfio_user._replies import (
    REPLY_TYPES,
    ErrorReply,
    MigDataReadReply,
    ReplyBody,
    VersionReply,
)
from devmig.vfio_user._requests import (
    REQUEST_TYPES,
    DecodeLimits,
    DmaRead,
    DmaWrite,
    MigDataRead,
    MigDataWrite,
    RegionRead,
    RegionWrite,
    RegionWriteMulti,
    RequestBody,
    VersionRequest,
)
from devmig.vfio_user._wire import (
    CLIENT_COMMANDS,
    FLAG_ERROR,
    FLAG_NO_REPLY,
    HEADER_SIZE,
    SERVER_COMMANDS,
    TYPE_COMMAND,
    TYPE_MASK,
    TYPE_REPLY,
    Command,
    Header,
)

__all__ = [
    "LARGE_MESSAGE",
    "NEED_DATA",
    "Closed",
    "Connection",
    "ConnectionState",
    "Event",
    "NeedData",
    "Outgoing",
    "Rejected",
    "Reply",
    "Request",
    "Role",
]


class Role(enum.Enum):
    """Which side of the socket a connection is."""

    CLIENT = "client"
    SERVER = "server"


class ConnectionState(enum.Enum):
    """A connection's run-state: VERSION first, then commands, until closed or broken."""

    AWAIT_VERSION = "await-version"
    READY = "ready"
    CLOSED = "closed"
    ERROR = "error"


class NeedData:
    """The type of :data:`NEED_DATA`."""

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA: Final = NeedData()
"""Returned by :meth:`Connection.next_event` when it needs more bytes."""

LARGE_MESSAGE: Final = 64 << 10
"""A message this large is gathered in its own buffer, which the edge may read straight into."""


@dataclass(frozen=True, slots=True)
class Request:
    """A command received (a client's at a server; DMA_READ/WRITE at a client)."""

    msg_id: int
    body: RequestBody
    no_reply: bool = False

    @property
    def cmd(self) -> Command:
        """The command."""
        return self.body.cmd


@dataclass(frozen=True, slots=True)
class Reply:
    """A reply received, with the command it answers (``body`` may be an :class:`ErrorReply`)."""

    msg_id: int
    cmd: Command
    body: ReplyBody
    request: RequestBody


@dataclass(frozen=True, slots=True)
class Rejected:
    """A received message refused: answer it with :meth:`Connection.send_error` when ``answer``.

    Attributes:
        msg_id, cmd: from the header (``cmd`` as received, maybe unknown).
        error: what is wrong, with the errno to answer.
        fds: descriptors that came with it; the edge must close them.
        answer: whether an error reply is due (not for NO_REPLY, not for replies).
        fatal: the stream cannot be resynchronised; the connection is in ERROR.
    """

    msg_id: int
    cmd: int
    error: VfioUserError
    fds: tuple[int, ...] = ()
    answer: bool = True
    fatal: bool = False


@dataclass(frozen=True, slots=True)
class Closed:
    """The peer closed the connection; ``fds`` are descriptors left unclaimed (close them)."""

    fds: tuple[int, ...] = ()
    truncated: bool = False


Event = Request | Reply | Rejected | Closed


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message to send: ``data``, then the ``tail`` buffers (zero-copy bulk), ``fds`` with the first byte."""

    data: bytes
    fds: tuple[int, ...] = ()
    msg_id: int = 0
    tail: tuple[Buffer, ...] = ()


@dataclass(slots=True)
class _Pending:
    msg_id: int
    body: RequestBody


@dataclass(slots=True)
class _FdGroup:
    end: int
    fds: tuple[int, ...] = field(default_factory=tuple)


_BOUNDED: Final = (RegionRead, RegionWrite, MigDataRead, MigDataWrite, DmaRead, DmaWrite)


def _data_count(body: RequestBody) -> int:
    if isinstance(body, RegionRead | DmaRead):
        return body.count
    if isinstance(body, MigDataRead):
        return body.size
    if isinstance(body, RegionWrite | DmaWrite | MigDataWrite):
        return len(body.data)
    return 0


class Connection:
    """One side of a vfio-user connection (see the module's theory of operation).

    Args:
        role: client or server.
        capabilities: what this side advertises (its own limits).
        strict: enforce libvfio-user's reply rules on every reply received.
        max_bitmap: the largest dirty bitmap this side accepts in a reply.
    """

    def __init__(
        self,
        role: Role,
        capabilities: Capabilities | None = None,
        *,
        strict: bool = False,
        max_bitmap: int = 1 << 20,
    ) -> None:
        self.role = role
        self.capabilities = capabilities or Capabilities()
        self.strict = strict
        self.peer: Capabilities | None = None
        """The peer's capabilities once VERSION is done (the server's reply, or the client's offer)."""
        self.minor: int | None = None
        self.state = ConnectionState.AWAIT_VERSION
        self.write_multiple = False
        self._buf = bytearray()
        self._received = 0
        self._consumed = 0
        self._skip: Header | None = None
        self._skip_left = 0
        self._fd_groups: deque[_FdGroup] = deque()
        self._eof = False
        self._big: bytearray | None = None
        self._decode_limits: DecodeLimits | None = None
        self._big_filled = 0
        self._big_header = Header(0, 0, 0)
        self._pending: deque[_Pending] = deque()
        self._next_id = 0
        own = self.capabilities.max_data_xfer_size
        extra = max(16 + own, 5 + MAX_VERSION_JSON, 24 + 16 * MAX_LOGGING_RANGES)
        if role is Role.CLIENT:
            extra = max(extra, 48 + max_bitmap)
        self.max_message_size = HEADER_SIZE + extra
        """The largest message accepted; anything bigger is skipped and refused (E2BIG)."""

    # -- receiving -------------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview, fds: tuple[int, ...] = ()) -> None:
        """Feed what one ``recvmsg`` returned: bytes and the descriptors that came with them.

        ``data`` empty (and no descriptors) means end of file.
        """
        if not data and not fds:
            self._eof = True
            return
        if self._big is not None:
            room = len(self._big) - self._big_filled
            view = memoryview(data).cast("B")
            self._big[self._big_filled : self._big_filled + min(room, len(view))] = view[:room]
            self._big_filled += min(room, len(view))
            if len(view) > room:
                self._buf += view[room:]
        else:
            self._buf += data
        self._received += len(data)
        if fds:
            self._fd_groups.append(_FdGroup(self._received, tuple(fds)))

    def get_buffer(self) -> memoryview | None:
        """Zero-copy receive: where the rest of a large message goes (``recvmsg_into``), or ``None``.

        Once a message of at least :data:`LARGE_MESSAGE` bytes has begun, its
        bytes are gathered in a buffer of exactly its size (never more than
        :attr:`max_message_size`); the edge may read straight into it and call
        :meth:`buffer_updated`. Otherwise use :meth:`receive_data`.
        """
        if self._big is None or self._big_filled >= len(self._big):
            return None
        return memoryview(self._big)[self._big_filled :]

    def buffer_updated(self, nbytes: int, fds: tuple[int, ...] = ()) -> None:
        """``nbytes`` (0: end of file) and ``fds`` arrived in the last :meth:`get_buffer`."""
        if nbytes == 0 and not fds:
            self._eof = True
            return
        self._big_filled += nbytes
        self._received += nbytes
        if fds:
            self._fd_groups.append(_FdGroup(self._received, tuple(fds)))

    def _take_fds(self, end: int) -> tuple[int, ...]:
        out: list[int] = []
        while self._fd_groups and self._fd_groups[0].end <= end:
            out += self._fd_groups.popleft().fds
        return tuple(out)

    def _drain_fds(self) -> tuple[int, ...]:
        out: list[int] = []
        while self._fd_groups:
            out += self._fd_groups.popleft().fds
        return tuple(out)

    def next_event(self) -> Event | NeedData:
        """The next event, or :data:`NEED_DATA`.

        Raises:
            VfioUserError: a reply broke the protocol (``VFIO_USER_STRICT`` for
                a strict rule); the connection is then in ``ERROR``.
        """
        if self.state in (ConnectionState.ERROR, ConnectionState.CLOSED):
            return Closed(self._drain_fds()) if self.state is ConnectionState.CLOSED else NEED_DATA
        if self._skip is not None:
            return self._skip_message()
        if self._big is not None:
            if self._big_filled < len(self._big):
                return self._at_end() if self._eof else NEED_DATA
            message, big_header = self._big, self._big_header
            self._big = None
            self._consumed += big_header.size
            return self._dispatch(
                big_header, memoryview(message)[HEADER_SIZE:], self._take_fds(self._consumed)
            )
        if len(self._buf) < HEADER_SIZE:
            return self._at_end() if self._eof else NEED_DATA
        header = Header.unpack(self._buf)
        if header.size < HEADER_SIZE:
            self.state = ConnectionState.ERROR
            error = VfioUserError(
                f"msg_size {header.size} is smaller than the header", value=header.size
            )
            return Rejected(
                header.msg_id,
                header.cmd,
                error,
                self._drain_fds(),
                self._answers(header),
                fatal=True,
            )
        if header.size > self.max_message_size:
            self._skip, self._skip_left = header, header.size
            return self._skip_message()
        if len(self._buf) < header.size:
            if header.size >= LARGE_MESSAGE and not self._eof:
                self._big = bytearray(header.size)  # within max_message_size: checked above
                self._big[: len(self._buf)] = self._buf
                self._big_filled, self._big_header = len(self._buf), header
                self._buf.clear()
                return NEED_DATA
            return self._at_end() if self._eof else NEED_DATA
        with memoryview(self._buf) as view:
            payload = bytes(view[HEADER_SIZE : header.size])
        del self._buf[: header.size]
        self._consumed += header.size
        return self._dispatch(header, payload, self._take_fds(self._consumed))

    def _dispatch(self, header: Header, payload: bytes | memoryview, fds: tuple[int, ...]) -> Event:
        if header.flags & TYPE_MASK == TYPE_REPLY:
            return self._on_reply(header, payload, fds)
        return self._on_command(header, payload, fds)

    def _at_end(self) -> Closed:
        truncated = bool(self._buf) or self._big is not None
        self._buf.clear()
        self._big = None
        self.state = ConnectionState.CLOSED
        return Closed(self._drain_fds(), truncated)

    def _answers(self, header: Header) -> bool:
        return header.flags & TYPE_MASK != TYPE_REPLY and not header.no_reply

    def _skip_message(self) -> Event | NeedData:
        assert self._skip is not None
        n = min(self._skip_left, len(self._buf))
        del self._buf[:n]
        self._skip_left -= n
        self._consumed += n
        if self._skip_left:
            return self._at_end() if self._eof else NEED_DATA
        header, self._skip = self._skip, None
        fds = self._take_fds(self._consumed)
        error = VfioUserError(
            f"message of {header.size} bytes exceeds the limit of {self.max_message_size}",
            errno=errno.E2BIG,
            value=header.size,
        )
        if header.flags & TYPE_MASK == TYPE_REPLY and self._pending:
            self.state = ConnectionState.ERROR
            raise error
        return Rejected(header.msg_id, header.cmd, error, fds, self._answers(header))

    def _limits(self) -> DecodeLimits:
        limits = self._decode_limits
        if limits is None or limits.write_multiple != self.write_multiple:
            caps = self.capabilities
            limits = DecodeLimits(caps.max_data_xfer_size, caps.max_msg_fds, self.write_multiple)
            self._decode_limits = limits
        return limits

    def _on_command(
        self, header: Header, payload: bytes | memoryview, fds: tuple[int, ...]
    ) -> Event:
        def reject(message: str) -> Rejected:
            return Rejected(
                header.msg_id,
                header.cmd,
                VfioUserError(message, value=header.cmd),
                fds,
                not header.no_reply,
            )

        if header.flags & TYPE_MASK != TYPE_COMMAND:
            return reject(f"message type {header.flags & TYPE_MASK} is neither command nor reply")
        accepted = CLIENT_COMMANDS if self.role is Role.SERVER else SERVER_COMMANDS
        if header.cmd not in accepted:
            return reject(f"command {header.cmd} is unknown or not sent to a {self.role.value}")
        cmd = Command(header.cmd)
        if self.role is Role.SERVER:
            if self.state is ConnectionState.AWAIT_VERSION and cmd is not Command.VERSION:
                return reject("the first command must be VERSION")
            if self.state is ConnectionState.READY and cmd is Command.VERSION:
                return reject("VERSION was already negotiated")
        elif self.state is not ConnectionState.READY:
            return reject("the server sent a command before VERSION completed")
        if len(fds) > self.capabilities.max_msg_fds:
            return Rejected(
                header.msg_id,
                header.cmd,
                VfioUserError("more descriptors than max_msg_fds", value=len(fds)),
                fds,
                not header.no_reply,
            )
        try:
            body = REQUEST_TYPES[cmd].decode(payload, fds, self._limits())
        except VfioUserError as exc:
            return Rejected(header.msg_id, header.cmd, exc, fds, not header.no_reply)
        if isinstance(body, VersionRequest):
            self.peer = body.capabilities
        return Request(header.msg_id, body, header.no_reply)

    def _on_reply(self, header: Header, payload: bytes | memoryview, fds: tuple[int, ...]) -> Event:
        pending = self._match(header)
        if pending is None:
            if self.role is Role.SERVER:
                error = VfioUserError("a reply to no command", value=header.msg_id)
                return Rejected(header.msg_id, header.cmd, error, fds, answer=False)
            self.state = ConnectionState.ERROR
            raise VfioUserError(
                f"reply msg_id {header.msg_id} cmd {header.cmd} answers no pending command",
                errno=errno.EPROTO,
                code="VFIO_USER_STRICT" if self.strict else None,
                value=header.msg_id,
            )
        cmd = pending.body.cmd
        try:
            if header.is_error:
                if self.strict and (not 0 < header.error_no <= 4096 or payload or fds):
                    raise VfioUserError(
                        "an error reply is a bare header with errno 1-4096",
                        errno=errno.EINVAL,
                        code="VFIO_USER_STRICT",
                        value=header.error_no,
                    )
                return Reply(
                    header.msg_id, cmd, ErrorReply(header.error_no or errno.EINVAL), pending.body
                )
            body = REPLY_TYPES[cmd].decode(payload, fds, pending.body, self.strict)
        except VfioUserError:
            self.state = ConnectionState.ERROR
            raise
        if isinstance(body, VersionReply):
            self.peer, self.minor = body.capabilities, body.minor
            self.write_multiple = body.capabilities.write_multiple
            self.state = ConnectionState.READY
        return Reply(header.msg_id, cmd, body, pending.body)

    def _match(self, header: Header) -> _Pending | None:
        if not self._pending:
            return None
        head = self._pending[0]
        if self.strict:
            if head.msg_id != header.msg_id or head.body.cmd != header.cmd:
                self.state = ConnectionState.ERROR
                raise VfioUserError(
                    f"reply msg_id {header.msg_id} cmd {header.cmd} does not answer the oldest command "
                    f"(msg_id {head.msg_id} cmd {int(head.body.cmd)})",
                    errno=errno.EPROTO,
                    code="VFIO_USER_STRICT",
                    value=header.msg_id,
                )
            return self._pending.popleft()
        for item in self._pending:
            if item.msg_id == header.msg_id and item.body.cmd == header.cmd:
                self._pending.remove(item)
                return item
        return None

    # -- sending ---------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Commands sent and not yet answered."""
        return len(self._pending)

    def _require(self, ok: bool, message: str) -> None:
        if not ok:
            raise VfioUserError(
                message,
                code="VFIO_USER_CLOSED"
                if self.state in (ConnectionState.CLOSED, ConnectionState.ERROR)
                else "VFIO_USER_STATE",
            )

    def send_command(self, body: RequestBody, *, no_reply: bool = False) -> Outgoing:
        """Frame a command this side sends.

        Raises:
            VfioUserError: ``VFIO_USER_STATE`` for a command this role does not
                send or that VERSION must precede; ``E2BIG`` for data beyond the
                peer's ``max_data_xfer_size``; ``VFIO_USER_CLOSED`` once closed.
        """
        cmd = body.cmd
        own = SERVER_COMMANDS if self.role is Role.SERVER else CLIENT_COMMANDS
        if cmd not in own:  # messages are built only when they are raised (this is a hot path)
            self._require(False, f"a {self.role.value} does not send {cmd.name}")
        if cmd is Command.VERSION:
            if self.state is not ConnectionState.AWAIT_VERSION or self._pending:
                self._require(False, "VERSION is sent once, first")
        elif self.state is not ConnectionState.READY:
            self._require(False, f"{cmd.name} needs a negotiated connection")
        if isinstance(body, RegionWriteMulti) and not self.write_multiple:
            self._require(False, "REGION_WRITE_MULTI was not negotiated")
        if isinstance(body, _BOUNDED) and self.peer is not None:
            limit = self.peer.max_data_xfer_size
            if _data_count(body) > limit:
                raise VfioUserError(
                    f"{cmd.name} count exceeds the peer's max_data_xfer_size {limit}",
                    errno=errno.E2BIG,
                    value=_data_count(body),
                )
        payload, fds = body.encode()
        if self.peer is not None and len(fds) > self.peer.max_msg_fds:
            raise VfioUserError("more descriptors than the peer's max_msg_fds", value=len(fds))
        msg_id = self._next_id
        self._next_id = (self._next_id + 1) & 0xFFFF
        flags = TYPE_COMMAND | (FLAG_NO_REPLY if no_reply else 0)
        if not no_reply:
            self._pending.append(_Pending(msg_id, body))
        header = Header(msg_id, cmd, HEADER_SIZE + len(payload), flags)
        return Outgoing(header.pack() + payload, fds, msg_id)

    def version_reply(self, request: Request) -> VersionReply:
        """The server's answer to a VERSION request: minor = min(client's, 2), its own limits."""
        body = request.body
        assert isinstance(body, VersionRequest)
        caps = self.capabilities.server_reply(body.capabilities)
        return VersionReply(0, min(body.minor, PROTOCOL_MINOR), caps)

    def send_reply(self, request: Request, body: ReplyBody) -> Outgoing | None:
        """Frame the reply to ``request``; ``None`` when it was sent NO_REPLY (never answered).

        A successful VERSION reply makes a server's connection ready.
        """
        if request.no_reply:
            return None
        self._require(self.state is not ConnectionState.CLOSED, "the connection is closed")
        if isinstance(body, ErrorReply):
            return self._error(request.msg_id, request.cmd, body.errno)
        tail: tuple[Buffer, ...] = ()
        if isinstance(body, MigDataReadReply) and isinstance(request.body, MigDataRead):
            payload, tail = body.encode_parts(request.body)
            fds: tuple[int, ...] = ()
        else:
            payload, fds = body.encode(request.body)
        if isinstance(body, VersionReply) and self.role is Role.SERVER:
            self.minor = body.minor
            self.write_multiple = body.capabilities.write_multiple
            self.state = ConnectionState.READY
        size = HEADER_SIZE + len(payload) + sum(len(memoryview(t)) for t in tail)
        header = Header(request.msg_id, request.cmd, size, TYPE_REPLY)
        return Outgoing(header.pack() + payload, fds, request.msg_id, tail)

    def send_error(self, event: Request | Rejected, error_no: int | None = None) -> Outgoing | None:
        """Frame an error reply to a request or a rejected message (``None`` where none is due)."""
        if isinstance(event, Rejected):
            if not event.answer:
                return None
            return self._error(event.msg_id, event.cmd, error_no or event.error.errno)
        if event.no_reply:
            return None
        return self._error(event.msg_id, event.cmd, error_no or errno.EINVAL)

    def _error(self, msg_id: int, cmd: int, error_no: int) -> Outgoing:
        error_no = error_no if 0 < error_no <= 4096 else errno.EINVAL
        header = Header(msg_id, cmd & 0xFFFF, HEADER_SIZE, TYPE_REPLY | FLAG_ERROR, error_no)
        return Outgoing(header.pack(), (), msg_id)
