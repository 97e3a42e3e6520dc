"""Device providers: one query mechanism for every kind of device (DESIGN §9).

An agent hosts devices through providers — ``sdk`` (devmig's in-process
devices), ``vfio-user`` (backend programs) and ``kernel`` (VFIO/mdev drivers
through sysfs). Each implements :class:`Provider`: its :class:`Offer` of
model documents, ``create`` from a :class:`CreateRequest`, ``delete``,
``status`` and the :data:`Carrier` of each release's migration data. The
host report is the union of the offers (:func:`merge_offers`), a release
offered twice being a ``PROVIDER_CONFLICT``.

Devices without migration information are *opaque*: published under
``opaque:`` + a sha256 of their identity (:func:`opaque_model_id`); they move
only to the very same identity. Published documents may not use the prefix
(:func:`load_published` refuses them).
"""

from devmig.providers._interface import (
    CARRIERS,
    Carrier,
    CreateRequest,
    DeviceStatus,
    Offer,
    Provided,
    ProvidedDevice,
    Provider,
)
from devmig.providers._published import (
    load_published,
    opaque_document,
    opaque_model_id,
    reserved_problems,
)
from devmig.providers._sdk import SdkDevice, SdkProvider
from devmig.providers._union import HostCatalog, merge_offers

__all__ = [
    "CARRIERS",
    "Carrier",
    "CreateRequest",
    "DeviceStatus",
    "HostCatalog",
    "Offer",
    "Provided",
    "ProvidedDevice",
    "Provider",
    "SdkDevice",
    "SdkProvider",
    "load_published",
    "merge_offers",
    "opaque_document",
    "opaque_model_id",
    "reserved_problems",
]
