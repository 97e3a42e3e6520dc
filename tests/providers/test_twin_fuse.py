"""The driver twin mounted with FUSE: plain tools, the kernel provider on disk, and mdevctl.

These tests need /dev/fuse, libfuse 3 (Debian's ``fuse3``), ``mdevctl`` and
``unshare`` (util-linux), and root for the private mount namespace
(``tools/test-services`` installs the packages). Without them they are
skipped -- except in CI (``CI=true``), where a missing tool is a failure.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fuse_needs import require
from kernel_trees import PARENT, TYPE, VGPU, host_twin, vgpu

from devmig.model import expand
from devmig.providers import CreateRequest, DriverTwin, KernelProvider, fuse_mounted

BIN = Path(sys.executable).parent


@pytest.fixture
def twin() -> DriverTwin:
    return host_twin()


@pytest.fixture
def mount(twin: DriverTwin, tmp_path: Path) -> Iterator[Path]:
    require("fusermount3")
    point = tmp_path / "sys"
    point.mkdir()
    with fuse_mounted(twin.files, str(point)):
        yield point
    assert not os.path.ismount(point)


def sh(script: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60, **kw)  # type: ignore[call-overload, no-any-return]


def test_cat_and_echo_act_on_the_twin_as_on_a_driver(twin: DriverTwin, mount: Path) -> None:
    types = f"{mount}/class/mdev_bus/{PARENT}/mdev_supported_types/acme-vgpu-2g"
    assert sh(f"cat {types}/available_instances").stdout == "2\n"
    assert os.readlink(f"{mount}/class/mdev_bus/{PARENT}") == f"../../devices/pci0000:00/{PARENT}"
    name = str(uuid.UUID(int=7))
    assert sh(f"echo {name} > {types}/create").returncode == 0
    dev = f"{mount}/bus/mdev/devices/{name}"
    assert sh(f"ls {dev}/migration").stdout.split() == [
        "device_model",
        "display",
        "encoder",
        "framebuffer",
        "version",
    ]
    assert sh(f"cat {types}/available_instances").stdout == "1\n"
    refused = sh(f"echo 300 > {dev}/migration/framebuffer")
    assert refused.returncode != 0 and "Invalid argument" in refused.stderr
    assert (
        sh(f"echo 512 > {dev}/migration/framebuffer && cat {dev}/migration/framebuffer").stdout
        == "512\n"
    )
    assert (
        json.loads(sh(f"cat {types}/migration_info.json").stdout)["implementation"]["name"]
        == "acme-vgpu"
    )
    twin.open(name)
    busy = sh(f"echo 768 > {dev}/migration/framebuffer")
    assert busy.returncode != 0 and "busy" in busy.stderr
    assert sh(f"echo 1 > {dev}/remove").returncode == 0
    assert not os.path.exists(dev) and twin.mdevs() == {}
    assert sh(f"cat {types}/available_instances").stdout == "2\n"


def test_the_kernel_provider_creates_through_the_mount(twin: DriverTwin, mount: Path) -> None:
    kernel = KernelProvider.at(str(mount))
    assert [d.implementation.name for d in kernel.offer().documents] == [
        "acme-vgpu",
        "kernel:acme_mdev/acme-vgpu-legacy",
        "acme-nicvf",
    ]
    model = vgpu().find(VGPU)
    assert model is not None
    device = kernel.create_now(
        CreateRequest(
            vgpu().implementation, expand(model, "version=2,encoder=av1,framebuffer=1024")
        )
    )
    assert kernel.read_config(device) == {
        "device_model": VGPU,
        "display": "1",
        "encoder": "av1",
        "framebuffer": "1024",
        "version": "",
    }
    assert twin.devices[device.name].config() == device.config
    kernel.delete_now(device)
    assert twin.mdevs() == {} and twin.removed == [device.name]


def _mdevctl(
    mount: Path, tmp_path: Path, device: dict[str, object], name: str
) -> subprocess.CompletedProcess[str]:
    """define + start in a private mount namespace: tmpfs over /etc/mdevctl.d, the twin over /sys."""
    made = subprocess.run(
        [str(BIN / "devmig"), "kernel", "mdevctl-json", json.dumps(device), "--type", "acme-vgpu-2g",
         "--sysfs", str(mount), "-o", str(tmp_path / "device.json")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    script = f"""set -e
mount --make-rprivate /
mount -t tmpfs devmig-test /etc/mdevctl.d
mkdir -p /etc/mdevctl.d/scripts.d/callouts /etc/mdevctl.d/scripts.d/notifiers
mount --bind {mount} /sys
mdevctl define --uuid {name} --parent {PARENT} --jsonfile {tmp_path}/device.json
mdevctl list --defined --dumpjson
mdevctl start --uuid {name}
echo started
for f in /sys/bus/mdev/devices/{name}/migration/*; do echo "$(basename $f)=$(cat $f)"; done
"""
    return subprocess.run(["unshare", "-m", "--propagation", "private", "bash", "-c", script],
                          capture_output=True, text=True, timeout=120)  # fmt: skip


def test_mdevctl_defines_and_starts_a_device_with_the_canonical_configuration(
    twin: DriverTwin, mount: Path, tmp_path: Path
) -> None:
    require("mdevctl", "unshare", root=True)
    name = str(uuid.UUID(int=42))
    config = {"framebuffer": 512, "display": True, "encoder": "h264"}
    done = _mdevctl(mount, tmp_path, {"model": VGPU, "config": config}, name)
    assert done.returncode == 0, done.stderr + done.stdout
    read_back = dict(
        line.split("=", 1) for line in done.stdout.split("started\n", 1)[1].splitlines()
    )
    assert read_back == {
        "device_model": VGPU,
        "display": "1",
        "encoder": "h264",
        "framebuffer": "512",
        "version": "",
    }
    model = vgpu().find(VGPU)
    assert model is not None
    assert twin.devices[name].config() == expand(model, "version=2,encoder=h264")
    assert (
        Path("/etc/mdevctl.d", PARENT, name).exists() is False
    )  # the definition stayed in the namespace
    path, data, refused = twin.files.log[0]
    assert (path, data.strip(), refused) == (f"{TYPE}/create", name.encode(), None)
    assert [p.rsplit("/", 1)[-1] for p, _, _ in twin.files.log[1:]] == [
        "device_model",
        "framebuffer",
        "display",
        "encoder",
        "display",
        "encoder",
        "framebuffer",
    ]


def test_a_refused_attribute_makes_mdevctl_start_fail_and_leaves_no_device(tmp_path: Path) -> None:
    twin = host_twin(vgpu_accepts=vgpu(framebuffer_max=1024))  # publishes 2048, refuses it
    require("fusermount3", "mdevctl", "unshare", root=True)
    point = tmp_path / "sys"
    point.mkdir()
    name = str(uuid.UUID(int=43))
    with fuse_mounted(twin.files, str(point)):
        done = _mdevctl(point, tmp_path, {"model": VGPU, "config": {"framebuffer": 2048}}, name)
        assert done.returncode != 0
        assert "started" not in done.stdout
        assert not (point / "bus" / "mdev" / "devices" / name).exists()
    assert twin.mdevs() == {} and twin.removed == [name]
    refused = [(p, d) for p, d, errno_name in twin.files.log if errno_name == "EINVAL"]
    assert [p.rsplit("/", 1)[-1] for p, _ in refused] == ["framebuffer"]


def test_devmig_kernel_twin_serves_a_mount_until_sigterm(tmp_path: Path) -> None:
    require("fusermount3")
    import signal

    from kernel_trees import nicvf

    (tmp_path / "vgpu.json").write_text(json.dumps(vgpu().to_json()))
    (tmp_path / "nicvf.json").write_text(json.dumps(nicvf().to_json()))
    point = tmp_path / "mnt"
    point.mkdir()
    proc = subprocess.Popen(
        [str(BIN / "devmig"), "kernel", "twin", str(point), "--mdev", f"{PARENT}/acme-vgpu-2g={tmp_path}/vgpu.json",
         "--opaque-mdev", f"{PARENT}/legacy", "--vf", f"0000:01:00.2={tmp_path}/nicvf.json", "--instances", "3",
         "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        announced = json.loads(proc.stdout.readline())
        assert announced["mount"] == str(point) and os.path.ismount(point)
        offer = KernelProvider.at(str(point)).offer()
        assert [d.implementation.name for d in offer.documents] == [
            "acme-vgpu",
            "kernel:twin_mdev/legacy",
            "acme-nicvf",
        ]
        assert offer.capacity["acme-vgpu 5.1.0"] == 3
        assert (
            sh(f"readlink {point}/bus/pci/devices/0000:01:00.2/driver")
            .stdout.strip()
            .endswith("twin_vfio_pci")
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, proc.stderr.read() if proc.stderr else ""
    assert not os.path.ismount(point)
