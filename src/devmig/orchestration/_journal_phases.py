"""The manager's migration journal as a state machine: phases, transitions, and what to do next.

Theory of operation
-------------------
A migration the manager drives is journalled, phase by phase, in the
inventory's ``migration_journal`` table; each phase is committed *before* the
call that enters it (or as soon as it is observed on the agents). The
forward path is :data:`FORWARD`; a migration the agents roll back goes
``rolling_back`` → ``rolled_back``; ``resolving`` is where it waits while an
agent cannot be asked. :data:`TRANSITIONS` is the table of allowed moves
(read by :func:`check_transition`, the tests and the docs).

The manager never decides an outcome: the agents do (DESIGN §6). What it
does on every tick of a live migration, and after a restart for every
unfinished one, is the same pure function, :func:`decide`: given the phase
journalled last and what *both* agents say (:class:`AgentView`), it returns a
:class:`Decision` — the phase to walk forward to, an action (cancel the
destination's copy, fence the source), or "resolving" when an answer is
missing. Its rules, in order:

1. the destination's copy is ``RUNNING`` → roll forward (``done`` once the
   source says ``DONE``; ``destination_running`` while it has not released);
   the source also says ``ROLLED_BACK`` → two copies would run: never guess,
   ``resolving`` with ``SPLIT_OUTCOME``; the source cannot be asked, or does
   not know the migration → ``resolving`` (it may still hold a stopped copy);
2. the source says ``DONE`` → roll forward to ``done``;
3. the source says ``ROLLED_BACK`` → roll back (``SPLIT_OUTCOME`` if the
   journal already saw the destination's copy run); ``rolled_back`` once the
   destination holds no copy (unknown there, or destroyed); while it holds an
   unfinished one, cancel it; while it cannot be asked, ``resolving``;
4. the source does not know the migration → while the journal says the
   outgoing call may not have reached it (``planned``, ``destination_created``): fence the id on
   the source (it records the id as rolled back, so a late outgoing call cannot start it) and roll
   back as in 3;
   once the journal saw it streaming the source must know it: ``resolving``
   with ``SOURCE_LOST`` (an agent that lost its journal; never a guess);
5. the source cannot be asked → ``resolving`` (retry with backoff);
6. otherwise the agents are still at it → walk forward to the phase the
   source's protocol phase implies (:data:`SOURCE_PHASE_TO_JOURNAL`), and
   keep observing.

Nothing here does I/O; :mod:`devmig.orchestration._orchestrator` carries decisions out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from devmig._errors import DevmigError, Problem
from devmig.inventory import Journal

__all__ = [
    "FINISHED",
    "FORWARD",
    "MIGRATIONS",
    "PHASES",
    "SOURCE_PHASE_TO_JOURNAL",
    "TRANSITIONS",
    "Action",
    "AgentView",
    "Decision",
    "Reach",
    "check_transition",
    "decide",
    "path_to",
]

FORWARD: tuple[str, ...] = (
    "planned",
    "destination_created",
    "streaming",
    "destination_validated",
    "handed_off",
    "destination_running",
    "source_released",
    "done",
)
"""The happy path, in order."""

PHASES: tuple[str, ...] = (*FORWARD, "rolling_back", "rolled_back", "resolving")
"""Every journal phase."""

FINISHED = frozenset({"done", "rolled_back"})
"""Phases after which nothing changes any more."""

MIGRATIONS = Journal(table="migration_journal", unknown="JOURNAL_UNKNOWN", loc="journal",
                     noun="journal entry for migration", finished_flags=("finished",))
"""The migrations' journal: an entry counts as finished when its payload says ``finished``."""

_UNSTARTED = frozenset({"planned", "destination_created"})
"""Journal phases in which the source may never have received the outgoing call."""
_ROLLED_FORWARD = frozenset({"destination_running", "source_released", "done"})

TRANSITIONS: Mapping[str, frozenset[str]] = {
    "planned": frozenset({"destination_created", "rolling_back", "resolving"}),
    "destination_created": frozenset({"streaming", "rolling_back", "resolving"}),
    "streaming": frozenset({"destination_validated", "rolling_back", "resolving"}),
    "destination_validated": frozenset({"handed_off", "rolling_back", "resolving"}),
    # after COMMITTED the agents may still roll back (the destination never started: ABORT)
    "handed_off": frozenset({"destination_running", "rolling_back", "resolving"}),
    "destination_running": frozenset({"source_released", "resolving"}),
    "source_released": frozenset({"done", "resolving"}),
    "rolling_back": frozenset({"rolled_back", "resolving"}),
    # once the agents answer again, resolving continues where they are
    "resolving": frozenset(set(PHASES) - {"planned", "resolving"}),
    "done": frozenset(),
    "rolled_back": frozenset(),
}
"""Allowed moves: ``TRANSITIONS[a]`` holds every phase that may follow ``a``."""

SOURCE_PHASE_TO_JOURNAL: Mapping[str, str] = {
    "CONNECTING": "destination_created",
    "STREAMING": "streaming",
    "WAIT_READY": "destination_validated",
    "COMMITTING": "destination_validated",
    "COMMITTED": "handed_off",
    "IN_DOUBT": "handed_off",
    "DONE": "done",
    "ROLLED_BACK": "rolled_back",
}
"""The journal phase the source agent's protocol phase implies (DESIGN §6)."""

_DESTINATION_UNFINISHED = frozenset({"WAIT_HELLO", "RESUMING", "WAIT_GO", "WAIT_DECISION", "STARTING"})
_DESTINATION_GONE = frozenset({"DESTROYED", "REJECTED"})


def check_transition(current: str, new: str) -> None:
    """Raise unless the journal may go from ``current`` to ``new``.

    Raises:
        DevmigError: ``JOURNAL_TRANSITION`` naming both phases and what is allowed.
    """
    allowed = TRANSITIONS.get(current)
    if allowed is None or new not in allowed:
        raise DevmigError([Problem(
            "JOURNAL_TRANSITION", ("phase", current),
            f"a migration cannot go from {current} to {new}",
            value=new, allowed=sorted(allowed or ()),
        )])


def path_to(current: str, target: str) -> list[str]:
    """The forward phases to journal, one by one, to get from ``current`` to ``target``.

    Both on :data:`FORWARD`: the phases after ``current`` up to and including
    ``target`` (empty when ``target`` is not ahead). From ``resolving`` or
    ``rolling_back`` see :meth:`Decision.steps`.
    """
    if current not in FORWARD or target not in FORWARD:
        return []
    i, j = FORWARD.index(current), FORWARD.index(target)
    return list(FORWARD[i + 1:j + 1])


class Reach(Enum):
    """How an agent answered ``GET /v1/migrations/{id}``."""

    KNOWN = "known"  # 200 with a status
    UNKNOWN = "unknown"  # 404: the agent never heard of the migration
    UNREACHABLE = "unreachable"  # no answer (or an error that is not an answer)


@dataclass(frozen=True, slots=True)
class AgentView:
    """One agent's answer about one migration (plain data, built by the orchestrator).

    Attributes:
        reach: whether the agent answered, and knew the migration.
        phase: the agent's protocol phase (``KNOWN`` only).
        finished: whether the migration ended on that agent.
    """

    reach: Reach
    phase: str | None = None
    finished: bool = False

    @classmethod
    def of(cls, status: Mapping[str, Any]) -> AgentView:
        """The view of a status an agent returned."""
        return cls(Reach.KNOWN, str(status.get("phase")), bool(status.get("finished")))

    @classmethod
    def unknown(cls) -> AgentView:
        """An agent that does not know the migration (404)."""
        return cls(Reach.UNKNOWN)

    @classmethod
    def unreachable(cls) -> AgentView:
        """An agent that could not be asked."""
        return cls(Reach.UNREACHABLE)


class Action(Enum):
    """What the orchestrator must do besides journalling."""

    OBSERVE = "observe"  # nothing: ask again after the poll interval
    CANCEL_DESTINATION = "cancel_destination"  # drop the destination's unfinished copy
    FENCE_SOURCE = "fence_source"  # record the id as rolled back on the source (it never got it)
    FINISH = "finish"  # the target phase is final


@dataclass(frozen=True, slots=True)
class Decision:
    """What :func:`decide` concluded.

    Attributes:
        target: the journal phase to reach (walking forward; or ``rolling_back``
            / ``rolled_back``; or ``resolving``).
        action: what to do besides journalling.
        outcome: ``migrated``, ``rolled_back`` once known, else ``None``.
        code: why the migration is resolving (``AGENT_UNREACHABLE``, ``SOURCE_LOST``, ``SPLIT_OUTCOME``).
        reason: a sentence for people.
    """

    target: str
    action: Action = Action.OBSERVE
    outcome: str | None = None
    code: str | None = None
    reason: str = ""

    def steps(self, current: str, last_forward: str) -> list[str]:
        """The phases to journal, in order, from ``current`` to :attr:`target`.

        Args:
            current: the phase journalled last.
            last_forward: the last phase of :data:`FORWARD` journalled (where
                a ``resolving`` migration continues from).
        """
        target = self.target
        if target == current:
            return []
        if target == "resolving":
            return ["resolving"]
        if target in FORWARD:
            start = last_forward if current == "resolving" else current
            walk = path_to(start, target)
            if current == "resolving" and not walk:
                return [target]  # back to where it was before the agents went silent
            return walk
        # rolling back
        if target == "rolling_back":
            return [] if current == "rolling_back" else ["rolling_back"]
        assert target == "rolled_back"
        return ["rolled_back"] if current == "rolling_back" else ["rolling_back", "rolled_back"]


def _forward(target: str, action: Action = Action.OBSERVE) -> Decision:
    return Decision(target, Action.FINISH if target == "done" else action,
                    outcome="migrated" if target in ("destination_running", "source_released", "done") else None)


def decide(journal_phase: str, last_forward: str, source: AgentView, destination: AgentView) -> Decision:
    """What to do about a migration, given the journal and both agents' answers (the rules above).

    Args:
        journal_phase: the phase journalled last.
        last_forward: the last :data:`FORWARD` phase journalled (``planned`` at least).
        source: the source agent's answer.
        destination: the destination agent's answer (``UNKNOWN`` when no
            destination copy was asked for yet).

    Returns:
        The :class:`Decision`; never an outcome an agent did not state.
    """
    s, d = source, destination
    s_phase = s.phase if s.reach is Reach.KNOWN else None
    d_phase = d.phase if d.reach is Reach.KNOWN else None
    rolling = journal_phase == "rolling_back"
    # 1. a running destination copy
    if d_phase == "RUNNING":
        if s_phase == "ROLLED_BACK":
            return Decision("resolving", code="SPLIT_OUTCOME",
                            reason="the source says rolled back while the destination's copy runs")
        if s_phase == "DONE":
            return _forward("done")
        if s.reach is Reach.UNREACHABLE:
            return Decision("resolving", outcome="migrated", code="AGENT_UNREACHABLE",
                            reason="the destination runs the device; the source cannot be asked whether it released")
        if s.reach is Reach.UNKNOWN:
            return Decision("resolving", outcome="migrated", code="SOURCE_LOST",
                            reason="the destination runs the device; the source agent does not know the migration")
        return _forward("destination_running")
    # 2. the source released its copy
    if s_phase == "DONE":
        return _forward("done")
    # 3. the source rolled back (or 4. never heard of it before hand-off)
    if s.reach is Reach.UNKNOWN:
        if last_forward not in _UNSTARTED and not rolling:
            return Decision("resolving", code="SOURCE_LOST",
                            reason="the source agent does not know a migration that was handed off")
        # the fence turns the id into a rolled-back migration on the source; the next
        # answer is then rule 3's (or, if a late outgoing call overtook it, the agents')
        return Decision("rolling_back", Action.FENCE_SOURCE, outcome="rolled_back",
                        reason="the source never started the migration")
    if s_phase == "ROLLED_BACK":
        if last_forward in _ROLLED_FORWARD:
            return Decision("resolving", code="SPLIT_OUTCOME",
                            reason="the source says rolled back after the destination's copy was seen running")
        if d.reach is Reach.UNREACHABLE:
            return Decision(
                "resolving",
                outcome="rolled_back",
                code="AGENT_UNREACHABLE",
                reason="the source rolled back; the destination cannot be asked whether it dropped its copy",
            )
        if d_phase in _DESTINATION_UNFINISHED:
            return Decision("rolling_back", Action.CANCEL_DESTINATION, outcome="rolled_back",
                            reason=f"the destination still holds its copy ({d_phase})")
        if d.reach is Reach.KNOWN and d_phase not in _DESTINATION_GONE:
            return Decision("resolving", outcome="rolled_back", code="DESTINATION_STATE",
                            reason=f"the destination answered an unexpected phase {d_phase}")
        return Decision("rolled_back", Action.FINISH, outcome="rolled_back")
    # 5. the source cannot be asked
    if s.reach is Reach.UNREACHABLE:
        return Decision("resolving", code="AGENT_UNREACHABLE", reason="the source agent cannot be asked")
    # 6. still running on the agents
    assert s_phase is not None
    target = SOURCE_PHASE_TO_JOURNAL.get(s_phase)
    if target is None:
        return Decision("resolving", code="SOURCE_STATE", reason=f"the source answered an unexpected phase {s_phase}")
    if journal_phase == "resolving":
        # continue where the agents are (at least where the journal was)
        if FORWARD.index(target) < FORWARD.index(last_forward):
            target = last_forward
        return Decision(target)
    if journal_phase not in FORWARD or FORWARD.index(target) <= FORWARD.index(journal_phase):
        return Decision(journal_phase)
    return Decision(target)
