"""The poller against REAL agent processes on loopback, on every inventory backend."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx2
import pytest
from fleet_env import Agent, Agents, free_port

from devmig.inventory import Inventory, ManualClock, MemoryInventory, Poller, PollStatus


def _statuses(outcomes: list[object]) -> dict[str, str]:
    return {o.host: o.status.value for o in outcomes}  # type: ignore[attr-defined]


def test_profiles_history_and_unreachable(inventory: Inventory, agents: Agents) -> None:
    port = free_port()
    a, b, c = agents.start(
        ("a", "nic=1.0.0,blk=1.0.0,accel=1.0.0", port),
        ("b", "nic=1.0.0,blk=1.0.0,accel=1.0.0"),
        ("c", "nic=2.0.0,blk=1.0.0,accel=1.0.0"),
    )
    for agent in (a, b, c):
        inventory.add_host(agent.name, agent.url)
    clock = ManualClock()
    start = clock.now()

    async def scenario() -> None:
        async with Poller(inventory, clock, interval=10, max_missed=2) as poller:
            assert _statuses(await poller.poll_once()) == {"a": "changed", "b": "changed", "c": "changed"}
            hosts = {h.name: h for h in inventory.list_hosts()}
            assert hosts["a"].fingerprint == hosts["b"].fingerprint != hosts["c"].fingerprint
            assert all(h.last_etag and h.reachable and h.device_count == 0 for h in hosts.values())
            docs = inventory.profile(hosts["c"].fingerprint or "")
            assert docs is not None
            assert ("acme-nic", "2.0.0") in {(d.implementation.name, d.implementation.release) for d in docs}

            await clock.advance(10)
            assert _statuses(await poller.poll_once()) == {"a": "not-modified", "b": "not-modified",
                                                           "c": "not-modified"}
            assert inventory.get_host("a").last_seen == clock.now()

            # a is restarted with other releases, at the same URL.
            a.kill()
            agents.start(("a", "nic=2.0.0,blk=1.0.0,accel=1.0.0", port))
            await clock.advance(10)
            assert _statuses(await poller.poll_once())["a"] == "changed"
            hosts = {h.name: h for h in inventory.list_hosts()}
            assert hosts["a"].fingerprint == hosts["c"].fingerprint != hosts["b"].fingerprint
            history = inventory.history("a")
            assert [h.fingerprint for h in history] == [hosts["b"].fingerprint, hosts["c"].fingerprint]
            assert (history[0].first_seen, history[0].last_seen) == (start, start + timedelta(seconds=10))
            assert history[1].first_seen == clock.now()

            # b dies: unreachable after max_missed polls, its last report kept.
            b.kill()
            kept = inventory.get_host("b").fingerprint
            await clock.advance(10)
            first = {o.host: o for o in await poller.poll_once()}["b"]
            assert (first.status, first.reachable) == (PollStatus.FAILED, True)
            assert first.error is not None and first.error.code == "AGENT_UNREACHABLE"
            await clock.advance(10)
            second = {o.host: o for o in await poller.poll_once()}["b"]
            assert (second.status, second.reachable) == (PollStatus.FAILED, False)
            host = inventory.get_host("b")
            assert (host.reachable, host.missed_polls, host.fingerprint) == (False, 2, kept)
            snapshot = {h.name: h for h in inventory.snapshot().hosts}
            assert not snapshot["b"].reachable and snapshot["b"].fingerprint in inventory.snapshot().profiles
            assert snapshot["a"].reachable and snapshot["c"].reachable

    asyncio.run(scenario())


def test_devices_are_recorded(shared_agent: Agent) -> None:
    agent = shared_agent
    with agent_client(agent) as http:
        response = http.post("/v1/devices", json={"model": "example.org/devices/nic", "config": "version=1"})
        assert response.status_code == 201, response.text
    with MemoryInventory() as inventory:
        inventory.add_host("shared", agent.url)

        async def poll() -> None:
            async with Poller(inventory, ManualClock()) as poller:
                await poller.poll_once()

        asyncio.run(poll())
        (device,) = inventory.list_devices("shared")
        assert device.model == "example.org/devices/nic"
        assert inventory.get_host("shared").device_count == 1


def test_a_host_that_reports_another_name_is_a_missed_poll(shared_agent: Agent) -> None:
    agent = shared_agent
    with MemoryInventory() as inventory:
        inventory.add_host("other-name", agent.url)

        async def poll() -> None:
            async with Poller(inventory, ManualClock()) as poller:
                (outcome,) = await poller.poll_once()
                assert outcome.status is PollStatus.FAILED
                assert outcome.error is not None and outcome.error.code == "HOST_MISMATCH"

        asyncio.run(poll())
        assert inventory.get_host("other-name").fingerprint is None
        assert inventory.get_host("other-name").missed_polls == 1


def test_run_polls_on_the_clock_interval(shared_agent: Agent) -> None:
    with MemoryInventory() as inventory:
        inventory.add_host("shared", shared_agent.url)
        clock = ManualClock()

        async def scenario() -> None:
            async with Poller(inventory, clock, interval=30) as poller:
                task = asyncio.create_task(poller.run())
                await clock.wait_for_sleepers(1)  # first round done, sleeping
                assert inventory.get_host("shared").last_seen == clock.now()
                first = clock.now()
                await clock.advance(29)
                await asyncio.sleep(0.05)
                assert inventory.get_host("shared").last_seen == first  # not yet due
                await clock.advance(1)
                await clock.wait_for_sleepers(1)
                assert inventory.get_host("shared").last_seen == clock.now()
                with pytest.raises(Exception) as info:
                    await poller.run()
                assert getattr(info.value, "code", None) == "POLLER_STATE"
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task

        asyncio.run(scenario())


def agent_client(agent: Agent) -> httpx2.Client:
    """A sync HTTP client of ``agent`` with its token."""
    return httpx2.Client(base_url=agent.url, headers={"Authorization": f"Bearer {agent.token}"}, timeout=30)
