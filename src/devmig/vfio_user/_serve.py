"""``devmig vfio-user serve``: one SDK device as a vfio-user backend program.

Theory of operation
-------------------
The program follows the thread's conventions for vfio-user backends (DESIGN
§9): ``--m-<param>=<value>`` per parameter, ``--migration-model``,
``--migration-version``, ``--print-migration-info-json`` (print the release's
model document, exit 0), and ``--socket-path=PATH`` or ``--fd=N``. The
device is created *before* any socket exists: a configuration the device
refuses exits 1 with one JSON line on stderr (``{"event": "refused",
"problems": [...]}``) and leaves no socket behind.

Then it serves exactly one connection: with ``--socket-path`` it binds,
listens, accepts one client and closes the listener (a second client is
refused by the kernel); with ``--fd`` it takes a listening socket (accepts
one) or an already connected one. When that connection closes the program
exits 0, removing its socket; SIGTERM or SIGINT stop it the same way. While
the device runs, the seeded workload ticks every ``interval`` seconds
(``steps`` steps a tick). Progress is one JSON line per event on stderr
(``listening``, ``connected``, ``load_refused``, ``stopped``, ``exit``), for
programs that host the backend.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import os
import signal
import socket
import stat
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

import numpy as np

from devmig._errors import DevmigError, Problem
from devmig.device import Device
from devmig.devices import device_class, model_classes
from devmig.vfio_user._backend import DeviceBackend
from devmig.vfio_user._capabilities import Capabilities
from devmig.vfio_user._connection import Connection, Role
from devmig.vfio_user._fdsocket import FdSocket
from devmig.vfio_user._server import ServerSession, serve_connection

__all__ = ["ServeOptions", "parse_extra_args", "resolve_release", "run_serve"]


@dataclass(slots=True)
class ServeOptions:
    """Everything ``devmig vfio-user serve`` was told."""

    target: str
    socket_path: str | None = None
    fd: int | None = None
    params: dict[str, str] = field(default_factory=dict)
    host: dict[str, Any] = field(default_factory=dict)
    model: str | None = None
    version: str | None = None
    print_info: bool = False
    seed: int = 0
    prefill_seed: int | None = None
    interval: float = 0.01
    steps: int = 1
    max_data_xfer_size: int = 1 << 20


def parse_extra_args(args: list[str]) -> tuple[dict[str, str], dict[str, Any], list[str]]:
    """Split ``--m-<p>=<v>`` and ``--host-<k>=<v>`` arguments; return them and what is left over."""
    params: dict[str, str] = {}
    host: dict[str, Any] = {}
    rest: list[str] = []
    for arg in args:
        key, eq, value = arg.partition("=")
        if key.startswith("--m-") and eq and len(key) > 4:
            params[key[4:]] = value
        elif key.startswith("--host-") and eq and len(key) > 7:
            host[key[7:].replace("-", "_")] = int(value) if value.lstrip("-").isdigit() else value
        else:
            rest.append(arg)
    return params, host, rest


def resolve_release(target: str, model: str | None = None) -> type[Device]:
    """The device class of ``IMPL/RELEASE`` (a reference device) or ``module:Class`` (any author's).

    Raises:
        DevmigError: ``RELEASE_UNKNOWN`` or ``MODEL_UNKNOWN``.
    """
    if ":" in target:
        module_name, _, attr = target.partition(":")
        try:
            cls = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise DevmigError(f"cannot import {target}: {exc}", code="RELEASE_UNKNOWN") from exc
        if not (isinstance(cls, type) and issubclass(cls, Device)):
            raise DevmigError(f"{target} is not a devmig Device class", code="RELEASE_UNKNOWN")
        classes = {cls.model_id: cls}
    else:
        impl, sep, release = target.partition("/")
        if not sep:
            raise DevmigError(
                f"name a release as IMPL/RELEASE or module:Class, not {target!r}",
                code="RELEASE_UNKNOWN",
            )
        base = device_class(impl, release)
        classes = model_classes(base)
        cls = base
    if model is not None:
        if model not in classes:
            raise DevmigError(
                [
                    Problem(
                        "MODEL_UNKNOWN",
                        ("migration-model",),
                        f"{target} does not serve {model}",
                        value=model,
                        allowed=sorted(classes),
                    )
                ]
            )
        cls = classes[model]
    return cls


def _option_string(options: ServeOptions) -> str:
    items = [] if options.version is None else [f"version={options.version.replace(',', ',,')}"]
    items += [f"{k}={v.replace(',', ',,')}" for k, v in options.params.items()]
    return ",".join(items)


def _prefill(device: Device, seed: int) -> None:
    rng = np.random.default_rng(seed)
    step = 64 << 20
    for region in device.regions:
        for start in range(0, region.size, step):
            piece = region.data[start : start + step]
            piece[:] = np.frombuffer(rng.bytes(piece.size), dtype=np.uint8)


def _emit(stream: TextIO, event: dict[str, Any]) -> None:
    stream.write(json.dumps(event, separators=(",", ":")) + "\n")
    stream.flush()


def run_serve(options: ServeOptions, *, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """Run the program; return its exit status (0 served or printed, 1 refused, 2 usage)."""

    def log(event: dict[str, Any]) -> None:
        _emit(err, event)

    try:
        cls = resolve_release(options.target, options.model)
    except DevmigError as exc:
        log({"event": "refused", "problems": exc.to_dicts()})
        return 1
    if options.print_info:
        out.write(json.dumps(cls.document().to_json(), indent=2) + "\n")
        return 0
    if (options.socket_path is None) == (options.fd is None):
        log({"event": "usage", "message": "give exactly one of --socket-path and --fd"})
        return 2
    config = _option_string(options)

    def make() -> Device:
        device = cls.create(config, host=options.host, seed=options.seed)
        if options.prefill_seed is not None:
            _prefill(device, options.prefill_seed)
        return device

    try:
        backend = DeviceBackend(make, log=log)
    except DevmigError as exc:
        log({"event": "refused", "problems": exc.to_dicts()})
        return 1
    try:
        listener = _listener(options)
    except OSError as exc:
        backend.close()
        log({"event": "usage", "message": f"cannot listen: {exc}"})
        return 2
    try:
        asyncio.run(_serve(options, backend, listener, log))
    finally:
        backend.close()
        if options.socket_path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(options.socket_path)
        log({"event": "exit", "steps": backend.device.steps})
    return 0


def _listener(options: ServeOptions) -> socket.socket:
    if options.fd is not None:
        return socket.socket(fileno=options.fd)
    assert options.socket_path is not None
    path = options.socket_path
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            raise OSError(f"{path} exists (one backend per socket)")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    sock.listen(1)
    return sock


async def _serve(
    options: ServeOptions,
    backend: DeviceBackend,
    listener: socket.socket,
    log: Callable[[dict[str, Any]], None],
) -> None:
    """Serve until the connection closes, or SIGTERM/SIGINT (the caller removes the socket)."""
    loop = asyncio.get_running_loop()
    serving = asyncio.create_task(_serve_one(options, backend, listener, log, loop))
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, serving.cancel)
    try:
        await serving
    except asyncio.CancelledError:
        log({"event": "stopped"})
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


async def _serve_one(
    options: ServeOptions,
    backend: DeviceBackend,
    listener: socket.socket,
    log: Callable[[dict[str, Any]], None],
    loop: asyncio.AbstractEventLoop,
) -> None:
    listening = listener.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
    if listening:
        log(
            {
                "event": "listening",
                "socket": options.socket_path,
                "fd": options.fd,
                "pid": os.getpid(),
            }
        )
        listener.setblocking(False)
        conn_sock, _ = await loop.sock_accept(listener)
        listener.close()
    else:
        conn_sock = listener
    log({"event": "connected"})
    caps = Capabilities(
        max_msg_fds=8,
        max_data_xfer_size=options.max_data_xfer_size,
        migration_pgsize=4096,
        write_multiple=True,
    )
    session = ServerSession(FdSocket(conn_sock, max_fds=8), Connection(Role.SERVER, caps))
    worker = asyncio.create_task(_workload(session, backend, options))
    try:
        await serve_connection(session, backend)
    finally:
        worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await worker
        session.sock.close()


async def _workload(session: ServerSession, backend: DeviceBackend, options: ServeOptions) -> None:
    while not session.closed:
        await asyncio.sleep(options.interval)
        backend.tick(options.steps)
        while backend.outbox and session.conn.state.value == "ready":
            await session.command(backend.outbox.pop(0))
