"""``devmig vfio-user check``: the conformance run a backend vendor puts in CI.

Theory of operation
-------------------
:func:`check_backend` launches two instances of a backend program (the
command, plus the same ``--m-<p>=<v>`` arguments for both, each with its own
socket) and drives them with devmig's strict client — libvfio-user's reply
rules, so a reply of the wrong size or with the wrong id fails the step it
happened in. Steps, each a :class:`Step` (``ok`` true, false, or ``None``
when the backend showed nothing to judge, e.g. no interrupt of its own):

1. ``describe`` — ``--print-migration-info-json`` prints a valid model document;
2. ``start`` — both instances create their socket (a refusal is their words);
3. ``negotiate`` — VERSION 0.2 with minor ≤ 2, then DEVICE_GET_INFO;
4. ``regions`` — every region's info; each readable region read at its
   first and last 4 bytes; config space's vendor ID is not 0xffff;
5. ``interrupts`` — every index's info; an eventfd on INTx fires within
   two seconds of the backend's own activity;
6. ``dma`` — a memfd mapped for DMA with logging on; the report after the
   backend's activity, and DMA_UNMAP's dirty bitmap (``None`` when the
   backend wrote nothing);
7. ``migrate`` — instance A to B with pre-copy under A's own activity
   (:func:`~devmig.vfio_user.migrate`), B's ``RESUMING → STOP`` accepted;
   for devmig's own backends (BAR0 magic ``DVMG``) the state digests equal;
8. ``exit`` — after the connections close, both instances exit 0 and
   remove their sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import struct
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devmig._errors import DevmigError
from devmig.migration import State
from devmig.model import load_document
from devmig.vfio_user._client import VfioUserClient
from devmig.vfio_user._migrate import migrate
from devmig.vfio_user._wire import IrqIndex, RegionFlags

__all__ = ["Step", "check_backend", "steps_json"]

_MAGIC = b"DVMG"


@dataclass(slots=True)
class Step:
    """One conformance step: its name, verdict (``None``: nothing to judge) and what was seen."""

    name: str
    ok: bool | None
    detail: str = ""
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """The step as JSON."""
        return {
            "step": self.name,
            "ok": self.ok,
            "detail": self.detail,
            "seconds": round(self.seconds, 3),
        }


@dataclass(slots=True)
class _Instance:
    socket: Path
    process: asyncio.subprocess.Process | None = None
    client: VfioUserClient | None = None
    stderr: list[str] = field(default_factory=list)


async def _start(command: list[str], args: list[str], socket: Path, timeout: float) -> _Instance:
    inst = _Instance(socket)
    inst.process = await asyncio.create_subprocess_exec(
        *command,
        f"--socket-path={socket}",
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    deadline = time.monotonic() + timeout
    while not socket.exists():
        if inst.process.returncode is not None or time.monotonic() > deadline:
            if inst.process.returncode is None:
                inst.process.kill()
            await inst.process.wait()
            assert inst.process.stderr is not None
            words = (await inst.process.stderr.read()).decode(errors="replace").strip()
            raise DevmigError(
                f"exited {inst.process.returncode} before serving: {words[-500:]}",
                code="BACKEND_REFUSED",
            )
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.05)
    return inst


async def _run_step(steps: list[Step], name: str, coro: Any) -> Any:
    started = time.perf_counter()
    try:
        ok, detail, value = await coro
    except (TimeoutError, DevmigError, OSError, AssertionError) as exc:
        steps.append(
            Step(name, False, str(exc) or type(exc).__name__, time.perf_counter() - started)
        )
        return None
    steps.append(Step(name, ok, detail, time.perf_counter() - started))
    return value if ok is not False else None


async def _describe(command: list[str]) -> tuple[bool, str, Any]:
    proc = await asyncio.create_subprocess_exec(
        *command,
        "--print-migration-info-json",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    if proc.returncode != 0:
        return False, f"exit {proc.returncode}: {err.decode(errors='replace').strip()[-300:]}", None
    document = load_document(out)
    names = ", ".join(m.model for m in document.models)
    return True, f"{document.implementation.render()}: {names}", document


async def _negotiate(a: _Instance, b: _Instance) -> tuple[bool, str, Any]:
    a.client = await VfioUserClient.connect(str(a.socket), strict=True)
    b.client = await VfioUserClient.connect(str(b.socket), strict=True)
    assert a.client.version is not None and a.client.version.minor <= 2
    info = await a.client.device_info()
    assert info == await b.client.device_info(), "the two instances describe different devices"
    caps = a.client.version.capabilities
    return (
        True,
        (
            f"0.{a.client.version.minor}, max_data_xfer_size {caps.max_data_xfer_size}, "
            f"{info.num_regions} regions, {info.num_irqs} irq indexes"
        ),
        info,
    )


async def _regions(client: VfioUserClient, count: int) -> tuple[bool, str, Any]:
    seen = []
    for index in range(count):
        info = await client.region_info(index)
        if info.size and info.flags & RegionFlags.READ:
            await client.read(index, 0, min(4, info.size))
            await client.read(index, info.size - min(4, info.size), min(4, info.size))
            seen.append(f"{index}:{info.size}")
    config = await client.region_info(7) if count > 7 else None
    if config is not None and config.size >= 4:
        vendor = struct.unpack("<H", await client.read(7, 0, 2))[0]
        assert vendor != 0xFFFF, "config space shows no device (vendor 0xffff)"
    return True, "read " + " ".join(seen), None


async def _interrupts(client: VfioUserClient, count: int) -> tuple[bool | None, str, Any]:
    counts = [(await client.irq_info(i)).count for i in range(count)]
    if not counts or counts[IrqIndex.INTX] == 0:
        return None, f"vectors per index {counts}; no INTx to watch", None
    efd = os.eventfd(0, os.EFD_NONBLOCK)
    try:
        await client.set_irq_eventfd(IrqIndex.INTX, efd)
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            with contextlib.suppress(BlockingIOError):
                fired = os.eventfd_read(efd)
                return True, f"vectors per index {counts}; INTx fired ({fired})", None
            await asyncio.sleep(0.02)
        return None, f"vectors per index {counts}; INTx did not fire in 2 s", None
    finally:
        await client.set_irq_eventfd(IrqIndex.INTX, None)
        os.close(efd)


async def _dma(client: VfioUserClient) -> tuple[bool | None, str, Any]:
    size, iova = 1 << 20, 0x100000
    memfd = os.memfd_create("devmig-check-dma")
    try:
        os.ftruncate(memfd, size)
        await client.dma_map(iova, size, fd=memfd)
    finally:
        os.close(memfd)
    await client.logging_start(4096)
    await asyncio.sleep(0.3)
    report = await client.logging_report(iova, size)
    await asyncio.sleep(0.1)
    unmapped = await client.dma_unmap(iova, size, dirty_pgsize=4096)
    await client.logging_stop()
    pages = sum(bin(b).count("1") for b in report) + sum(bin(b).count("1") for b in unmapped)
    if not pages:
        return None, "mapped, logged, unmapped; the backend wrote nothing", None
    return True, f"{pages} dirty pages reported (DMA_LOGGING_REPORT, DMA_UNMAP bitmap)", None


async def _migrate(a: VfioUserClient, b: VfioUserClient) -> tuple[bool, str, Any]:
    await asyncio.sleep(0.1)
    run = await migrate(a, b, threshold=64 << 10, max_rounds=6)
    detail = (
        f"{len(run.rounds)} pre-copy rounds {run.rounds}, stop-copy {run.stop_copy_bytes} bytes, "
        f"{run.seconds * 1000:.0f} ms"
    )
    if (await a.read(0, 0, 4)) == _MAGIC:
        digest = await a.read(0, 0x20, 16)
        assert await b.read(0, 0x20, 16) == digest, "state digests differ after the migration"
        detail += f", digest {digest.hex()[:16]}… equal"
    await b.set_state(State.RUNNING)
    return True, detail, run


async def _exit(instances: list[_Instance]) -> tuple[bool, str, Any]:
    statuses = []
    for inst in instances:
        if inst.client is not None:
            await inst.client.close()
        assert inst.process is not None
        statuses.append(await asyncio.wait_for(inst.process.wait(), 15))
    assert statuses == [0, 0], f"exit statuses {statuses}"
    assert not any(i.socket.exists() for i in instances), "a socket was left behind"
    return True, "both exited 0 and removed their sockets", None


async def check_backend(
    command: list[str], params: list[str], *, timeout: float = 60.0
) -> list[Step]:
    """Run every conformance step against ``command`` (see the module); return the steps."""
    steps: list[Step] = []
    if await _run_step(steps, "describe", _describe(command)) is None:
        return steps
    tmp = Path(tempfile.mkdtemp(prefix="devmig-check-"))
    instances: list[_Instance] = []
    try:

        async def start() -> tuple[bool, str, Any]:
            for name in ("a", "b"):
                instances.append(await _start(command, params, tmp / f"{name}.sock", timeout))
            return (
                True,
                f"two instances, pids {[i.process.pid for i in instances if i.process]}",
                True,
            )

        if not await _run_step(steps, "start", start()):
            return steps
        a, b = instances
        info = await _run_step(steps, "negotiate", _negotiate(a, b))
        if info is None:
            return steps
        assert a.client is not None and b.client is not None
        await _run_step(steps, "regions", _regions(a.client, info.num_regions))
        await _run_step(steps, "interrupts", _interrupts(a.client, info.num_irqs))
        await _run_step(steps, "dma", _dma(a.client))
        await _run_step(steps, "migrate", _migrate(a.client, b.client))
        await _run_step(steps, "exit", _exit(instances))
        return steps
    finally:
        for inst in instances:
            if inst.client is not None:
                with contextlib.suppress(Exception):
                    await inst.client.close()
            if inst.process is not None and inst.process.returncode is None:
                inst.process.kill()
                await inst.process.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def steps_json(steps: list[Step]) -> str:
    """The steps as one JSON document."""
    return json.dumps(
        {"ok": all(s.ok is not False for s in steps), "steps": [s.to_json() for s in steps]}
    )
