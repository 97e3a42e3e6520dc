"""A source engine replaying a journal IN_DOUBT: who asks, with what, and what an old journal does.

The engine is the real one over the journal's in-memory twin (:class:`MemoryJournal`); the
destination it asks is a real agent process on loopback (``agents`` fixture) where one is needed.
"""

from __future__ import annotations

import asyncio
from typing import Any

import cbor2
import pytest
from agent_processes import AgentProcess, Agents

from devmig.agent._host import Host
from devmig.agent._in_doubt import InDoubtResolver
from devmig.agent._journal import MemoryJournal
from devmig.agent._migrations import MigrationEngine
from devmig.agent._settings import AgentSettings
from devmig.migration import Role, SourceHandoff, read_query

MID = "mig-replayed"


def _journal(destination_url: str, **extra: str) -> MemoryJournal:
    """OUTGOING then COMMITTED, as a source killed between GO and ACK left them (``extra``: new fields)."""
    journal = MemoryJournal()
    status: dict[str, Any] = {"device_id": "dev-1", "model": "example.org/devices/accel",
                              "destination": {"url": destination_url, "host": "dst"}}
    journal.append(MID, "source", "OUTGOING", {"status": status})
    journal.append(MID, "source", "COMMITTED", {"status": status, **extra})
    return journal


def _engine(journal: MemoryJournal) -> MigrationEngine:
    settings = AgentSettings(host_name="src", stall_timeout_s=1.0)
    return MigrationEngine(Host(settings), settings, journal)


def test_an_old_journal_stays_in_doubt_answered_from_the_journal() -> None:
    asyncio.run(_old_journal())


async def _old_journal() -> None:
    engine = _engine(_journal("http://127.0.0.1:1"))  # no query token: written before they existed
    await engine.start()
    try:
        m = engine.get(MID)
        assert m.phase == "IN_DOUBT" and m.outcome == "in_doubt" and m.runner is None and m.task is None
        assert m.from_journal and m.stage == "journal"
        # the destination's query is answered from the journal: committed, so PROCEED
        query = _destination_query()
        answer = engine.answer_query(MID, query)
        assert b"PROCEED" in answer
        await asyncio.sleep(0.3)
        assert engine.get(MID).phase == "IN_DOUBT"
    finally:
        await engine.close()


def _destination_query() -> bytes:
    """A destination's QUERY frame (DESIGN §7: ``u8 type | u32 length | canonical CBOR``)."""
    frame = SourceHandoff.restarted_in_doubt(MID).query()  # the source's; same type, other asker
    body = cbor2.dumps({"from": "destination", "migration": MID}, canonical=True)
    query = frame[:1] + len(body).to_bytes(4, "big") + body
    assert read_query(query).asker is Role.DESTINATION
    return query


def test_new_fields_start_a_resolver_that_keeps_asking_and_close_cancels_it() -> None:
    asyncio.run(_new_fields())


async def _new_fields() -> None:
    # nothing listens on port 1: the resolver keeps asking (in doubt) until the engine closes
    engine = _engine(_journal("http://127.0.0.1:1", query_token="q-token", callback_token="c-token"))
    m = engine.get(MID)
    assert isinstance(m.runner, InDoubtResolver) and m.finished_at is None and m.task is None
    await engine.start()
    assert m.task is not None and not m.task.done()
    for _ in range(100):
        if m.runner.queries >= 2:
            break
        await asyncio.sleep(0.05)
    assert m.runner.queries >= 2, "the resolver must keep asking an unreachable destination"
    assert m.phase == "IN_DOUBT" and m.stage == "in_doubt" and not m.finished
    assert m.last_query_error == "AGENT_UNREACHABLE"
    assert m.error is not None and m.error["code"] == "CONNECTION_LOST" and m.error["phase"] == "COMMITTED"
    # the journaled tokens: the callback token is accepted (only that one), never shown
    assert engine.check_callback(MID, "c-token") and not engine.check_callback(MID, "q-token")
    assert "q-token" not in repr(m.to_dict()) and "c-token" not in repr(m.to_dict())
    await engine.close()
    assert m.task.done() and engine.state == "closed"
    assert m.phase == "IN_DOUBT" and [r.record for r in engine.journal.records(MID)] == ["OUTGOING", "COMMITTED"]


@pytest.fixture
def destination(agents: Agents) -> AgentProcess:
    return agents.start("dst")


def test_a_query_token_the_destination_never_issued_is_refused_and_resolves_nothing(
        destination: AgentProcess) -> None:
    asyncio.run(_wrong_token(destination))


async def _wrong_token(destination: AgentProcess) -> None:
    # a real destination agent that never issued this token: 401 AUTH_FAILED on every query, so the
    # resolver stays in doubt (it never guesses) and keeps asking
    engine = _engine(_journal(destination.url, query_token="not-issued-there"))
    await engine.start()
    try:
        m = engine.get(MID)
        for _ in range(100):
            if m.runner is not None and m.runner.queries >= 2:
                break
            await asyncio.sleep(0.05)
        assert m.last_query_error == "AUTH_FAILED" and m.phase == "IN_DOUBT"
    finally:
        await engine.close()
