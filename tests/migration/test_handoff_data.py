"""The data frames of a vfio-user device between agents: DATA, ROUND_END, END (DESIGN §9)."""

from __future__ import annotations

import pytest

from devmig.migration import (
    END_FRAME,
    NEED_DATA,
    ROUND_END_FRAME,
    DataChunk,
    DataEnd,
    DataFrameReader,
    HandoffError,
    RoundEnd,
    data_header,
)


def _events(reader: DataFrameReader) -> list[object]:
    out: list[object] = []
    while True:
        event = reader.next_event()
        if event is NEED_DATA:
            return out
        out.append(event)
        if isinstance(event, DataEnd):
            return out


def test_frames_round_trip_one_byte_at_a_time_and_leave_the_control_frames() -> None:
    wire = (
        data_header(3) + b"abc" + ROUND_END_FRAME + data_header(2) + b"de" + END_FRAME + b"\x02ctl"
    )
    reader = DataFrameReader(max_data=8)
    events: list[object] = []
    for i in range(len(wire)):
        reader.feed(wire[i : i + 1])
        events += _events(reader)
        if events and isinstance(events[-1], DataEnd):
            reader.feed(wire[i + 1 :])
            break
    assert events == [DataChunk(b"abc"), RoundEnd(), DataChunk(b"de"), DataEnd()]
    assert (reader.total, reader.rounds, reader.trailing()) == (5, 1, b"\x02ctl")


@pytest.mark.parametrize(
    ("wire", "code"),
    [
        (bytes([1, 0, 0, 0, 0]), "FRAME_INVALID"),  # a control frame (HELLO) inside the data
        (bytes([9, 0, 0, 0, 0]), "FRAME_INVALID"),  # an empty DATA
        (bytes([10, 0, 0, 0, 1, 0]), "FRAME_INVALID"),  # ROUND_END with a payload
        (bytes([9, 0, 0, 0, 9]), "FRAME_TOO_LARGE"),  # refused before the payload arrives
        (bytes([9, 0xFF, 0xFF, 0xFF, 0xFF]), "FRAME_TOO_LARGE"),
    ],
)
def test_malformed_frames_are_refused_with_a_code(wire: bytes, code: str) -> None:
    reader = DataFrameReader(max_data=8)
    reader.feed(wire)
    with pytest.raises(HandoffError) as e:
        reader.next_event()
    assert e.value.codes == [code]


def test_nothing_follows_end() -> None:
    reader = DataFrameReader()
    reader.feed(END_FRAME)
    assert isinstance(reader.next_event(), DataEnd)
    with pytest.raises(HandoffError):
        reader.next_event()
    with pytest.raises(ValueError):
        data_header(0)
