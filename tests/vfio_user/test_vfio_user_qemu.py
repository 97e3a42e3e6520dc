"""A real client no one here wrote: QEMU's ``vfio-user-pci`` attaches to ``devmig vfio-user serve``.

For each reference device, ``devmig vfio-user serve`` (no background work,
so memory is as created) and QEMU (≥ 10.1, from Debian trixie-backports in
the chroot ``tools/qemu-chroot`` builds) with ``-accel qtest``: through
qtest the test reads config space (vendor and device IDs, class), sizes the
BARs by writing all ones, maps them (BAR address, memory enable), reads
BAR0's control block and the first bytes of device memory, writes and reads
back a word, and compares every value with devmig's own view (the same
release and configuration in this process). QMP ``query-pci`` must agree.
The test prints the QEMU version it ran. Without the chroot it skips with
the reason — and under ``CI=true`` fails with it.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from qemu_qtest import Qemu, chroot_root, qemu_version

from devmig.devices import newest
from devmig.vfio_user import PCI_IDS, DeviceBackend, RegionRead, Request

SERVE_ARGS = {
    "acme-nic": ["--migration-version=2"],
    "acme-blk": ["--migration-version=2"],
    "acme-accel": ["--migration-version=1"],
}
BAR_BASE = 0xC0000000


@pytest.fixture(scope="module")
def qemu_root() -> Path:
    root, why = chroot_root()
    if root is None:
        if os.environ.get("CI"):
            pytest.fail(f"QEMU's vfio-user client is not available: {why}")
        pytest.skip(why)
    return root


def _own_view(impl: str, host: dict[str, str]) -> DeviceBackend:
    cls = newest(impl)
    version = SERVE_ARGS[impl][0].split("=", 1)[1]
    return DeviceBackend(lambda: cls.create(f"version={version}", host=host), log=lambda _: None)


def _read(backend: DeviceBackend, region: int, offset: int, count: int) -> bytes:
    reply = backend.handle(Request(0, RegionRead(region, offset, count)))
    return reply.data  # type: ignore[attr-defined, no-any-return]


@pytest.mark.parametrize("impl", list(SERVE_ARGS))
def test_qemu_attaches_to_devmig_vfio_user_serve(impl, qemu_root, tmp_path, capsys):
    version = qemu_version(qemu_root)
    with capsys.disabled():
        print(f"\n{impl}: {version}")
    sock_dir = Path(os.path.join(qemu_root, "tmp", f"devmig-{impl}-{os.getpid()}"))
    sock_dir.mkdir(exist_ok=True)
    sock = sock_dir / "dev.sock"
    host = {}
    args = [*SERVE_ARGS[impl], "--steps-per-tick=0"]
    if impl == "acme-blk":
        image = tmp_path / "disk.img"
        image.write_bytes(bytes(4 << 20))
        host["image"] = str(image)
        args.append(f"--host-image={image}")
    release = newest(impl).implementation().release
    serve = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "devmig",
            "vfio-user",
            "serve",
            f"{impl}/{release}",
            f"--socket-path={sock}",
            *args,
        ],
        stderr=subprocess.PIPE,
    )
    own = _own_view(impl, host)
    try:
        assert serve.stderr is not None
        for line in serve.stderr:
            if b'"listening"' in line:
                break
        qemu = Qemu(qemu_root, "/" + str(sock.relative_to(qemu_root)))
        try:
            _check(qemu, own, impl)
        finally:
            qemu.close()
        assert serve.wait(30) == 0  # QEMU's connection closed: the backend exits
        assert not sock.exists()
    finally:
        if serve.poll() is None:
            serve.kill()
            serve.wait()
        own.close()
        shutil.rmtree(sock_dir, ignore_errors=True)


def _check(qemu: Qemu, own: DeviceBackend, impl: str) -> None:
    model = newest(impl).model_id
    ids = PCI_IDS[model]
    assert qemu.config_read(0) == ids.device << 16 | ids.vendor
    assert qemu.config_read(8) >> 8 == ids.class_code
    assert qemu.config_read(0) == int.from_bytes(_read(own, 7, 0, 4), "little")
    sizes = []
    for bar in range(6):
        qemu.config_write(0x10 + 4 * bar, 0xFFFFFFFF)
        probe = qemu.config_read(0x10 + 4 * bar)
        sizes.append(0 if probe == 0 else (~(probe & 0xFFFFFFF0) & 0xFFFFFFFF) + 1)
    assert sizes == [*own.bar_sizes, *[0] * (6 - len(own.bar_sizes))]
    address = BAR_BASE
    addresses = []
    for bar, size in enumerate(sizes):
        if size:
            address = -(-address // size) * size
            qemu.config_write(0x10 + 4 * bar, address)
            addresses.append(address)
            address += size
    qemu.config_write(4, qemu.config_read(4) | 0x2)  # memory space on
    bar0 = addresses[0]
    head = struct.pack("<II", qemu.readl(bar0), qemu.readl(bar0 + 4))
    assert head == _read(own, 0, 0, 8)  # magic DVMG and the state (RUNNING), as devmig sees them
    if len(addresses) > 1:
        words = b"".join(struct.pack("<I", qemu.readl(addresses[1] + 4 * i)) for i in range(16))
        assert words == _read(own, 1, 0, 64)  # device memory as created
        qemu.writel(addresses[1] + 0x100, 0x12345678)
        assert qemu.readl(addresses[1] + 0x100) == 0x12345678
    pci = qemu.qmp("query-pci")
    [device] = [d for d in pci[0]["devices"] if d["slot"] == qemu.slot]
    assert (device["id"]["vendor"], device["id"]["device"]) == (ids.vendor, ids.device)
    assert [r["size"] for r in device["regions"]] == [s for s in sizes if s]
    assert [r["address"] for r in device["regions"]] == addresses


def test_the_chroot_tool_reports_its_path(qemu_root):
    done = subprocess.run(
        ["bash", str(Path(__file__).resolve().parents[2] / "tools" / "qemu-chroot")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "DEVMIG_QEMU_CHROOT": str(qemu_root)},
    )
    assert done.returncode == 0 and done.stdout.strip() == str(qemu_root)
