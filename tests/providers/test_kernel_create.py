"""Creating and deleting kernel devices on the driver twin (DESIGN §9)."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from pathlib import Path

import pytest
from kernel_trees import NICVF, PARENT, TYPE, VF1, VF2, VGPU, VGPU_LITE, host_twin, nicvf, vgpu

from devmig import ConfigError, DevmigError
from devmig.model import Implementation, expand
from devmig.providers import (
    CreateRequest,
    DeviceStatus,
    DriverTwin,
    KernelDevice,
    KernelProvider,
    attribute_writes,
    materialize,
)

VGPU_IMPL = Implementation(name="acme-vgpu", release="5.1.0")
NICVF_IMPL = Implementation(name="acme-nicvf", release="2.0.0")
DEV = "devices/pci0000:00"


def uuids() -> itertools.count[int]:
    return itertools.count(1)


def provider(twin: DriverTwin) -> KernelProvider:
    counter = uuids()
    return KernelProvider(twin.files, new_uuid=lambda: str(uuid.UUID(int=next(counter))))


def vgpu_request(
    options: str = "version=2,encoder=h264", model: str = VGPU, **host: str
) -> CreateRequest:
    return CreateRequest(VGPU_IMPL, expand(vgpu().find(model), options), host)  # type: ignore[arg-type]


def vf_request(options: str = "version=2", **host: str) -> CreateRequest:
    return CreateRequest(NICVF_IMPL, expand(nicvf().models[0], options), host)


def attrs(twin: DriverTwin, path: str) -> dict[str, str]:
    base = f"{path}/migration"
    return {
        n: twin.files.read(f"{base}/{n}").decode().rstrip("\n") for n in twin.files.listdir(base)
    }


def test_an_mdev_is_created_by_writes_in_order_and_reads_back_its_configuration() -> None:
    twin = host_twin()
    kp = provider(twin)
    request = vgpu_request()
    device = asyncio.run(kp.create(request))
    assert isinstance(device, KernelDevice) and device.kind == "mdev" and device.carrier == "vmm"
    name = str(uuid.UUID(int=1))
    assert device.name == name and device.path == f"bus/mdev/devices/{name}"
    assert device.host == {"parent": PARENT, "type": "acme-vgpu-2g", "uuid": name}
    expected = [(f"{TYPE}/create", name.encode())] + [
        (f"bus/mdev/devices/{name}/{rel}", value)
        for rel, value in attribute_writes(device.model, request.config)
    ]
    assert [(p, d) for p, d, _ in twin.files.log] == expected
    assert [p.split("/")[-1] for p, _ in expected[1:]] == [
        "device_model",
        "framebuffer",
        "display",
        "encoder",
        "display",
        "encoder",
        "framebuffer",
    ]
    assert attrs(twin, device.path) == {
        "device_model": VGPU,
        "framebuffer": "512",
        "display": "1",
        "encoder": "h264",
        "version": "",
    }
    assert twin.devices[name].config() == request.config
    assert twin.available[TYPE] == 1
    assert kp.offer().capacity["acme-vgpu 5.1.0"] == 1
    assert kp.status(device) is DeviceStatus.RUNNING
    twin.open(name)  # a VMM can open it: the configuration is one the driver accepts
    twin.close(name)
    asyncio.run(kp.delete(device))
    assert twin.removed == [name] and twin.available[TYPE] == 2
    assert twin.files.log[-1] == (f"bus/mdev/devices/{name}/remove", b"1", None)
    assert kp.status(device) is DeviceStatus.LOST


def test_a_published_version_reads_back_by_name_and_the_second_model_is_created() -> None:
    twin = host_twin()
    kp = provider(twin)
    device = kp.create_now(vgpu_request("version=2"))
    assert attrs(twin, device.path)["version"] == "2"
    lite = kp.create_now(vgpu_request("heads=3", model=VGPU_LITE))
    assert attrs(twin, lite.path) == {"device_model": VGPU_LITE, "heads": "3", "version": ""}


def _only_removes_mdevs(twin: DriverTwin) -> None:
    assert twin.mdevs() == {}
    assert twin.available[TYPE] == 2
    assert all(not writes for writes in twin.vf_remove_writes().values())
    removes = [p for p, _, _ in twin.files.log if p.endswith("/remove")]
    assert all(p.startswith("bus/mdev/devices/") for p in removes)


def test_a_model_the_driver_refuses_removes_the_mdev() -> None:
    twin = host_twin(vgpu_accepts=vgpu(lite=False))  # publishes vgpu-lite, refuses it
    kp = provider(twin)
    with pytest.raises(DevmigError) as e:
        kp.create_now(vgpu_request("heads=2", model=VGPU_LITE))
    (problem,) = e.value.problems
    assert problem.code == "BACKEND_REFUSED" and problem.loc == ("model",)
    assert problem.context["errno"] == "EINVAL" and problem.context["undone"] is True
    assert problem.hint is not None and "Invalid argument" in problem.hint
    assert problem.value == VGPU_LITE
    assert twin.removed == [str(uuid.UUID(int=1))]
    _only_removes_mdevs(twin)


def test_a_value_the_driver_refuses_removes_the_mdev() -> None:
    twin = host_twin(vgpu_accepts=vgpu(framebuffer_max=1024))
    kp = provider(twin)
    with pytest.raises(DevmigError) as e:
        kp.create_now(vgpu_request("framebuffer=2048"))
    (problem,) = e.value.problems
    assert (problem.code, problem.loc, problem.value) == (
        "BACKEND_REFUSED",
        ("config", "framebuffer"),
        "2048",
    )
    assert (
        problem.context["path"] == f"/sys/bus/mdev/devices/{uuid.UUID(int=1)}/migration/framebuffer"
    )
    _only_removes_mdevs(twin)


def test_a_device_opened_before_its_attributes_are_written_is_removed() -> None:
    twin = host_twin()
    twin.on_create = twin.open  # a VMM races the agent and opens the new mdev
    kp = provider(twin)
    with pytest.raises(DevmigError) as e:
        kp.create_now(vgpu_request())
    (problem,) = e.value.problems
    assert problem.code == "BACKEND_REFUSED" and problem.context["errno"] == "EBUSY"
    _only_removes_mdevs(twin)


def test_a_configuration_the_document_refuses_writes_nothing() -> None:
    twin = host_twin()
    kp = provider(twin)
    bad = CreateRequest(VGPU_IMPL, expand(vgpu(framebuffer_max=4096).models[0], "framebuffer=4096"))
    with pytest.raises(ConfigError) as e:
        kp.create_now(bad)
    assert e.value.codes == ["VALUE_NOT_ALLOWED"]
    assert twin.files.log == []
    with pytest.raises(DevmigError) as e:
        kp.create_now(CreateRequest(Implementation(name="acme-vgpu", release="9"), bad.config))
    assert e.value.codes == ["MODEL_UNKNOWN"]
    with pytest.raises(DevmigError) as e:
        kp.create_now(vgpu_request(parent="0000:00:09.0"))
    assert e.value.codes == ["MODEL_UNKNOWN"] and twin.files.log == []


def test_concurrent_creations_never_exceed_available_instances() -> None:
    twin = host_twin(available=3)
    kp = provider(twin)

    async def many() -> list[KernelDevice | BaseException]:
        return await asyncio.gather(
            *(kp.create(vgpu_request()) for _ in range(10)), return_exceptions=True
        )

    results = asyncio.run(many())
    made = [r for r in results if isinstance(r, KernelDevice)]
    refused = [r for r in results if isinstance(r, DevmigError)]
    assert len(made) == 3 and len(refused) == 7
    assert {r.code for r in refused} == {"INSUFFICIENT_RESOURCES"}
    assert twin.available[TYPE] == 0 and len(twin.mdevs()) == 3
    assert kp.offer().capacity["acme-vgpu 5.1.0"] == 0
    for device in made:
        asyncio.run(kp.delete(device))
    assert twin.available[TYPE] == 3


def test_a_vf_is_claimed_configured_and_given_its_off_values_back() -> None:
    twin = host_twin()
    kp = provider(twin)
    first = kp.create_now(vf_request())
    second = kp.create_now(vf_request("queues=8"))
    assert (first.kind, first.name, second.name) == ("vf", VF1, VF2)
    assert attrs(twin, first.path) == {
        "device_model": NICVF,
        "rss": "1",
        "queues": "4",
        "version": "2",
    }
    with pytest.raises(DevmigError) as e:
        kp.create_now(vf_request())
    assert e.value.codes == ["INSUFFICIENT_RESOURCES"]
    assert kp.offer().capacity["acme-nicvf 2.0.0"] == 0
    assert kp.status(first) is DeviceStatus.RUNNING
    asyncio.run(kp.delete(first))
    assert attrs(twin, first.path) == {
        "device_model": NICVF,
        "rss": "0",
        "queues": "1",
        "version": "1",
    }
    assert VF1 in twin.devices  # never removed
    assert kp.create_now(vf_request()).name == VF1
    assert all(not writes for writes in twin.vf_remove_writes().values())
    assert not [p for p, _, _ in twin.files.log if p.endswith("/remove")]


def test_a_vf_refusing_a_value_gets_its_off_values_back_and_is_never_removed() -> None:
    twin = host_twin(vf_accepts=nicvf(queues_max=4))
    kp = provider(twin)
    with pytest.raises(DevmigError) as e:
        kp.create_now(vf_request("rss=on,queues=8"))
    (problem,) = e.value.problems
    assert problem.code == "BACKEND_REFUSED" and problem.loc == ("config", "queues")
    assert attrs(twin, twin.devices[VF1].path)["queues"] == "1"
    assert attrs(twin, twin.devices[VF1].path)["rss"] == "0"
    assert all(not writes for writes in twin.vf_remove_writes().values())
    assert kp.create_now(vf_request("rss=on,queues=4")).name == VF1  # released: claimable again


def test_an_opened_vf_is_skipped_for_the_next() -> None:
    twin = host_twin()
    twin.open(VF1)
    kp = provider(twin)
    assert kp.create_now(vf_request()).name == VF2
    with pytest.raises(DevmigError) as e:
        kp.create_now(vf_request())
    assert e.value.codes == ["INSUFFICIENT_RESOURCES"]
    assert "EBUSY" in str(e.value.problems[0].context["refused"])
    assert all(not writes for writes in twin.vf_remove_writes().values())


def test_opaque_types_create_without_attributes() -> None:
    twin = host_twin()
    kp = provider(twin)
    legacy = kp.offer().documents[1]
    device = kp.create_now(CreateRequest(legacy.implementation, expand(legacy.models[0], "")))
    assert device.host["type"] == "acme-vgpu-legacy"
    assert [p.split("/")[-1] for p, _, _ in twin.files.log] == ["create"]
    with pytest.raises(DevmigError) as e:
        kp.create_now(CreateRequest(legacy.implementation, expand(legacy.models[0], "")))
    assert e.value.codes == ["INSUFFICIENT_RESOURCES"]
    kp.delete_now(device)
    assert twin.mdevs() == {}


def test_the_twin_refuses_what_a_driver_refuses() -> None:
    twin = host_twin()
    kp = provider(twin)
    device = kp.create_now(vgpu_request())
    fs = twin.files
    base = f"{device.path}/migration"
    for attr, value, code in [
        ("framebuffer", b"300", "EINVAL"),
        ("framebuffer", b"x", "EINVAL"),
        ("display", b"yes", "EINVAL"),
        ("encoder", b"vp9", "EINVAL"),
        ("device_model", b"example.org/other", "EINVAL"),
        ("version", b"7", "EINVAL"),
    ]:
        with pytest.raises(Exception) as e:
            fs.write(f"{base}/{attr}", value)
        assert e.value.name == code  # type: ignore[attr-defined]
    fs.write(f"{base}/framebuffer", b"768\n")  # a trailing newline is ignored
    fs.write(f"{base}/encoder", b"av1")
    fs.write(f"{base}/framebuffer", b"512")
    with pytest.raises(Exception) as e:  # AV1 needs 1 GiB: opening checks the constraints
        twin.open(device.name)
    assert e.value.name == "EINVAL"  # type: ignore[attr-defined]
    fs.write(f"{base}/framebuffer", b"1024")
    twin.open(device.name)
    with pytest.raises(Exception) as e:
        fs.write(f"{base}/framebuffer", b"256")
    assert e.value.name == "EBUSY"  # type: ignore[attr-defined]
    with pytest.raises(Exception) as e:
        fs.write(f"{TYPE}/create", str(uuid.UUID(int=1)).encode())
    assert e.value.name == "EEXIST"  # type: ignore[attr-defined]
    with pytest.raises(Exception) as e:
        fs.write(f"{TYPE}/create", b"not-a-uuid")
    assert e.value.name == "EINVAL"  # type: ignore[attr-defined]
    with pytest.raises(Exception) as e:
        fs.write(f"{TYPE}/available_instances", b"9")
    assert e.value.name == "EACCES"  # type: ignore[attr-defined]


def test_a_disk_tree_of_the_twin_with_a_live_device_reads_back(tmp_path: Path) -> None:
    twin = host_twin()
    device = provider(twin).create_now(vgpu_request())
    root = tmp_path / "sys"
    materialize(twin.files, str(root))
    on_disk = root / "bus" / "mdev" / "devices" / device.name
    assert on_disk.is_symlink() and (on_disk / "mdev_type").resolve().name == "acme-vgpu-2g"
    assert (on_disk / "migration" / "framebuffer").read_text() == "512\n"
    assert (root / TYPE / "devices" / device.name / "migration" / "encoder").read_text() == "h264\n"
    assert (root / DEV / PARENT / device.name).is_dir()
