"""The poller: keeps the inventory in step with every agent's report and devices.

Each round it asks every registered host's agent, concurrently:

1. ``GET /v1/report`` with ``If-None-Match`` set to the ETag it stored last;
   304 means nothing changed (:meth:`Inventory.record_unchanged`), 200 brings a
   report that is validated (:func:`~devmig.model.load_host_report`) and
   recorded by profile (:meth:`Inventory.record_report`);
2. ``GET /v1/devices``, recorded with :meth:`Inventory.record_devices`.

An agent that cannot be reached, answers an error, or sends a report that is
invalid or names another host counts as a missed poll
(:meth:`Inventory.record_poll_failure`); after ``max_missed`` in a row the host
is unreachable, keeping its last report. Database errors are not the host's
fault: they propagate to whoever runs the poller.

:meth:`Poller.run` polls, then sleeps ``interval`` on its :class:`Clock` (the
:class:`~devmig.inventory.ManualClock` twin in tests), until cancelled.
Inventory calls are synchronous and short (one transaction each); they run
on the event loop.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from enum import Enum
from types import TracebackType

from devmig._errors import DevmigError, Problem
from devmig.agent import AgentClient
from devmig.inventory._clock import Clock, SystemClock
from devmig.inventory._interface import DEFAULT_MAX_MISSED, DeviceRecord, HostView, Inventory
from devmig.model import load_host_report

__all__ = ["PollOutcome", "PollStatus", "Poller"]


class PollStatus(Enum):
    """What one poll of one host found."""

    CHANGED = "changed"  # a report with another profile
    SAME = "same"  # a full report, same profile
    NOT_MODIFIED = "not-modified"  # 304
    FAILED = "failed"  # a missed poll


@dataclass(frozen=True, slots=True)
class PollOutcome:
    """The result of polling one host.

    Attributes:
        host: the host name.
        status: what the poll found.
        reachable: whether the host is reachable after this poll.
        error: why the poll failed (``FAILED`` only).
    """

    host: str
    status: PollStatus
    reachable: bool
    error: DevmigError | None = None


class _State(Enum):
    NEW = "new"
    RUNNING = "running"
    CLOSED = "closed"


class Poller:
    """Poll the agents of an inventory.

    Args:
        inventory: an open inventory.
        clock: where time comes from (default: the system clock).
        interval: seconds between the starts of two rounds.
        max_missed: failed polls in a row before a host is unreachable.
        token: the agents' bearer token (reads need none by default).
        timeout: seconds per HTTP request.
        concurrency: hosts polled at once.

    Use as ``async with Poller(...) as poller:`` (or call :meth:`aclose`):
    it keeps one HTTP client per agent URL.
    """

    def __init__(self, inventory: Inventory, clock: Clock | None = None, *,
                 interval: float = 30.0, max_missed: int = DEFAULT_MAX_MISSED,
                 token: str | None = None, timeout: float = 5.0, concurrency: int = 32) -> None:
        self.inventory = inventory
        self.clock: Clock = clock or SystemClock()
        self.interval = interval
        self.max_missed = max_missed
        self._token = token
        self._timeout = timeout
        self._limit = asyncio.Semaphore(concurrency)
        self._clients: dict[str, AgentClient] = {}
        self._state = _State.NEW

    async def __aenter__(self) -> Poller:
        return self

    async def __aexit__(self, t: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close every HTTP client; the poller cannot poll afterwards."""
        self._state = _State.CLOSED
        clients, self._clients = self._clients, {}
        for client in clients.values():
            await client.aclose()

    def _require(self, *allowed: _State) -> None:
        if self._state not in allowed:
            raise DevmigError([Problem(
                "POLLER_STATE", ("poller",),
                f"the poller is {self._state.value}; it must be {' or '.join(s.value for s in allowed)}",
                value=self._state.value)])

    def _client(self, url: str) -> AgentClient:
        client = self._clients.get(url)
        if client is None:
            client = self._clients[url] = AgentClient(url, self._token, timeout=self._timeout)
        return client

    async def poll_host(self, host: HostView) -> PollOutcome:
        """Poll one host and record what was found; return the outcome."""
        self._require(_State.NEW, _State.RUNNING)
        now = self.clock.now()
        try:
            async with self._limit:
                client = self._client(host.url)
                data, etag = await client.report(host.last_etag)
                report = None if data is None else load_host_report(data)
                if report is not None and report.host != host.name:
                    raise DevmigError([Problem(
                        "HOST_MISMATCH", ("report", "host"),
                        f"the agent at {host.url} reports host {report.host!r}, not {host.name!r}",
                        value=report.host)])
                records = [DeviceRecord.from_agent(raw) for raw in await client.devices()]
        except Exception as exc:  # one bad host (a malformed URL, a broken agent) never stops the poller
            error = exc if isinstance(exc, DevmigError) else DevmigError([Problem(
                "POLL_FAILED", ("hosts", host.name), f"polling {host.name} failed: {type(exc).__name__}: {exc}"[:500],
                hint="check the host's URL (devmig hosts list) and its agent")])
            reachable = self.inventory.record_poll_failure(host.name, now, max_missed=self.max_missed)
            return PollOutcome(host.name, PollStatus.FAILED, reachable, error)
        if report is None:
            self.inventory.record_unchanged(host.name, now)
            status = PollStatus.NOT_MODIFIED
        else:
            changed = self.inventory.record_report(host.name, report, etag, now)
            status = PollStatus.CHANGED if changed else PollStatus.SAME
        self.inventory.record_devices(host.name, records)
        return PollOutcome(host.name, status, True)

    async def poll_once(self) -> list[PollOutcome]:
        """Poll every registered host once, concurrently; return the outcomes by host name."""
        self._require(_State.NEW, _State.RUNNING)
        hosts = self.inventory.list_hosts()
        return list(await asyncio.gather(*(self.poll_host(h) for h in hosts)))

    async def run(self, rounds: int | None = None) -> None:
        """Poll every ``interval`` seconds of the clock, until cancelled (or ``rounds`` done).

        Raises:
            DevmigError: ``POLLER_STATE`` when already running or closed; the
                inventory's database errors.
        """
        self._require(_State.NEW)
        self._state = _State.RUNNING
        try:
            done = 0
            while rounds is None or done < rounds:
                started = self.clock.monotonic()
                await self.poll_once()
                done += 1
                if rounds is not None and done >= rounds:
                    break
                await self.clock.sleep(max(0.0, started + self.interval - self.clock.monotonic()))
        finally:
            if self._state is _State.RUNNING:
                self._state = _State.NEW
