"""Migrate a device between two vfio-user backends, as a VMM would.

:func:`migrate` drives the source through ``RUNNING → PRE_COPY``, reads
MIG_DATA_READ until a short read (the end of a round) and repeats while the
last round carried more than ``threshold`` bytes and fewer than
``max_rounds`` rounds ran (vfio-user has no pre-copy sizing: the client
leaves PRE_COPY by its own rule); then ``STOP_COPY`` until the short read
that ends the stream, then ``STOP``. Reads are pipelined (``depth`` in
flight, as the specification allows); the data of reads issued beyond a
short read is forwarded before the next state change, in order. Every byte read goes unparsed to the
destination's MIG_DATA_WRITE (the destination was put in RESUMING first),
which ends with ``RESUMING → STOP`` — the moment the destination validates
the whole stream. A source without PRE_COPY goes straight to STOP_COPY.

Each side may be any vfio-user server; devmig's are
``devmig vfio-user serve``. ``sink`` (instead of a destination) receives the
bytes, for benchmarks and for carrying them elsewhere.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from devmig.migration import State
from devmig.vfio_user._client import VfioUserClient
from devmig.vfio_user._wire import MigrationFeature

__all__ = ["MigrationRun", "migrate"]


@dataclass(slots=True)
class MigrationRun:
    """What one migration moved."""

    rounds: list[int] = field(default_factory=list)
    """Bytes of each pre-copy round."""
    stop_copy_bytes: int = 0
    seconds: float = 0.0
    stop_copy_seconds: float = 0.0

    @property
    def total_bytes(self) -> int:
        """Every byte moved."""
        return sum(self.rounds) + self.stop_copy_bytes


async def migrate(
    source: VfioUserClient,
    destination: VfioUserClient | None = None,
    *,
    sink: Callable[[bytes], Awaitable[None]] | None = None,
    threshold: int = 256 << 10,
    max_rounds: int = 8,
    chunk: int | None = None,
    precopy: bool = True,
    depth: int = 2,
) -> MigrationRun:
    """Move the source's state to ``destination`` (or into ``sink``); both end in STOP.

    Raises:
        VfioUserError: a step failed (``VFIO_USER_ERROR_REPLY`` carries the
            backend's errno; a refused load fails the destination's ``→ STOP``).
    """
    if sink is None:
        if destination is None:
            raise ValueError("give a destination or a sink")
        sink = destination.mig_write
        await destination.set_state(State.RESUMING)
    chunk = chunk or source.max_data
    run = MigrationRun()
    started = time.perf_counter()
    if precopy and await source.migration_flags() & MigrationFeature.PRE_COPY:
        await source.set_state(State.PRE_COPY)
        while True:
            run.rounds.append(await source.mig_read_round(sink, chunk=chunk, depth=depth))
            if run.rounds[-1] <= threshold or len(run.rounds) >= max_rounds:
                break
        run.rounds[-1] += await source.mig_read_inflight(sink)
    stop_started = time.perf_counter()
    await source.set_state(State.STOP_COPY)
    run.stop_copy_bytes = await source.mig_read_round(sink, chunk=chunk, depth=depth)
    run.stop_copy_bytes += await source.mig_read_inflight(sink)
    await source.set_state(State.STOP)
    if destination is not None and sink == destination.mig_write:
        await destination.set_state(State.STOP)
    run.stop_copy_seconds = time.perf_counter() - stop_started
    run.seconds = time.perf_counter() - started
    return run
