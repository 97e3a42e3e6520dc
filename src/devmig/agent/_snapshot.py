"""The state digest of a device as it is now, computed off the agent's event loop.

A destination reports the digest of the state it loaded (DESIGN §4), but
hashing a large region takes long (about 150 ms per GiB; ``xxhash`` holds the
GIL), and once GO has come the device must run at once: the switch-over must
not wait for a hash. So the digest is taken from a *copy-on-write snapshot*
forked right after the device entered RUNNING and the ACK went out, before
its first work step: the child hashes the memory as it was at the fork (the
state that was loaded), writes the 16 bytes to a pipe and exits; the parent
goes on at once (the device runs and changes its memory: the kernel copies a
page the parent writes while the child still shares it). Where ``fork`` is
not available, the digest is computed in place.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from typing import Any

__all__ = ["start_snapshot"]

_DIGEST = 16


def _read_child(fd: int, pid: int) -> bytes:
    data = b""
    try:
        while len(data) < _DIGEST:
            chunk = os.read(fd, _DIGEST - len(data))
            if not chunk:
                break
            data += chunk
    finally:
        os.close(fd)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
    return data


def start_snapshot(device: Any) -> asyncio.Future[bytes | None]:
    """Fork a snapshot of ``device`` now; the future gives its digest (``None`` if the child failed).

    Call it on the event loop while the device is stopped: the snapshot is
    taken before this returns.
    """
    loop = asyncio.get_running_loop()
    if not hasattr(os, "fork"):
        done: asyncio.Future[bytes | None] = loop.create_future()
        done.set_result(device.digest())
        return done
    r, w = os.pipe()
    try:
        forked = time.perf_counter()
        pid = os.fork()
    except OSError:
        os.close(r)
        os.close(w)
        done = loop.create_future()
        done.set_result(device.digest())
        return done
    if pid == 0:  # the child: hash, write, and leave without running the parent's clean-up
        code = 1
        try:
            os.close(r)
            os.nice(19)  # yield the CPU to the agents: the digest is not urgent
            os.write(w, device.digest())
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    fork_seconds = time.perf_counter() - forked

    def wait() -> bytes | None:
        data = _read_child(r, pid)
        return data if len(data) == _DIGEST else None

    future = asyncio.ensure_future(loop.run_in_executor(None, wait))
    future.fork_seconds = fork_seconds  # type: ignore[attr-defined]
    return future

