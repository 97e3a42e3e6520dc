"""A real agent with ``--provider kernel:ROOT`` on the FUSE-mounted driver twin (DESIGN §9).

The agent reports kernel devices beside its sdk devices, creates and deletes
them through sysfs, says the VMM carries their data, and refuses to migrate
one with ``KERNEL_DEVICE_DATA_BY_VMM``; a release offered by the sdk and the
kernel providers both is a ``PROVIDER_CONFLICT`` that stops it from starting.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from devmig_procs import announced, popen_agent, reap
from fuse_needs import require
from kernel_trees import NICVF, VGPU, host_twin, vgpu

from devmig.devices import CATALOG
from devmig.model import expand
from devmig.providers import (
    DriverTwin,
    MdevParentSpec,
    MdevTypeSpec,
    driver_twin,
    fuse_mounted,
    materialize,
)

TOKEN = "kernel-agent-token"


@pytest.fixture
def twin() -> DriverTwin:
    return host_twin(
        vgpu_accepts=vgpu(framebuffer_max=1024)
    )  # publishes up to 2048, refuses more than 1024


@pytest.fixture
def agent(twin: DriverTwin, tmp_path: Path) -> Iterator[httpx2.Client]:
    require("fusermount3")
    point = tmp_path / "sys"
    point.mkdir()
    with fuse_mounted(twin.files, str(point)):
        process, _ = popen_agent(
            "host-k", tmp_path / "agent", "--provider", f"kernel:{point}", token=TOKEN
        )
        try:
            url = announced("agent host-k", process)["url"]
            with httpx2.Client(
                base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30
            ) as client:
                yield client
        finally:
            reap(process)


def test_the_report_is_the_union_and_providers_say_who_carries(agent: httpx2.Client) -> None:
    report = agent.get("/v1/report").json()
    names = [d["implementation"]["name"] for d in report["implementations"]]
    assert names[: len(CATALOG)] == list(CATALOG)
    assert names[len(CATALOG) :] == ["acme-vgpu", "kernel:acme_mdev/acme-vgpu-legacy", "acme-nicvf"]
    providers = {
        p["implementation"]["name"]: p for p in agent.get("/v1/providers").json()["implementations"]
    }
    assert (providers["acme-vgpu"]["provider"], providers["acme-vgpu"]["carrier"]) == (
        "kernel",
        "vmm",
    )
    assert providers["acme-vgpu"]["capacity"] == 2
    # the host report says it too (DESIGN §9): a manager plans no move whose data nobody carries
    impls = {d["implementation"]["name"]: d["implementation"]["release"] for d in report["implementations"]}
    assert report["carriers"][f"acme-vgpu/{impls['acme-vgpu']}"] == "vmm"
    assert report["carriers"][f"acme-nic/{impls['acme-nic']}"] == "agent"
    assert set(report["carriers"]) == {f"{n}/{r}" for n, r in impls.items()}
    assert (providers["acme-nic"]["provider"], providers["acme-nic"]["carrier"]) == ("sdk", "agent")
    model = agent.get(f"/v1/models/{VGPU}").json()
    assert (
        model["implementation"] == {"name": "acme-vgpu", "release": "5.1.0"}
        and model["latest"] == "2"
    )


def test_kernel_devices_are_created_listed_refused_and_deleted(
    agent: httpx2.Client, twin: DriverTwin
) -> None:
    made = agent.post("/v1/devices", json={"model": VGPU, "config": "version=2"})
    assert made.status_code == 201, made.text
    device = made.json()
    assert (device["provider"], device["carrier"], device["version"], device["state"]) == (
        "kernel",
        "vmm",
        "2",
        "RUNNING",
    )
    name = device["host"]["uuid"]
    model = vgpu().find(VGPU)
    assert model is not None
    assert twin.devices[name].config() == expand(model, "version=2")
    # a destination device from a source's canonical configuration: omitted parameters at their off values
    dest = agent.post(
        "/v1/devices", json={"model": NICVF, "config": {"queues": 8}, "canonical": True}
    ).json()
    assert dest["config"] == {"queues": 8} and dest["host"]["vf"] == "0000:01:00.2"
    assert twin.devices["0000:01:00.2"].values == {"rss": False, "queues": 8}
    listed = {d["id"]: d["provider"] for d in agent.get("/v1/devices").json()["devices"]}
    assert listed == {device["id"]: "kernel", dest["id"]: "kernel"}
    assert agent.get("/v1/health").json()["devices"] == 2
    # the driver refuses 2048: 422, and no device is left
    refused = agent.post("/v1/devices", json={"model": VGPU, "config": "framebuffer=2048"})
    assert refused.status_code == 422 and refused.json()["code"] == "BACKEND_REFUSED"
    assert refused.json()["errors"][0]["loc"] == ["config", "framebuffer"]
    assert set(twin.mdevs()) == {name}
    # the agent does not carry a kernel device's data
    destination = {"url": "http://127.0.0.1:9", "token": "x"}
    moved = agent.post("/v1/migrations/outgoing", json={"device_id": device["id"], "destination": destination})
    assert moved.status_code == 409 and moved.json()["code"] == "KERNEL_DEVICE_DATA_BY_VMM"
    assert "VMM" in moved.json()["errors"][0]["hint"]
    assert agent.delete(f"/v1/devices/{device['id']}").status_code == 204
    assert agent.delete(f"/v1/devices/{dest['id']}").status_code == 204
    assert twin.mdevs() == {} and twin.removed[-1] == name
    assert twin.devices["0000:01:00.2"].values == {"rss": False, "queues": 1}
    assert all(not writes for writes in twin.vf_remove_writes().values())
    assert agent.get(f"/v1/devices/{device['id']}").status_code == 404


def test_a_release_offered_by_sdk_and_kernel_stops_the_agent(tmp_path: Path) -> None:
    nic = CATALOG["acme-nic"][-1].document()  # the sdk hosts acme-nic's newest release too
    root = tmp_path / "sys"
    materialize(driver_twin([MdevParentSpec("0000:00:02.0", "acme_mdev", (MdevTypeSpec("nic", nic),))]).files,
                str(root))  # fmt: skip
    process, _ = popen_agent(
        "host-c", tmp_path / "agent", "--provider", f"kernel:{root}", token=TOKEN
    )
    try:
        out, err = process.communicate(timeout=60)
        assert process.returncode == 2
        assert "PROVIDER_CONFLICT" in out + err
    finally:
        reap(process)


def test_an_unknown_provider_is_a_usage_error(tmp_path: Path) -> None:
    process, _ = popen_agent("host-u", tmp_path / "agent", "--provider", "gpu:/sys", token=TOKEN)
    try:
        out, err = process.communicate(timeout=60)
        assert process.returncode == 2 and "unknown provider" in out + err
    finally:
        reap(process)


def test_the_hosts_report_is_the_union_without_fuse(tmp_path: Path) -> None:
    """The agent's Host on a static tree shaped like sysfs: the report, a kernel model's definition, a conflict."""
    from devmig import DevmigError
    from devmig.agent._host import Host
    from devmig.agent._settings import AgentSettings

    root = tmp_path / "sys"
    materialize(host_twin().files, str(root))
    host = Host(
        AgentSettings(host_name="h", providers=(f"kernel:{root}",), state_dir=tmp_path / "state")
    )
    names = [d.implementation.name for d in host.report().implementations]
    assert names == [*CATALOG, "acme-vgpu", "kernel:acme_mdev/acme-vgpu-legacy", "acme-nicvf"]
    impl, model = host.definition_of(VGPU)
    assert impl.render() == "acme-vgpu 5.1.0" and model == vgpu().find(VGPU)
    assert host.catalog.carrier(impl) == "vmm"
    with pytest.raises(DevmigError) as e:
        host.definition_of("example.org/devices/none")
    assert e.value.codes == ["MODEL_UNKNOWN"]
    clash = tmp_path / "clash"
    nic = CATALOG["acme-nic"][-1].document()
    materialize(
        driver_twin([MdevParentSpec("0000:00:02.0", "m", (MdevTypeSpec("nic", nic),))]).files,
        str(clash),
    )
    with pytest.raises(DevmigError) as e:
        Host(
            AgentSettings(
                host_name="h", providers=(f"kernel:{clash}",), state_dir=tmp_path / "state"
            )
        )
    assert e.value.codes == ["PROVIDER_CONFLICT"]
