"""Discovery of kernel VFIO/mdev devices in a sysfs tree (DESIGN §9).

Two kinds of *site* publish devices:

- an **mdev type**, ``class/mdev_bus/<parent>/mdev_supported_types/<type>``
  (``class/mdev_bus/<parent>`` links into ``devices/``): its
  ``migration_device_models`` (model ids, one per line) and
  ``migration_info.json`` (its model document, read to EOF), its
  ``available_instances`` and ``create``;
- a **VF bound to a VFIO variant driver** (``bus/pci/devices/<address>``
  whose ``driver`` link names a driver with ``vfio`` in its name other than
  plain ``vfio-pci``): the same two attributes in its own directory.

A site without ``migration_info.json`` is *opaque*: it publishes the model
``opaque:`` + the sha256 of its identity — for an mdev type its parent's
driver, the type's name, ``device_api`` and the driver module's
``srcversion``; for a VF its driver, PCI vendor and device ids and the
module's ``srcversion``. A malformed document is reported with the usual
document codes and the file's path; the rest of the tree still reports.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

from devmig._errors import Problem
from devmig.model import ModelDocument
from devmig.providers._published import load_published, opaque_document, opaque_model_id
from devmig.providers._sysfs import SysfsError, SysfsFiles

__all__ = ["KernelSite", "KernelTree", "is_variant_driver", "read_tree"]

MDEV_BUS = "class/mdev_bus"
PCI_DEVICES = "bus/pci/devices"
MDEV_DEVICES = "bus/mdev/devices"
MODELS_FILE = "migration_device_models"
INFO_FILE = "migration_info.json"


def is_variant_driver(name: str) -> bool:
    """Return whether a PCI driver is a VFIO variant driver (``mlx5_vfio_pci``, not ``vfio-pci``)."""
    return "vfio" in name and name.replace("_", "-") != "vfio-pci"


@dataclass(frozen=True, slots=True)
class KernelSite:
    """Where kernel devices of one document come from: an mdev type or a VF.

    Attributes:
        kind: ``mdev`` (a type that creates devices) or ``vf`` (a device that exists).
        name: the type's name, or the VF's PCI address.
        parent: the mdev parent's name (``0000:00:02.0``); the VF's own address.
        path: the type's directory, or the VF's, resolved, relative to the root.
        driver: the driver's name (the parent's, for a type).
        document: what the site publishes (an opaque one when ``opaque``).
        opaque: the site has no migration attributes.
        available: a type's ``available_instances`` (a VF: 1).
    """

    kind: str
    name: str
    parent: str
    path: str
    driver: str
    document: ModelDocument
    opaque: bool
    available: int = 1

    @property
    def models_file(self) -> str:
        """The site's ``migration_device_models``."""
        return posixpath.join(self.path, MODELS_FILE)


@dataclass(frozen=True, slots=True)
class KernelTree:
    """Every site of a tree, and what could not be read.

    Attributes:
        sites: mdev types first (by parent, then type), then VFs (by address).
        problems: each with ``context["path"]``.
    """

    sites: tuple[KernelSite, ...] = ()
    problems: tuple[Problem, ...] = ()


def _text(files: SysfsFiles, path: str) -> str:
    return files.read(path).decode("utf-8", "replace").strip()


def _maybe(files: SysfsFiles, path: str) -> str:
    try:
        return _text(files, path)
    except SysfsError:
        return ""


def _link_name(files: SysfsFiles, path: str) -> str:
    try:
        return posixpath.basename(files.realpath(path))
    except SysfsError:
        return ""


def _srcversion(files: SysfsFiles, device: str) -> str:
    module = _link_name(files, posixpath.join(device, "driver", "module"))
    return _maybe(files, posixpath.join("module", module, "srcversion")) if module else ""


def _problem(
    files: SysfsFiles, path: str, message: str, code: str = "SCHEMA", value: object = None
) -> Problem:
    where = files.describe(path)
    return Problem(code, (), f"{where}: {message}", value=value, context={"path": where})


def _published(
    files: SysfsFiles, site_dir: str, identity: list[str], name: str, release: str, what: str
) -> tuple[ModelDocument | None, bool, list[Problem]]:
    """Return a site's document (or its opaque one), whether it is opaque, and its problems."""
    info = posixpath.join(site_dir, INFO_FILE)
    if not files.exists(info):
        doc = opaque_document(
            name, release, opaque_model_id(identity), f"{what} without migration information"
        )
        return doc, True, []
    try:
        raw = files.read(info)
    except SysfsError as e:
        return (
            None,
            False,
            [_problem(files, info, f"cannot be read: {e.strerror}", "UNREADABLE", e.name)],
        )
    loaded, problems = load_published(raw, files.describe(info))
    if loaded is None:
        return None, False, problems
    models_path = posixpath.join(site_dir, MODELS_FILE)
    try:
        listed = [
            line.strip() for line in files.read(models_path).decode("utf-8", "replace").splitlines()
        ]
    except SysfsError as e:
        return (
            None,
            False,
            [_problem(files, models_path, f"cannot be read: {e.strerror}", "UNREADABLE", e.name)],
        )
    listed = [m for m in listed if m]
    published = [m.model for m in loaded.models]
    if sorted(listed) != sorted(published):
        return (
            None,
            False,
            [
                _problem(
                    files,
                    models_path,
                    f"lists {', '.join(listed) or 'no model'} but {INFO_FILE} defines {', '.join(published)}",
                    value=listed,
                )
            ],
        )
    return loaded, False, []


def _mdev_sites(files: SysfsFiles) -> tuple[list[KernelSite], list[Problem]]:
    sites: list[KernelSite] = []
    problems: list[Problem] = []
    if not files.is_dir(MDEV_BUS):
        return sites, problems
    for parent in files.listdir(MDEV_BUS):
        try:
            device = files.realpath(posixpath.join(MDEV_BUS, parent))
        except SysfsError as e:
            problems.append(
                _problem(files, posixpath.join(MDEV_BUS, parent), e.strerror, "UNREADABLE", e.name)
            )
            continue
        driver = _link_name(files, posixpath.join(device, "driver"))
        srcversion = _srcversion(files, device)
        types_dir = posixpath.join(device, "mdev_supported_types")
        if not files.is_dir(types_dir):
            continue
        for type_name in files.listdir(types_dir):
            path = posixpath.join(types_dir, type_name)
            device_api = _maybe(files, posixpath.join(path, "device_api"))
            try:
                available = int(_text(files, posixpath.join(path, "available_instances")))
            except (SysfsError, ValueError):
                problems.append(
                    _problem(
                        files,
                        posixpath.join(path, "available_instances"),
                        "is not a number",
                        "UNREADABLE",
                    )
                )
                continue
            doc, opaque, found = _published(
                files,
                path,
                [driver, type_name, device_api, srcversion],
                f"kernel:{driver or parent}/{type_name}",
                srcversion,
                f"mdev type {type_name} of {driver or parent}",
            )
            problems += found
            if doc is not None:
                sites.append(
                    KernelSite("mdev", type_name, parent, path, driver, doc, opaque, available)
                )
    return sites, problems


def _vf_sites(files: SysfsFiles) -> tuple[list[KernelSite], list[Problem]]:
    sites: list[KernelSite] = []
    problems: list[Problem] = []
    if not files.is_dir(PCI_DEVICES):
        return sites, problems
    for address in files.listdir(PCI_DEVICES):
        link = posixpath.join(PCI_DEVICES, address)
        driver = _link_name(files, posixpath.join(link, "driver"))
        if not is_variant_driver(driver):
            continue
        try:
            device = files.realpath(link)
        except SysfsError:
            continue
        vendor = _maybe(files, posixpath.join(device, "vendor"))
        product = _maybe(files, posixpath.join(device, "device"))
        srcversion = _srcversion(files, device)
        doc, opaque, found = _published(
            files,
            device,
            [driver, vendor, product, srcversion],
            f"kernel:{driver}/{vendor.removeprefix('0x')}:{product.removeprefix('0x')}",
            srcversion,
            f"PCI function {vendor}:{product} bound to {driver}",
        )
        problems += found
        if doc is not None:
            sites.append(KernelSite("vf", address, address, device, driver, doc, opaque))
    return sites, problems


def read_tree(files: SysfsFiles) -> KernelTree:
    """Walk a sysfs tree for mdev types and VFs bound to VFIO variant drivers.

    Returns:
        Every site whose document could be built, and a problem for each
        one that could not (the others still report).
    """
    mdevs, p1 = _mdev_sites(files)
    vfs, p2 = _vf_sites(files)
    return KernelTree(tuple(mdevs + vfs), tuple(p1 + p2))
