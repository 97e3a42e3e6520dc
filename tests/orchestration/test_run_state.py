"""The orchestrator's and the drainer's run-state: an enum, a table of moves, a guard naming both states."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from devmig import DevmigError
from devmig.inventory import MemoryInventory
from devmig.orchestration import RUN_STATE_MOVES, Drainer, Orchestrator, RunState
from devmig.orchestration._run_state import Lifecycle

PATH = [RunState.IDLE, RunState.RUNNING, RunState.CLOSING, RunState.CLOSED]


def test_the_table_walks_idle_to_closed_and_never_back() -> None:
    assert set(RUN_STATE_MOVES) == set(RunState)
    for before, after in itertools.pairwise(PATH):
        assert after in RUN_STATE_MOVES[before]
    assert RUN_STATE_MOVES[RunState.CLOSED] == frozenset()
    assert all(RunState.IDLE not in moves for moves in RUN_STATE_MOVES.values())


@pytest.mark.parametrize("start", list(RunState))
@pytest.mark.parametrize("new", list(RunState))
def test_a_move_outside_the_table_names_the_state_it_was_in_and_the_ones_it_needed(
        start: RunState, new: RunState) -> None:
    life = Lifecycle("orchestrator")
    life.state = start
    if new in RUN_STATE_MOVES[start]:
        life.move(new)
        assert life.state is new
        return
    with pytest.raises(DevmigError) as caught:
        life.move(new)
    problem = caught.value.problems[0]
    needed = sorted(s.value for s in RunState if new in RUN_STATE_MOVES[s])
    assert (caught.value.code, problem.loc, problem.value, sorted(problem.allowed)) == (
        "RUN_STATE", ("orchestrator",), start.value, needed)
    assert f"the orchestrator is {start.value}" in problem.message
    assert life.state is start


def test_an_orchestrator_opens_once_and_closes_once() -> None:
    async def scenario() -> None:
        inventory = MemoryInventory()
        inventory.open()
        orchestrator = Orchestrator(inventory, sweep_interval=None)
        assert orchestrator.state is RunState.IDLE
        await orchestrator.open()
        assert orchestrator.state is RunState.RUNNING
        with pytest.raises(DevmigError) as caught:
            await orchestrator.open()
        assert caught.value.code == "RUN_STATE" and caught.value.problems[0].value == "running"
        await orchestrator.aclose()
        await orchestrator.aclose()  # a second close does nothing
        assert orchestrator.state is RunState.CLOSED
        with pytest.raises(DevmigError, match="the orchestrator is closed; this needs it idle"):
            await orchestrator.open()

    asyncio.run(scenario())


def test_a_closed_drainer_spawns_nothing() -> None:
    async def scenario() -> None:
        inventory = MemoryInventory()
        inventory.open()
        drainer = Drainer(inventory, Orchestrator(inventory, sweep_interval=None), sweep_interval=None)
        await drainer.open()
        assert drainer.state is RunState.RUNNING
        await drainer.aclose()
        assert drainer.state is RunState.CLOSED
        drainer._spawn("d-1")
        assert drainer._tasks == {}
        with pytest.raises(DevmigError, match="the drainer is closed"):
            await drainer.open()

    asyncio.run(scenario())
