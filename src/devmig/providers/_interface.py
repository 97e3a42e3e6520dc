"""The provider interface (DESIGN §9): what an agent hosts devices through.

A *provider* publishes model documents (its :class:`Offer`), creates a device
from ``(implementation, canonical configuration, host-only settings)`` or
raises every problem, deletes it, tells its :class:`DeviceStatus`, and says
who carries each implementation's migration data (:data:`Carrier`). The
agent's host report is the union of its providers' offers
(:func:`~devmig.providers.merge_offers`); placement and checks never see
which provider a device comes from.

Discovery (:meth:`Provider.offer`) and status are synchronous and cheap
(files already read, programs already probed at :meth:`Provider.start`);
creation and deletion are coroutines, since a provider may launch a program
or wait on a driver.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from devmig._errors import Problem
from devmig.model import Config, DeviceModel, Implementation, ModelDocument

__all__ = [
    "CARRIERS",
    "Carrier",
    "CreateRequest",
    "DeviceStatus",
    "Offer",
    "Provided",
    "ProvidedDevice",
    "Provider",
]

Carrier = Literal["agent", "vmm"]
"""Who carries a device's migration data: the agent's own stream, or the VM's VMM."""

CARRIERS: tuple[Carrier, ...] = ("agent", "vmm")


class DeviceStatus(enum.Enum):
    """A provided device's state as its provider sees it."""

    RUNNING = "running"
    STOPPED = "stopped"
    LOST = "LOST"
    """The device is gone under the provider (a backend died, a driver removed it)."""


@dataclass(frozen=True, slots=True)
class Provided:
    """One model document a provider publishes, and what the agent must know about it.

    Attributes:
        document: the implementation release's model document.
        carrier: who carries its devices' migration data.
        source: where it came from (a sysfs path, a program, ``sdk``), for messages.
    """

    document: ModelDocument
    carrier: Carrier
    source: str = ""

    @property
    def implementation(self) -> Implementation:
        """The implementation release the document publishes."""
        return self.document.implementation


@dataclass(frozen=True, slots=True)
class Offer:
    """What one provider publishes now.

    Attributes:
        provider: the provider's name (``sdk``, ``vfio-user``, ``kernel``).
        provided: the documents, one per implementation release.
        problems: what could not be published, each with its ``loc`` (a
            malformed driver document: the usual document codes, the file's
            path in ``context["path"]``); the rest is still offered.
        capacity: per implementation release (``name release``), how many more
            devices could be created now, where the provider knows it
            (a kernel type's ``available_instances``).
    """

    provider: str
    provided: tuple[Provided, ...] = ()
    problems: tuple[Problem, ...] = ()
    capacity: Mapping[str, int] = field(default_factory=dict)

    @property
    def documents(self) -> tuple[ModelDocument, ...]:
        """The model documents, in the provider's order."""
        return tuple(p.document for p in self.provided)

    def find(self, implementation: Implementation) -> Provided | None:
        """Return what this offer publishes for an implementation release, or ``None``."""
        for p in self.provided:
            if p.implementation == implementation:
                return p
        return None

    def serving(self, model_id: str, implementation: str | None = None) -> tuple[Implementation, DeviceModel] | None:
        """The first release here serving ``model_id`` (only ``NAME/RELEASE`` when named), with its definition."""
        for p in self.provided:
            impl = p.implementation
            if implementation is not None and f"{impl.name}/{impl.release}" != implementation:
                continue
            found = p.document.find(model_id)
            if found is not None:
                return impl, found
        return None


@dataclass(frozen=True, slots=True)
class CreateRequest:
    """What a provider is asked to create.

    Attributes:
        implementation: the release the check chose (the provider offers it).
        config: the canonical configuration (its ``model`` is the model id).
        host: host-only settings, never parameters (an image path, a parent
            device, a VF's address).
    """

    implementation: Implementation
    config: Config
    host: Mapping[str, Any] = field(default_factory=dict)

    @property
    def model(self) -> str:
        """The model id."""
        return self.config.model


@dataclass(eq=False)
class ProvidedDevice:
    """A device a provider created; providers subclass it with their own handles.

    Attributes:
        provider: the provider's name.
        implementation: the release serving it.
        model: that release's definition of the device's model.
        config: its canonical configuration.
        carrier: who carries its migration data.
        host: the host-only settings it was created with (and those the
            provider chose: the parent, the VF, the UUID).
    """

    provider: str
    implementation: Implementation
    model: DeviceModel
    config: Config
    carrier: Carrier
    host: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Provider(Protocol):
    """A kind of device an agent hosts (DESIGN §9)."""

    @property
    def name(self) -> str:
        """``sdk``, ``vfio-user`` or ``kernel``."""
        ...

    async def start(self) -> None:
        """Get ready to offer (probe programs, read a tree); called once, before :meth:`offer`."""
        ...

    def offer(self) -> Offer:
        """Return the model documents this provider publishes now, and its problems."""
        ...

    async def create(self, request: CreateRequest) -> ProvidedDevice:
        """Create a device; nothing of it exists afterwards if this fails.

        Raises:
            DevmigError: every problem — ``MODEL_UNKNOWN``, the configuration's
                problems, ``BACKEND_REFUSED`` (the backend's or driver's own
                words in ``hint``), ``INSUFFICIENT_RESOURCES``.
        """
        ...

    async def delete(self, device: ProvidedDevice) -> None:
        """Delete a device this provider created (a lost one too)."""
        ...

    def status(self, device: ProvidedDevice) -> DeviceStatus:
        """Return the device's state now."""
        ...

    async def close(self) -> None:
        """Release what the provider holds; its devices are gone afterwards."""
        ...
