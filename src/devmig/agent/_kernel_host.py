"""Kernel devices in the agent: ``devmig agent --provider kernel[:SYSFS_ROOT]`` (DESIGN §9).

The agent hosts kernel VFIO/mdev devices through
:class:`~devmig.providers.KernelProvider` beside its SDK devices: their
documents join the host report, ``POST /v1/devices`` creates one (an mdev,
or a claimed VF) and ``DELETE`` removes it. The VMM carries such a device's
migration data, never the agent: a migration of one through the agent is
refused with ``KERNEL_DEVICE_DATA_BY_VMM`` (HTTP 409), naming what the VMM
must do; placement and checks answer for it like for any other device, and
the agent creates the destination device (``"canonical": true``).

Kernel devices outlive the agent: a VMM may be using them. Deleting one
through the API removes it (an mdev) or gives it its off values back (a VF).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from devmig._errors import CompatibilityError, DevmigError, Problem
from devmig.agent._provider_create import create_through, parse_config
from devmig.model import Config, DeviceModel, Implementation, version_of
from devmig.providers import DeviceStatus, KernelDevice, KernelProvider, Offer

__all__ = ["KernelHost", "KernelHosted", "kernel_root"]

DEFAULT_ROOT = "/sys"


def kernel_root(spec: str) -> str:
    """Return the sysfs root of a ``kernel[:SYSFS_ROOT]`` provider setting.

    Raises:
        DevmigError: ``USAGE`` for another provider.
    """
    name, _, root = spec.partition(":")
    if name != "kernel":
        raise DevmigError(
            [
                Problem(
                    "USAGE",
                    ("provider",),
                    f"unknown provider {spec!r}",
                    value=spec,
                    allowed=["kernel[:SYSFS_ROOT]", "vfio-user:SETTINGS.json"],
                    hint="the agent always hosts its sdk devices; add kernel devices with --provider kernel:/sys",
                )
            ]
        )
    return root or DEFAULT_ROOT


@dataclass(eq=False)
class KernelHosted:
    """One kernel device this agent created."""

    id: str
    device: KernelDevice
    provider: KernelProvider

    def to_dict(self, *, digest: bool = False) -> dict[str, Any]:
        """Return the device as the API shows it (no memory, no workload: the kernel runs it)."""
        d = self.device
        status = self.provider.status(d)
        return {
            "id": self.id,
            "model": d.config.model,
            "implementation": {"name": d.implementation.name, "release": d.implementation.release},
            "config": d.config.values,
            "string": d.config.string,
            "version": version_of(d.model, d.config),
            "state": "RUNNING" if status is DeviceStatus.RUNNING else status.value,
            "running": status is DeviceStatus.RUNNING,
            "busy": None,
            "origin": None,
            "memory_bytes": 0,
            "counters": {},
            "host": {k: v for k, v in d.host.items() if isinstance(v, (str, int, bool))},
            "provider": d.provider,
            "carrier": d.carrier,
        }


class KernelHost:
    """The kernel devices of one agent, through one sysfs tree.

    Args:
        root: the sysfs root (``/sys``, or a tree a test built or mounted).
    """

    def __init__(self, root: str) -> None:
        self.provider = KernelProvider.at(root)
        self.devices: dict[str, KernelHosted] = {}

    def offer(self) -> Offer:
        """What the tree publishes now."""
        return self.provider.offer()

    def definition(self, model_id: str) -> tuple[Implementation, DeviceModel] | None:
        """Return the first implementation release here serving a model, with its definition."""
        return self.offer().serving(model_id)

    async def create(
        self,
        model_id: str,
        config: str | Mapping[str, Any] | Config | None,
        host_settings: Mapping[str, Any] | None,
        *,
        canonical: bool = False,
    ) -> KernelHosted:
        """Create a kernel device; nothing exists afterwards if it fails.

        Raises:
            ConfigError: the configuration's problems, or ``BACKEND_REFUSED``
                (HTTP 422) when the driver refused a write.
            DevmigError: ``MODEL_UNKNOWN`` (404), ``INSUFFICIENT_RESOURCES`` (507).
        """
        found = self.definition(model_id)
        if found is None:
            raise DevmigError(
                [
                    Problem(
                        "MODEL_UNKNOWN",
                        ("model",),
                        f"no kernel driver here serves {model_id!r}",
                        value=model_id,
                    )
                ]
            )
        implementation, model = found
        parsed = parse_config(model, config, canonical=canonical)
        device = await create_through(self.provider.create, implementation, parsed, host_settings)
        hosted = KernelHosted("kdev-" + uuid.uuid4().hex[:12], device, self.provider)
        self.devices[hosted.id] = hosted
        return hosted

    async def delete(self, device_id: str) -> KernelHosted:
        """Delete a kernel device (an mdev removed, a VF given its off values back)."""
        hosted = self.devices.pop(device_id)
        await self.provider.delete(hosted.device)
        return hosted

    def refuse_migration(self, device_id: str) -> None:
        """Refuse to migrate a kernel device through the agent, when ``device_id`` is one.

        Raises:
            CompatibilityError: ``KERNEL_DEVICE_DATA_BY_VMM`` (HTTP 409).
        """
        hosted = self.devices.get(device_id)
        if hosted is None:
            return
        raise CompatibilityError(
            [
                Problem(
                    "KERNEL_DEVICE_DATA_BY_VMM",
                    ("devices", device_id),
                    f"device {device_id} is a kernel device ({hosted.device.kind} {hosted.device.name}): "
                    "the VMM carries its migration data, not the agent",
                    value=device_id,
                    hint="create the destination device on the chosen host (POST /v1/devices with the "
                    "canonical configuration and \"canonical\": true), then have the VM's VMM (QEMU's "
                    "vfio-pci) migrate the VM with the device to it",
                    context={"carrier": "vmm", "provider": "kernel"},
                )
            ]
        )
