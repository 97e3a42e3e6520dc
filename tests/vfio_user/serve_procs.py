"""Run ``devmig vfio-user serve`` as real processes for the tests."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Served:
    proc: asyncio.subprocess.Process
    socket_path: Path
    lines: list[dict] = field(default_factory=list)

    async def wait(self, timeout: float = 20.0) -> int:
        rc = await asyncio.wait_for(self.proc.wait(), timeout)
        assert self.proc.stderr is not None
        for raw in (await self.proc.stderr.read()).splitlines():
            with contextlib.suppress(ValueError):
                self.lines.append(json.loads(raw))
        return rc


async def start(target: str, socket_path: Path, *args: str) -> Served:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "devmig",
        "vfio-user",
        "serve",
        target,
        f"--socket-path={socket_path}",
        *args,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    served = Served(proc, socket_path)
    assert proc.stderr is not None
    while True:
        raw = await asyncio.wait_for(proc.stderr.readline(), 30)
        if not raw:
            rc = await proc.wait()
            raise AssertionError(f"serve exited {rc} before listening: {served.lines}")
        line = json.loads(raw)
        served.lines.append(line)
        if line.get("event") == "listening":
            return served


@contextlib.asynccontextmanager
async def serving(target: str, socket_path: Path, *args: str) -> AsyncIterator[Served]:
    served = await start(target, socket_path, *args)
    try:
        yield served
    finally:
        if served.proc.returncode is None:
            served.proc.kill()
            await served.proc.wait()
