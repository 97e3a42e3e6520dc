"""The asyncio client: what a VMM does, with libvfio-user's strict reply rules by default.

:class:`VfioUserClient` connects to a backend's socket, negotiates VERSION
and offers one coroutine per operation (region access, interrupts, DMA
mappings and logging, the migration state and data). A background reader
feeds the sans-IO :class:`~devmig.vfio_user.Connection`, resolves each
command's future with its reply, and answers the server's DMA_READ/DMA_WRITE
from the memory of message-only mappings (:meth:`VfioUserClient.dma_map`
without a descriptor). An error reply raises
:class:`~devmig.vfio_user.VfioUserError` (``VFIO_USER_ERROR_REPLY``, with the
errno); a reply breaking the rules (``VFIO_USER_STRICT`` in strict mode), a
closed socket (``VFIO_USER_CLOSED``) fail every command in flight.

Data operations are split by the server's ``max_data_xfer_size``;
:meth:`VfioUserClient.mig_read` returns at most ``size`` bytes, fewer at the
end of the phase's data (a short read).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from devmig.migration import State
from devmig.vfio_user._capabilities import Capabilities
from devmig.vfio_user._connection import (
    NEED_DATA,
    Closed,
    Connection,
    Rejected,
    Reply,
    Request,
    Role,
)
from devmig.vfio_user._errors import VfioUserError
from devmig.vfio_user._fdsocket import FdSocket, close_fds
from devmig.vfio_user._features import (
    LoggingRange,
    LoggingReport,
    LoggingStart,
    bitmap_bytes,
    feature_get,
    feature_probe,
    feature_set,
    pack_device_state,
    parse_device_state,
)
from devmig.vfio_user._replies import (
    DeviceFeatureReply,
    DeviceInfo,
    DmaReadReply,
    DmaUnmapReply,
    DmaWriteReply,
    ErrorReply,
    IrqInfo,
    MigDataReadReply,
    RegionInfo,
    RegionReadReply,
    ReplyBody,
    VersionReply,
)
from devmig.vfio_user._requests import (
    UNMAP_ALL,
    UNMAP_GET_DIRTY_BITMAP,
    DeviceGetInfo,
    DeviceReset,
    DmaMap,
    DmaRead,
    DmaUnmap,
    DmaWrite,
    GetIrqInfo,
    GetRegionInfo,
    MigDataRead,
    MigDataWrite,
    RegionRead,
    RegionWrite,
    RequestBody,
    SetIrqs,
    VersionRequest,
)
from devmig.vfio_user._wire import Feature, FeatureOp, SetIrqsFlags

__all__ = ["VfioUserClient"]

R = TypeVar("R")


class VfioUserClient:
    """A vfio-user client over one connected socket; build it with :meth:`connect`."""

    def __init__(self, sock: FdSocket, conn: Connection) -> None:
        self.sock = sock
        self.conn = conn
        self.version: VersionReply | None = None
        self.dma_memory: dict[int, bytearray] = {}
        """IOVA → memory of each message-only DMA mapping (the server reaches it by DMA_READ/WRITE)."""
        self._waiting: dict[int, asyncio.Future[Reply]] = {}
        self._lock = asyncio.Lock()
        self._reader: asyncio.Task[None] | None = None
        self._failure: VfioUserError | None = None
        self._inflight: deque[tuple[int, asyncio.Future[Reply]]] = deque()

    @classmethod
    async def connect(
        cls,
        path: str,
        *,
        strict: bool = True,
        capabilities: Capabilities | None = None,
        minor: int = 2,
        timeout: float = 10.0,
    ) -> VfioUserClient:
        """Connect to a backend's socket and negotiate VERSION.

        Raises:
            VfioUserError: the server refused VERSION or broke the protocol.
            OSError: the socket cannot be reached.
        """
        raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        raw.setblocking(False)
        try:
            await asyncio.wait_for(asyncio.get_running_loop().sock_connect(raw, path), timeout)
        except BaseException:
            raw.close()
            raise
        return await cls.over(raw, strict=strict, capabilities=capabilities, minor=minor)

    @classmethod
    async def over(
        cls,
        sock: socket.socket,
        *,
        strict: bool = True,
        capabilities: Capabilities | None = None,
        minor: int = 2,
    ) -> VfioUserClient:
        """Negotiate VERSION over an already connected socket (e.g. one end of a socketpair)."""
        caps = capabilities or Capabilities(max_msg_fds=8)
        client = cls(
            FdSocket(sock, max_fds=caps.max_msg_fds), Connection(Role.CLIENT, caps, strict=strict)
        )
        client._reader = asyncio.create_task(client._read_loop(), name="vfio-user-client")
        try:
            reply = await client.request(VersionRequest(0, minor, caps), VersionReply)
        except BaseException:
            await client.close()
            raise
        client.version = reply
        return client

    @property
    def max_data(self) -> int:
        """The largest data count the server accepts (its ``max_data_xfer_size``)."""
        peer = self.conn.peer
        return min(
            peer.max_data_xfer_size if peer else 1 << 20, self.conn.capabilities.max_data_xfer_size
        )

    # -- the engine --------------------------------------------------------------------

    async def _read_loop(self) -> None:
        try:
            while True:
                view = self.conn.get_buffer()
                if view is not None:  # the rest of a large reply, read straight into its buffer
                    n, fds = await self.sock.recv_into(view)
                    self.conn.buffer_updated(n, fds)
                else:
                    data, fds = await self.sock.recv()
                    self.conn.receive_data(data, fds)
                while (event := self.conn.next_event()) is not NEED_DATA:
                    if isinstance(event, Reply):
                        future = self._waiting.pop(event.msg_id, None)
                        if future is not None and not future.done():
                            future.set_result(event)
                    elif isinstance(event, Request):
                        await self._serve_dma(event)
                    elif isinstance(event, Rejected):
                        close_fds(event.fds)
                        await self._send_raw(self.conn.send_error(event))
                        if event.fatal:
                            raise VfioUserError(
                                "the server's stream broke", code="VFIO_USER_CLOSED"
                            )
                    elif isinstance(event, Closed):
                        close_fds(event.fds)
                        raise VfioUserError(
                            "the server closed the connection",
                            errno=errno.ECONNRESET,
                            code="VFIO_USER_CLOSED",
                        )
        except VfioUserError as exc:
            self._fail(exc)
        except OSError as exc:
            self._fail(
                VfioUserError(
                    f"socket error: {exc}", errno=exc.errno or errno.EIO, code="VFIO_USER_CLOSED"
                )
            )

    def _fail(self, exc: VfioUserError) -> None:
        self._failure = exc
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(exc)
        self._waiting.clear()

    async def _send_raw(self, out: Any) -> None:
        if out is not None:
            async with self._lock:
                await self.sock.send(out.data, out.fds)

    async def _serve_dma(self, request: Request) -> None:
        body = request.body
        try:
            if isinstance(body, DmaRead):
                reply: ReplyBody = DmaReadReply(bytes(self._dma_view(body.addr, body.count)))
            elif isinstance(body, DmaWrite):
                self._dma_view(body.addr, len(body.data))[:] = body.data
                reply = DmaWriteReply()
            else:  # pragma: no cover - the codec only lets DMA commands through
                raise VfioUserError("unexpected command")
        except VfioUserError as exc:
            await self._send_raw(self.conn.send_error(request, exc.errno))
            return
        await self._send_raw(self.conn.send_reply(request, reply))

    def _dma_view(self, addr: int, count: int) -> memoryview:
        for base, memory in self.dma_memory.items():
            if base <= addr and addr + count <= base + len(memory):
                return memoryview(memory)[addr - base : addr - base + count]
        raise VfioUserError(f"IOVA {addr:#x}+{count} is not mapped", errno=errno.EFAULT, value=addr)

    async def _submit(
        self, body: RequestBody, *, no_reply: bool = False
    ) -> asyncio.Future[Reply] | None:
        """Send a command; return the future of its reply (``None`` for NO_REPLY)."""
        if self._failure is not None:
            raise self._failure
        async with self._lock:
            out = self.conn.send_command(body, no_reply=no_reply)
            future: asyncio.Future[Reply] | None = None
            if not no_reply:
                future = asyncio.get_running_loop().create_future()
                self._waiting[out.msg_id] = future
            await self.sock.send(out.data, out.fds)
        return future

    @staticmethod
    def _body(reply: Reply) -> ReplyBody:
        if isinstance(reply.body, ErrorReply):
            raise VfioUserError(
                f"{reply.cmd.name} failed with errno {reply.body.errno}",
                errno=reply.body.errno,
                code="VFIO_USER_ERROR_REPLY",
                value=reply.cmd.name,
            )
        return reply.body

    async def request(
        self, body: RequestBody, expect: type[R] | None = None, *, no_reply: bool = False
    ) -> R:
        """Send a command and return its reply body (of type ``expect`` when given).

        Raises:
            VfioUserError: ``VFIO_USER_ERROR_REPLY`` with the server's errno,
                ``VFIO_USER_STRICT``/``VFIO_USER_CLOSED`` when the connection broke.
        """
        future = await self._submit(body, no_reply=no_reply)
        if future is None:
            return None  # type: ignore[return-value]
        reply = self._body(await future)
        if expect is not None and not isinstance(
            reply, expect
        ):  # pragma: no cover - codec guarantees
            raise VfioUserError(f"unexpected reply {type(reply).__name__}", code="VFIO_USER_STRICT")
        return reply  # type: ignore[return-value]

    async def close(self) -> None:
        """Close the connection (the backend then exits)."""
        self.sock.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        self._fail(VfioUserError("the client closed the connection", code="VFIO_USER_CLOSED"))

    # -- device ------------------------------------------------------------------------

    async def device_info(self) -> DeviceInfo:
        """DEVICE_GET_INFO."""
        return await self.request(DeviceGetInfo(), DeviceInfo)

    async def region_info(self, index: int) -> RegionInfo:
        """DEVICE_GET_REGION_INFO, asking again with the full ``argsz`` when capabilities did not fit."""
        info = await self.request(GetRegionInfo(index), RegionInfo)
        if info.argsz > 32:
            info = await self.request(GetRegionInfo(index, argsz=info.argsz), RegionInfo)
        return info

    async def irq_info(self, index: int) -> IrqInfo:
        """DEVICE_GET_IRQ_INFO."""
        return await self.request(GetIrqInfo(index), IrqInfo)

    async def set_irq_eventfd(self, index: int, fd: int | None, start: int = 0) -> None:
        """Assign (or, with ``None``, de-assign) the eventfd of one vector."""
        flags = SetIrqsFlags.DATA_EVENTFD | SetIrqsFlags.ACTION_TRIGGER
        fds = () if fd is None else (fd,)
        await self.request(SetIrqs(flags, index, start, 1, fds=fds))

    async def reset(self) -> None:
        """DEVICE_RESET."""
        await self.request(DeviceReset())

    async def read(self, region: int, offset: int, count: int) -> bytes:
        """Read ``count`` bytes of a region (split by ``max_data_xfer_size``)."""
        parts = []
        step = self.max_data
        for at in range(offset, offset + count, step) if count else ():
            n = min(step, offset + count - at)
            parts.append((await self.request(RegionRead(region, at, n), RegionReadReply)).data)
        return b"".join(parts)

    async def write(self, region: int, offset: int, data: bytes, *, no_reply: bool = False) -> None:
        """Write ``data`` into a region (split by ``max_data_xfer_size``)."""
        step = self.max_data
        for at in range(0, len(data), step):
            await self.request(
                RegionWrite(region, offset + at, data[at : at + step]), no_reply=no_reply
            )

    # -- DMA ---------------------------------------------------------------------------

    async def dma_map(
        self, addr: int, size: int, *, fd: int | None = None, offset: int = 0, flags: int = 3
    ) -> None:
        """Map client memory at IOVA ``addr``: through ``fd``, or message-only (memory kept here)."""
        if fd is None:
            self.dma_memory[addr] = bytearray(size)
        await self.request(DmaMap(flags, offset, addr, size, fd))

    async def dma_unmap(self, addr: int, size: int, *, dirty_pgsize: int = 0) -> bytes:
        """Unmap one mapping; with ``dirty_pgsize`` return its dirty bitmap."""
        if dirty_pgsize:
            pages = -(-size // dirty_pgsize)
            body = DmaUnmap(addr, size, UNMAP_GET_DIRTY_BITMAP, dirty_pgsize, bitmap_bytes(pages))
        else:
            body = DmaUnmap(addr, size)
        reply = await self.request(body, DmaUnmapReply)
        self.dma_memory.pop(addr, None)
        return reply.bitmap

    async def dma_unmap_all(self) -> None:
        """Unmap every mapping (UNMAP_ALL)."""
        await self.request(DmaUnmap(0, 0, UNMAP_ALL), DmaUnmapReply)
        self.dma_memory.clear()

    async def logging_start(
        self, page_size: int = 4096, ranges: tuple[LoggingRange, ...] = ()
    ) -> None:
        """DMA_LOGGING_START."""
        await self.request(
            feature_set(Feature.DMA_LOGGING_START, LoggingStart(page_size, ranges).pack())
        )

    async def logging_stop(
        self, page_size: int = 4096, ranges: tuple[LoggingRange, ...] = ()
    ) -> None:
        """DMA_LOGGING_STOP."""
        await self.request(
            feature_set(Feature.DMA_LOGGING_STOP, LoggingStart(page_size, ranges).pack())
        )

    async def logging_report(self, iova: int, length: int, page_size: int = 4096) -> bytes:
        """DMA_LOGGING_REPORT: the bitmap of pages written in the range since the last report."""
        report = LoggingReport(iova, length, page_size)
        body = feature_get(
            Feature.DMA_LOGGING_REPORT, report.pack(), reply_data=bitmap_bytes(report.pages)
        )
        reply = await self.request(body, DeviceFeatureReply)
        return reply.data[24:]

    # -- migration ---------------------------------------------------------------------

    async def probe(self, feature: Feature, ops: FeatureOp = FeatureOp(0)) -> bool:
        """Whether the server supports ``feature`` (with ``ops``)."""
        try:
            await self.request(feature_probe(feature, ops), DeviceFeatureReply)
        except VfioUserError as exc:
            if exc.code == "VFIO_USER_ERROR_REPLY":
                return False
            raise
        return True

    async def migration_flags(self) -> int:
        """The MIGRATION feature's flags (STOP_COPY 1, P2P 2, PRE_COPY 4)."""
        reply = await self.request(feature_get(Feature.MIGRATION, reply_data=8), DeviceFeatureReply)
        return int.from_bytes(reply.data[:8], "little")

    async def get_state(self) -> State:
        """The device's migration state."""
        reply = await self.request(
            feature_get(Feature.MIG_DEVICE_STATE, reply_data=8), DeviceFeatureReply
        )
        return State(parse_device_state(reply.data[:8]))

    async def set_state(self, state: State) -> None:
        """MIG_DEVICE_STATE SET (the server walks the VFIO v2 path)."""
        await self.request(feature_set(Feature.MIG_DEVICE_STATE, pack_device_state(int(state))))

    async def mig_read(self, size: int | None = None) -> bytes:
        """One MIG_DATA_READ of up to ``size`` bytes (default: ``max_data_xfer_size``)."""
        reply = await self.request(MigDataRead(size or self.max_data), MigDataReadReply)
        return reply.data

    async def mig_read_round(
        self, sink: Callable[[bytes], Awaitable[None]], *, chunk: int | None = None, depth: int = 2
    ) -> int:
        """MIG_DATA_READ until a short read, ``depth`` reads in flight (pipelined); return the bytes.

        Each piece goes to ``sink`` in stream order. Reads still in flight after
        the short read stay queued: the next call (or :meth:`mig_read_inflight`)
        takes their data first, so no byte is lost or reordered.
        """
        chunk = chunk or self.max_data
        moved = 0
        while True:
            while len(self._inflight) < depth:
                future = await self._submit(MigDataRead(chunk))
                assert future is not None
                self._inflight.append((chunk, future))
            size, head = self._inflight.popleft()
            body = self._body(await head)
            assert isinstance(body, MigDataReadReply)
            if body.data:
                await sink(body.data)
                moved += len(body.data)
            if len(body.data) < size:
                return moved

    async def mig_read_inflight(self, sink: Callable[[bytes], Awaitable[None]]) -> int:
        """Take the data of every pipelined read still in flight (before changing state)."""
        moved = 0
        while self._inflight:
            _, head = self._inflight.popleft()
            body = self._body(await head)
            assert isinstance(body, MigDataReadReply)
            if body.data:
                await sink(body.data)
                moved += len(body.data)
        return moved

    async def mig_write(self, data: bytes) -> None:
        """MIG_DATA_WRITE (split by ``max_data_xfer_size``)."""
        step = self.max_data
        for at in range(0, len(data), step):
            await self.request(MigDataWrite(data[at : at + step]))
