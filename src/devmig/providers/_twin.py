"""The driver twin: a kernel driver's migration attributes, emulated in memory.

:func:`driver_twin` builds, from model documents, a :class:`MemorySysfs`
shaped like real sysfs (``class/mdev_bus/<parent>`` and
``bus/pci/devices/<address>`` linking into ``devices/``, a parent's
``driver`` and ``driver/module`` links, ``module/<name>/srcversion``) whose
attributes behave as DESIGN §9 asks a driver to:

- a type's ``create`` takes a UUID, makes ``<parent>/<UUID>/`` (linked from
  ``bus/mdev/devices/`` and the type's ``devices/``) and takes one of
  ``available_instances`` — none left is ``EUSERS``, a UUID in use ``EEXIST``;
  the device's ``remove`` unmakes it (an open one too: the kernel asks its
  user to release it) and gives the instance back;
- ``migration/device_model`` takes a model the site publishes (else
  ``EINVAL``) and resets the parameters to that model's init values;
  ``migration/<param>`` takes a value of its type that is allowed or the off
  value (else ``EINVAL``); ``migration/version`` a published version name;
  every value reads back as one line;
- once a device is *opened* (:meth:`DriverTwin.open`, what a VMM does) every
  migration attribute refuses writes with ``EBUSY``; opening checks the whole
  configuration (allowed values and constraints), as a driver must;
- a VF exists from the start with its attributes; its ``remove`` (which
  would hot-unplug the function) only records writes, so a test can assert
  that nobody wrote it.

Device authors can describe their driver's attribute set as a model document,
point a :class:`~devmig.providers.KernelProvider` at the twin and see what
devmig writes; the same tree can be mounted with FUSE for real tools.
"""

from __future__ import annotations

import errno
import json
import os
import posixpath
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial

from devmig.model import Config as _Config
from devmig.model import DeviceModel, ModelDocument, Value, check_full, version_of
from devmig.providers._kernel import attribute_value
from devmig.providers._sysfs import MemorySysfs, StoredAttribute, SysfsError

__all__ = [
    "DriverTwin",
    "MdevParentSpec",
    "MdevTypeSpec",
    "TwinDevice",
    "VfSpec",
    "driver_twin",
    "materialize",
]


@dataclass(frozen=True, slots=True)
class MdevTypeSpec:
    """One mdev type of a twin parent (``document=None``: a type without migration attributes)."""

    name: str
    document: ModelDocument | None
    available: int = 4
    device_api: str = "vfio-pci"
    description: str = ""
    accepts: ModelDocument | None = None
    """What the driver really accepts, when it is not what it publishes (a buggy driver)."""


@dataclass(frozen=True, slots=True)
class MdevParentSpec:
    """An mdev parent device: its PCI address, driver, module ``srcversion`` and types."""

    address: str
    driver: str
    types: tuple[MdevTypeSpec, ...]
    srcversion: str = "0123456789ABCDEF0123456"
    bus: str = "pci0000:00"


@dataclass(frozen=True, slots=True)
class VfSpec:
    """A VF bound to a VFIO variant driver (``document=None``: without migration attributes)."""

    address: str
    driver: str
    document: ModelDocument | None
    physfn: str = "0000:00:03.0"
    vendor: str = "0x15b3"
    device: str = "0x101e"
    srcversion: str = "FEDCBA9876543210FEDCBA9"
    bus: str = "pci0000:00"
    accepts: ModelDocument | None = None
    """What the driver really accepts, when it is not what it publishes (a buggy driver)."""


@dataclass
class TwinDevice:
    """A device of the twin: an mdev made by ``create``, or a VF."""

    name: str
    path: str
    document: ModelDocument | None
    kind: str
    type_path: str = ""
    model: DeviceModel | None = None
    values: dict[str, Value] = field(default_factory=dict)
    opened: bool = False

    def config(self) -> _Config | None:
        """The canonical configuration the attributes hold now (``None``: opaque)."""
        if self.model is None:
            return None
        return _Config(self.model.model, self.model.canonical_items(self.values))


def _line(data: bytes) -> str:
    text = data.decode("utf-8", "surrogateescape")
    return text[:-1] if text.endswith("\n") else text


def _parse(model: DeviceModel, name: str, text: str) -> Value | None:
    param = model.params[name]
    if param.type_name == "bool":
        return {"1": True, "0": False}.get(text)
    if param.type_name == "int":
        try:
            return int(text, 10)
        except ValueError:
            return None
    return text


class _Attr:
    """An attribute whose read and write are the twin's functions."""

    def __init__(
        self, read: Callable[[], bytes] | None, write: Callable[[bytes], None] | None
    ) -> None:
        self._read, self._write = read, write

    @property
    def mode(self) -> int:
        """The file's permission bits: ``create`` and ``remove`` are write-only, as in sysfs."""
        return (0o444 if self._read else 0) | (0o200 if self._write else 0)

    def read(self) -> bytes:
        if self._read is None:
            raise SysfsError(errno.EACCES, "")
        return self._read()

    def write(self, data: bytes) -> None:
        if self._write is None:
            raise SysfsError(errno.EACCES, "")
        self._write(data)


class DriverTwin:
    """A tree of mdev parents and VFs with a driver's attribute semantics (see the module).

    Build one with :func:`driver_twin`. ``files`` is the tree (a
    :class:`~devmig.providers.SysfsFiles`); ``devices`` the devices by name;
    ``on_create`` is called (under the tree's lock) with each new mdev's
    UUID — a test opens it there to stand for a VMM racing the agent.
    """

    def __init__(self, label: str = "/sys") -> None:
        self.files = MemorySysfs(label)
        self.devices: dict[str, TwinDevice] = {}
        self.available: dict[str, int] = {}
        """Type directory → its available instances."""
        self.on_create: Callable[[str], None] | None = None
        self.removed: list[str] = []
        """The UUIDs removed through ``remove``, in order."""

    # -- building ---------------------------------------------------------------

    def add_parent(self, spec: MdevParentSpec) -> None:
        """Add an mdev parent and its types."""
        fs = self.files
        path = f"devices/{spec.bus}/{spec.address}"
        fs.mkdir(path)
        self._driver(path, spec.driver, spec.srcversion, depth=3)
        fs.symlink(f"class/mdev_bus/{spec.address}", f"../../{path}")
        fs.symlink(f"bus/pci/devices/{spec.address}", f"../../../{path}")
        fs.mkdir("bus/mdev/devices")
        for t in spec.types:
            tpath = f"{path}/mdev_supported_types/{t.name}"
            self.available[tpath] = t.available
            fs.add_file(f"{tpath}/name", f"{t.description or t.name}\n")
            fs.add_file(f"{tpath}/device_api", f"{t.device_api}\n")
            fs.add_file(
                f"{tpath}/available_instances",
                _Attr(partial(self._available, tpath), None),
            )
            fs.add_file(
                f"{tpath}/create",
                _Attr(None, partial(self._create, tpath, t.accepts or t.document)),
            )
            fs.mkdir(f"{tpath}/devices")
            if t.document is not None:
                self._published(tpath, t.document)

    def add_vf(self, spec: VfSpec) -> None:
        """Add a VF bound to a variant driver (its physical function too, bound to the PF driver)."""
        fs = self.files
        pf = f"devices/{spec.bus}/{spec.physfn}"
        path = f"{pf}/{spec.address}"
        fs.mkdir(path)
        if not fs.exists(f"{pf}/driver"):
            self._driver(pf, "pcieport", "", depth=3)
            fs.symlink(f"bus/pci/devices/{spec.physfn}", f"../../../{pf}")
        self._driver(path, spec.driver, spec.srcversion, depth=4)
        fs.symlink(f"{path}/physfn", f"../{spec.physfn}")
        fs.symlink(f"bus/pci/devices/{spec.address}", f"../../../{path}")
        fs.add_file(f"{path}/vendor", f"{spec.vendor}\n")
        fs.add_file(f"{path}/device", f"{spec.device}\n")
        fs.add_file(f"{path}/remove", StoredAttribute(writable=True))
        accepts = spec.accepts or spec.document
        device = TwinDevice(spec.address, path, accepts, "vf")
        self.devices[spec.address] = device
        if spec.document is not None and accepts is not None:
            self._published(path, spec.document)
            self._set_model(device, accepts.models[0])

    def _driver(self, path: str, driver: str, srcversion: str, *, depth: int) -> None:
        fs = self.files
        up = "../" * depth
        fs.symlink(f"{path}/driver", f"{up}bus/pci/drivers/{driver}")
        fs.mkdir(f"bus/pci/drivers/{driver}")
        if srcversion and not fs.exists(f"module/{driver}"):
            fs.add_file(f"module/{driver}/srcversion", f"{srcversion}\n")
        if srcversion and not fs.exists(f"bus/pci/drivers/{driver}/module"):
            fs.symlink(f"bus/pci/drivers/{driver}/module", f"../../../../module/{driver}")

    def _published(self, path: str, document: ModelDocument) -> None:
        text = json.dumps(document.to_json(), indent=1) + "\n"
        self.files.add_file(f"{path}/migration_info.json", text)
        self.files.add_file(
            f"{path}/migration_device_models", "".join(m.model + "\n" for m in document.models)
        )

    # -- the driver's semantics -----------------------------------------------------------

    def _create(self, type_path: str, document: ModelDocument | None, data: bytes) -> None:
        text = _line(data).strip()
        try:
            name = str(uuid.UUID(text))
        except ValueError:
            raise SysfsError(errno.EINVAL, "", f"not a UUID: {text!r}") from None
        if name in self.devices:
            raise SysfsError(errno.EEXIST, "")
        if self.available[type_path] <= 0:
            raise SysfsError(errno.EUSERS, "", "no available instance left")
        self.available[type_path] -= 1
        fs = self.files
        parent = posixpath.dirname(posixpath.dirname(type_path))
        path = f"{parent}/{name}"
        fs.mkdir(path)
        fs.symlink(f"{path}/mdev_type", f"../mdev_supported_types/{posixpath.basename(type_path)}")
        fs.symlink(f"bus/mdev/devices/{name}", "../../../" + path)
        fs.symlink(f"{type_path}/devices/{name}", "../../../" + name)
        device = TwinDevice(name, path, document, "mdev", type_path)
        fs.add_file(f"{path}/remove", _Attr(None, lambda data: self._remove(device, data)))
        self.devices[name] = device
        if document is not None:
            self._set_model(device, document.models[0])
        if self.on_create is not None:
            self.on_create(name)

    def _remove(self, device: TwinDevice, data: bytes) -> None:
        if _line(data).strip() != "1":
            raise SysfsError(errno.EINVAL, "", "write 1")
        # an open device is removed too: the kernel asks its user (the VMM) to release it
        fs = self.files
        fs.remove(device.path)
        fs.remove(f"bus/mdev/devices/{device.name}")
        fs.remove(f"{device.type_path}/devices/{device.name}")
        del self.devices[device.name]
        self.available[device.type_path] += 1
        self.removed.append(device.name)

    def _set_model(self, device: TwinDevice, model: DeviceModel) -> None:
        fs = self.files
        base = f"{device.path}/migration"
        fs.remove(base)
        device.model = model
        device.values = dict(model.init_values)
        fs.add_file(
            f"{base}/device_model",
            _Attr(lambda: f"{model.model}\n".encode(), lambda d: self._write_model(device, d)),
        )
        fs.add_file(
            f"{base}/version",
            _Attr(
                lambda: f"{self._version(device)}\n".encode(),
                lambda d: self._write_version(device, d),
            ),
        )
        for name in model.params:
            fs.add_file(
                f"{base}/{name}",
                _Attr(
                    partial(self._read_param, device, name),
                    partial(self._write_param, device, name),
                ),
            )

    def _available(self, type_path: str) -> bytes:
        return f"{self.available[type_path]}\n".encode()

    def _read_param(self, device: TwinDevice, name: str) -> bytes:
        return attribute_value(device.values[name]) + b"\n"

    def _frozen(self, device: TwinDevice) -> None:
        if device.opened:
            raise SysfsError(
                errno.EBUSY, "", "the device is open: its migration attributes are fixed"
            )

    def _write_model(self, device: TwinDevice, data: bytes) -> None:
        self._frozen(device)
        assert device.document is not None
        model = device.document.find(_line(data))
        if model is None:
            raise SysfsError(errno.EINVAL, "", f"unknown model {_line(data)!r}")
        self._set_model(device, model)

    def _write_param(self, device: TwinDevice, name: str, data: bytes) -> None:
        self._frozen(device)
        assert device.model is not None
        param = device.model.params[name]
        value = _parse(device.model, name, _line(data))
        if value is None or not (
            param.allows(value) or (value == param.off and type(value) is type(param.off))
        ):
            raise SysfsError(errno.EINVAL, "", f"{name} does not take {_line(data)!r}")
        device.values[name] = value

    def _version(self, device: TwinDevice) -> str:
        config = device.config()
        assert device.model is not None and config is not None
        return version_of(device.model, config) or ""

    def _write_version(self, device: TwinDevice, data: bytes) -> None:
        self._frozen(device)
        assert device.model is not None
        version = device.model.version_map.get(_line(data))
        if version is None:
            raise SysfsError(errno.EINVAL, "", f"unknown version {_line(data)!r}")
        device.values = device.model.version_values(version)

    # -- what a VMM does ----------------------------------------------------------------

    def open(self, name: str) -> None:
        """Open a device as a VMM does: its attributes freeze.

        Raises:
            SysfsError: ``ENOENT`` (no such device), ``EINVAL`` when its
                configuration is not one the driver accepts (a value or a
                constraint), ``EBUSY`` when it is open already.
        """
        with self.files.lock:
            device = self.devices.get(name)
            if device is None:
                raise SysfsError(errno.ENOENT, name)
            if device.opened:
                raise SysfsError(errno.EBUSY, name)
            if device.model is not None:
                problems = check_full(device.model, device.values)
                if problems:
                    raise SysfsError(errno.EINVAL, name, "; ".join(p.message for p in problems))
            device.opened = True

    def close(self, name: str) -> None:
        """Close a device: its attributes are writable again."""
        with self.files.lock:
            self.devices[name].opened = False

    def mdevs(self) -> dict[str, TwinDevice]:
        """The mdevs that exist now, by UUID."""
        with self.files.lock:
            return {n: d for n, d in self.devices.items() if d.kind == "mdev"}

    def vf_remove_writes(self) -> dict[str, list[bytes]]:
        """Every write to a VF's ``remove``, by VF (there should be none)."""
        out: dict[str, list[bytes]] = {}
        for name, device in self.devices.items():
            if device.kind == "vf":
                attr = self.files.attribute(f"{device.path}/remove")
                assert isinstance(attr, StoredAttribute)
                out[name] = list(attr.writes)
        return out


def driver_twin(
    parents: Iterable[MdevParentSpec] = (),
    vfs: Iterable[VfSpec] = (),
    *,
    label: str = "/sys",
) -> DriverTwin:
    """Build a driver twin from model documents (see the module).

    Args:
        parents: mdev parents with their types (a type's document: what its
            ``migration_info.json`` publishes; ``None``: no attributes).
        vfs: VFs bound to variant drivers.
        label: the root the twin's paths are shown under.
    """
    twin = DriverTwin(label)
    for parent in parents:
        twin.add_parent(parent)
    for vf in vfs:
        twin.add_vf(vf)
    return twin


def materialize(files: MemorySysfs, root: str) -> None:
    """Write a snapshot of an in-memory tree to disk: directories, files (as read now) and links.

    The result is a static tree shaped like real sysfs (no driver behind it):
    what discovery tests read.

    Args:
        files: the tree.
        root: an empty directory to write it into.
    """

    def walk(path: str) -> None:
        for name in files.listdir(path) if files.is_dir(path) else []:
            child = posixpath.join(path, name) if path else name
            kind = files.kind(child)
            target = os.path.join(root, child)
            if kind == "link":
                os.symlink(files.readlink(child), target)
            elif kind == "dir":
                os.makedirs(target, exist_ok=True)
                walk(child)
            elif kind == "file":
                try:
                    data = files.read(child)
                except SysfsError:
                    data = b""
                with open(target, "wb") as f:
                    f.write(data)

    os.makedirs(root, exist_ok=True)
    walk("")
