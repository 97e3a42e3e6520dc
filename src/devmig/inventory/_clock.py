"""Clocks: the real one (monotonic time, wall time, asyncio sleep) and a manual twin.

The poller asks a :class:`Clock` what time it is and to sleep; tests give it a
:class:`ManualClock` and move time with :meth:`ManualClock.advance`, so an
interval of minutes passes in no time and nothing depends on the machine's speed.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "ManualClock", "SystemClock"]


@runtime_checkable
class Clock(Protocol):
    """Time as a poller needs it."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back."""

    def now(self) -> datetime:
        """The wall-clock time (aware, UTC), for what is stored."""

    async def sleep(self, seconds: float) -> None:
        """Return after ``seconds`` of this clock's time."""


class SystemClock:
    """The machine's clocks and :func:`asyncio.sleep`."""

    def monotonic(self) -> float:
        """``time.monotonic()``."""
        return time.monotonic()

    def now(self) -> datetime:
        """``datetime.now(UTC)``."""
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        """``asyncio.sleep(seconds)``."""
        await asyncio.sleep(seconds)


class ManualClock:
    """A clock that moves only when told: :meth:`advance` wakes the sleepers due.

    Args:
        start: the wall-clock time at monotonic 0 (default 2025-01-01 UTC).

    Use from one event loop.
    """

    def __init__(self, start: datetime | None = None) -> None:
        self._start = start or datetime(2025, 1, 1, tzinfo=UTC)
        self._elapsed = 0.0
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []
        self._changed: asyncio.Event | None = None

    def monotonic(self) -> float:
        """Seconds advanced so far."""
        return self._elapsed

    def now(self) -> datetime:
        """``start`` plus the seconds advanced."""
        return self._start + timedelta(seconds=self._elapsed)

    def _event(self) -> asyncio.Event:
        if self._changed is None:
            self._changed = asyncio.Event()
        return self._changed

    async def sleep(self, seconds: float) -> None:
        """Wait until the clock has been advanced by ``seconds`` (0 only yields)."""
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._sleepers.append((self._elapsed + seconds, future))
        self._event().set()
        try:
            await future
        finally:
            self._sleepers = [(t, f) for t, f in self._sleepers if f is not future]

    @property
    def sleepers(self) -> int:
        """How many tasks are sleeping on this clock."""
        return sum(1 for _t, f in self._sleepers if not f.done())

    async def wait_for_sleepers(self, count: int = 1) -> None:
        """Return once at least ``count`` tasks sleep on this clock."""
        while self.sleepers < count:
            event = self._event()
            event.clear()
            await event.wait()

    async def advance(self, seconds: float) -> None:
        """Move time forward, wake every sleeper now due, and let them run."""
        self._elapsed += seconds
        for deadline, future in list(self._sleepers):
            if deadline <= self._elapsed and not future.done():
                future.set_result(None)
        await asyncio.sleep(0)
