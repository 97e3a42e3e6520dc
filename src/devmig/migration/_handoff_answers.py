"""The STATUS a side answers a QUERY with, and the answers of an agent that holds only its journal."""

from __future__ import annotations

from devmig.migration._handoff_events import Failure
from devmig.migration._handoff_frames import HandoffError, Outcome, Query, Role, Status, encode
from devmig.migration._handoff_tables import DESTINATION_LOST, QUERY_INVALID, SOURCE_LOST

__all__ = ["destination_journal_answer", "source_journal_answer", "status_bytes"]


def status_bytes(
    migration_id: str, outcome: Outcome, failure: Failure | None, phase: str | None
) -> bytes:
    """Encode the STATUS answering a query (the failure only for ``ABORTED``)."""
    if outcome is Outcome.ABORTED and failure is not None:
        return encode(Status(migration_id, outcome, failure.code, failure.message, phase))
    return encode(Status(migration_id, outcome, None, "", phase))


def _check_asker(query: Query, asker: Role, migration_id: str | None, phase: str | None) -> None:
    if query.asker is not asker:
        raise HandoffError(
            QUERY_INVALID,
            f"a {query.asker.value} cannot ask this side",
            phase=phase,
            value=query.asker.value,
            allowed=asker.value,
        )
    if migration_id is not None and query.migration != migration_id:
        raise HandoffError(
            QUERY_INVALID,
            "the query is about another migration",
            phase=phase,
            value=query.migration,
            allowed=migration_id,
        )


def source_journal_answer(query: Query, *, committed: bool) -> bytes:
    """Answer a destination's QUERY from the source agent's journal alone.

    For a source agent that holds no live
    :class:`~devmig.migration.SourceHandoff` for the migration: it restarted
    after a crash, so the copy it held died with it.

    Args:
        query: the destination's query (see :func:`~devmig.migration.read_query`).
        committed: whether the journal holds COMMITTED for the migration.

    Returns:
        The STATUS frame: ``PROCEED`` when committed (the destination holds
        the device now), else ``ABORTED`` with code ``SOURCE_LOST``.

    Raises:
        HandoffError: ``QUERY_INVALID`` when the query is not a destination's.
    """
    _check_asker(query, Role.DESTINATION, None, None)
    if committed:
        return status_bytes(query.migration, Outcome.PROCEED, None, None)
    lost = Failure(
        SOURCE_LOST,
        "the source agent restarted before it committed; the device died with its copy",
        Role.SOURCE,
        None,
    )
    return status_bytes(query.migration, Outcome.ABORTED, lost, None)


def destination_journal_answer(query: Query, *, started: bool) -> bytes:
    """Answer a source's QUERY from the destination agent's journal alone.

    For a destination agent that holds no live
    :class:`~devmig.migration.DestinationHandoff` for the migration (it
    restarted after a crash, or never got a valid HELLO for it): it holds no
    copy, so it can never start the device later.

    Args:
        query: the source's query.
        started: whether the journal holds STARTED for the migration.

    Returns:
        The STATUS frame: ``STARTED`` when the journal says so (the device
        was started here, even if it died in the crash: the source must not
        resume it), else ``ABORTED`` with code ``DESTINATION_LOST``.

    Raises:
        HandoffError: ``QUERY_INVALID`` when the query is not a source's.
    """
    _check_asker(query, Role.SOURCE, None, None)
    if started:
        return status_bytes(query.migration, Outcome.STARTED, None, None)
    lost = Failure(
        DESTINATION_LOST,
        "the destination agent holds no copy of this migration and never started it",
        Role.DESTINATION,
        None,
    )
    return status_bytes(query.migration, Outcome.ABORTED, lost, None)
