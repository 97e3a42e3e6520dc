"""Reference devices, each with several implementation releases that migrate between each other.

:data:`CATALOG` maps an implementation name to its releases, oldest first;
:func:`device_class` finds one release. A release's document may define more
than one model (acme-accel 2.0.0 and later also serve ``accel-lite``):
:func:`model_classes` gives the class serving each of them.
"""

from __future__ import annotations

from devmig._errors import DevmigError, Problem
from devmig.device import Device
from devmig.devices.accel import AccelLiteV2, AccelLiteV3, AccelV1, AccelV2, AccelV3
from devmig.devices.blk import BlkV1, BlkV1_1, BlkV2
from devmig.devices.nic import NicV1, NicV2, NicV3

__all__ = ["CATALOG", "OTHER_MODELS", "device_class", "model_classes", "newest", "releases"]

CATALOG: dict[str, tuple[type[Device], ...]] = {
    "acme-nic": (NicV1, NicV2, NicV3),
    "acme-blk": (BlkV1, BlkV1_1, BlkV2),
    "acme-accel": (AccelV1, AccelV2, AccelV3),
}
"""Implementation name → its release classes, oldest first (each serves the release's first model)."""

OTHER_MODELS: dict[str, tuple[type[Device], ...]] = {
    "acme-accel": (AccelLiteV2, AccelLiteV3),
}
"""Implementation name → the classes serving the other models of its releases' documents."""


def releases(implementation: str) -> list[str]:
    """Return the release strings of an implementation, oldest first."""
    return [cls.implementation().release for cls in CATALOG.get(implementation, ())]


def device_class(implementation: str, release: str) -> type[Device]:
    """Return the class of one implementation release.

    Raises:
        DevmigError: ``RELEASE_UNKNOWN`` naming the releases there are.
    """
    for cls in CATALOG.get(implementation, ()):
        if cls.implementation().release == release:
            return cls
    known = {name: releases(name) for name in CATALOG}
    raise DevmigError(
        [
            Problem(
                "RELEASE_UNKNOWN",
                ("release", implementation),
                f"no reference device {implementation} {release}",
                value=f"{implementation}={release}",
                allowed=known,
            )
        ]
    )


def newest(implementation: str) -> type[Device]:
    """Return the newest release of an implementation."""
    return CATALOG[implementation][-1]


def model_classes(release_class: type[Device]) -> dict[str, type[Device]]:
    """Return model id → the class serving it, for every model of ``release_class``'s release.

    ``release_class`` is one of :data:`CATALOG`'s classes; the other models of
    its document come from :data:`OTHER_MODELS` (same implementation, same release).
    """
    impl = release_class.implementation()
    out: dict[str, type[Device]] = {release_class.model_id: release_class}
    for cls in OTHER_MODELS.get(impl.name, ()):
        if cls.implementation() == impl:
            out.setdefault(cls.model_id, cls)
    return out
