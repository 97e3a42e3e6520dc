"""schemathesis against the agent's OpenAPI: no 5xx, every response matches the schema.

The agent runs for real (uvicorn on a loopback socket, in a thread) with small
devices; schemathesis generates requests from /openapi.json, with the token.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator

import httpx2
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from devmig.agent import AgentSettings, create_app

TOKEN = "schemathesis-token"


@pytest.fixture(scope="module")
def agent_url() -> Iterator[str]:
    import uvicorn

    app = create_app(AgentSettings(host_name="api-test", token=TOKEN, max_device_memory=256 << 20))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])), daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "agent did not start"
        time.sleep(0.02)
    url = f"http://127.0.0.1:{port}"
    # A few real devices so that GET/DELETE by id meet existing ones too.
    with httpx2.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        for body in (
            {"model": "example.org/devices/nic", "config": "version=2"},
            {"model": "example.org/devices/accel", "config": "version=1"},
        ):
            assert client.post("/v1/devices", json=body).status_code == 201
    yield url
    server.should_exit = True
    thread.join(timeout=20)
    sock.close()


def test_agent_api_conforms(agent_url: str) -> None:
    """Every operation, generated cases: no 5xx, and the response matches the schema.

    (schemathesis's pytest plugin does not run on this pytest; its generator
    and validator are driven here with hypothesis directly.)
    """
    schema = schemathesis.openapi.from_url(f"{agent_url}/openapi.json")
    checked = 0
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def run(case: schemathesis.Case) -> None:
            response = case.call(headers={"Authorization": f"Bearer {TOKEN}"})
            assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.text}"
            case.validate_response(response)

        run()
        checked += 1
    assert checked >= 6


def test_openapi_is_served(agent_url: str) -> None:
    spec = httpx2.get(f"{agent_url}/openapi.json").json()
    assert spec["info"]["title"] == "devmig agent"
    assert "/v1/report" in spec["paths"]
    assert "/v1/devices" in spec["paths"]
