"""``devmig vfio-user serve`` as a client sees it: PCI config, BARs, interrupts, DMA and logging.

Real processes, a real Unix socket, real eventfds and memfds; devmig's strict client.
"""

from __future__ import annotations

import asyncio
import errno
import mmap
import os
import signal
import socket
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from serve_procs import serving

from devmig.migration import State
from devmig.vfio_user import (
    PCI_IDS,
    IrqIndex,
    RegionFlags,
    SetIrqs,
    SetIrqsFlags,
    VfioUserClient,
    VfioUserError,
    migrate,
)
from devmig.vfio_user._backend import CONTROL

ACCEL = ("acme-accel/3.0.0", "--migration-version=1", "--work-interval=0.005")


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


async def _config_and_bars(tmp: Path) -> None:
    sock = tmp / "a.sock"
    async with serving(*ACCEL[:1], sock, *ACCEL[1:]) as proc:
        client = await VfioUserClient.connect(str(sock))
        ids = PCI_IDS["example.org/devices/accel"]
        vendor, device = struct.unpack("<HH", await client.read(7, 0, 4))
        assert (vendor, device) == (ids.vendor, ids.device)
        assert int.from_bytes(await client.read(7, 9, 3), "little") == ids.class_code
        await client.write(7, 0, b"\xff\xff\xff\xff")  # IDs are read-only
        assert struct.unpack("<HH", await client.read(7, 0, 4)) == (vendor, device)
        info = await client.region_info(1)
        assert (
            info.size == 64 << 20 and info.flags == RegionFlags.READ | RegionFlags.WRITE
        )  # trapped, no MMAP
        await client.write(7, 0x14, b"\xff\xff\xff\xff")  # BAR1 sizing
        assert (
            struct.unpack("<I", await client.read(7, 0x14, 4))[0] == (~(info.size - 1)) & 0xFFFFFFFF
        )
        await client.write(7, 0x14, struct.pack("<I", 0xC0000000))
        assert struct.unpack("<I", await client.read(7, 0x14, 4))[0] == 0xC0000000
        await client.write(7, 0x30, b"\xff\xff\xff\xff")  # no expansion ROM
        assert await client.read(7, 0x30, 4) == bytes(4)
        assert (await client.region_info(6)).size == 0
        with pytest.raises(VfioUserError) as exc:
            await client.read(1, info.size - 2, 4)
        assert exc.value.errno == errno.EINVAL
        # a region write lands in device memory
        await client.write(1, 4096, b"hello")
        assert await client.read(1, 4096, 5) == b"hello"
        assert (await client.irq_info(IrqIndex.INTX)).count == 1
        assert (await client.irq_info(IrqIndex.MSIX)).count == 0
        # a second client is refused: one connection per life
        other = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        with pytest.raises(OSError):
            other.connect(str(sock))
        other.close()
        await client.close()
        assert await proc.wait() == 0
    assert not sock.exists()


def test_config_space_bars_and_one_connection(tmp_path):
    run(_config_and_bars(tmp_path))


async def _interrupts_and_dma(tmp: Path) -> None:
    sock = tmp / "a.sock"
    async with serving(*ACCEL[:1], sock, *ACCEL[1:]) as proc:
        client = await VfioUserClient.connect(str(sock))
        efd = os.eventfd(0, os.EFD_NONBLOCK)
        await client.set_irq_eventfd(IrqIndex.INTX, efd)
        resample = os.eventfd(0)  # a VMM's INTx unmask eventfd (QEMU with KVM) is accepted and held
        flags = SetIrqsFlags.DATA_EVENTFD | SetIrqsFlags.ACTION_UNMASK
        await client.request(SetIrqs(flags, IrqIndex.INTX, 0, 1, fds=(resample,)))
        os.close(resample)
        memfd = os.memfd_create("dma")
        os.ftruncate(memfd, 1 << 20)
        await client.dma_map(0x100000, 1 << 20, fd=memfd)
        await client.logging_start(4096)
        await client.dma_map(0x800000, 64 << 10)  # message-only: DMA_WRITE messages (not the ring)
        await asyncio.sleep(0.3)
        assert os.eventfd_read(efd) > 0  # the completion interrupt fired
        ring = mmap.mmap(memfd, 1 << 20)
        records = [struct.unpack_from("<QQ", ring, i * 16) for i in range(1, 8)]
        assert any(steps > 0 for steps, _ in records)  # completion records were written
        bitmap = await client.logging_report(0x100000, 1 << 20)
        assert len(bitmap) == 256 // 8 and bitmap[0] & 1  # the ring's first page is dirty
        assert not any(await client.logging_report(0x800000, 64 << 10))
        # a dirty bitmap on unmap
        await asyncio.sleep(0.05)
        dirty = await client.dma_unmap(0x100000, 1 << 20, dirty_pgsize=4096)
        assert len(dirty) == 32 and dirty[0] & 1
        await client.logging_stop()
        with pytest.raises(VfioUserError):
            await client.logging_report(0x800000, 64 << 10)
        # now the lowest mapping is message-only: completion records travel as DMA_WRITE
        await asyncio.sleep(0.2)
        assert any(client.dma_memory[0x800000])
        await client.dma_unmap_all()
        with pytest.raises(VfioUserError) as exc:
            await client.dma_unmap(0x800000, 64 << 10)
        assert exc.value.errno == errno.ENOENT
        # MIG_DATA_READ outside PRE_COPY/STOP_COPY, and a P2P state, are refused
        with pytest.raises(VfioUserError):
            await client.mig_read(4096)
        with pytest.raises(VfioUserError):
            await client.set_state(State.RUNNING_P2P)
        ring.close()
        os.close(memfd)
        os.close(efd)
        await client.close()
        assert await proc.wait() == 0


def test_interrupts_dma_and_dirty_logging(tmp_path):
    run(_interrupts_and_dma(tmp_path))


async def _client_writes_during_precopy(tmp: Path) -> None:
    src_sock, dst_sock = tmp / "s.sock", tmp / "d.sock"
    async with serving(*ACCEL[:1], src_sock, *ACCEL[1:]), serving(*ACCEL[:1], dst_sock, *ACCEL[1:]):
        source = await VfioUserClient.connect(str(src_sock))
        destination = await VfioUserClient.connect(str(dst_sock))
        written = []

        async def scribble() -> None:
            i = 0
            while True:
                await source.write(1, (i * 8192 + 100) % (60 << 20), b"client-write-%d" % i)
                written.append(i)
                i += 1
                await asyncio.sleep(0)

        task = asyncio.create_task(scribble())
        await asyncio.sleep(0.05)
        sink_calls = []

        async def into_destination(data: bytes) -> None:
            sink_calls.append(len(data))
            await destination.mig_write(data)

        await destination.set_state(State.RESUMING)
        await source.set_state(State.PRE_COPY)
        rounds = []
        for _ in range(3):
            moved = 0
            while True:
                data = await source.mig_read()
                await into_destination(data)
                moved += len(data)
                if len(data) < source.max_data:
                    break
            rounds.append(moved)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        run_ = await migrate(source, sink=into_destination, precopy=False)
        await destination.set_state(State.STOP)
        assert written and rounds[1] > 0  # client writes made pages dirty after round 0
        assert await destination.read(0, CONTROL["digest"], 16) == await source.read(
            0, CONTROL["digest"], 16
        )
        assert run_.stop_copy_bytes > 0
        await source.close()
        await destination.close()


def test_client_writes_during_precopy_are_tracked(tmp_path):
    run(_client_writes_during_precopy(tmp_path))


def _serve(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "devmig", "vfio-user", "serve", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_print_migration_info_json_and_refusals(tmp_path):
    done = _serve("acme-accel/3.0.0", "--print-migration-info-json")
    assert done.returncode == 0 and '"acme-accel"' in done.stdout
    sock = tmp_path / "x.sock"
    done = _serve("acme-accel/3.0.0", f"--socket-path={sock}", "--m-engines=99", "--m-nope=1")
    assert done.returncode == 1 and not sock.exists()
    [line] = done.stderr.splitlines()
    assert '"refused"' in line and "VALUE_NOT_ALLOWED" in line and "PARAM_UNKNOWN" in line
    done = _serve("acme-accel/9.9.9", f"--socket-path={sock}")
    assert done.returncode == 1 and "RELEASE_UNKNOWN" in done.stderr
    done = _serve(
        "acme-accel/3.0.0",
        f"--socket-path={sock}",
        "--migration-model=example.org/devices/accel-lite",
        "--print-migration-info-json",
    )
    assert done.returncode == 0


def test_serve_on_an_inherited_connected_fd(tmp_path):
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "devmig",
            "vfio-user",
            "serve",
            "acme-nic/3.0.0",
            f"--fd={theirs.fileno()}",
        ],
        pass_fds=[theirs.fileno()],
        stderr=subprocess.PIPE,
    )
    theirs.close()

    async def talk() -> None:
        client = await VfioUserClient.over(ours, minor=0)
        assert client.version is not None and client.version.minor == 0  # QEMU proposes 0.0
        assert (await client.device_info()).num_regions == 9
        await client.close()

    run(talk())
    assert proc.wait(30) == 0


async def _terminated(tmp: Path) -> None:
    sock = tmp / "t.sock"
    async with serving("acme-nic/3.0.0", sock) as idle:  # SIGTERM before any client
        idle.proc.send_signal(signal.SIGTERM)
        assert await idle.wait() == 0
        assert any(line.get("event") == "stopped" for line in idle.lines)
    assert not sock.exists()
    async with serving("acme-nic/3.0.0", sock) as busy:  # SIGTERM while a client holds it
        client = await VfioUserClient.connect(str(sock))
        busy.proc.send_signal(signal.SIGTERM)
        assert await busy.wait() == 0
        await client.close()
    assert not sock.exists()


def test_sigterm_stops_the_backend_and_removes_its_socket(tmp_path):
    run(_terminated(tmp_path))
