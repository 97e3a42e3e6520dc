"""The vfio-user protocol (QEMU's ``docs/interop/vfio-user.rst``, as libvfio-user 0.2 speaks it).

Theory of operation
-------------------
:class:`Connection` is the sans-IO core: one side of one socket, fed bytes
and received descriptors, producing typed events (:class:`Request`,
:class:`Reply`, :class:`Rejected`, :class:`Closed`) and framing outgoing
messages (:class:`Outgoing`). Every command 1-18 has a body class with its
codec (``VersionRequest`` … ``MigDataWrite``) and every reply shape its own
(``VersionReply`` … ``MigDataReadReply``); DEVICE_FEATURE data is shaped by
the helpers of the features module. Malformed input is refused with the
errno of the specification's error reply, never a traceback; the client's
``strict`` mode enforces libvfio-user's reply rules.

The asyncio edge: :class:`FdSocket` (``SCM_RIGHTS`` over a Unix socket),
:func:`serve_connection` (a server loop over a :class:`Handler`),
:class:`VfioUserClient` (what a VMM does) and :func:`migrate` (a migration
between two backends, the bytes unparsed). :class:`DeviceBackend` is an SDK
device behind vfio-user — PCI config space, BARs, interrupts, DMA and dirty
logging, migration — which :func:`run_serve` (``devmig vfio-user serve``)
runs as a program.
"""

from devmig.vfio_user._backend import PCI_IDS, DeviceBackend, pci_ids
from devmig.vfio_user._capabilities import (
    DEFAULT_MAX_DATA_XFER_SIZE,
    PROTOCOL_MAJOR,
    PROTOCOL_MINOR,
    Capabilities,
)
from devmig.vfio_user._client import VfioUserClient
from devmig.vfio_user._conformance import check_backend, steps_json
from devmig.vfio_user._connection import (
    NEED_DATA,
    Closed,
    Connection,
    ConnectionState,
    Event,
    NeedData,
    Outgoing,
    Rejected,
    Reply,
    Request,
    Role,
)
from devmig.vfio_user._dma import DmaSpace
from devmig.vfio_user._errors import VfioUserError
from devmig.vfio_user._fdsocket import FdSocket
from devmig.vfio_user._features import (
    FEATURE_OPS,
    LoggingRange,
    LoggingReport,
    LoggingStart,
    bitmap_bytes,
    feature_get,
    feature_probe,
    feature_set,
    pack_device_state,
    pack_migration_flags,
    parse_device_state,
    parse_logging_report,
    parse_logging_start,
)
from devmig.vfio_user._migrate import MigrationRun, migrate
from devmig.vfio_user._pci import ConfigSpace, PciIds
from devmig.vfio_user._replies import (
    DeviceFeatureReply,
    DeviceInfo,
    DmaReadReply,
    DmaUnmapReply,
    DmaWriteReply,
    EmptyReply,
    ErrorReply,
    IoFdEntry,
    IrqInfo,
    MigDataReadReply,
    RegionInfo,
    RegionIoFds,
    RegionReadReply,
    RegionWriteMultiReply,
    RegionWriteReply,
    ReplyBody,
    VersionReply,
)
from devmig.vfio_user._requests import (
    UNMAP_ALL,
    UNMAP_GET_DIRTY_BITMAP,
    DeviceFeature,
    DeviceGetInfo,
    DeviceReset,
    DmaMap,
    DmaRead,
    DmaUnmap,
    DmaWrite,
    GetIrqInfo,
    GetRegionInfo,
    GetRegionIoFds,
    MigDataRead,
    MigDataWrite,
    RegionRead,
    RegionWrite,
    RegionWriteMulti,
    RequestBody,
    SetIrqs,
    SingleWrite,
    VersionRequest,
)
from devmig.vfio_user._serve import ServeOptions, parse_extra_args, run_serve
from devmig.vfio_user._server import Handler, ServerSession, serve_connection
from devmig.vfio_user._wire import (
    Command,
    DeviceFlags,
    Feature,
    FeatureOp,
    Header,
    IrqIndex,
    IrqInfoFlags,
    MigrationFeature,
    RegionFlags,
    SetIrqsFlags,
)

__all__ = [
    "DEFAULT_MAX_DATA_XFER_SIZE",
    "FEATURE_OPS",
    "NEED_DATA",
    "PCI_IDS",
    "PROTOCOL_MAJOR",
    "PROTOCOL_MINOR",
    "UNMAP_ALL",
    "UNMAP_GET_DIRTY_BITMAP",
    "Capabilities",
    "Closed",
    "Command",
    "ConfigSpace",
    "Connection",
    "ConnectionState",
    "DeviceBackend",
    "DeviceFeature",
    "DeviceFeatureReply",
    "DeviceFlags",
    "DeviceGetInfo",
    "DeviceInfo",
    "DeviceReset",
    "DmaMap",
    "DmaRead",
    "DmaReadReply",
    "DmaSpace",
    "DmaUnmap",
    "DmaUnmapReply",
    "DmaWrite",
    "DmaWriteReply",
    "EmptyReply",
    "ErrorReply",
    "Event",
    "FdSocket",
    "Feature",
    "FeatureOp",
    "GetIrqInfo",
    "GetRegionInfo",
    "GetRegionIoFds",
    "Handler",
    "Header",
    "IoFdEntry",
    "IrqIndex",
    "IrqInfo",
    "IrqInfoFlags",
    "LoggingRange",
    "LoggingReport",
    "LoggingStart",
    "MigDataRead",
    "MigDataReadReply",
    "MigDataWrite",
    "MigrationFeature",
    "MigrationRun",
    "NeedData",
    "Outgoing",
    "PciIds",
    "RegionFlags",
    "RegionInfo",
    "RegionIoFds",
    "RegionRead",
    "RegionReadReply",
    "RegionWrite",
    "RegionWriteMulti",
    "RegionWriteMultiReply",
    "RegionWriteReply",
    "Rejected",
    "Reply",
    "ReplyBody",
    "Request",
    "RequestBody",
    "Role",
    "ServeOptions",
    "ServerSession",
    "SetIrqs",
    "SetIrqsFlags",
    "SingleWrite",
    "VersionReply",
    "VersionRequest",
    "VfioUserClient",
    "VfioUserError",
    "bitmap_bytes",
    "check_backend",
    "feature_get",
    "feature_probe",
    "feature_set",
    "migrate",
    "pack_device_state",
    "pack_migration_flags",
    "parse_device_state",
    "parse_extra_args",
    "parse_logging_report",
    "parse_logging_start",
    "pci_ids",
    "run_serve",
    "serve_connection",
    "steps_json",
]
