"""Device providers: one query mechanism for every kind of device (DESIGN §9).

An agent hosts devices through providers — ``sdk`` (devmig's in-process
devices), ``vfio-user`` (backend programs) and ``kernel`` (VFIO/mdev drivers
through sysfs). Each implements :class:`Provider`: its :class:`Offer` of
model documents, ``create`` from a :class:`CreateRequest`, ``delete``,
``status`` and the :data:`Carrier` of each release's migration data. The
host report is the union of the offers (:func:`merge_offers`), a release
offered twice being a ``PROVIDER_CONFLICT``.

The ``kernel`` provider (:class:`KernelProvider`) reads and writes a sysfs
tree through :class:`SysfsFiles` — :class:`DiskSysfs` (``/sys``, or a test's
tree) or :class:`MemorySysfs`. :func:`driver_twin` builds, from model
documents, a tree whose attributes behave like a driver's (refusals with
``EINVAL``, attributes frozen once opened, ``available_instances``,
``create``/``remove``), for testing devmig and drivers against each other.

The ``vfio-user`` provider (:class:`VfioUserProvider`) hosts backend
programs (:class:`BackendSpec`): probed with ``--print-migration-info-json``,
launched with every parameter as ``--m-<p>=<v>`` (:func:`backend_arguments`),
held by the agent's strict client or left to a VMM.

Devices without migration information are *opaque*: published under
``opaque:`` + a sha256 of their identity (:func:`opaque_model_id`); they move
only to the very same identity. Published documents may not use the prefix
(:func:`load_published` refuses them).
"""

from devmig.providers._fuse import fuse_mounted, fuse_unmount, serve_fuse
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
from devmig.providers._kernel import (
    KernelDevice,
    KernelProvider,
    attribute_value,
    attribute_writes,
    mdevctl_config,
)
from devmig.providers._kernel_tree import KernelSite, KernelTree, is_variant_driver, read_tree
from devmig.providers._published import (
    load_published,
    opaque_document,
    opaque_model_id,
    reserved_problems,
)
from devmig.providers._sdk import SdkDevice, SdkProvider
from devmig.providers._sysfs import (
    Attribute,
    DiskSysfs,
    MemorySysfs,
    StoredAttribute,
    SysfsError,
    SysfsFiles,
)
from devmig.providers._twin import (
    DriverTwin,
    MdevParentSpec,
    MdevTypeSpec,
    TwinDevice,
    VfSpec,
    driver_twin,
    materialize,
)
from devmig.providers._union import HostCatalog, merge_offers
from devmig.providers._vfio_user import (
    BackendSpec,
    VfioUserDevice,
    VfioUserProvider,
    backend_arguments,
)

__all__ = [
    "CARRIERS",
    "Attribute",
    "BackendSpec",
    "Carrier",
    "CreateRequest",
    "DeviceStatus",
    "DiskSysfs",
    "DriverTwin",
    "HostCatalog",
    "KernelDevice",
    "KernelProvider",
    "KernelSite",
    "KernelTree",
    "MdevParentSpec",
    "MdevTypeSpec",
    "MemorySysfs",
    "Offer",
    "Provided",
    "ProvidedDevice",
    "Provider",
    "SdkDevice",
    "SdkProvider",
    "StoredAttribute",
    "SysfsError",
    "SysfsFiles",
    "TwinDevice",
    "VfSpec",
    "VfioUserDevice",
    "VfioUserProvider",
    "attribute_value",
    "attribute_writes",
    "backend_arguments",
    "driver_twin",
    "fuse_mounted",
    "fuse_unmount",
    "is_variant_driver",
    "load_published",
    "materialize",
    "mdevctl_config",
    "merge_offers",
    "opaque_document",
    "opaque_model_id",
    "read_tree",
    "reserved_problems",
    "serve_fuse",
]
