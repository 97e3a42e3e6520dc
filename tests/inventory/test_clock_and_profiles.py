"""The clock twin, the fast fingerprint path, and the registration benchmark."""

from __future__ import annotations

import asyncio
import json

from fleet_fixtures import report
from hypothesis import given, settings
from hypothesis import strategies as st

from devmig._examples import list_examples
from devmig.inventory import ManualClock, SystemClock, bench_register, report_profile
from devmig.inventory._profiles import ProfileCache
from devmig.model import HostReport

EXAMPLES = [e.name for e in list_examples() if not e.broken]


def test_manual_clock_wakes_sleepers_when_due() -> None:
    async def scenario() -> None:
        clock = ManualClock()
        start = clock.now()
        woke: list[float] = []

        async def sleeper(seconds: float) -> None:
            await clock.sleep(seconds)
            woke.append(clock.monotonic())

        tasks = [asyncio.create_task(sleeper(s)) for s in (5, 10)]
        await clock.wait_for_sleepers(2)
        await clock.advance(4)
        assert woke == []
        await clock.advance(1)
        await asyncio.sleep(0)
        assert woke == [5]
        await clock.advance(5)
        await asyncio.gather(*tasks)
        assert woke == [5, 10]
        assert clock.sleepers == 0
        assert (clock.now() - start).total_seconds() == 10

    asyncio.run(scenario())


def test_system_clock() -> None:
    clock = SystemClock()
    before = clock.monotonic()
    asyncio.run(clock.sleep(0.01))
    assert clock.monotonic() > before
    assert clock.now().tzinfo is not None


@settings(max_examples=30, deadline=None)
@given(st.lists(st.lists(st.sampled_from(EXAMPLES), min_size=0, max_size=4, unique=True), min_size=1, max_size=5))
def test_fast_fingerprints_equal_the_definition(mixes: list[list[str]]) -> None:
    reports = [report(f"h{i}", *mix) for i, mix in enumerate(mixes)]
    cache = ProfileCache()
    expected = [report_profile(r) for r in reports]
    assert cache.fingerprints(reports) == expected
    # again, from separately parsed (equal, distinct) objects: the cross-call cache
    again = [HostReport.model_validate_json(json.dumps(r.to_json())) for r in reports]
    assert cache.fingerprints(again) == expected


def test_bench_register_runs() -> None:
    assert bench_register(300, batch=100) > 0
