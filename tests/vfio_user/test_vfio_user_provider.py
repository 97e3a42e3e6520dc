"""The ``vfio-user`` provider over real backend processes (``devmig vfio-user serve``)."""

from __future__ import annotations

import asyncio
import os
import signal
import stat
import sys
from pathlib import Path

import pytest

from devmig import DevmigError
from devmig.devices import device_class
from devmig.migration import State
from devmig.model import parse_canonical
from devmig.providers import (
    BackendSpec,
    CreateRequest,
    DeviceStatus,
    SdkProvider,
    VfioUserProvider,
    merge_offers,
)
from devmig.vfio_user import migrate

SERVE = (sys.executable, "-m", "devmig", "vfio-user", "serve")


def spec(release: str, **kw) -> BackendSpec:  # type: ignore[no-untyped-def]
    return BackendSpec((*SERVE, release), **kw)


def request(
    provider: VfioUserProvider, impl: str, config: dict, host: dict | None = None
) -> CreateRequest:
    [provided] = [p for p in provider.offer().provided if p.implementation.render() == impl]
    model = provided.document.models[0]
    return CreateRequest(provided.implementation, parse_canonical(model, config), host or {})


def _cmdline(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]


async def _offer_create_delete() -> None:
    provider = VfioUserProvider([spec("acme-nic/1.0.0"), spec("acme-nic/3.0.0", client="vmm")])
    await provider.start()
    offer = provider.offer()
    assert not offer.problems
    assert [(p.implementation.render(), p.carrier) for p in offer.provided] == [
        ("acme-nic 1.0.0", "agent"),
        ("acme-nic 3.0.0", "vmm"),
    ]
    assert offer.provided[1].document == device_class("acme-nic", "3.0.0").document()
    catalog = merge_offers("host-a", [offer])  # one release each: no PROVIDER_CONFLICT
    assert not catalog.problems
    assert sorted(p.carrier for p in catalog.provided.values()) == ["agent", "vmm"]
    sdk = SdkProvider.from_releases({"acme-nic": "3.0.0"}).offer()
    both = merge_offers("host-a", [sdk, offer])  # acme-nic 3.0.0 offered twice
    assert [p.code for p in both.problems] == ["PROVIDER_CONFLICT"]

    device = await provider.create(
        request(provider, "acme-nic 1.0.0", {"rss": True, "rx-queues": 4})
    )
    assert device.process is not None and device.client is not None
    argv = _cmdline(device.process.pid)
    params = sorted(a for a in argv if a.startswith("--m-"))
    model = device_class("acme-nic", "1.0.0").model()
    assert len(params) == len(model.params)  # every parameter, off values included
    assert "--m-rss=on" in params and "--m-rx-queues=4" in params
    assert not any(a.startswith("--migration-version") for a in argv)
    assert await device.client.get_state() is State.RUNNING
    assert provider.status(device) is DeviceStatus.RUNNING
    socket_dir = device.socket_dir
    await provider.delete(device)
    assert device.exit_status == 0 and socket_dir is not None and not socket_dir.exists()

    vmm = await provider.create(request(provider, "acme-nic 3.0.0", {}))
    assert vmm.client is None and Path(vmm.host["socket"]).exists()  # left for the VMM
    await provider.delete(vmm)
    assert vmm.exit_status is not None
    await provider.close()


def test_offer_create_with_every_parameter_and_delete():
    asyncio.run(_offer_create_delete())


async def _refused_and_lost(tmp: Path) -> None:
    provider = VfioUserProvider([spec("acme-blk/2.0.0", pass_host=True)])
    await provider.start()
    with pytest.raises(DevmigError) as info:  # no image: the backend refuses, exit 1
        await provider.create(request(provider, "acme-blk 2.0.0", {}))
    problem = info.value.problems[0]
    assert problem.code == "BACKEND_REFUSED" and problem.value == 1
    assert "IMAGE_MISSING" in (problem.hint or "")
    assert problem.context["problems"][0]["code"] == "IMAGE_MISSING"
    image = tmp / "disk.img"
    image.write_bytes(bytes(4 << 20))
    device = await provider.create(request(provider, "acme-blk 2.0.0", {}, {"image": str(image)}))
    assert device.process is not None
    os.kill(device.process.pid, signal.SIGKILL)
    await device.process.wait()
    assert provider.status(device) is DeviceStatus.LOST and device.exit_status == -signal.SIGKILL
    await provider.delete(device)
    assert not provider.devices


def test_a_refusal_is_backend_refused_with_the_backends_words_and_a_death_is_lost(tmp_path):
    asyncio.run(_refused_and_lost(tmp_path))


async def _migrate_between_provided(tmp: Path) -> None:
    provider = VfioUserProvider([spec("acme-nic/1.0.0"), spec("acme-nic/3.0.0")])
    await provider.start()
    config = {"rss": True, "rx-queues": 4}
    source = await provider.create(request(provider, "acme-nic 3.0.0", config))
    destination = await provider.create(request(provider, "acme-nic 1.0.0", config))
    assert source.client is not None and destination.client is not None
    await asyncio.sleep(0.05)
    await migrate(source.client, destination.client)
    digest = await source.client.read(0, 0x20, 16)
    assert await destination.client.read(0, 0x20, 16) == digest
    await provider.close()


def test_provided_backends_migrate_rollback(tmp_path):
    asyncio.run(_migrate_between_provided(tmp_path))


OPAQUE = """#!{python}
import sys
from devmig.vfio_user import ServeOptions, run_serve
path = [a.split("=", 1)[1] for a in sys.argv if a.startswith("--socket-path=")][0]
sys.exit(run_serve(ServeOptions("acme-nic/3.0.0", socket_path=path)))
"""


async def _opaque(tmp: Path) -> None:
    program = tmp / "tiny-backend"
    program.write_text(OPAQUE.format(python=sys.executable))
    program.chmod(program.stat().st_mode | stat.S_IXUSR)
    provider = VfioUserProvider([BackendSpec((str(program), "--mode=a"), opaque=True)])
    await provider.start()
    [provided] = provider.offer().provided
    model_id = provided.document.models[0].model
    assert (
        model_id.startswith("opaque:") and provided.implementation.name == "vfio-user:tiny-backend"
    )
    other = VfioUserProvider([BackendSpec((str(program), "--mode=b"), opaque=True)])
    await other.start()
    assert (
        other.offer().provided[0].document.models[0].model != model_id
    )  # fixed arguments are identity
    device = await provider.create(
        CreateRequest(provided.implementation, parse_canonical(provided.document.models[0], {}))
    )
    assert device.process is not None and not [
        a for a in _cmdline(device.process.pid) if a.startswith("--m-")
    ]
    assert device.client is not None and (await device.client.device_info()).num_regions == 9
    await provider.close()


def test_opaque_backends_are_never_probed_and_named_by_their_program(tmp_path):
    asyncio.run(_opaque(tmp_path))
