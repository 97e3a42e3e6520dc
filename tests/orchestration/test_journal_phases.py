"""The journal's phase machine (transitions, walks, what to do given both agents' answers) and its records."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devmig._errors import DevmigError
from devmig.inventory import JournalEntry
from devmig.orchestration import FORWARD, PHASES, TRANSITIONS, AgentView, decide
from devmig.orchestration._journal_phases import (
    FINISHED,
    SOURCE_PHASE_TO_JOURNAL,
    Action,
    Decision,
    Reach,
    check_transition,
    path_to,
)
from devmig.orchestration._migration_records import (
    copy_progress,
    enter_phase,
    new_payload,
    record_of,
)

UNKNOWN = AgentView.unknown()
DOWN = AgentView.unreachable()


def src(phase: str) -> AgentView:
    return AgentView(Reach.KNOWN, phase, phase in ("DONE", "ROLLED_BACK"))


def dst(phase: str) -> AgentView:
    return AgentView(Reach.KNOWN, phase, phase in ("RUNNING", "DESTROYED", "REJECTED"))


def test_the_table_covers_every_phase_and_finished_ones_are_final() -> None:
    assert set(TRANSITIONS) == set(PHASES)
    assert all(TRANSITIONS[p] == frozenset() for p in FINISHED)
    for a, b in itertools.pairwise(FORWARD):
        check_transition(a, b)
    for phase in set(PHASES) - FINISHED - {"resolving"}:
        check_transition(phase, "resolving")
    # rolling back is possible until the destination's copy was seen running
    for phase in ("planned", "destination_created", "streaming", "destination_validated", "handed_off"):
        check_transition(phase, "rolling_back")


@pytest.mark.parametrize(("current", "new"), [
    ("done", "rolling_back"), ("rolled_back", "done"), ("destination_running", "rolling_back"),
    ("planned", "done"), ("streaming", "planned"), ("resolving", "planned"), ("source_released", "rolled_back"),
])
def test_forbidden_moves_name_both_phases(current: str, new: str) -> None:
    with pytest.raises(DevmigError) as info:
        check_transition(current, new)
    problem = info.value.problems[0]
    assert problem.code == "JOURNAL_TRANSITION" and problem.loc == ("phase", current) and problem.value == new
    assert new not in problem.allowed


def test_walks_are_forward_and_stepwise() -> None:
    assert path_to("streaming", "done") == ["destination_validated", "handed_off", "destination_running",
                                            "source_released", "done"]
    assert path_to("handed_off", "streaming") == []
    assert Decision("done").steps("resolving", "handed_off") == ["destination_running", "source_released", "done"]
    assert Decision("handed_off").steps("resolving", "handed_off") == ["handed_off"]
    assert Decision("rolled_back").steps("resolving", "streaming") == ["rolling_back", "rolled_back"]
    assert Decision("rolled_back").steps("rolling_back", "streaming") == ["rolled_back"]
    assert Decision("resolving").steps("streaming", "streaming") == ["resolving"]
    assert Decision("resolving").steps("resolving", "streaming") == []


# journal phase, last forward phase, source, destination -> target, action, outcome, code
CASES = [
    # still running on the agents: follow the source's protocol phase
    (
        "destination_created",
        "destination_created",
        src("CONNECTING"),
        UNKNOWN,
        "destination_created",
        Action.OBSERVE,
        None,
        None,
    ),
    (
        "destination_created",
        "destination_created",
        src("STREAMING"),
        dst("WAIT_GO"),
        "streaming",
        Action.OBSERVE,
        None,
        None,
    ),
    ("streaming", "streaming", src("WAIT_READY"), dst("WAIT_GO"), "destination_validated", Action.OBSERVE, None, None),
    (
        "streaming",
        "streaming",
        src("COMMITTING"),
        dst("WAIT_DECISION"),
        "destination_validated",
        Action.OBSERVE,
        None,
        None,
    ),
    (
        "destination_validated",
        "destination_validated",
        src("COMMITTED"),
        dst("STARTING"),
        "handed_off",
        Action.OBSERVE,
        None,
        None,
    ),
    ("handed_off", "handed_off", src("IN_DOUBT"), DOWN, "handed_off", Action.OBSERVE, None, None),
    ("handed_off", "handed_off", src("STREAMING"), DOWN, "handed_off", Action.OBSERVE, None, None),  # never backwards
    # roll forward: the destination runs, or the source released
    ("streaming", "streaming", src("DONE"), dst("RUNNING"), "done", Action.FINISH, "migrated", None),
    (
        "handed_off",
        "handed_off",
        src("IN_DOUBT"),
        dst("RUNNING"),
        "destination_running",
        Action.OBSERVE,
        "migrated",
        None,
    ),
    ("handed_off", "handed_off", src("DONE"), DOWN, "done", Action.FINISH, "migrated", None),
    ("resolving", "handed_off", src("DONE"), UNKNOWN, "done", Action.FINISH, "migrated", None),
    (
        "destination_running",
        "destination_running",
        DOWN,
        dst("RUNNING"),
        "resolving",
        Action.OBSERVE,
        "migrated",
        "AGENT_UNREACHABLE",
    ),
    ("handed_off", "handed_off", UNKNOWN, dst("RUNNING"), "resolving", Action.OBSERVE, "migrated", "SOURCE_LOST"),
    # roll back: the source kept its copy; no destination copy may stay
    ("streaming", "streaming", src("ROLLED_BACK"), dst("DESTROYED"), "rolled_back", Action.FINISH, "rolled_back", None),
    ("streaming", "streaming", src("ROLLED_BACK"), UNKNOWN, "rolled_back", Action.FINISH, "rolled_back", None),
    (
        "handed_off",
        "handed_off",
        src("ROLLED_BACK"),
        dst("REJECTED"),
        "rolled_back",
        Action.FINISH,
        "rolled_back",
        None,
    ),
    (
        "destination_created",
        "destination_created",
        src("ROLLED_BACK"),
        dst("WAIT_HELLO"),
        "rolling_back",
        Action.CANCEL_DESTINATION,
        "rolled_back",
        None,
    ),
    (
        "rolling_back",
        "streaming",
        src("ROLLED_BACK"),
        DOWN,
        "resolving",
        Action.OBSERVE,
        "rolled_back",
        "AGENT_UNREACHABLE",
    ),
    # the outgoing call never reached the source: fence it, then roll back
    ("planned", "planned", UNKNOWN, UNKNOWN, "rolling_back", Action.FENCE_SOURCE, "rolled_back", None),
    (
        "destination_created",
        "destination_created",
        UNKNOWN,
        DOWN,
        "rolling_back",
        Action.FENCE_SOURCE,
        "rolled_back",
        None,
    ),
    ("rolling_back", "destination_created", UNKNOWN, UNKNOWN, "rolling_back", Action.FENCE_SOURCE, "rolled_back", None),
    # never a guess
    (
        "destination_created",
        "destination_created",
        DOWN,
        UNKNOWN,
        "resolving",
        Action.OBSERVE,
        None,
        "AGENT_UNREACHABLE",
    ),
    ("handed_off", "handed_off", DOWN, DOWN, "resolving", Action.OBSERVE, None, "AGENT_UNREACHABLE"),
    ("streaming", "streaming", UNKNOWN, dst("WAIT_GO"), "resolving", Action.OBSERVE, None, "SOURCE_LOST"),
    (
        "handed_off",
        "handed_off",
        src("ROLLED_BACK"),
        dst("RUNNING"),
        "resolving",
        Action.OBSERVE,
        None,
        "SPLIT_OUTCOME",
    ),
    (
        "destination_running",
        "destination_running",
        src("ROLLED_BACK"),
        dst("DESTROYED"),
        "resolving",
        Action.OBSERVE,
        None,
        "SPLIT_OUTCOME",
    ),
    # resolving continues where the agents are, never behind the journal
    ("resolving", "streaming", src("COMMITTED"), dst("WAIT_DECISION"), "handed_off", Action.OBSERVE, None, None),
    ("resolving", "handed_off", src("STREAMING"), dst("WAIT_GO"), "handed_off", Action.OBSERVE, None, None),
]


@pytest.mark.parametrize(("journal", "last", "source", "destination", "target", "action", "outcome", "code"), CASES)
def test_decide(journal: str, last: str, source: AgentView, destination: AgentView, target: str,
                action: Action, outcome: str | None, code: str | None) -> None:
    decision = decide(journal, last, source, destination)
    assert (decision.target, decision.action, decision.outcome, decision.code) == (target, action, outcome, code)


_AGENT_VIEWS = st.one_of(
    st.just(UNKNOWN), st.just(DOWN),
    st.sampled_from(sorted(SOURCE_PHASE_TO_JOURNAL)).map(src),
    st.sampled_from(["WAIT_HELLO", "RESUMING", "WAIT_GO", "WAIT_DECISION", "STARTING", "RUNNING", "DESTROYED",
                     "REJECTED"]).map(dst),
)
_UNFINISHED = sorted(set(PHASES) - FINISHED)


@given(journal=st.sampled_from(_UNFINISHED), last=st.sampled_from(FORWARD[:-1]), source=_AGENT_VIEWS,
       destination=_AGENT_VIEWS)
def test_every_decision_is_a_legal_walk_and_never_a_guess(journal: str, last: str, source: AgentView,
                                                          destination: AgentView) -> None:
    if journal in FORWARD:
        last = journal
    decision = decide(journal, last, source, destination)
    phase = journal
    for step in decision.steps(journal, last):
        check_transition(phase, step)
        phase = step
    s_phase = source.phase if source.reach is Reach.KNOWN else None
    d_phase = destination.phase if destination.reach is Reach.KNOWN else None
    if decision.target == "done":
        # done only when the source released its copy (the destination then runs it)
        assert s_phase == "DONE"
    if decision.target == "rolled_back":
        # rolled back only when the source says so and the destination holds no copy
        assert s_phase == "ROLLED_BACK" and d_phase in (None, "DESTROYED", "REJECTED")
        assert destination.reach is not Reach.UNREACHABLE
    if decision.action is Action.CANCEL_DESTINATION:
        assert d_phase != "RUNNING"
    if source.reach is Reach.UNREACHABLE and d_phase != "RUNNING":
        assert decision.target in ("resolving", journal)
        assert decision.target == "resolving"


def test_records_hide_private_keys_and_phases_fill_history_and_outcome() -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    payload = new_payload(device="h1/d", device_id="d", model="m", source="h1", destination="h2",
                          source_url="http://h1", destination_url="http://h2", lease="mgr/x", drain=None, now=t0)
    for phase in ("destination_created", "streaming", "resolving"):
        enter_phase(payload, phase, t0)
    assert payload["_last_forward"] == "streaming" and not payload["finished"]
    copy_progress(payload, {"phase": "ROLLED_BACK", "stage": "ended", "round": 2, "bytes_sent": 10, "rate": 5.0,
                            "expected_downtime_ms": 1.0, "error": None, "destination_device_id": "dd"},
                  {"phase": "DESTROYED", "device_id": "dd", "discarded_records": 2, "discarded_bytes": 8192})
    assert payload["progress"]["bytes_sent"] == 10 and payload["destination_device_id"] == "dd"
    assert (payload["discarded_records"], payload["discarded_bytes"]) == (2, 8192)  # the destination counts them
    for phase in ("rolling_back", "rolled_back"):
        enter_phase(payload, phase, t0)
    record = record_of(JournalEntry("x", "rolled_back", payload, t0))
    assert not [k for k in record if k.startswith("_")] and "_lease" in payload
    assert record["outcome"] == "rolled_back" and record["finished"]
    assert record["error"] == {"code": "ROLLED_BACK", "message": "the agents rolled the migration back",
                               "phase": "streaming"}
    assert [h["phase"] for h in record["history"]] == ["planned", "destination_created", "streaming", "resolving",
                                                       "rolling_back", "rolled_back"]
    assert record["resolving"] is None and record["id"] == "x" and record["phase"] == "rolled_back"


def test_a_migration_that_ended_migrated_has_no_error_and_keeps_what_happened_as_incidents() -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    payload = new_payload(device="h1/d", device_id="d", model="m", source="h1", destination="h2",
                          source_url="http://h1", destination_url="http://h2", lease="mgr/x", drain=None, now=t0)
    enter_phase(payload, "destination_created", t0)
    late = {"code": "AGENT_UNREACHABLE", "message": "the source answered late", "phase": "destination_created"}
    payload["error"] = late  # the outgoing call timed out, yet the source went on
    for phase in ("streaming", "destination_running", "source_released", "done"):
        enter_phase(payload, phase, t0)
    record = record_of(JournalEntry("x", "done", payload, t0))
    assert record["outcome"] == "migrated" and record["error"] is None
    assert record["incidents"] == [late]
