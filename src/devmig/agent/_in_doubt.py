"""A restarted source agent resolves its in-doubt migrations by itself (DESIGN §6).

A source agent that dies after journaling COMMITTED, before the ACK, comes
back with the migration IN_DOUBT: GO may have reached the destination, so the
source must never resume -- and its copy died with the old process anyway.
What it still owes the operator is the *outcome*: does the device run on the
destination, or nowhere? :class:`InDoubtResolver` asks the destination agent
exactly as a live source in doubt does (a QUERY frame in
``POST /v1/migrations/{id}/query``, a STATUS frame back, with
:class:`~devmig.agent._handoff_io.QueryBackoff` between tries) through a
:class:`~devmig.migration.SourceHandoff` rebuilt IN_DOUBT
(:meth:`~devmig.migration.SourceHandoff.restarted_in_doubt`), until the answer
is final:

* ``STARTED`` → ``DONE`` (outcome ``migrated``): the device runs on the
  destination (or died with it after STARTED: the destination's to tell).
* ``ABORTED`` → ``ROLLED_BACK``, as the hand-off's rules say, but nothing is
  resumed: the destination holds no copy and the source's died with the old
  process, so the device runs nowhere. The error keeps the destination's code
  (``DESTINATION_LOST``, ...) and says so.

It authenticates with the per-migration *query token* the destination issued
in its ``incoming`` answer (journaled with COMMITTED), never with the
destination agent's bearer token, which is not kept at rest. A migration
journaled without that token (an older agent) stays IN_DOUBT, answered from
the journal, as before.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from devmig._errors import DevmigError
from devmig.agent._client import AgentClient
from devmig.agent._handoff_io import QueryBackoff
from devmig.migration import (
    PAUSED,
    Query,
    QueryDestination,
    ReleaseCopy,
    ResumeDevice,
    SourceHandoff,
    SourcePhase,
)

if TYPE_CHECKING:  # _migrations imports this module when it starts a run
    from devmig.agent._migrations import Migration, MigrationEngine

__all__ = ["InDoubtResolver"]


class InDoubtResolver:
    """Ask the destination about one migration replayed IN_DOUBT until the answer is final.

    Args:
        engine: the agent's :class:`~devmig.agent._migrations.MigrationEngine`
            (for its journal and settings).
        migration: the replayed status (phase ``IN_DOUBT``), with
            ``destination["url"]`` and ``query_token``.

    Raises:
        HandoffError: ``FRAME_INVALID`` when the journaled id is malformed.
    """

    def __init__(self, engine: MigrationEngine, migration: Migration) -> None:
        self.engine = engine
        self.m = migration
        self.handoff = SourceHandoff.restarted_in_doubt(migration.id)
        self.url: str = migration.destination["url"]
        self._token: str = migration.query_token or ""
        self.queries = 0
        """Queries sent so far (answered or not)."""

    async def run(self) -> None:
        """Query until the outcome is final, then journal it (cancelled by the engine's close)."""
        m, handoff = self.m, self.handoff
        backoff = QueryBackoff()
        try:
            while True:
                event = handoff.next_event()
                m.phase = handoff.phase.value
                if event is PAUSED:
                    if handoff.phase is SourcePhase.IN_DOUBT:
                        # no answer, or PENDING: the hand-off waits for the next one
                        await backoff.wait()
                        await self._ask()
                        continue
                    return
                if isinstance(event, QueryDestination):
                    f = event.failure
                    m.fail(f.code, f.message, f.phase, f.side.value)
                    m.stage = "in_doubt"
                    await backoff.wait()
                    await self._ask()
                elif isinstance(event, ReleaseCopy):
                    self._end("DONE")
                    return
                elif isinstance(event, ResumeDevice):
                    f = event.failure
                    m.error = {"code": f.code, "side": f.side.value, "phase": f.phase,
                               "message": f"{f.message}; the source's copy died when the source agent "
                                          "restarted: the device runs nowhere"}
                    self._end("ROLLED_BACK")
                    return
        finally:
            m.runner = None if m.finished else m.runner
            m.done.set()

    async def _ask(self) -> None:
        """Send one QUERY with the query token; apply the answer (none: still in doubt)."""
        self.queries += 1
        timeout = max(5.0, self.engine.settings.stall_timeout_s)
        try:
            async with AgentClient(self.url, None, timeout=timeout) as client:
                answer = await client.query(self.m.id, self.handoff.query(), token=self._token)
            self.handoff.receive_status(answer)
        except DevmigError as exc:
            # unreachable, refused, or a broken answer: still in doubt; ask again later
            self.m.last_query_error = exc.code
            self.handoff.connection_lost()

    def _end(self, record: str) -> None:
        m = self.m
        m.phase = self.handoff.phase.value
        m.stage = "ended"
        m.finished_at = time.time()
        try:
            self.engine.record(m, record)
        except DevmigError as exc:  # the outcome stands; a later restart asks again
            m.journal_error = exc.code

    # -- the live agent's view ---------------------------------------------------

    def answer_query(self, query: Query) -> bytes:
        """Answer the destination agent's QUERY with the rebuilt hand-off (``PROCEED``: committed)."""
        answer: bytes = self.handoff.answer_query(query)
        return answer

    def cancel(self) -> None:
        """Refuse: after COMMITTED only the destination's answer decides.

        Raises:
            HandoffError: ``TOO_LATE``.
        """
        self.handoff.cancel()
