"""Data frames of a vfio-user device's migration between agents (DESIGN §9).

After the HELLO, a device whose data comes from a vfio-user backend's
MIG_DATA_READ crosses unparsed, framed like the control frames
(``u8 type | u32 length | payload``, big-endian length) with three types
disjoint from the control messages:

* ``DATA`` (9): bytes as they came from MIG_DATA_READ, at most the reader's
  ``max_data`` (the backend's ``max_data_xfer_size``) per frame, never empty;
* ``ROUND_END`` (10): empty; the source saw the short read that ends a
  pre-copy round;
* ``END`` (11): empty; the short read of STOP_COPY — the device's data is
  complete, and control frames follow.

The hand-off's phases do not change (spin's ``spec/handoff.pml`` models the
stream as the STREAMING phase whatever carries it): the destination says
READY only after the last ``DATA`` went to MIG_DATA_WRITE and RESUMING → STOP
succeeded.

Pure functions and a small incremental reader: no I/O.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import TypeAlias

from devmig._sentinels import NEED_DATA, NeedData
from devmig.migration._handoff_frames import HandoffError

__all__ = [
    "END_FRAME",
    "ROUND_END_FRAME",
    "DataChunk",
    "DataEnd",
    "DataFrameReader",
    "DataMessage",
    "RoundEnd",
    "data_header",
]

_HEADER = struct.Struct(">BI")
DEFAULT_MAX_DATA = 1 << 20


class DataMessage(IntEnum):
    """The data frame types (after the control messages' numbers)."""

    DATA = 9
    ROUND_END = 10
    END = 11


def data_header(length: int) -> bytes:
    """The header of a ``DATA`` frame of ``length`` bytes (send the payload after it, uncopied)."""
    if length <= 0:
        raise ValueError("a DATA frame carries at least one byte")
    return _HEADER.pack(DataMessage.DATA, length)


#: The ``ROUND_END`` frame.
ROUND_END_FRAME = _HEADER.pack(DataMessage.ROUND_END, 0)
#: The ``END`` frame.
END_FRAME = _HEADER.pack(DataMessage.END, 0)


@dataclass(frozen=True, slots=True)
class DataChunk:
    """A ``DATA`` payload: hand it to MIG_DATA_WRITE as it is."""

    data: bytes


@dataclass(frozen=True, slots=True)
class RoundEnd:
    """The source's pre-copy round ended."""


@dataclass(frozen=True, slots=True)
class DataEnd:
    """The device's data is complete; what follows is control frames (:meth:`DataFrameReader.trailing`)."""


DataEvent: TypeAlias = DataChunk | RoundEnd | DataEnd


class DataFrameReader:
    """An incremental reader of data frames (bytes in, events out).

    Args:
        max_data: the largest ``DATA`` payload accepted (the destination
            backend's ``max_data_xfer_size``); a header announcing more is
            refused (``FRAME_TOO_LARGE``) before its payload is waited for.
    """

    __slots__ = ("_buffer", "_ended", "max_data", "rounds", "total")

    def __init__(self, max_data: int = DEFAULT_MAX_DATA) -> None:
        self.max_data = max_data
        self._buffer = bytearray()
        self._ended = False
        self.rounds = 0
        """``ROUND_END`` frames read."""
        self.total = 0
        """``DATA`` bytes read."""

    def feed(self, data: bytes) -> None:
        """Add received bytes."""
        self._buffer += data

    def trailing(self) -> bytes:
        """Bytes received after ``END`` (the control frames' beginning); empties the buffer."""
        out = bytes(self._buffer)
        self._buffer.clear()
        return out

    def next_event(self) -> DataEvent | NeedData:
        """The next frame, or :data:`NEED_DATA`.

        Raises:
            HandoffError: ``FRAME_INVALID`` (a type that is not a data frame,
                an empty ``DATA``, a ``ROUND_END``/``END`` with a payload, a
                frame after ``END``), ``FRAME_TOO_LARGE``.
        """
        if self._ended:
            raise HandoffError("FRAME_INVALID", "no data frame follows END")
        buffer = self._buffer
        if not buffer:
            return NEED_DATA
        kind = buffer[0]
        if kind not in DataMessage._value2member_map_:
            raise HandoffError(
                "FRAME_INVALID",
                f"frame type {kind} is not a data frame",
                value=kind,
                allowed=[m.name for m in DataMessage],
            )
        if len(buffer) < _HEADER.size:
            return NEED_DATA
        message = DataMessage(kind)
        _, length = _HEADER.unpack_from(buffer)
        if message is DataMessage.DATA:
            if length == 0:
                raise HandoffError("FRAME_INVALID", "an empty DATA frame", value=0)
            if length > self.max_data:
                raise HandoffError(
                    "FRAME_TOO_LARGE",
                    f"a DATA frame announces {length} bytes",
                    value=length,
                    allowed=self.max_data,
                )
            if len(buffer) < _HEADER.size + length:
                return NEED_DATA
            payload = bytes(buffer[_HEADER.size : _HEADER.size + length])
            del buffer[: _HEADER.size + length]
            self.total += length
            return DataChunk(payload)
        if length:
            raise HandoffError(
                "FRAME_INVALID",
                f"a {message.name} frame carries no payload",
                value=length,
                allowed=0,
            )
        del buffer[: _HEADER.size]
        if message is DataMessage.ROUND_END:
            self.rounds += 1
            return RoundEnd()
        self._ended = True
        return DataEnd()
