"""The ``kernel`` provider: VFIO/mdev drivers through their sysfs attributes (DESIGN §9).

It publishes what :func:`~devmig.providers._kernel_tree.read_tree` finds —
one document per implementation release, carried by the VMM (QEMU's
vfio-pci moves the data; devmig checks, chooses the host and creates the
destination device) — and creates devices by writing attributes, in the
order :func:`attribute_writes` gives:

1. an mdev: the UUID to the type's ``create``; a VF: nothing (a VF is never
   created, only claimed: an unopened VF bound to the variant driver that
   this provider has not claimed already);
2. ``migration/device_model``: the model;
3. ``migration/<param>``: every parameter's off value, in the document's order;
4. ``migration/<param>``: the canonical configuration's values.

A write the driver refuses fails the creation (``BACKEND_REFUSED``, the
driver's ``errno`` in ``hint``): an mdev is removed through
``bus/mdev/devices/<UUID>/remove`` — the only ``remove`` ever written — and
a VF gets its off values back. Deleting does the same. A VF refusing the
very first write with ``EBUSY`` is opened by someone else: the next VF is
tried. A type refusing ``create`` has no instance left: the next type is
tried, and ``INSUFFICIENT_RESOURCES`` answers when none is left.

Values are one line: bool ``1``/``0``, int decimal, str verbatim.
"""

from __future__ import annotations

import asyncio
import errno
import posixpath
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from devmig._errors import ConfigError, DevmigError, Problem
from devmig.model import Config, DeviceModel, Value, parse_canonical
from devmig.providers._interface import CreateRequest, DeviceStatus, Offer, Provided, ProvidedDevice
from devmig.providers._kernel_tree import (
    MDEV_DEVICES,
    KernelSite,
    KernelTree,
    is_variant_driver,
    read_tree,
)
from devmig.providers._sysfs import DiskSysfs, SysfsError, SysfsFiles

__all__ = [
    "KernelDevice",
    "KernelProvider",
    "attribute_value",
    "attribute_writes",
    "mdevctl_config",
    "off_writes",
]


def attribute_value(value: Value) -> bytes:
    """Return a parameter value as its attribute holds it: bool ``1``/``0``, int decimal, str verbatim."""
    if isinstance(value, bool):
        return b"1" if value else b"0"
    if isinstance(value, int):
        return str(value).encode()
    return value.encode()


def attribute_writes(model: DeviceModel, config: Config) -> list[tuple[str, bytes]]:
    """Return the writes that give a device its model and configuration, in order (DESIGN §9).

    The paths are relative to the device's directory: ``migration/device_model``,
    then every parameter's off value, then the canonical configuration's values.
    """
    out = [("migration/device_model", model.model.encode())]
    out += [
        (f"migration/{name}", attribute_value(param.off)) for name, param in model.params.items()
    ]
    out += [(f"migration/{name}", attribute_value(value)) for name, value in config.items]
    return out


def off_writes(model: DeviceModel) -> list[tuple[str, bytes]]:
    """Return the writes that put every parameter back at its off value (a VF's deletion)."""
    return [
        (f"migration/{name}", attribute_value(param.off)) for name, param in model.params.items()
    ]


@dataclass(eq=False)
class KernelDevice(ProvidedDevice):
    """A kernel device this provider configured.

    Attributes:
        kind: ``mdev`` or ``vf``.
        name: the mdev's UUID, or the VF's PCI address.
        path: the device's directory, relative to the sysfs root.
        site: the type's directory (mdev) or the VF's.
    """

    kind: str = "mdev"
    name: str = ""
    path: str = ""
    site: str = ""


class _Refused(Exception):
    def __init__(self, error: SysfsError, value: bytes, loc: tuple[str | int, ...]) -> None:
        self.error, self.value, self.loc = error, value, loc
        super().__init__(str(error))


class KernelProvider:
    """Kernel VFIO/mdev devices of one sysfs tree.

    Args:
        files: the tree (default: ``/sys`` on disk).
        new_uuid: makes an mdev's UUID (tests pass their own).
    """

    name = "kernel"

    def __init__(
        self, files: SysfsFiles | None = None, *, new_uuid: Callable[[], str] | None = None
    ) -> None:
        self.files: SysfsFiles = files if files is not None else DiskSysfs("/sys")
        self._new_uuid = new_uuid or (lambda: str(uuid.uuid4()))
        self._lock = threading.Lock()
        self._claimed: set[str] = set()
        """The VFs (their directories) this provider has configured."""

    @classmethod
    def at(cls, root: str) -> KernelProvider:
        """The provider of the sysfs tree at ``root`` on disk."""
        return cls(DiskSysfs(root))

    # -- discovery ---------------------------------------------------------------------

    def tree(self) -> KernelTree:
        """Read the tree now."""
        return read_tree(self.files)

    async def start(self) -> None:
        """Nothing to prepare: every offer reads the tree."""

    def offer(self) -> Offer:
        """Return one document per implementation release found, carried by the VMM.

        Two sites publishing different documents for one release are a
        ``PROVIDER_CONFLICT`` (the first is kept). ``capacity`` counts a
        type's ``available_instances`` and each VF not claimed yet.
        """
        tree = self.tree()
        provided: dict[str, Provided] = {}
        capacity: dict[str, int] = {}
        problems = list(tree.problems)
        for site in tree.sites:
            key = site.document.implementation.render()
            here = self.files.describe(site.path)
            first = provided.get(key)
            if first is None:
                provided[key] = Provided(site.document, "vmm", here)
            elif first.document != site.document:
                problems.append(
                    Problem(
                        "PROVIDER_CONFLICT",
                        (
                            "providers",
                            site.document.implementation.name,
                            site.document.implementation.release,
                        ),
                        f"{here} publishes another document for {key} than {first.source}",
                        value=key,
                        hint="a release's document is the same everywhere; the first is published",
                        context={"path": here},
                    )
                )
                continue
            free = site.available if site.kind == "mdev" else int(site.path not in self._claimed)
            capacity[key] = capacity.get(key, 0) + free
        return Offer(self.name, tuple(provided.values()), tuple(problems), capacity)

    # -- creation ----------------------------------------------------------------------

    def _sites(
        self, request: CreateRequest
    ) -> tuple[list[tuple[KernelSite, DeviceModel]], list[Problem]]:
        host = request.host
        found: list[tuple[KernelSite, DeviceModel]] = []
        known: set[str] = set()
        for site in self.tree().sites:
            if site.document.implementation != request.implementation:
                continue
            known.update(m.model for m in site.document.models)
            model = site.document.find(request.model)
            if model is None:
                continue
            if "parent" in host and site.parent != host["parent"]:
                continue
            if "type" in host and (site.kind != "mdev" or site.name != host["type"]):
                continue
            if "vf" in host and (site.kind != "vf" or site.name != host["vf"]):
                continue
            found.append((site, model))
        if found:
            return found, []
        where = request.implementation.render()
        if known:
            message = f"no {where} site here serves {request.model}" + (
                f" with host settings {dict(host)}" if host else ""
            )
        else:
            message = f"this host has no kernel driver publishing {where}"
        return [], [
            Problem(
                "MODEL_UNKNOWN", ("model",), message, value=request.model, allowed=sorted(known)
            )
        ]

    def create_now(self, request: CreateRequest) -> KernelDevice:
        """Create (mdev) or claim (VF) a device, synchronously; nothing is left if it fails.

        Raises:
            ConfigError: the configuration's problems on the driver's document
                (nothing written).
            DevmigError: ``MODEL_UNKNOWN``; ``BACKEND_REFUSED`` (the device was
                removed, or the VF given its off values back);
                ``INSUFFICIENT_RESOURCES`` (no instance or VF left).
        """
        sites, problems = self._sites(request)
        if problems:
            raise DevmigError(problems)
        config_problems: list[Problem] = []
        busy: list[Problem] = []
        for site, model in sites:
            try:
                config = parse_canonical(model, request.config.values)
            except ConfigError as e:
                config_problems = list(e.problems)
                continue
            lines = _multiline(config)
            if lines:
                raise DevmigError(lines)
            made = (
                self._mdev(site, model, config, request)
                if site.kind == "mdev"
                else self._vf(site, model, config, request)
            )
            if isinstance(made, KernelDevice):
                return made
            busy.append(made)
        if config_problems and not busy:
            raise ConfigError(config_problems)
        raise DevmigError(
            [
                Problem(
                    "INSUFFICIENT_RESOURCES",
                    ("host",),
                    f"no instance of {request.implementation.render()} is left for {request.model}",
                    value=request.model,
                    hint="; ".join(p.message for p in busy) or None,
                    context={"refused": [p.to_dict() for p in busy]},
                )
            ]
        )

    def _mdev(
        self, site: KernelSite, model: DeviceModel, config: Config, request: CreateRequest
    ) -> KernelDevice | Problem:
        name = self._new_uuid()
        create = posixpath.join(site.path, "create")
        try:
            self.files.write(create, name.encode())
        except SysfsError as e:
            return _busy(self.files, create, e)
        path = posixpath.join(MDEV_DEVICES, name)
        try:
            if not self.files.exists(path):
                raise _Refused(
                    SysfsError(errno.ENODEV, path, "create was accepted but no device appeared"),
                    b"",
                    ("uuid",),
                )
            self._write_all(path, [] if site.opaque else attribute_writes(model, config))
        except _Refused as refused:
            removed = self._remove(path)
            raise DevmigError([_refused(self.files, refused, removed, "removed")]) from None
        host = {**request.host, "parent": site.parent, "type": site.name, "uuid": name}
        return KernelDevice(
            self.name,
            request.implementation,
            model,
            config,
            "vmm",
            host,
            "mdev",
            name,
            path,
            site.path,
        )

    def _vf(
        self, site: KernelSite, model: DeviceModel, config: Config, request: CreateRequest
    ) -> KernelDevice | Problem:
        with self._lock:
            if site.path in self._claimed:
                return Problem(
                    "DEVICE_BUSY", ("vf",), f"VF {site.name} is claimed already", value=site.name
                )
            self._claimed.add(site.path)
        writes = [] if site.opaque else attribute_writes(model, config)
        try:
            try:
                self._write_all(site.path, writes[:1])
            except _Refused as refused:
                if refused.error.errno == errno.EBUSY:  # opened by someone else: not ours to take
                    with self._lock:
                        self._claimed.discard(site.path)
                    return _busy(self.files, posixpath.join(site.path, writes[0][0]), refused.error)
                raise
            self._write_all(site.path, writes[1:])
        except _Refused as refused:
            restored = self._restore(site.path, model)
            with self._lock:
                self._claimed.discard(site.path)
            raise DevmigError(
                [_refused(self.files, refused, restored, "given its off values back")]
            ) from None
        host = {**request.host, "parent": site.parent, "vf": site.name}
        return KernelDevice(
            self.name,
            request.implementation,
            model,
            config,
            "vmm",
            host,
            "vf",
            site.name,
            site.path,
            site.path,
        )

    def _write_all(self, directory: str, writes: list[tuple[str, bytes]]) -> None:
        for rel, value in writes:
            try:
                self.files.write(posixpath.join(directory, rel), value)
            except SysfsError as e:
                attr = rel.removeprefix("migration/")
                loc: tuple[str | int, ...] = (
                    ("model",) if attr == "device_model" else ("config", attr)
                )
                raise _Refused(e, value, loc) from None

    def _remove(self, path: str) -> bool:
        try:
            self.files.write(posixpath.join(path, "remove"), b"1")
        except SysfsError:
            return False
        return True

    def _restore(self, path: str, model: DeviceModel) -> bool:
        ok = True
        for rel, value in off_writes(model):
            try:
                self.files.write(posixpath.join(path, rel), value)
            except SysfsError:
                ok = False
        return ok

    async def create(self, request: CreateRequest) -> KernelDevice:
        """Create a device (:meth:`create_now`, in a thread: a driver may take its time)."""
        return await asyncio.to_thread(self.create_now, request)

    # -- deletion and status -------------------------------------------------------------

    def delete_now(self, device: ProvidedDevice) -> None:
        """Remove an mdev, or give a VF its off values back and release it.

        Raises:
            DevmigError: ``BACKEND_REFUSED`` when the driver refused (a VF
                stays released; what could be written was).
        """
        assert isinstance(device, KernelDevice)
        if device.kind == "mdev":
            if self.files.exists(device.path) and not self._remove(device.path):
                raise DevmigError(
                    [
                        Problem(
                            "BACKEND_REFUSED",
                            ("device",),
                            f"{self.files.describe(device.path)}/remove was refused",
                            value=device.name,
                        )
                    ]
                )
            return
        try:
            restored = (
                self._restore(device.path, device.model)
                if device.model.params and self.files.exists(device.path)
                else True
            )
        finally:
            with self._lock:
                self._claimed.discard(device.path)
        if not restored:
            raise DevmigError(
                [
                    Problem(
                        "BACKEND_REFUSED",
                        ("device",),
                        f"VF {device.name} refused its off values back",
                        value=device.name,
                    )
                ]
            )

    async def delete(self, device: ProvidedDevice) -> None:
        """Delete a device (:meth:`delete_now`, in a thread)."""
        await asyncio.to_thread(self.delete_now, device)

    def status(self, device: ProvidedDevice) -> DeviceStatus:
        """Running while the mdev exists (the VF stays bound to its variant driver); ``LOST`` otherwise."""
        assert isinstance(device, KernelDevice)
        if not self.files.is_dir(device.path):
            return DeviceStatus.LOST
        if device.kind == "vf":
            try:
                driver = posixpath.basename(
                    self.files.realpath(posixpath.join(device.path, "driver"))
                )
            except SysfsError:
                return DeviceStatus.LOST
            if not is_variant_driver(driver):
                return DeviceStatus.LOST
        return DeviceStatus.RUNNING

    def read_config(self, device: KernelDevice) -> dict[str, str]:
        """Return the device's ``migration/*`` attributes as read back (one line each)."""
        out: dict[str, str] = {}
        base = posixpath.join(device.path, "migration")
        for name in self.files.listdir(base):
            out[name] = (
                self.files.read(posixpath.join(base, name)).decode("utf-8", "replace").rstrip("\n")
            )
        return out

    async def close(self) -> None:
        """Nothing held: the devices stay until deleted (the VMM may be using them)."""


def _multiline(config: Config) -> list[Problem]:
    return [
        Problem(
            "VALUE_NOT_ALLOWED",
            ("config", name),
            f"{name} holds a newline, which a sysfs value cannot",
            value=value,
            hint="a value is one line",
        )
        for name, value in config.items
        if isinstance(value, str) and "\n" in value
    ]


def _busy(files: SysfsFiles, path: str, error: SysfsError) -> Problem:
    return Problem(
        "INSUFFICIENT_RESOURCES",
        ("host",),
        f"{files.describe(path)} refused: {error.strerror} ({error.name})",
        value=error.name,
        context={"path": files.describe(path), "errno": error.name},
    )


def _refused(files: SysfsFiles, refused: _Refused, undone: bool, undo: str) -> Problem:
    error = refused.error
    where = files.describe(error.path)
    written = refused.value.decode("utf-8", "replace")
    return Problem(
        "BACKEND_REFUSED",
        refused.loc,
        f"the driver refused {written!r} for {where}; the device was "
        + (undo if undone else f"NOT {undo} (do it by hand)"),
        value=written,
        hint=f"{error.strerror} ({error.name})" + (f": {error.detail}" if error.detail else ""),
        context={"path": where, "errno": error.name, "undone": undone},
    )


def mdevctl_config(
    model: DeviceModel, config: Config, mdev_type: str, *, start: str = "auto"
) -> dict[str, object]:
    """Return the JSON ``mdevctl define --jsonfile`` takes for a device of ``model``.

    ``attrs`` holds the writes of :func:`attribute_writes` in their order — the
    model, every parameter's off value, the canonical values — as an array of
    one-key objects with string values (mdevctl 1.2 panics on a number), so a
    device mdevctl starts at boot gets the very configuration devmig would give it.

    Args:
        model: the type's definition of the model (its document's).
        config: the canonical configuration, of ``model``.
        mdev_type: the type's name (``acme-vgpu-2g``).
        start: ``auto`` (at boot, when the parent appears) or ``manual``.
    """
    attrs = [
        {path: value.decode("utf-8", "surrogateescape")}
        for path, value in attribute_writes(model, config)
    ]
    return {"mdev_type": mdev_type, "start": start, "attrs": attrs}
