"""The decoder's input queue: received bytes not yet parsed.

Bytes are kept as a deque of read-only views (``receive_data`` keeps an
immutable ``bytes`` object without copying it). They are joined into one
buffer only when a record needs a contiguous piece that spans two receives,
and that piece is already bounded by the record limits.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Protocol

__all__ = ["InputQueue"]


class _Hasher(Protocol):
    def update(self, data: memoryview, /) -> None: ...


class InputQueue:
    """A FIFO of byte views.

    Attributes:
        size: bytes queued.
        consumed: bytes taken out so far.
    """

    def __init__(self) -> None:
        self._chunks: deque[memoryview] = deque()
        self.size = 0
        self.consumed = 0

    def append(self, view: memoryview) -> None:
        """Queue ``view`` (a read-only or private byte view; it is not copied)."""
        if len(view):
            self._chunks.append(view)
            self.size += len(view)

    def take(self, n: int) -> memoryview | None:
        """Remove and return the next ``n`` bytes, contiguous; ``None`` if fewer are queued."""
        if self.size < n:
            return None
        chunks = self._chunks
        first = chunks[0] if chunks else memoryview(b"")
        if len(first) >= n:
            out = first[:n]
            if len(first) == n:
                chunks.popleft()
            else:
                chunks[0] = first[n:]
        else:
            buf = bytearray(n)
            pos = 0
            while pos < n:
                chunk = chunks[0]
                k = min(len(chunk), n - pos)
                buf[pos : pos + k] = chunk[:k]
                pos += k
                if k == len(chunk):
                    chunks.popleft()
                else:
                    chunks[0] = chunk[k:]
            out = memoryview(buf)
        self.size -= n
        self.consumed += n
        return out

    def peek(self, n: int) -> bytes:
        """Return up to ``n`` queued bytes without removing them."""
        out = b""
        for chunk in self._chunks:
            out += bytes(chunk[: n - len(out)])
            if len(out) >= n:
                break
        return out

    def move_into(self, dest: memoryview, hashers: Sequence[_Hasher]) -> int:
        """Move queued bytes into ``dest`` (up to its length), feeding each piece to ``hashers``.

        Returns:
            How many bytes were moved.
        """
        moved = 0
        chunks = self._chunks
        room = len(dest)
        while chunks and moved < room:
            chunk = chunks[0]
            k = min(len(chunk), room - moved)
            piece = chunk[:k]
            dest[moved : moved + k] = piece
            for hasher in hashers:
                hasher.update(piece)
            if k == len(chunk):
                chunks.popleft()
            else:
                chunks[0] = chunk[k:]
            moved += k
        self.size -= moved
        self.consumed += moved
        return moved

    def clear(self) -> None:
        """Drop everything queued."""
        self._chunks.clear()
        self.size = 0
