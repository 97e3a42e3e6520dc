"""Tests of the VFIO v2 state machine: states, the path walk, the run-state class.

The expected paths and arcs below are written from the Linux kernel's own
documentation of ``vfio_mig_get_next_state()`` (the arc list and the list of
multi-step transitions in its comment, ``drivers/vfio/vfio_main.c``), not
derived from ``NEXT_HOP``, so they check the table rather than repeat it.
"""

from __future__ import annotations

import contextlib
import itertools
import re
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devmig import TransitionError
from devmig.migration import (
    ARCS,
    NEXT_HOP,
    MigrationFlags,
    State,
    StateMachine,
    _states,
    arcs,
    next_state,
    supported_states,
    transition_path,
)

F = MigrationFlags
S = State

SC = F.STOP_COPY
SC_P2P = F.STOP_COPY | F.P2P
SC_PRE = F.STOP_COPY | F.PRE_COPY
ALL = F.STOP_COPY | F.P2P | F.PRE_COPY
COMBOS = [SC, SC_P2P, SC_PRE, ALL]

ROOT = Path(__file__).resolve().parents[2]

# --------------------------------------------------------------------------
# Expected data, from the kernel's documentation
# --------------------------------------------------------------------------

PROVIDED = {
    SC: {S.STOP, S.RUNNING, S.STOP_COPY, S.RESUMING},
    SC_P2P: {S.STOP, S.RUNNING, S.STOP_COPY, S.RESUMING, S.RUNNING_P2P},
    SC_PRE: {S.STOP, S.RUNNING, S.STOP_COPY, S.RESUMING, S.PRE_COPY},
    ALL: set(S) - {S.ERROR},
}

_ALWAYS = """
    RESUMING STOP
    STOP RESUMING
    STOP STOP_COPY
    STOP_COPY STOP
"""
_NO_P2P = """
    RUNNING STOP
    STOP RUNNING
"""
_P2P = """
    RUNNING RUNNING_P2P
    RUNNING_P2P RUNNING
    RUNNING_P2P STOP
    STOP RUNNING_P2P
"""
_PRE_COPY = """
    RUNNING PRE_COPY
    PRE_COPY RUNNING
    PRE_COPY STOP_COPY
"""
_PRE_COPY_P2P = """
    PRE_COPY RUNNING
    PRE_COPY PRE_COPY_P2P
    PRE_COPY_P2P PRE_COPY
    PRE_COPY_P2P RUNNING_P2P
    PRE_COPY_P2P STOP_COPY
    RUNNING PRE_COPY
    RUNNING_P2P PRE_COPY_P2P
"""


def _arc_set(*blocks: str) -> frozenset[tuple[State, State]]:
    out = set()
    for block in blocks:
        for line in block.split("\n"):
            if line.strip():
                a, b = line.split()
                out.add((State[a], State[b]))
    return frozenset(out)


EXPECTED_ARCS = {
    SC: _arc_set(_ALWAYS, _NO_P2P),
    SC_P2P: _arc_set(_ALWAYS, _P2P),
    SC_PRE: _arc_set(_ALWAYS, _NO_P2P, _PRE_COPY),
    ALL: _arc_set(_ALWAYS, _P2P, _PRE_COPY_P2P),
}

# Every request between two different provided states: "CURRENT TARGET: path".
_PATHS = {
    SC: """
        STOP RUNNING: RUNNING
        STOP STOP_COPY: STOP_COPY
        STOP RESUMING: RESUMING
        RUNNING STOP: STOP
        RUNNING STOP_COPY: STOP STOP_COPY
        RUNNING RESUMING: STOP RESUMING
        STOP_COPY STOP: STOP
        STOP_COPY RUNNING: STOP RUNNING
        STOP_COPY RESUMING: STOP RESUMING
        RESUMING STOP: STOP
        RESUMING RUNNING: STOP RUNNING
        RESUMING STOP_COPY: STOP STOP_COPY
    """,
    SC_P2P: """
        STOP RUNNING: RUNNING_P2P RUNNING
        STOP RUNNING_P2P: RUNNING_P2P
        STOP STOP_COPY: STOP_COPY
        STOP RESUMING: RESUMING
        RUNNING STOP: RUNNING_P2P STOP
        RUNNING RUNNING_P2P: RUNNING_P2P
        RUNNING STOP_COPY: RUNNING_P2P STOP STOP_COPY
        RUNNING RESUMING: RUNNING_P2P STOP RESUMING
        RUNNING_P2P STOP: STOP
        RUNNING_P2P RUNNING: RUNNING
        RUNNING_P2P STOP_COPY: STOP STOP_COPY
        RUNNING_P2P RESUMING: STOP RESUMING
        STOP_COPY STOP: STOP
        STOP_COPY RUNNING: STOP RUNNING_P2P RUNNING
        STOP_COPY RUNNING_P2P: STOP RUNNING_P2P
        STOP_COPY RESUMING: STOP RESUMING
        RESUMING STOP: STOP
        RESUMING RUNNING: STOP RUNNING_P2P RUNNING
        RESUMING RUNNING_P2P: STOP RUNNING_P2P
        RESUMING STOP_COPY: STOP STOP_COPY
    """,
    SC_PRE: """
        STOP RUNNING: RUNNING
        STOP PRE_COPY: RUNNING PRE_COPY
        STOP STOP_COPY: STOP_COPY
        STOP RESUMING: RESUMING
        RUNNING STOP: STOP
        RUNNING PRE_COPY: PRE_COPY
        RUNNING STOP_COPY: STOP STOP_COPY
        RUNNING RESUMING: STOP RESUMING
        PRE_COPY STOP: RUNNING STOP
        PRE_COPY RUNNING: RUNNING
        PRE_COPY STOP_COPY: STOP_COPY
        PRE_COPY RESUMING: RUNNING STOP RESUMING
        STOP_COPY STOP: STOP
        STOP_COPY RUNNING: STOP RUNNING
        STOP_COPY PRE_COPY: refused
        STOP_COPY RESUMING: STOP RESUMING
        RESUMING STOP: STOP
        RESUMING RUNNING: STOP RUNNING
        RESUMING PRE_COPY: STOP RUNNING PRE_COPY
        RESUMING STOP_COPY: STOP STOP_COPY
    """,
    ALL: """
        STOP RUNNING: RUNNING_P2P RUNNING
        STOP RUNNING_P2P: RUNNING_P2P
        STOP PRE_COPY: RUNNING_P2P RUNNING PRE_COPY
        STOP PRE_COPY_P2P: RUNNING_P2P PRE_COPY_P2P
        STOP STOP_COPY: STOP_COPY
        STOP RESUMING: RESUMING
        RUNNING STOP: RUNNING_P2P STOP
        RUNNING RUNNING_P2P: RUNNING_P2P
        RUNNING PRE_COPY: PRE_COPY
        RUNNING PRE_COPY_P2P: RUNNING_P2P PRE_COPY_P2P
        RUNNING STOP_COPY: RUNNING_P2P STOP STOP_COPY
        RUNNING RESUMING: RUNNING_P2P STOP RESUMING
        RUNNING_P2P STOP: STOP
        RUNNING_P2P RUNNING: RUNNING
        RUNNING_P2P PRE_COPY: RUNNING PRE_COPY
        RUNNING_P2P PRE_COPY_P2P: PRE_COPY_P2P
        RUNNING_P2P STOP_COPY: STOP STOP_COPY
        RUNNING_P2P RESUMING: STOP RESUMING
        PRE_COPY STOP: RUNNING RUNNING_P2P STOP
        PRE_COPY RUNNING: RUNNING
        PRE_COPY RUNNING_P2P: RUNNING RUNNING_P2P
        PRE_COPY PRE_COPY_P2P: PRE_COPY_P2P
        PRE_COPY STOP_COPY: PRE_COPY_P2P STOP_COPY
        PRE_COPY RESUMING: RUNNING RUNNING_P2P STOP RESUMING
        PRE_COPY_P2P STOP: RUNNING_P2P STOP
        PRE_COPY_P2P RUNNING: RUNNING_P2P RUNNING
        PRE_COPY_P2P RUNNING_P2P: RUNNING_P2P
        PRE_COPY_P2P PRE_COPY: PRE_COPY
        PRE_COPY_P2P STOP_COPY: STOP_COPY
        PRE_COPY_P2P RESUMING: RUNNING_P2P STOP RESUMING
        STOP_COPY STOP: STOP
        STOP_COPY RUNNING: STOP RUNNING_P2P RUNNING
        STOP_COPY RUNNING_P2P: STOP RUNNING_P2P
        STOP_COPY PRE_COPY: refused
        STOP_COPY PRE_COPY_P2P: refused
        STOP_COPY RESUMING: STOP RESUMING
        RESUMING STOP: STOP
        RESUMING RUNNING: STOP RUNNING_P2P RUNNING
        RESUMING RUNNING_P2P: STOP RUNNING_P2P
        RESUMING PRE_COPY: STOP RUNNING_P2P RUNNING PRE_COPY
        RESUMING PRE_COPY_P2P: STOP RUNNING_P2P PRE_COPY_P2P
        RESUMING STOP_COPY: STOP STOP_COPY
    """,
}

REFUSED = "refused"


def _parse_paths(text: str) -> dict[tuple[State, State], list[State] | str]:
    out: dict[tuple[State, State], list[State] | str] = {}
    for line in text.strip().splitlines():
        pair, _, steps = line.partition(":")
        a, b = pair.split()
        key = (State[a], State[b])
        assert key not in out, f"duplicate expectation {line!r}"
        out[key] = REFUSED if steps.strip() == REFUSED else [State[x] for x in steps.split()]
    return out


EXPECTED_PATHS = {flags: _parse_paths(text) for flags, text in _PATHS.items()}


def _cases() -> Iterator[tuple[MigrationFlags, State, State]]:
    for flags in COMBOS:
        for cur in S:
            for tgt in S:
                yield flags, cur, tgt


def _case_id(case: tuple[MigrationFlags, State, State]) -> str:
    flags, cur, tgt = case
    return f"{int(flags)}:{cur.name}->{tgt.name}"


# --------------------------------------------------------------------------
# The uAPI numbers
# --------------------------------------------------------------------------


def test_state_numbers_are_the_uapi_numbers() -> None:
    assert {s.name: int(s) for s in S} == {
        "ERROR": 0,
        "STOP": 1,
        "RUNNING": 2,
        "STOP_COPY": 3,
        "RESUMING": 4,
        "RUNNING_P2P": 5,
        "PRE_COPY": 6,
        "PRE_COPY_P2P": 7,
    }


def test_flag_values_are_the_uapi_values() -> None:
    assert (int(F.STOP_COPY), int(F.P2P), int(F.PRE_COPY)) == (1, 2, 4)


@pytest.mark.parametrize("flags", COMBOS, ids=int)
def test_supported_states(flags: MigrationFlags) -> None:
    assert supported_states(flags) == PROVIDED[flags]
    assert supported_states(int(flags) | 8) == PROVIDED[flags]  # unknown bits ignored


@pytest.mark.parametrize("flags", [0, F.P2P, F.PRE_COPY, F.P2P | F.PRE_COPY], ids=int)
def test_without_stop_copy_nothing_is_provided(flags: int) -> None:
    assert supported_states(flags) == frozenset()
    with pytest.raises(TransitionError) as info:
        transition_path(S.RUNNING, S.STOP, flags)
    assert info.value.code == "STATE_NOT_SUPPORTED"


# --------------------------------------------------------------------------
# Paths, table-driven
# --------------------------------------------------------------------------


@pytest.mark.parametrize("flags", COMBOS, ids=int)
def test_expectations_cover_every_request(flags: MigrationFlags) -> None:
    provided = PROVIDED[flags]
    assert set(EXPECTED_PATHS[flags]) == {(a, b) for a in provided for b in provided if a != b}


@pytest.mark.parametrize("case", list(_cases()), ids=_case_id)
def test_path(case: tuple[MigrationFlags, State, State]) -> None:
    flags, cur, tgt = case
    provided = PROVIDED[flags]
    if S.ERROR in (cur, tgt):
        expected: list[State] | str = "TRANSITION_INVALID"
    elif cur not in provided or tgt not in provided:
        expected = "STATE_NOT_SUPPORTED"
    elif cur == tgt:
        expected = []
    else:
        found = EXPECTED_PATHS[flags][cur, tgt]
        expected = "TRANSITION_INVALID" if found == REFUSED else found

    if isinstance(expected, str):
        with pytest.raises(TransitionError) as info:
            transition_path(cur, tgt, flags)
        assert info.value.code == expected
        problem = info.value.problems[0]
        assert problem.loc == ("transition", cur.name, tgt.name)
        assert problem.context["current"] == cur.name
        assert problem.context["target"] == tgt.name
        with pytest.raises(TransitionError):
            next_state(cur, tgt, flags)
    else:
        assert transition_path(cur, tgt, flags) == expected
        assert transition_path(int(cur), int(tgt), int(flags)) == expected
        assert next_state(cur, tgt, flags) == (expected[0] if expected else cur)


@pytest.mark.parametrize("flags", COMBOS, ids=int)
def test_arcs_are_the_kernels(flags: MigrationFlags) -> None:
    assert arcs(flags) == EXPECTED_ARCS[flags]


def test_all_arcs() -> None:
    assert frozenset().union(*EXPECTED_ARCS.values()) == ARCS
    assert len(ARCS) == 18


def test_all_features_multi_step_paths_are_the_kernels_list() -> None:
    # The kernel's comment lists 25 combination transitions for a device with
    # every feature; every other request is one arc or refused.
    multi = {k: v for k, v in EXPECTED_PATHS[ALL].items() if v != REFUSED and len(v) > 1}
    assert len(multi) == 25
    for (cur, tgt), path in multi.items():
        assert transition_path(cur, tgt, ALL) == path


# --------------------------------------------------------------------------
# Refusals carry data
# --------------------------------------------------------------------------


def test_unsupported_target_names_the_provided_states() -> None:
    with pytest.raises(TransitionError) as info:
        transition_path(S.RUNNING, S.PRE_COPY, SC_P2P)
    (problem,) = info.value.problems
    assert problem.code == "STATE_NOT_SUPPORTED"
    assert problem.loc == ("transition", "RUNNING", "PRE_COPY")
    assert problem.value == "PRE_COPY"
    assert set(problem.allowed) == {"STOP", "RUNNING", "STOP_COPY", "RESUMING", "RUNNING_P2P"}
    assert problem.context["missing"] == ["PRE_COPY"]
    assert problem.context["flags"] == ["STOP_COPY", "P2P"]


def test_unsupported_current_is_named() -> None:
    with pytest.raises(TransitionError) as info:
        transition_path(S.PRE_COPY_P2P, S.RUNNING, SC_PRE)
    (problem,) = info.value.problems
    assert problem.code == "STATE_NOT_SUPPORTED"
    assert problem.value == "PRE_COPY_P2P"
    assert problem.context["missing"] == ["P2P"]


@pytest.mark.parametrize(
    ("flags", "target"),
    [(SC_PRE, S.PRE_COPY), (ALL, S.PRE_COPY), (ALL, S.PRE_COPY_P2P)],
    ids=["pre-copy", "all-pre-copy", "all-pre-copy-p2p"],
)
def test_stop_copy_to_pre_copy_is_refused_not_spun_on(flags: MigrationFlags, target: State) -> None:
    with pytest.raises(TransitionError) as info:
        transition_path(S.STOP_COPY, target, flags)
    (problem,) = info.value.problems
    assert problem.code == "TRANSITION_INVALID"
    assert problem.loc == ("transition", "STOP_COPY", target.name)
    assert problem.value == ["STOP_COPY", target.name]
    assert "PRE_COPY" not in problem.allowed
    assert "STOP" in problem.allowed


def test_error_cannot_be_left_or_requested() -> None:
    for cur, tgt in [(S.ERROR, S.RUNNING), (S.RUNNING, S.ERROR), (S.ERROR, S.ERROR)]:
        with pytest.raises(TransitionError) as info:
            transition_path(cur, tgt, ALL)
        assert info.value.code == "TRANSITION_INVALID"
        assert info.value.problems[0].loc == ("transition", cur.name, tgt.name)
    with pytest.raises(TransitionError) as info:
        transition_path(S.ERROR, S.RUNNING, ALL)
    assert info.value.problems[0].allowed == []
    assert "reset" in (info.value.problems[0].hint or "")


@pytest.mark.parametrize("bad", [-1, 8, 0xABCD])
def test_unknown_state_numbers(bad: int) -> None:
    for cur, tgt in [(bad, S.RUNNING), (S.RUNNING, bad)]:
        with pytest.raises(TransitionError) as info:
            transition_path(cur, tgt, ALL)
        assert info.value.code == "STATE_UNKNOWN"
        assert info.value.problems[0].value == bad
        names = [v.name if isinstance(v, State) else str(v) for v in (cur, tgt)]
        assert info.value.problems[0].loc == ("transition", *names)


def test_refusal_renders_and_is_json_able() -> None:
    with pytest.raises(TransitionError) as info:
        transition_path(S.STOP_COPY, S.PRE_COPY, ALL)
    assert "transition.STOP_COPY.PRE_COPY" in str(info.value)
    assert info.value.to_dicts()[0]["loc"] == ["transition", "STOP_COPY", "PRE_COPY"]


# --------------------------------------------------------------------------
# Never looping
# --------------------------------------------------------------------------


class _CountingTable(Mapping[State, Mapping[State, State]]):
    """A next-hop table that fails a test instead of letting a walk spin."""

    def __init__(self, rows: Mapping[State, Mapping[State, State]], limit: int = 64) -> None:
        self.rows = rows
        self.limit = limit
        self.lookups = 0
        self.rows_read: list[State] = []

    def __getitem__(self, key: State) -> Mapping[State, State]:
        self.lookups += 1
        self.rows_read.append(key)
        if self.lookups > self.limit:
            raise AssertionError("the walk is looping")
        return self.rows[key]

    def __iter__(self) -> Iterator[State]:
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)


def _patched(changes: Mapping[State, Mapping[State, State]]) -> _CountingTable:
    rows = {cur: dict(row) for cur, row in NEXT_HOP.items()}
    for cur, row in changes.items():
        rows.setdefault(cur, {}).update(row)
    return _CountingTable(rows)


def test_a_skip_loop_in_the_table_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    # Unprovided states that lead to each other (for a STOP_COPY-only device).
    table = _patched(
        {
            S.RUNNING: {S.STOP_COPY: S.RUNNING_P2P},
            S.RUNNING_P2P: {S.STOP_COPY: S.PRE_COPY},
            S.PRE_COPY: {S.STOP_COPY: S.RUNNING_P2P},
        }
    )
    monkeypatch.setattr(_states, "NEXT_HOP", table)
    with pytest.raises(TransitionError) as info:
        transition_path(S.RUNNING, S.STOP_COPY, SC)
    assert info.value.code == "TRANSITION_LOOP"
    assert info.value.problems[0].loc == ("transition", "RUNNING", "STOP_COPY")


def test_a_walk_loop_in_the_table_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    # Provided states that step back and forth without reaching the target.
    table = _patched({S.RUNNING: {S.STOP: S.RUNNING_P2P}, S.RUNNING_P2P: {S.STOP: S.RUNNING}})
    monkeypatch.setattr(_states, "NEXT_HOP", table)
    with pytest.raises(TransitionError) as info:
        transition_path(S.RUNNING, S.STOP, ALL)
    assert info.value.code == "TRANSITION_LOOP"
    assert info.value.problems[0].context["walked"] == ["RUNNING_P2P", "RUNNING"]


def test_the_old_kernel_spin_is_not_reproduced(monkeypatch: pytest.MonkeyPatch) -> None:
    # The kernel's table had an ERROR row leading only to ERROR; looking it up
    # while skipping spun forever on STOP_COPY -> PRE_COPY.
    table = _patched({S.ERROR: dict.fromkeys(S, S.ERROR)})
    monkeypatch.setattr(_states, "NEXT_HOP", table)
    with pytest.raises(TransitionError) as info:
        transition_path(S.STOP_COPY, S.PRE_COPY, SC_PRE)
    assert info.value.code == "TRANSITION_INVALID"
    assert S.ERROR not in table.rows_read


# --------------------------------------------------------------------------
# Properties
# --------------------------------------------------------------------------

any_state = st.one_of(st.sampled_from(list(S)), st.integers(-3, 12))
any_flags = st.integers(0, 15)


@settings(max_examples=400)
@given(cur=any_state, tgt=any_state, flags=any_flags)
def test_walk_is_well_formed(cur: int, tgt: int, flags: int) -> None:
    try:
        path = transition_path(cur, tgt, flags)
    except TransitionError as exc:
        assert exc.code in {"STATE_UNKNOWN", "STATE_NOT_SUPPORTED", "TRANSITION_INVALID"}
        return
    provided = supported_states(flags)
    assert cur in provided and tgt in provided
    if cur == tgt:
        assert path == []
        return
    assert path[-1] == tgt
    walked = [S(cur), *path]
    assert len(set(walked)) == len(walked), "a state repeats"
    for step in itertools.pairwise(walked):
        assert step in arcs(flags)
        assert step in ARCS
    assert all(s in provided for s in path)
    assert next_state(cur, tgt, flags) == path[0]


@given(cur=st.sampled_from(list(S)), tgt=st.sampled_from(list(S)), flags=any_flags)
def test_refusal_code_matches_the_rules(cur: State, tgt: State, flags: int) -> None:
    provided = supported_states(flags)
    try:
        transition_path(cur, tgt, flags)
    except TransitionError as exc:
        code: str | None = exc.code
    else:
        code = None
    if S.ERROR in (cur, tgt):
        assert code == "TRANSITION_INVALID"
    elif cur not in provided or tgt not in provided:
        assert code == "STATE_NOT_SUPPORTED"
    elif cur == S.STOP_COPY and tgt in (S.PRE_COPY, S.PRE_COPY_P2P):
        assert code == "TRANSITION_INVALID"
    else:
        assert code is None


@given(cur=st.sampled_from(list(S)), tgt=st.sampled_from(list(S)), flags=any_flags)
def test_walk_reads_the_table_a_bounded_number_of_times(cur: State, tgt: State, flags: int) -> None:
    table = _CountingTable(NEXT_HOP, limit=len(S) * len(S))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_states, "NEXT_HOP", table)
        with contextlib.suppress(TransitionError):
            transition_path(cur, tgt, flags)


@given(
    flags=st.sampled_from(COMBOS),
    targets=st.lists(st.sampled_from(list(S)), max_size=12),
)
def test_machine_follows_paths(flags: MigrationFlags, targets: list[State]) -> None:
    walked: list[tuple[State, State]] = []
    machine = StateMachine(flags, on_arc=lambda a, b: walked.append((a, b)))
    for target in targets:
        before = machine.state
        walked.clear()
        try:
            path = machine.set_state(target)
        except TransitionError:
            assert machine.state == before
            assert walked == []
            continue
        assert machine.state == target
        assert [b for _, b in walked] == path
        assert all(arc in arcs(flags) for arc in walked)


# --------------------------------------------------------------------------
# StateMachine
# --------------------------------------------------------------------------


def test_machine_defaults_to_running() -> None:
    machine = StateMachine(ALL)
    assert machine.state == S.RUNNING
    assert machine.flags == ALL
    assert "RUNNING" in repr(machine)


def test_machine_walks_and_reports_each_arc() -> None:
    seen: list[tuple[State, State]] = []
    machine = StateMachine(ALL, on_arc=lambda a, b: seen.append((a, b)))
    assert machine.set_state(S.STOP_COPY) == [S.RUNNING_P2P, S.STOP, S.STOP_COPY]
    assert seen == [
        (S.RUNNING, S.RUNNING_P2P),
        (S.RUNNING_P2P, S.STOP),
        (S.STOP, S.STOP_COPY),
    ]
    assert machine.state == S.STOP_COPY
    assert machine.set_state(S.STOP_COPY) == []


def test_machine_refusal_changes_nothing() -> None:
    seen: list[tuple[State, State]] = []
    machine = StateMachine(ALL, initial=S.STOP_COPY, on_arc=lambda a, b: seen.append((a, b)))
    with pytest.raises(TransitionError) as info:
        machine.set_state(S.PRE_COPY)
    assert info.value.code == "TRANSITION_INVALID"
    assert machine.state == S.STOP_COPY
    assert seen == []


def test_failing_arc_puts_the_machine_in_error() -> None:
    class DeviceFault(Exception):
        pass

    def on_arc(a: State, b: State) -> None:
        if b == S.STOP:
            raise DeviceFault("device did not stop")

    machine = StateMachine(SC_P2P, on_arc=on_arc)
    with pytest.raises(DeviceFault) as info:
        machine.set_state(S.STOP_COPY)
    assert machine.state == S.ERROR
    assert any("RUNNING_P2P -> STOP" in note for note in info.value.__notes__)

    with pytest.raises(TransitionError) as refused:
        machine.set_state(S.RUNNING)
    assert refused.value.code == "TRANSITION_INVALID"
    assert refused.value.problems[0].loc == ("transition", "ERROR", "RUNNING")
    assert machine.state == S.ERROR

    machine.reset()
    assert machine.state == S.RUNNING


def test_cancellation_in_an_arc_is_not_swallowed() -> None:
    def on_arc(a: State, b: State) -> None:
        raise KeyboardInterrupt

    machine = StateMachine(SC, on_arc=on_arc)
    with pytest.raises(KeyboardInterrupt):
        machine.set_state(S.STOP)
    assert machine.state == S.ERROR


def test_error_and_reset() -> None:
    machine = StateMachine(SC_PRE, initial=S.PRE_COPY)
    machine.error()
    assert machine.state == S.ERROR
    machine.reset()
    assert machine.state == S.RUNNING
    assert machine.set_state(S.STOP_COPY) == [S.STOP, S.STOP_COPY]


def test_machine_may_start_in_error() -> None:
    machine = StateMachine(SC, initial=S.ERROR)
    with pytest.raises(TransitionError):
        machine.set_state(S.STOP)
    machine.reset()
    assert machine.set_state(S.STOP) == [S.STOP]


def test_machine_refuses_flags_without_stop_copy() -> None:
    with pytest.raises(TransitionError) as info:
        StateMachine(F.P2P)
    assert info.value.code == "FLAGS_INVALID"
    assert info.value.problems[0].loc == ("flags",)


def test_machine_refuses_an_unprovided_initial_state() -> None:
    with pytest.raises(TransitionError) as info:
        StateMachine(SC, initial=S.PRE_COPY)
    assert info.value.code == "STATE_NOT_SUPPORTED"
    assert info.value.problems[0].value == "PRE_COPY"


def test_machine_refuses_a_request_from_inside_an_arc() -> None:
    inner: list[TransitionError] = []

    def on_arc(a: State, b: State) -> None:
        try:
            machine.set_state(S.RUNNING)
        except TransitionError as exc:
            inner.append(exc)

    machine = StateMachine(SC, on_arc=on_arc)
    assert machine.set_state(S.STOP) == [S.STOP]
    assert [e.code for e in inner] == ["TRANSITION_IN_PROGRESS"]
    assert machine.state == S.STOP


# --------------------------------------------------------------------------
# The documentation's diagram and table are the code's
# --------------------------------------------------------------------------

_DOC = ROOT / "docs" / "state-machine.md"
_FLAG_TERM = re.compile(r"([+-])(P2P|PRE_COPY)$")


def _doc_text() -> str:
    return _DOC.read_text(encoding="utf-8")


def _diagram_arcs() -> dict[tuple[State, State], str]:
    block = re.search(r"```mermaid\n(.*?)```", _doc_text(), re.DOTALL)
    assert block, "no mermaid block"
    out: dict[tuple[State, State], str] = {}
    for line in block.group(1).splitlines():
        m = re.fullmatch(r"\s*(\w+)\s*-->\s*(\w+)\s*:\s*(.+?)\s*", line)
        if m:
            out[State[m.group(1)], State[m.group(2)]] = m.group(3)
    return out


def _label_admits(label: str, flags: MigrationFlags) -> bool:
    if label == "always":
        return True
    for term in label.split():
        m = _FLAG_TERM.match(term)
        assert m, f"bad label term {term!r}"
        present = MigrationFlags[m.group(2)] in flags
        if present != (m.group(1) == "+"):
            return False
    return True


def test_diagram_arcs_are_the_table_arcs() -> None:
    assert set(_diagram_arcs()) == ARCS


@pytest.mark.parametrize("flags", COMBOS, ids=int)
def test_diagram_labels_say_which_devices_take_an_arc(flags: MigrationFlags) -> None:
    taken = {arc for arc, label in _diagram_arcs().items() if _label_admits(label, flags)}
    assert taken == arcs(flags)


def test_doc_next_hop_table_is_the_table() -> None:
    text = _doc_text()
    body = text.split("<!-- next-hop-table:begin -->")[1].split("<!-- next-hop-table:end -->")[0]
    rows = [line for line in body.strip().splitlines() if line.startswith("|")]
    header = [c.strip() for c in rows[0].strip("|").split("|")][1:]
    targets = [State[name] for name in header]
    seen = set()
    for line in rows[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        cur = State[cells[0].strip("*")]
        seen.add(cur)
        for tgt, cell in zip(targets, cells[1:], strict=True):
            if tgt == cur:
                assert cell == "·"
                assert tgt not in NEXT_HOP[cur]
            elif cell == "refused":
                assert NEXT_HOP[cur][tgt] == S.ERROR
            else:
                assert NEXT_HOP[cur][tgt] == State[cell], (cur, tgt)
    assert seen == set(NEXT_HOP) == set(targets)
