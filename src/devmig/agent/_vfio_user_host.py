"""vfio-user backends in the agent: ``devmig agent --provider vfio-user:SETTINGS.json`` (DESIGN §9).

Theory of operation
-------------------
The settings file names the backend programs this agent hosts::

    {"backends": [
        {"command": ["devmig", "vfio-user", "serve", "acme-nic/1.0.0"], "client": "agent"},
        {"command": "/opt/vendor/gpu-backend --sock={socket}", "client": "vmm"},
        {"command": ["/opt/tiny-backend"], "opaque": true, "name": "tiny"}
     ],
     "precopy": {"threshold_bytes": 262144, "max_rounds": 8}}

``command`` is a list, or a string split like a shell would; ``{socket}``
marks where the socket path goes (else ``--socket-path=PATH`` is appended).
``client`` (default ``agent``) says who connects to the backend; ``opaque``
backends are never probed and are published under ``opaque:<sha256>``;
``pass_host`` appends the device's host-only settings as ``--host-K=V``.
``precopy`` is the source's rule for leaving pre-copy (vfio-user has no
pre-copy sizing): the last round carried at most ``threshold_bytes``, or
``max_rounds`` rounds ran.

:class:`VfioUserHost` wraps :class:`~devmig.providers.VfioUserProvider`: it
probes every backend once when the agent starts (``--print-migration-info-json``
in a worker thread, so the agent's constructor stays synchronous), offers the
documents for the host report, and creates a device per ``POST /v1/devices``
(the backend launched with every parameter as ``--m-``, off values included,
never a version). A ``"client": "agent"`` backend is connected at creation
and the connection held until ``DELETE``; a backend that dies is ``LOST``
with its exit status, and is never restarted.

**Digest and counters.** For an agent-held backend the agent reads them from
the device itself over that connection: a REGION_READ of BAR0's control block
(``devmig vfio-user serve``'s layout, recognised by its magic ``DVMG``): the
VFIO state (0x04), the step counter (0x08), the interrupt count (0x10) and,
when asked, the 16-byte state digest (0x20, computed by the backend when
read). A backend of another make shows no counters; a ``vmm`` backend's
socket belongs to the VMM, so the agent shows only whether it runs.
"""

from __future__ import annotations

import asyncio
import json
import shlex
import struct
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from devmig._errors import DevmigError, Problem
from devmig.agent._provider_create import create_through, parse_config
from devmig.model import Config, DeviceModel, Implementation, version_of
from devmig.providers import (
    CARRIERS,
    BackendSpec,
    Carrier,
    DeviceStatus,
    Offer,
    VfioUserDevice,
    VfioUserProvider,
)

__all__ = ["PrecopyRule", "VfioUserHost", "VfioUserHosted", "load_vfio_user_settings"]

PREFIX = "vfio-user:"
_MAGIC = int.from_bytes(b"DVMG", "little")
_BACKEND_KEYS = {"command", "client", "opaque", "name", "pass_host"}


@dataclass(frozen=True, slots=True)
class PrecopyRule:
    """When the source agent leaves PRE_COPY (vfio-user has no pre-copy sizing)."""

    threshold_bytes: int = 256 << 10
    max_rounds: int = 8


def _bad(loc: tuple[str | int, ...], message: str, value: object = None) -> Problem:
    return Problem(
        "USAGE",
        ("vfio-user", *loc),
        message,
        value=value,
        hint='{"backends": [{"command": [...], "client": "agent" | "vmm", "opaque": false}]}',
    )


def load_vfio_user_settings(path: str) -> tuple[list[BackendSpec], PrecopyRule]:
    """Read a vfio-user settings file (see the module's theory of operation).

    Raises:
        DevmigError: ``USAGE`` naming every problem of the file.
    """
    try:
        raw = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise DevmigError([_bad(("settings",), f"cannot read {path}: {exc}", path)]) from exc
    problems: list[Problem] = []
    specs: list[BackendSpec] = []
    backends = raw.get("backends") if isinstance(raw, dict) else None
    if not isinstance(backends, list) or not backends:
        raise DevmigError([_bad(("backends",), f"{path}: 'backends' must be a non-empty list")])
    for i, item in enumerate(backends):
        if not isinstance(item, dict):
            problems.append(_bad(("backends", i), "a backend is an object", item))
            continue
        extra = sorted(set(item) - _BACKEND_KEYS)
        if extra:
            problems.append(_bad(("backends", i), f"unknown keys {extra}", extra))
        command = item.get("command")
        argv = shlex.split(command) if isinstance(command, str) else command
        if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
            problems.append(
                _bad(
                    ("backends", i, "command"),
                    "command is a non-empty list of strings or a string",
                    command,
                )
            )
            continue
        client = item.get("client", "agent")
        if client not in CARRIERS:
            problems.append(
                _bad(("backends", i, "client"), f"client is one of {list(CARRIERS)}", client)
            )
            continue
        specs.append(
            BackendSpec(
                tuple(argv),
                cast(Carrier, client),
                bool(item.get("opaque", False)),
                str(item.get("name", "")),
                bool(item.get("pass_host", False)),
            )
        )
    precopy = raw.get("precopy", {})
    rule = PrecopyRule()
    if isinstance(precopy, dict):
        try:
            rule = PrecopyRule(
                int(precopy.get("threshold_bytes", rule.threshold_bytes)),
                int(precopy.get("max_rounds", rule.max_rounds)),
            )
        except (TypeError, ValueError):
            problems.append(
                _bad(("precopy",), "threshold_bytes and max_rounds are integers", precopy)
            )
    else:
        problems.append(_bad(("precopy",), "precopy is an object", precopy))
    if problems:
        raise DevmigError(problems)
    return specs, rule


@dataclass(eq=False)
class VfioUserHosted:
    """One device served by a backend process this agent launched."""

    id: str
    device: VfioUserDevice
    provider: VfioUserProvider
    busy: str | None = None
    origin: str | None = None

    async def control(self, *, digest: bool = False) -> dict[str, Any]:
        """Read the backend's control block (BAR0) over the agent's connection; ``{}`` when there is none."""
        client = self.device.client
        if client is None or self.provider.status(self.device) is not DeviceStatus.RUNNING:
            return {}
        try:
            block = await asyncio.wait_for(client.read(0, 0, 0x30 if digest else 0x18), 5.0)
        except Exception:  # a backend that broke the protocol or died shows no counters
            return {}
        magic, state = struct.unpack_from("<II", block, 0)
        if magic != _MAGIC:
            return {}
        steps, interrupts = struct.unpack_from("<QQ", block, 8)
        out: dict[str, Any] = {
            "state": state,
            "counters": {"steps": steps, "interrupts": interrupts},
        }
        if digest:
            out["digest"] = block[0x20:0x30].hex()
        return out

    async def to_dict(self, *, digest: bool = False) -> dict[str, Any]:
        """Return the device as the API shows it, its counters and digest read from the backend."""
        from devmig.migration import State

        d = self.device
        status = self.provider.status(d)
        control = await self.control(digest=digest)
        state = status.value
        if status is DeviceStatus.RUNNING:
            state = State(control["state"]).name if "state" in control else "RUNNING"
        host = {k: v for k, v in d.host.items() if isinstance(v, (str, int, bool))}
        out: dict[str, Any] = {
            "id": self.id,
            "model": d.config.model,
            "implementation": {"name": d.implementation.name, "release": d.implementation.release},
            "config": d.config.values,
            "string": d.config.string,
            "version": version_of(d.model, d.config),
            "state": state,
            "running": state in ("RUNNING", "PRE_COPY"),
            "busy": self.busy,
            "origin": self.origin,
            "memory_bytes": 0,
            "counters": control.get("counters", {}),
            "host": host,
            "provider": d.provider,
            "carrier": d.carrier,
            "exit_status": d.exit_status if status is DeviceStatus.LOST else None,
        }
        if "digest" in control:
            out["digest"] = control["digest"]
        return out


def _probe(provider: VfioUserProvider) -> None:
    """Run the provider's probes on a loop of their own (the agent's constructor is synchronous)."""
    failure: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(provider.start())
        except BaseException as exc:  # re-raised in the caller's thread
            failure.append(exc)

    worker = threading.Thread(target=run, name="devmig-vfio-user-probe")
    worker.start()
    worker.join()
    if failure:
        raise failure[0]


class VfioUserHost:
    """The vfio-user backends of one agent (``--provider vfio-user:SETTINGS.json``)."""

    def __init__(self, settings_path: str) -> None:
        specs, self.precopy = load_vfio_user_settings(settings_path)
        self.provider = VfioUserProvider(specs)
        _probe(self.provider)
        self.devices: dict[str, VfioUserHosted] = {}

    def offer(self) -> Offer:
        """The probed documents and opaque identities, each with who carries its data."""
        return self.provider.offer()

    def definition(
        self, model_id: str, implementation: str | None = None
    ) -> tuple[Implementation, DeviceModel] | None:
        """The first backend release serving ``model_id`` (that release, when named), with its definition."""
        return self.offer().serving(model_id, implementation)

    async def create(
        self,
        model_id: str,
        config: str | Mapping[str, Any] | Config | None,
        host_settings: Mapping[str, Any] | None,
        *,
        canonical: bool = False,
        implementation: str | None = None,
        origin: str | None = None,
    ) -> VfioUserHosted:
        """Launch a backend for a device (and connect, for an agent-held one); nothing is left if it fails.

        Raises:
            ConfigError: the configuration's problems, or ``BACKEND_REFUSED``
                (HTTP 422) with the backend's words.
            DevmigError: ``MODEL_UNKNOWN`` (404).
        """
        found = self.definition(model_id, implementation)
        if found is None:
            raise DevmigError(
                [
                    Problem(
                        "MODEL_UNKNOWN",
                        ("model",),
                        f"no vfio-user backend here serves {model_id!r}",
                        value=model_id,
                    )
                ]
            )
        impl, model = found
        parsed = parse_config(model, config, canonical=canonical)
        device = await create_through(self.provider.create, impl, parsed, host_settings)
        hosted = VfioUserHosted(
            "vdev-" + uuid.uuid4().hex[:12], device, self.provider, origin=origin
        )
        self.devices[hosted.id] = hosted
        return hosted

    async def delete(self, device_id: str) -> VfioUserHosted:
        """Close the connection (the backend exits) and forget the device."""
        hosted = self.devices.pop(device_id)
        await self.provider.delete(hosted.device)
        return hosted

    async def close(self) -> None:
        """Delete every device: each backend exits and its socket goes."""
        for device_id in list(self.devices):
            await self.delete(device_id)
