"""The one agent client, ``devmig.agent.AgentClient``, through a ``transport=`` (httpx's pattern).

An agent application runs in this process (its lifespan started: the host,
the migration engine and its stream listener are real) and the client talks
to it through ``httpx2.ASGITransport``: the same calls, answers and error
mapping as over HTTP (which ``test_agent_query`` and the fault tests cover
against agent processes).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import httpx2
import pytest

from devmig import DevmigError
from devmig.agent import AgentClient, AgentSettings, create_app
from devmig.compat import profile_fingerprint
from devmig.model import load_host_report

TOKEN = "in-process-token"
NIC = "example.org/devices/nic"


@asynccontextmanager
async def in_process_agent(token: str | None = TOKEN) -> AsyncIterator[AgentClient]:
    """An agent app with its lifespan running, and a client of it through an ASGI transport."""
    app = create_app(AgentSettings(host_name="embedded", token=TOKEN, max_device_memory=64 << 20))
    async with app.router.lifespan_context(app):
        transport = httpx2.ASGITransport(app=app)
        async with AgentClient("http://embedded", token, transport=transport) as client:
            yield client


def run(body: Callable[[AgentClient], Awaitable[None]], token: str | None = TOKEN) -> None:
    async def main() -> None:
        async with in_process_agent(token) as client:
            await body(client)

    asyncio.run(main())


def test_devices_through_an_asgi_transport() -> None:
    async def body(agent: AgentClient) -> None:
        health = await agent.health()
        assert health["host"] == "embedded" and health["devices"] == 0
        created = await agent.create_device(NIC, "version=2")
        assert created["model"] == NIC and created["state"] == "RUNNING"
        assert [d["id"] for d in await agent.devices()] == [created["id"]]
        shown = await agent.get_device(created["id"], digest=True)
        assert shown["id"] == created["id"] and shown["digest"]
        report, etag = await agent.report()
        assert report is not None and etag == f'"{profile_fingerprint(load_host_report(report))}"'
        assert await agent.report(etag) == (None, etag)  # 304: not modified
        await agent.delete_device(created["id"])
        assert await agent.devices() == []

    run(body)


def test_problems_come_back_as_devmig_errors() -> None:
    async def body(agent: AgentClient) -> None:
        with pytest.raises(DevmigError) as caught:
            await agent.get_device("no-such-device")
        assert caught.value.code == "DEVICE_NOT_FOUND"
        assert caught.value.status == 404 and "status" not in caught.value.problems[0].context
        with pytest.raises(DevmigError) as caught:
            await agent.create_device(NIC, "version=99")
        assert caught.value.code == "VERSION_UNKNOWN" and caught.value.status == 422

    run(body)


def test_a_missing_token_is_the_agents_auth_required() -> None:
    async def body(agent: AgentClient) -> None:
        assert (await agent.health())["status"] == "ok"  # reads need no token
        with pytest.raises(DevmigError) as caught:
            await agent.create_device(NIC)
        assert caught.value.code == "AUTH_REQUIRED"

    run(body, token=None)


def test_an_unreachable_agent_is_agent_unreachable() -> None:
    def refuse(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ConnectError("refused", request=request)

    async def main() -> None:
        async with AgentClient("http://nowhere", transport=httpx2.MockTransport(refuse)) as agent:
            with pytest.raises(DevmigError) as caught:
                await agent.health()
        assert caught.value.code == "AGENT_UNREACHABLE"

    asyncio.run(main())
