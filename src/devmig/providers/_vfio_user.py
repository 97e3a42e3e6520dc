"""The ``vfio-user`` provider: backend programs, one device per process (DESIGN §9).

Theory of operation
-------------------
Each backend the agent's settings name is a :class:`BackendSpec`: a command
template (the program and its fixed arguments; ``{socket}`` where the
socket path goes, else ``--socket-path={socket}`` is appended), who will be
its client (``"agent"`` or ``"vmm"``) and whether it is *opaque*.

* **Offer.** :meth:`VfioUserProvider.start` runs ``COMMAND
  --print-migration-info-json`` once per backend (with a timeout) and loads
  the one model document it prints (:func:`load_published`: the usual
  document codes, no ``opaque:`` models). An opaque backend is never probed
  — an unknown program might start serving instead of printing — and is
  offered under ``opaque:`` + the sha256 of its resolved program file and
  the template's fixed arguments. Each document is carried by ``agent`` or
  ``vmm`` as the spec says.
* **Create.** The program is launched with one ``--m-<p>=<v>`` for *every*
  parameter of the destination's model, off values included (bool ``on``/
  ``off``, int decimal, str verbatim), never a version; with
  ``PR_SET_PDEATHSIG`` so it dies with the agent. The provider waits for the
  socket to appear or the program to exit: exit status 1 (or any exit) is
  ``BACKEND_REFUSED`` with the program's own words (its stderr) in ``hint``
  and, for devmig's own backends, their problems in ``context``. For a
  ``"client": "agent"`` backend the provider then connects (devmig's strict
  client) and holds the connection until :meth:`delete`; a ``"vmm"``
  backend's socket is left for the VMM (``host["socket"]``).
* **Status.** A backend that exits while its device exists is ``LOST``
  (its exit status is kept); it is never restarted.
* **Delete.** Closing the connection makes the backend exit (one connection
  per life); a backend that does not exit within a few seconds is killed.
  Its socket directory is removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import hashlib
import json
import shutil
import signal
import tempfile
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devmig._errors import DevmigError, Problem
from devmig.model import DeviceModel, Implementation, Value
from devmig.providers._interface import (
    Carrier,
    CreateRequest,
    DeviceStatus,
    Offer,
    Provided,
    ProvidedDevice,
)
from devmig.providers._published import load_published, opaque_document, opaque_model_id
from devmig.vfio_user import VfioUserClient

__all__ = ["BackendSpec", "VfioUserDevice", "VfioUserProvider", "backend_arguments"]

_PR_SET_PDEATHSIG = 1
PROBE_TIMEOUT = 30.0
START_TIMEOUT = 30.0
EXIT_TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class BackendSpec:
    """One backend program the agent hosts.

    Attributes:
        command: the program and its fixed arguments; an argument containing
            ``{socket}`` receives the socket path, else ``--socket-path={socket}``
            is appended.
        client: who connects to the backend: the agent (it carries the data)
            or the VM's VMM.
        opaque: publish under ``opaque:<sha256>`` and never probe.
        name: the implementation name of an opaque backend (default
            ``vfio-user:`` + the program's file name).
        pass_host: append host-only settings as ``--host-<key>=<value>``
            (what ``devmig vfio-user serve`` understands).
    """

    command: tuple[str, ...]
    client: Carrier = "agent"
    opaque: bool = False
    name: str = ""
    pass_host: bool = False

    @property
    def label(self) -> str:
        """The command as one string, for messages."""
        return " ".join(self.command)


def _value(value: Value) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def backend_arguments(model: DeviceModel, full: dict[str, Value]) -> list[str]:
    """``--m-<p>=<v>`` for every parameter of ``model`` (``full``: the full configuration), sorted."""
    return [f"--m-{name}={_value(full[name])}" for name in sorted(model.params)]


def _resolved_program(program: str) -> Path | None:
    found = shutil.which(program)
    return Path(found).resolve() if found else None


def _opaque_identity(spec: BackendSpec) -> tuple[str, list[Problem]]:
    program = _resolved_program(spec.command[0])
    if program is None:
        problem = Problem(
            "BACKEND_REFUSED",
            ("vfio-user", spec.label),
            f"{spec.command[0]}: no such program",
            value=spec.command[0],
        )
        return "", [problem]
    digest = hashlib.sha256(program.read_bytes()).hexdigest()
    return opaque_model_id([digest, *spec.command[1:]]), []


def _pdeathsig() -> None:  # pragma: no cover - runs in the child
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


@dataclass(eq=False)
class VfioUserDevice(ProvidedDevice):
    """A device served by a backend process."""

    spec: BackendSpec | None = None
    process: asyncio.subprocess.Process | None = None
    socket_dir: Path | None = None
    client: VfioUserClient | None = None
    stderr: deque[str] = field(default_factory=lambda: deque(maxlen=64))
    deleted: bool = False
    _reader: asyncio.Task[None] | None = None

    @property
    def socket_path(self) -> Path | None:
        """The backend's socket."""
        return None if self.socket_dir is None else self.socket_dir / "device.sock"

    @property
    def exit_status(self) -> int | None:
        """The backend's exit status once it exited."""
        return None if self.process is None else self.process.returncode


class VfioUserProvider:
    """Devices served by vfio-user backend programs (see the module's theory of operation)."""

    name = "vfio-user"

    def __init__(self, backends: Iterable[BackendSpec]) -> None:
        self.backends = tuple(backends)
        self._provided: list[tuple[Provided, BackendSpec]] = []
        self._problems: list[Problem] = []
        self.devices: list[VfioUserDevice] = []

    async def start(self) -> None:
        """Probe every backend that is not opaque; build the opaque identities."""
        self._provided, self._problems = [], []
        for spec in self.backends:
            if spec.opaque:
                model_id, problems = _opaque_identity(spec)
                self._problems += problems
                if model_id:
                    name = spec.name or f"vfio-user:{Path(spec.command[0]).name}"
                    document = opaque_document(
                        name, "unknown", model_id, f"vfio-user backend {spec.label}"
                    )
                    self._provided.append((Provided(document, spec.client, spec.label), spec))
                continue
            document, problems = await self._probe(spec)
            self._problems += problems
            if document is not None:
                self._provided.append((Provided(document, spec.client, spec.label), spec))

    async def _probe(self, spec: BackendSpec) -> tuple[Any, list[Problem]]:
        try:
            proc = await asyncio.create_subprocess_exec(
                *spec.command,
                "--print-migration-info-json",
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                preexec_fn=_pdeathsig,
            )
        except OSError as exc:
            return None, [
                Problem("BACKEND_REFUSED", ("vfio-user", spec.label), f"{spec.label}: {exc}")
            ]
        try:
            out, err = await asyncio.wait_for(proc.communicate(), PROBE_TIMEOUT)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            return None, [
                Problem(
                    "BACKEND_REFUSED",
                    ("vfio-user", spec.label),
                    f"{spec.label} --print-migration-info-json did not answer in {PROBE_TIMEOUT:.0f} s",
                    hint="declare it opaque if it has no migration information",
                )
            ]
        if proc.returncode != 0:
            return None, [
                Problem(
                    "BACKEND_REFUSED",
                    ("vfio-user", spec.label),
                    f"{spec.label} --print-migration-info-json exited {proc.returncode}",
                    value=proc.returncode,
                    hint=err.decode(errors="replace").strip()[-2000:],
                )
            ]
        return load_published(out, spec.label)

    def offer(self) -> Offer:
        """The probed documents (and opaque identities), each with its carrier."""
        return Offer(self.name, tuple(p for p, _ in self._provided), tuple(self._problems))

    def _find(
        self, implementation: Implementation, model_id: str
    ) -> tuple[Provided, BackendSpec, DeviceModel]:
        for provided, spec in self._provided:
            if provided.implementation == implementation:
                model = provided.document.find(model_id)
                if model is None:
                    break
                return provided, spec, model
        raise DevmigError(
            [
                Problem(
                    "MODEL_UNKNOWN",
                    ("model",),
                    f"no vfio-user backend serves {model_id} as {implementation.render()}",
                    value=model_id,
                    allowed=sorted(p.implementation.render() for p, _ in self._provided),
                )
            ]
        )

    def _argv(
        self, spec: BackendSpec, socket_path: Path, model: DeviceModel, request: CreateRequest
    ) -> list[str]:
        argv = [a.replace("{socket}", str(socket_path)) for a in spec.command]
        if not any("{socket}" in a for a in spec.command):
            argv.append(f"--socket-path={socket_path}")
        if not spec.opaque:
            argv += backend_arguments(model, request.config.full(model))
        if spec.pass_host:
            argv += [f"--host-{k.replace('_', '-')}={v}" for k, v in sorted(request.host.items())]
        return argv

    async def create(self, request: CreateRequest) -> VfioUserDevice:
        """Launch the backend for ``request`` and, for an agent-held backend, connect.

        Raises:
            DevmigError: ``MODEL_UNKNOWN``; ``BACKEND_REFUSED`` with the
                backend's words (exit status 1 and its stderr, a crash, no socket).
        """
        _provided, spec, model = self._find(request.implementation, request.model)
        socket_dir = Path(tempfile.mkdtemp(prefix="devmig-vfio-user-"))
        device = VfioUserDevice(
            self.name,
            request.implementation,
            model,
            request.config,
            spec.client,
            dict(request.host),
            spec=spec,
            socket_dir=socket_dir,
        )
        assert device.socket_path is not None
        argv = self._argv(spec, device.socket_path, model, request)
        try:
            device.process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                preexec_fn=_pdeathsig,
            )
        except OSError as exc:
            shutil.rmtree(socket_dir, ignore_errors=True)
            raise self._refused(spec, f"cannot start {spec.label}: {exc}", None, []) from exc
        device._reader = asyncio.create_task(self._read_stderr(device))
        try:
            await self._wait_for_socket(device)
            if spec.client == "agent":
                device.client = await VfioUserClient.connect(str(device.socket_path), strict=True)
            else:
                device.host["socket"] = str(device.socket_path)
        except BaseException:
            await self._stop(device)
            raise
        self.devices.append(device)
        return device

    @staticmethod
    async def _read_stderr(device: VfioUserDevice) -> None:
        assert device.process is not None and device.process.stderr is not None
        async for raw in device.process.stderr:
            device.stderr.append(raw.decode(errors="replace").rstrip("\n"))

    def _refused(
        self, spec: BackendSpec, message: str, status: int | None, lines: Sequence[str]
    ) -> DevmigError:
        problems: list[dict[str, Any]] = []
        for line in lines:
            with contextlib.suppress(ValueError, AttributeError):
                event = json.loads(line)
                if event.get("event") == "refused":
                    problems += event.get("problems", [])
        words = "\n".join(lines).strip()[-4000:] or None
        return DevmigError(
            [
                Problem(
                    "BACKEND_REFUSED",
                    ("vfio-user", spec.label),
                    message,
                    value=status,
                    hint=words,
                    context={"problems": problems} if problems else {},
                )
            ]
        )

    async def _wait_for_socket(self, device: VfioUserDevice) -> None:
        assert (
            device.process is not None
            and device.spec is not None
            and device.socket_path is not None
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + START_TIMEOUT
        while not device.socket_path.exists():
            if device.process.returncode is not None or loop.time() > deadline:
                if device.process.returncode is None:
                    device.process.kill()
                status = await device.process.wait()
                if device._reader is not None:
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(device._reader, 2.0)
                what = (
                    f"exited with status {status}"
                    if status >= 0
                    else f"was killed by signal {-status}"
                )
                raise self._refused(
                    device.spec,
                    f"{device.spec.label} {what} before serving",
                    status,
                    list(device.stderr),
                )
            await asyncio.sleep(0.02)
        with contextlib.suppress(OSError):  # the socket exists once bound; wait for listen()
            for _ in range(50):
                if any(line.startswith('{"event":"listening"') for line in device.stderr):
                    break
                await asyncio.sleep(0.02)

    async def _stop(self, device: VfioUserDevice) -> None:
        if device.client is not None:
            await device.client.close()
            device.client = None
        proc = device.process
        if proc is not None and proc.returncode is None:
            if device.spec is not None and device.spec.client == "vmm":
                proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), EXIT_TIMEOUT)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        if device._reader is not None:
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(device._reader, 2.0)
        if device.socket_dir is not None:
            shutil.rmtree(device.socket_dir, ignore_errors=True)

    async def delete(self, device: ProvidedDevice) -> None:
        """Close the connection (the backend exits), or stop a VMM's backend; remove its socket."""
        assert isinstance(device, VfioUserDevice)
        device.deleted = True
        await self._stop(device)
        if device in self.devices:
            self.devices.remove(device)

    def status(self, device: ProvidedDevice) -> DeviceStatus:
        """``LOST`` once the backend exited under a live device (never restarted), else running."""
        assert isinstance(device, VfioUserDevice)
        if device.deleted or device.process is None or device.process.returncode is not None:
            return DeviceStatus.LOST
        return DeviceStatus.RUNNING

    async def close(self) -> None:
        """Delete every device (each backend exits)."""
        for device in list(self.devices):
            await self.delete(device)
