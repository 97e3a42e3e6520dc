"""QEMU in a chroot, driven by qtest (port I/O, MMIO) and QMP, for tests/vfio_user/test_vfio_user_qemu.py."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Any, BinaryIO

CONFIG_ADDRESS = 0xCF8
CONFIG_DATA = 0xCFC


def chroot_root() -> tuple[Path | None, str]:
    """The chroot holding QEMU (``$DEVMIG_QEMU_CHROOT``), or ``None`` and why not."""
    raw = os.environ.get("DEVMIG_QEMU_CHROOT")
    if not raw:
        why = (
            os.environ.get("DEVMIG_QEMU_CHROOT_ERROR")
            or "DEVMIG_QEMU_CHROOT is not set (tools/qemu-chroot)"
        )
        return None, why
    root = Path(raw)
    if not (root / "usr/bin/qemu-system-x86_64").exists():
        return None, f"{root} has no qemu-system-x86_64 (run tools/qemu-chroot)"
    if os.geteuid() != 0:
        return None, "chroot needs root"
    return root, ""


def qemu_version(root: Path) -> str:
    out = subprocess.run(
        ["chroot", str(root), "qemu-system-x86_64", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return out.stdout.splitlines()[0]


class Qemu:
    """``qemu-system-x86_64 -accel qtest`` in ``root`` with one ``vfio-user-pci`` device at slot ``slot``."""

    def __init__(self, root: Path, device_socket: str, slot: int = 5) -> None:
        self.root = root
        self.slot = slot
        self.dir = Path(tempfile.mkdtemp(prefix="devmig-qemu-", dir=root / "tmp"))
        inside = "/" + str(self.dir.relative_to(root))
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(self.dir / "qtest.sock"))
        listener.listen(1)
        listener.settimeout(60)
        device = {
            "driver": "vfio-user-pci",
            "addr": f"{slot:02x}.0",
            "socket": {"type": "unix", "path": device_socket},
        }
        self.proc = subprocess.Popen(
            [
                "chroot",
                str(root),
                "qemu-system-x86_64",
                "-machine",
                "pc,memory-backend=mem",
                "-accel",
                "qtest",
                "-nodefaults",
                "-display",
                "none",
                "-m",
                "64M",
                "-object",
                "memory-backend-memfd,id=mem,size=64M,share=on",
                "-qtest",
                f"unix:{inside}/qtest.sock",
                "-qtest-log",
                "/dev/null",
                "-qmp",
                f"unix:{inside}/qmp.sock,server=on,wait=off",
                "-device",
                json.dumps(device),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            conn, _ = listener.accept()
        except TimeoutError as exc:
            self.proc.kill()
            _, err = self.proc.communicate()
            raise AssertionError(
                f"QEMU did not start: {err.decode(errors='replace')[-2000:]}"
            ) from exc
        finally:
            listener.close()
        self._qtest: BinaryIO = conn.makefile("rwb", buffering=0)
        self._conn = conn

    def qtest(self, line: str) -> str:
        self._qtest.write(line.encode() + b"\n")
        while True:
            answer = self._qtest.readline().decode().strip()
            if not answer:
                raise AssertionError(f"qtest closed after {line!r}")
            if answer.startswith(("OK", "FAIL", "ERR")):
                assert answer.startswith("OK"), f"{line!r}: {answer}"
                return answer

    def config_read(self, offset: int) -> int:
        self.qtest(f"outl {CONFIG_ADDRESS:#x} {0x80000000 | self.slot << 11 | (offset & 0xFC):#x}")
        return int(self.qtest(f"inl {CONFIG_DATA:#x}").split()[1], 16)

    def config_write(self, offset: int, value: int) -> None:
        self.qtest(f"outl {CONFIG_ADDRESS:#x} {0x80000000 | self.slot << 11 | (offset & 0xFC):#x}")
        self.qtest(f"outl {CONFIG_DATA:#x} {value:#x}")

    def readl(self, address: int) -> int:
        return int(self.qtest(f"readl {address:#x}").split()[1], 16)

    def writel(self, address: int, value: int) -> None:
        self.qtest(f"writel {address:#x} {value:#x}")

    def qmp(self, command: str) -> Any:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(str(self.dir / "qmp.sock"))
        with sock, sock.makefile("rwb", buffering=0) as f:
            f.readline()
            f.write(b'{"execute": "qmp_capabilities"}\n')
            f.readline()
            f.write(json.dumps({"execute": command}).encode() + b"\n")
            while True:
                answer = json.loads(f.readline())
                if "return" in answer or "error" in answer:
                    return answer.get("return", answer)

    def close(self) -> None:
        self._conn.close()
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate()
        for name in ("qtest.sock", "qmp.sock"):
            (self.dir / name).unlink(missing_ok=True)
        self.dir.rmdir()
