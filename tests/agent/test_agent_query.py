"""The agent's query and device endpoints, against a real agent process."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from agent_processes import AgentProcess, Agents


@pytest.fixture(scope="module")
def agent(module_agents: Agents) -> Iterator[AgentProcess]:
    yield module_agents.start("query", "--max-device-memory", "200M")


def test_report_etag_and_304(agent: AgentProcess) -> None:
    with agent.client(auth=False) as c:
        first = c.get("/v1/report")
        assert first.status_code == 200
        body = first.json()
        assert body["format"] == "devmig/host-report/1" and body["host"] == "query"
        etag = first.headers["etag"]
        again = c.get("/v1/report", headers={"If-None-Match": etag})
        assert again.status_code == 304 and again.headers["etag"] == etag
        assert c.get("/v1/report", headers={"If-None-Match": '"other"'}).status_code == 200


def test_models(agent: AgentProcess) -> None:
    with agent.client(auth=False) as c:
        view = c.get("/v1/models/example.org/devices/nic").json()
        assert view["model"] == "example.org/devices/nic" and view["versions"]
        missing = c.get("/v1/models/example.org/devices/none")
        assert missing.status_code == 404 and missing.json()["code"] == "MODEL_UNKNOWN"


def test_every_reported_model_can_be_queried_and_created(module_agents: Agents) -> None:
    """The uniform query mechanism's promise: a model the report lists is one this host creates.

    acme-accel's newest release serves two models (``accel`` and ``accel-lite``); the
    second one used to be reported but refused with MODEL_UNKNOWN. Each model is created
    at its init configuration.
    """
    agent = module_agents.start("models")
    with agent.client() as c:
        report = c.get("/v1/report").json()
        reported = {(m["model"], doc["implementation"]["name"], doc["implementation"]["release"])
                    for doc in report["implementations"] for m in doc["models"]}
        assert ("example.org/devices/accel-lite", "acme-accel", "3.0.0") in reported
        for model, name, release in sorted(reported):
            view = c.get(f"/v1/models/{model}")
            assert view.status_code == 200, (model, view.json())
            assert view.json()["implementation"] == {"name": name, "release": release}
            created = c.post("/v1/devices", json={"model": model, "config": "", "host": {}})
            assert created.status_code == 201, (model, created.json())
            dev = created.json()
            assert dev["model"] == model and dev["implementation"] == {"name": name, "release": release}
            assert c.delete(f"/v1/devices/{dev['id']}").status_code == 204


def test_devices_crud(agent: AgentProcess) -> None:
    with agent.client() as c:
        created = c.post("/v1/devices", json={"model": "example.org/devices/nic", "config": "version=1"})
        assert created.status_code == 201
        dev = created.json()
        assert dev["running"] is True
        assert any(d["id"] == dev["id"] for d in c.get("/v1/devices").json()["devices"])
        one = c.get(f"/v1/devices/{dev['id']}", params={"digest": "true"}).json()
        assert len(one["digest"]) == 32
        assert c.delete(f"/v1/devices/{dev['id']}").status_code == 204
        gone = c.get(f"/v1/devices/{dev['id']}")
        assert gone.status_code == 404 and gone.json()["code"] == "DEVICE_NOT_FOUND"


def test_401_without_token(agent: AgentProcess) -> None:
    with agent.client(auth=False) as c:
        for method, path, body in [
            ("POST", "/v1/devices", {"model": "example.org/devices/nic"}),
            ("POST", "/v1/migrations/outgoing", {"device_id": "x", "destination": {"url": "http://127.0.0.1:1"}}),
            ("POST", "/v1/migrations/incoming", {}),
        ]:
            r = c.request(method, path, json=body)
            assert r.status_code == 401, (path, r.text)
            assert r.json()["code"] == "AUTH_REQUIRED"
        r = c.post("/v1/devices", json={"model": "example.org/devices/nic"}, headers={"Authorization": "Bearer nope"})
        assert r.status_code == 401 and r.json()["code"] == "AUTH_FAILED"


def test_422_with_every_problem(agent: AgentProcess) -> None:
    with agent.client() as c:
        r = c.post("/v1/devices", json={"model": "example.org/devices/nic", "config": "rx-queues=999,nope=1"})
        assert r.status_code == 422
        codes = {e["code"] for e in r.json()["errors"]}
        assert {"VALUE_NOT_ALLOWED", "PARAM_UNKNOWN"} <= codes


def test_507_when_memory_is_exhausted(agent: AgentProcess) -> None:
    with agent.client() as c:
        before = len(c.get("/v1/devices").json()["devices"])
        r = c.post("/v1/devices", json={"model": "example.org/devices/accel", "config": "version=1,mem-size-mib=1024"})
        assert r.status_code == 507 and r.json()["code"] == "INSUFFICIENT_RESOURCES"
        assert len(c.get("/v1/devices").json()["devices"]) == before


def test_migration_endpoints_404_and_list(agent: AgentProcess) -> None:
    with agent.client() as c:
        assert c.get("/v1/migrations").json() == {"migrations": []} or "migrations" in c.get("/v1/migrations").json()
        r = c.get("/v1/migrations/mig-none")
        assert r.status_code == 404 and r.json()["code"] == "MIGRATION_NOT_FOUND"
        r = c.post("/v1/migrations/outgoing", json={"device_id": "dev-none", "destination": {"url": agent.url}})
        assert r.status_code == 404 and r.json()["code"] == "DEVICE_NOT_FOUND"
