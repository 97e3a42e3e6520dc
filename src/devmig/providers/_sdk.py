"""The ``sdk`` provider: devmig's in-process devices (DESIGN §9).

It publishes each hosted release's own document and creates a device by
constructing its class from the canonical configuration; the agent's own
stream carries its data (§4, §6). Which release of each implementation is
hosted is the agent's choice (its ``--release`` settings); by default the
newest of every reference implementation.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from devmig._errors import DevmigError, Problem
from devmig.device import Device
from devmig.devices import CATALOG, device_class, model_classes
from devmig.model import Implementation
from devmig.providers._interface import CreateRequest, DeviceStatus, Offer, Provided, ProvidedDevice

__all__ = ["SdkDevice", "SdkProvider"]


@dataclass(eq=False)
class SdkDevice(ProvidedDevice):
    """A device living in the agent's process."""

    device: Device | None = None
    closed: bool = False


class SdkProvider:
    """Devices implemented with devmig's SDK, hosted in the agent's process.

    Args:
        classes: the release classes hosted (each serves every model of its
            release's document, :func:`devmig.devices.model_classes`).
    """

    name = "sdk"

    def __init__(self, classes: Iterable[type[Device]]) -> None:
        self._classes: dict[Implementation, dict[str, type[Device]]] = {}
        for cls in classes:
            self._classes.setdefault(cls.implementation(), {}).update(model_classes(cls))
        self._docs = {
            impl: next(iter(models.values())).document() for impl, models in self._classes.items()
        }

    @classmethod
    def from_releases(cls, releases: Mapping[str, str] | None = None) -> SdkProvider:
        """Host one release of every reference implementation: those named, else the newest.

        Raises:
            DevmigError: ``RELEASE_UNKNOWN`` for a release or implementation there is not.
        """
        releases = dict(releases or {})
        unknown = sorted(set(releases) - set(CATALOG))
        if unknown:
            raise DevmigError(
                [
                    Problem(
                        "RELEASE_UNKNOWN",
                        ("release", name),
                        f"no reference implementation {name!r}",
                        value=name,
                        allowed=sorted(CATALOG),
                    )
                    for name in unknown
                ]
            )
        return cls(
            device_class(name, releases[name]) if name in releases else classes[-1]
            for name, classes in CATALOG.items()
        )

    async def start(self) -> None:
        """Nothing to probe: the documents are the classes' own."""

    def offer(self) -> Offer:
        """Return every hosted release's document, carried by the agent."""
        return Offer(self.name, tuple(Provided(doc, "agent", "sdk") for doc in self._docs.values()))

    def device_class(self, implementation: Implementation, model_id: str) -> type[Device]:
        """Return the class serving a model of a hosted release.

        Raises:
            DevmigError: ``MODEL_UNKNOWN`` naming the models the release serves
                (or the releases hosted, when it is not one of them).
        """
        models = self._classes.get(implementation)
        if models is None:
            raise DevmigError(
                [
                    Problem(
                        "MODEL_UNKNOWN",
                        ("implementation",),
                        f"the sdk provider does not host {implementation.render()}",
                        value=implementation.render(),
                        allowed=sorted(i.render() for i in self._classes),
                    )
                ]
            )
        found = models.get(model_id)
        if found is None:
            raise DevmigError(
                [
                    Problem(
                        "MODEL_UNKNOWN",
                        ("model",),
                        f"{implementation.render()} has no model {model_id!r}",
                        value=model_id,
                        allowed=sorted(models),
                    )
                ]
            )
        return found

    def create_now(self, request: CreateRequest) -> SdkDevice:
        """Create a device synchronously (what :meth:`create` does).

        Raises:
            DevmigError: ``MODEL_UNKNOWN``; ConfigError with every problem of
                the configuration on this release.
        """
        cls = self.device_class(request.implementation, request.model)
        device = cls.create_canonical(request.config, host=request.host)
        return SdkDevice(
            self.name,
            request.implementation,
            cls.model(),
            device.config,
            "agent",
            dict(request.host),
            device,
        )

    async def create(self, request: CreateRequest) -> SdkDevice:
        """Create a device from a canonical configuration (see :meth:`create_now`)."""
        return self.create_now(request)

    async def delete(self, device: ProvidedDevice) -> None:
        """Close the device and release what it holds."""
        assert isinstance(device, SdkDevice)
        if device.device is not None and not device.closed:
            device.device.close()
        device.closed = True

    def status(self, device: ProvidedDevice) -> DeviceStatus:
        """Running while the device's state machine runs; stopped otherwise (``LOST`` once deleted)."""
        assert isinstance(device, SdkDevice)
        if device.closed or device.device is None:
            return DeviceStatus.LOST
        return DeviceStatus.RUNNING if device.device.running else DeviceStatus.STOPPED

    async def close(self) -> None:
        """Nothing to release: the devices are closed by :meth:`delete`."""
