"""A fault-injecting TCP proxy between a source agent and a destination agent's stream port.

The proxy understands the wire just enough to hit a chosen place: from the
source, the session preamble, the HELLO frame, then the device stream
(``DVMG`` preamble, records ``u8 type | u8 flags | u32 length | payload | u64
digest``) up to the TRAILER, then control frames (``u8 type | u32 length |
payload``); from the destination, control frames only. It forwards whole
units (a frame, a record), so a fault lands exactly where it is aimed:

* ``flip-hello``: one bit of the HELLO payload;
* ``flip-bulk``: one bit in the data of the second BULK record not flagged
  ``LIVE`` (one of stop-copy's, which the destination must refuse);
* ``flip-live-bulk``: one bit in the digest of the second BULK record (a
  pre-copy one, flagged ``LIVE``: the destination discards it, and the
  trailer's framing digest, which holds the record digest as received, no
  longer matches);
* ``flip-section``: one bit in the payload of the first SECTION record;
* ``truncate``: half of the second BULK record, then a clean close (FIN) both ways;
* ``reset``: half of the second BULK record, then a reset (RST) both ways;
* ``hold-round-end``: forward up to the first ROUND_END, then nothing more
  from the source (the source fills the socket buffers and blocks);
* ``hold-go`` / ``hold-ready`` / ``hold-ack``: withhold that control frame.

:attr:`StreamProxy.holding` is set when a hold took effect; every connection
ends when either side closes (it is propagated to the other).
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading

__all__ = ["FAULTS", "StreamProxy"]

FAULTS = frozenset({"flip-hello", "flip-bulk", "flip-live-bulk", "flip-section", "truncate", "reset",
                    "hold-round-end", "hold-go", "hold-ready", "hold-ack"})

_BULK, _ROUND_END, _SECTION, _TRAILER = 2, 4, 5, 6
_READY, _GO, _ACK = 2, 4, 5


class _Cut(Exception):
    """End the connection now (after a truncation or a reset)."""


def _rst(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()


class _Units:
    """Splits a byte stream into whole units: ``(kind, type, bytes)``."""

    def __init__(self, from_source: bool) -> None:
        self.buf = bytearray()
        self.stage = "session-preamble" if from_source else "frames"

    def feed(self, data: bytes) -> list[tuple[str, int, bytearray]]:
        self.buf += data
        out: list[tuple[str, int, bytearray]] = []
        while True:
            unit = self._next()
            if unit is None:
                return out
            out.append(unit)

    def _take(self, n: int) -> bytearray:
        unit = self.buf[:n]
        del self.buf[:n]
        return unit

    def _next(self) -> tuple[str, int, bytearray] | None:
        buf = self.buf
        if self.stage in ("session-preamble", "stream-preamble"):
            if len(buf) < 8:
                return None
            kind = self.stage
            self.stage = "hello" if kind == "session-preamble" else "records"
            return kind, 0, self._take(8)
        if self.stage in ("hello", "frames"):
            if len(buf) < 5:
                return None
            ftype, length = struct.unpack_from(">BI", buf)
            if len(buf) < 5 + length:
                return None
            kind = self.stage
            if kind == "hello":
                self.stage = "stream-preamble"
            return ("hello" if kind == "hello" else "frame"), ftype, self._take(5 + length)
        # records
        if len(buf) < 6:
            return None
        rtype, _flags, length = struct.unpack_from(">BBI", buf)
        if len(buf) < 6 + length + 8:
            return None
        if rtype == _TRAILER:
            self.stage = "frames"
        return "record", rtype, self._take(6 + length + 8)


class StreamProxy:
    """A TCP proxy on 127.0.0.1 with one fault armed at a time (see the module doc).

    Run-state: created (listening, forwarding to nothing) → :meth:`arm` per
    test → :meth:`close`.
    """

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self.target: tuple[str, int] | None = None
        self.fault: str | None = None
        self.holding = threading.Event()
        self.fired = threading.Event()
        self._release = threading.Event()
        self._closed = False
        self._conns: list[tuple[socket.socket, socket.socket]] = []
        threading.Thread(target=self._accept, daemon=True, name="proxy-accept").start()

    def arm(self, target: str, fault: str | None = None) -> None:
        """Forward new connections to ``target`` (``HOST:PORT``) with ``fault`` (one of :data:`FAULTS`)."""
        assert fault is None or fault in FAULTS, fault
        host, _, port = target.rpartition(":")
        self.target = (host, int(port))
        self.fault = fault
        self.holding.clear()
        self.fired.clear()
        self._release.clear()

    def release(self) -> None:
        """Let a held unit through."""
        self._release.set()

    def close(self) -> None:
        """Stop listening and drop every connection."""
        self._closed = True
        self._release.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        for a, b in self._conns:
            _rst(a)
            _rst(b)

    # -- forwarding ---------------------------------------------------------------

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.target is None:
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                _rst(client)
                continue
            self._conns.append((client, upstream))
            fault = self.fault
            ended = threading.Event()
            threading.Thread(target=self._pump, args=(client, upstream, True, fault, ended), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False, fault, ended), daemon=True).start()

    def _hold(self, ended: threading.Event) -> None:
        self.holding.set()
        self.fired.set()
        while not self._release.wait(0.05):
            if self._closed or ended.is_set():
                raise _Cut

    def _pump(self, src: socket.socket, dst: socket.socket, from_source: bool, fault: str | None,
              ended: threading.Event) -> None:
        units = _Units(from_source)
        bulk = 0
        unflagged = 0
        sections = 0
        try:
            while True:
                data = src.recv(1 << 20)
                if not data:
                    with contextlib.suppress(OSError):
                        dst.shutdown(socket.SHUT_WR)
                    return
                for kind, utype, unit in units.feed(data):
                    if from_source:
                        if kind == "hello" and fault == "flip-hello":
                            unit[5 + (len(unit) - 5) // 2] ^= 0x01
                            self.fired.set()
                        elif kind == "record" and utype == _BULK:
                            bulk += 1
                            live = unit[1] & 0x01
                            unflagged += not live
                            if unflagged == 2 and not live and fault == "flip-bulk":
                                unit[len(unit) // 2] ^= 0x01
                                self.fired.set()
                            elif bulk == 2 and live and fault == "flip-live-bulk":
                                unit[-1] ^= 0x01
                                self.fired.set()
                            elif bulk == 2 and fault in ("truncate", "reset"):
                                dst.sendall(unit[: len(unit) // 2])
                                self.fired.set()
                                if fault == "reset":
                                    _rst(dst)
                                    _rst(src)
                                else:
                                    dst.shutdown(socket.SHUT_WR)
                                    src.shutdown(socket.SHUT_RDWR)
                                raise _Cut
                        elif kind == "record" and utype == _SECTION:
                            sections += 1
                            if sections == 1 and fault == "flip-section":
                                unit[6 + (len(unit) - 14) // 2] ^= 0x01
                                self.fired.set()
                        elif kind == "frame" and utype == _GO and fault == "hold-go":
                            self._hold(ended)
                    elif kind == "frame" and ((utype == _READY and fault == "hold-ready")
                                              or (utype == _ACK and fault == "hold-ack")):
                        self._hold(ended)
                    dst.sendall(unit)
                    if from_source and kind == "record" and utype == _ROUND_END and fault == "hold-round-end":
                        self._hold(ended)
        except (_Cut, OSError):
            return
        finally:
            ended.set()
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)
