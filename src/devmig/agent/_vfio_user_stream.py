"""A vfio-user device's bytes between agents: the two pumps of DESIGN §9.

:func:`send_backend_data` is the source agent as the backend's client, as a
VMM would be: ``RUNNING → PRE_COPY``, MIG_DATA_READ until a short read (one
``DATA`` frame per read, a ``ROUND_END`` frame after the short read), again
while the last round carried more than the rule's threshold and fewer than
its round limit ran; then ``STOP_COPY`` until the short read, an ``END``
frame, then ``STOP``. A backend without PRE_COPY goes straight to STOP_COPY.

:func:`receive_backend_data` is the destination agent: ``RESUMING``, every
``DATA`` payload to MIG_DATA_WRITE as it came, and at ``END``
``RESUMING → STOP`` — the moment the backend validates what it received.
It returns only once that succeeded (the caller then says READY); a refused
load is the backend's errno in a :class:`~devmig.vfio_user.VfioUserError`.

Neither side parses the bytes: a third party's backend migrates the same way
as devmig's own, whose bytes happen to be the devmig stream (DESIGN §4).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from devmig.agent._vfio_user_host import PrecopyRule
from devmig.migration import (
    END_FRAME,
    NEED_DATA,
    ROUND_END_FRAME,
    DataChunk,
    DataEnd,
    DataFrameReader,
    State,
    data_header,
)
from devmig.vfio_user import MigrationFeature, VfioUserClient

__all__ = ["BackendRun", "receive_backend_data", "send_backend_data"]

Send = Callable[[Sequence[bytes]], Awaitable[None]]
Receive = Callable[[], Awaitable[bytes]]


@dataclass(slots=True)
class BackendRun:
    """What one side moved."""

    rounds: list[int] = field(default_factory=list)
    """Bytes of each pre-copy round (source)."""
    stop_copy_bytes: int = 0
    total_bytes: int = 0
    trailing: bytes = b""
    """Bytes received after END (destination): the beginning of the control frames."""


async def send_backend_data(
    client: VfioUserClient, send: Send, rule: PrecopyRule, *, depth: int = 2
) -> BackendRun:
    """Read the source backend's data into DATA/ROUND_END/END frames; the backend ends in STOP.

    Raises:
        VfioUserError: the backend refused a step or broke the protocol.
    """
    run = BackendRun()
    chunk = min(client.max_data, 1 << 20)

    async def sink(data: bytes) -> None:
        if data:
            run.total_bytes += len(data)
            await send([data_header(len(data)), data])

    if await client.migration_flags() & MigrationFeature.PRE_COPY:
        await client.set_state(State.PRE_COPY)
        while True:
            run.rounds.append(await client.mig_read_round(sink, chunk=chunk, depth=depth))
            await send([ROUND_END_FRAME])
            if run.rounds[-1] <= rule.threshold_bytes or len(run.rounds) >= rule.max_rounds:
                break
        run.rounds[-1] += await client.mig_read_inflight(sink)
    await client.set_state(State.STOP_COPY)
    run.stop_copy_bytes = await client.mig_read_round(sink, chunk=chunk, depth=depth)
    run.stop_copy_bytes += await client.mig_read_inflight(sink)
    await send([END_FRAME])
    await client.set_state(State.STOP)
    return run


async def receive_backend_data(client: VfioUserClient, receive: Receive) -> BackendRun:
    """Load DATA payloads into the destination backend; return once ``RESUMING → STOP`` succeeded.

    Raises:
        HandoffError: a malformed frame, or the connection closed before END.
        VfioUserError: the backend refused a write or the load (its errno).
    """
    from devmig.migration import HandoffError

    run = BackendRun()
    reader = DataFrameReader(client.max_data)
    await client.set_state(State.RESUMING)
    while True:
        event = reader.next_event()
        if event is NEED_DATA:
            data = await receive()
            if not data:
                raise HandoffError("STREAM_TRUNCATED", "the source closed before END")
            reader.feed(data)
            continue
        if isinstance(event, DataChunk):
            await client.mig_write(event.data)
        elif isinstance(event, DataEnd):
            break
    await client.set_state(State.STOP)
    run.rounds = [0] * reader.rounds
    run.total_bytes = reader.total
    run.trailing = reader.trailing()
    return run
