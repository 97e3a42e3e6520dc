"""The devices one agent hosts, its host report, and the workload that keeps them busy.

:class:`Host` is the agent's in-memory state. It is used from the event loop
only (no locks): the HTTP handlers, the workload ticker and the migration
engine all run there. A device taken by a migration is *busy* under that
migration's id; a concurrent migrate or delete is refused with
``DEVICE_BUSY`` (HTTP 409).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import tempfile
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xxhash

from devmig._errors import DevmigError, Problem
from devmig.agent._images import ImageDirectory, OpenedImage
from devmig.agent._kernel_host import KernelHost, kernel_root
from devmig.agent._settings import AgentSettings
from devmig.agent._vfio_user_host import PREFIX as VFIO_USER
from devmig.agent._vfio_user_host import VfioUserHost
from devmig.compat import profile_fingerprint
from devmig.device import Device
from devmig.devices import CATALOG, device_class, model_classes
from devmig.model import Config, DeviceModel, HostReport, Implementation, version_of
from devmig.providers import HostCatalog, Offer, Provided, merge_offers

__all__ = ["Host", "HostedDevice"]

BLK_MODEL = "example.org/devices/blk"
DEFAULT_IMAGE_BYTES = 4 << 20


@dataclass
class HostedDevice:
    """One device living in this agent."""

    id: str
    device: Device
    device_class: type[Device]
    host_settings: dict[str, Any]
    busy: str | None = None
    """The id of the migration holding the device, if any."""
    origin: str | None = None
    """The migration that brought the device here, if any."""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def memory_bytes(self) -> int:
        """Bytes of device memory (all bulk regions)."""
        return sum(r.size for r in self.device.regions)

    def to_dict(self, *, digest: bool = False) -> dict[str, Any]:
        """Return the device as the API shows it."""
        device = self.device
        impl = device.implementation()
        model = device.model()
        out: dict[str, Any] = {
            "id": self.id,
            "model": device.config.model,
            "implementation": {"name": impl.name, "release": impl.release},
            "config": device.config.values,
            "string": device.config.string,
            "version": version_of(model, device.config),
            "state": device.state_name.name,
            "running": device.running,
            "busy": self.busy,
            "origin": self.origin,
            "memory_bytes": self.memory_bytes,
            "counters": {"steps": device.steps, "log_entries": len(device.log)},
            "host": {k: v for k, v in self.host_settings.items() if isinstance(v, (str, int, bool))},
        }
        if digest:
            out["digest"] = device.digest().hex()
        return out


class Host:
    """The devices of one agent, the reference releases it runs, and its report.

    Args:
        settings: the agent's settings (releases, limits, workload pace).
    """

    def __init__(self, settings: AgentSettings) -> None:
        self.settings = settings
        self.classes: dict[str, type[Device]] = {}
        for implementation, classes in CATALOG.items():
            release = settings.releases.get(implementation)
            self.classes[implementation] = (
                device_class(implementation, release) if release else classes[-1]
            )
        self.models: dict[str, type[Device]] = {}
        """Model id → the class serving it: every model of every hosted release's document."""
        for cls in self.classes.values():
            self.models.update(model_classes(cls))
        unknown = set(settings.releases) - set(CATALOG)
        if unknown:
            raise DevmigError(
                [Problem("RELEASE_UNKNOWN", ("release", name), f"no reference implementation {name!r}",
                         value=name, allowed=sorted(CATALOG)) for name in sorted(unknown)]
            )
        self.devices: dict[str, HostedDevice] = {}
        self.kernel: KernelHost | None = None
        """The kernel devices (``--provider kernel[:SYSFS_ROOT]``), if any."""
        self.vfio_user: VfioUserHost | None = None
        """The vfio-user backends (``--provider vfio-user:SETTINGS.json``), if any."""
        for spec in settings.providers:
            if spec.startswith(VFIO_USER):
                self.vfio_user = VfioUserHost(spec.removeprefix(VFIO_USER))
            else:
                self.kernel = KernelHost(kernel_root(spec))
        self.catalog = catalog_of(settings, self.classes.values(), self.kernel, self.vfio_user)
        self.catalog.raise_for_conflicts()
        self._report = self.catalog.report
        # The host name and format never change in one process: the profile fingerprint changes
        # exactly when the report does, and a manager can compare it with the profile it stored.
        self.report_etag = profile_fingerprint(self._report)
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if settings.state_dir is not None:
            self.state_dir = Path(settings.state_dir)
            self.state_dir.mkdir(parents=True, exist_ok=True)
        else:
            self._tmp = tempfile.TemporaryDirectory(prefix="devmig-agent-")
            self.state_dir = Path(self._tmp.name)
        self.images = ImageDirectory(Path(settings.image_dir) if settings.image_dir else self.state_dir / "images")
        """Where block-device images may live (``--image-dir``)."""
        self._image_users: dict[tuple[int, int], str] = {}
        """An open image's identity (device, inode) → the device using it: one device per image."""
        self._ticker: asyncio.Task[None] | None = None

    # -- queries -----------------------------------------------------------------

    def report(self) -> HostReport:
        """The host report: every model document of every implementation here."""
        return self._report

    def implementation_for(self, model_id: str) -> type[Device]:
        """Return the class that serves ``model_id`` here.

        Raises:
            DevmigError: ``MODEL_UNKNOWN`` (HTTP 404) naming the models there are.
        """
        cls = self.models.get(model_id)
        if cls is not None:
            return cls
        known = sorted(self.models)
        raise DevmigError(
            [Problem("MODEL_UNKNOWN", ("model",), f"this host has no model {model_id!r}", value=model_id,
                     allowed=known)]
        )

    def definition_of(self, model_id: str) -> tuple[Implementation, DeviceModel]:
        """Return the implementation serving ``model_id`` here and its definition (any provider).

        Raises:
            DevmigError: ``MODEL_UNKNOWN`` (HTTP 404) naming the models there are.
        """
        cls = self.models.get(model_id)
        if cls is not None:
            return cls.implementation(), cls.model()
        found = self.kernel.definition(model_id) if self.kernel is not None else None
        if found is None and self.vfio_user is not None:
            found = self.vfio_user.definition(model_id)
        if found is not None:
            return found
        self.implementation_for(model_id)  # raises MODEL_UNKNOWN
        raise AssertionError("unreachable")

    def get(self, device_id: str) -> HostedDevice:
        """Return a hosted device.

        Raises:
            DevmigError: ``DEVICE_NOT_FOUND`` (HTTP 404).
        """
        hosted = self.devices.get(device_id)
        if hosted is None:
            raise DevmigError(
                [Problem("DEVICE_NOT_FOUND", ("devices", device_id), f"no device {device_id!r} on this host",
                         value=device_id)]
            )
        return hosted

    def memory_in_use(self) -> int:
        """Bytes of device memory held by every device here."""
        return sum(h.memory_bytes for h in self.devices.values())

    # -- creating and deleting -------------------------------------------------------

    def create_device(
        self,
        model_id: str,
        config: str | Mapping[str, Any] | Config | None,
        host_settings: Mapping[str, Any] | None = None,
        *,
        canonical: bool = False,
        seed: int | None = None,
        origin: str | None = None,
        owns_image: bool = False,
    ) -> HostedDevice:
        """Create a device; nothing exists afterwards if it fails.

        Args:
            model_id: the model.
            config: an option string or mapping (expanded), or with
                ``canonical=True`` the canonical configuration a source sent.
            host_settings: host-only settings (the block device's ``image``: a
                path inside the image directory, relative or absolute; without
                one the agent makes a new image, removed with the device).
            seed: the workload seed (default: derived from the device id).
            origin: the migration creating the device, if any.
            owns_image: the supplied image becomes this agent's, removed with the
                device (a migration whose source had made the image).

        Raises:
            ConfigError: every problem with the configuration (HTTP 422).
            DevmigError: ``MODEL_UNKNOWN`` (404), ``INSUFFICIENT_RESOURCES`` (507),
                ``IMAGE_IN_USE`` (another device here has that image).
            ImageError: ``IMAGE_OUTSIDE``, ``IMAGE_SYMLINK``, ``IMAGE_UNREADABLE``,
                ``IMAGE_INVALID``, ``IMAGE_SIZE`` (see :mod:`devmig.agent._images`).
        """
        cls = self.implementation_for(model_id)
        device_id = "dev-" + uuid.uuid4().hex[:12]
        settings = dict(host_settings or {})
        image: OpenedImage | None = None
        made = False
        if cls.model_id == BLK_MODEL:
            if "image" in settings:
                image = self.images.open(settings["image"])
            else:
                image, made = self.images.create(f"{device_id}.img", DEFAULT_IMAGE_BYTES), True
            settings["image"] = str(image.path)
        claimed = False
        try:
            if image is not None:
                self._claim(image, device_id)
                claimed = True
            device_settings = settings if image is None else {**settings, "image_fd": image.fd}
            device = self._make(cls, device_id, config, device_settings, canonical=canonical, seed=seed)
        except BaseException:
            if image is not None:
                if claimed:
                    del self._image_users[image.identity]
                image.close()
                if made:
                    self.images.remove(image.name)
            raise
        if image is not None:
            image.close()  # the device holds its own duplicate
        if self.settings.prefill_seed is not None and not canonical:
            _advise_huge_pages(device)
            _prefill(device, self.settings.prefill_seed)
        elif self.settings.mem_prealloc:
            _advise_huge_pages(device)
            for region in device.regions:
                region.data.fill(0)  # a store to every page makes it resident
        hosted = HostedDevice(device_id, device, cls, settings, origin=origin)
        if image is not None:
            hosted.extra["image"] = (image.identity, image.name, made or owns_image)
        self.devices[device_id] = hosted
        return hosted

    def _claim(self, image: OpenedImage, device_id: str) -> None:
        user = self._image_users.get(image.identity)
        if user is not None:
            raise DevmigError(
                [Problem("IMAGE_IN_USE", ("host", "image"), f"the image {image.name} is in use by device {user}",
                         value=image.name, hint="an image backs one device at a time on a host; delete that one first")]
            )
        self._image_users[image.identity] = device_id

    def image_name(self, hosted: HostedDevice) -> str | None:
        """The device's image relative to the image directory (what travels to a destination), if it has one."""
        held = hosted.extra.get("image")
        return held[1] if held else None

    def image_owned(self, hosted: HostedDevice) -> bool:
        """Whether this agent made the device's image (or got it with a device whose source had made it)."""
        held = hosted.extra.get("image")
        return bool(held and held[2])

    def _make(
        self,
        cls: type[Device],
        device_id: str,
        config: str | Mapping[str, Any] | Config | None,
        settings: dict[str, Any],
        *,
        canonical: bool,
        seed: int | None,
    ) -> Device:
        if canonical:
            if isinstance(config, str):
                raise TypeError("a canonical configuration is a mapping")
            values = config.values if isinstance(config, Config) else dict(config or {})
            device = self._checked(cls, lambda: cls.create_canonical(values, host=settings))
        else:
            text = config.string if isinstance(config, Config) else config
            device = self._checked(
                cls, lambda: cls.create(text, host=settings, seed=seed if seed is not None else _seed(device_id))
            )
        return device

    def _checked(self, cls: type[Device], make: Any) -> Device:
        device: Device = make()
        limit = self.settings.max_device_memory
        if limit is not None:
            need = sum(r.size for r in device.regions)
            in_use = self.memory_in_use()
            if in_use + need > limit:
                device.close()
                raise DevmigError(
                    [
                        Problem(
                            "INSUFFICIENT_RESOURCES",
                            ("host", "max-device-memory"),
                            f"the device needs {need} bytes of device memory; {limit - in_use} of {limit} are free",
                            value=need,
                            allowed={"free": limit - in_use, "limit": limit},
                            hint="choose a smaller configuration or another host",
                        )
                    ]
                )
        return device

    def delete_device(self, device_id: str, *, force: bool = False, remove_image: bool = False) -> HostedDevice:
        """Remove a device.

        Args:
            force: also while a migration holds it (the migration engine releasing or destroying a copy).
            remove_image: also remove its image if this agent owns it (a client's delete;
                never a migration's: a migrated device's image lives on at the destination).

        Raises:
            DevmigError: ``DEVICE_NOT_FOUND`` (404), ``DEVICE_BUSY`` (409) while a
                migration holds it (unless ``force``, which the migration engine uses).
        """
        hosted = self.get(device_id)
        if hosted.busy and not force:
            raise busy_error(hosted)
        del self.devices[device_id]
        hosted.device.close()
        held = hosted.extra.get("image")
        if held is not None:
            self._image_users.pop(held[0], None)
            if remove_image and held[2]:
                self.images.remove(held[1])
        return hosted

    # -- the workload ------------------------------------------------------------------

    def tick(self) -> None:
        """Run one workload tick: each running device not held by a stop does its steps."""
        steps = self.settings.steps_per_tick
        if not steps:
            return
        for hosted in list(self.devices.values()):
            if hosted.device.running:
                hosted.device.step(steps)

    async def run_workload(self) -> None:
        """Tick forever, every ``work_interval_s`` seconds (cancel to stop)."""
        interval = self.settings.work_interval_s
        while True:
            self.tick()
            await asyncio.sleep(interval)

    async def start(self) -> None:
        """Start the workload ticker."""
        self._ticker = asyncio.create_task(self.run_workload(), name="devmig-workload")

    async def close(self) -> None:
        """Stop the ticker and close every device."""
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        for hosted in list(self.devices.values()):
            hosted.device.close()
        self.devices.clear()
        if self.vfio_user is not None:
            await self.vfio_user.close()
        if self._tmp is not None:
            self._tmp.cleanup()


def busy_error(hosted: HostedDevice) -> DevmigError:
    """The ``DEVICE_BUSY`` error (HTTP 409) for a device a migration holds."""
    return DevmigError(
        [Problem("DEVICE_BUSY", ("devices", hosted.id), f"device {hosted.id} is being migrated ({hosted.busy})",
                 value=hosted.busy, hint="wait for the migration to end, or cancel it")]
    )


_MADV_HUGEPAGE = 14


def _seed(device_id: str) -> int:
    return xxhash.xxh64_intdigest(device_id.encode())


def _advise_huge_pages(device: Device) -> None:
    """Ask Linux to back large regions with transparent huge pages (best effort, before they are touched).

    Fewer, larger pages: faulting memory in, copying a stream into it, and forking a
    copy-on-write snapshot of it (:mod:`._snapshot`) all get cheaper.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        madvise = libc.madvise
    except (OSError, AttributeError):
        return
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    huge = 2 << 20
    for region in device.regions:
        if region.size < 2 * huge:
            continue
        start = -(-int(region.data.ctypes.data) // huge) * huge
        end = (int(region.data.ctypes.data) + region.size) // huge * huge
        madvise(start, end - start, _MADV_HUGEPAGE)


def _prefill(device: Device, seed: int) -> None:
    """Fill every bulk region with seeded pseudo-random bytes, 64 MiB at a time (no dirty marks)."""
    rng = np.random.default_rng(seed)
    step = 64 << 20
    for region in device.regions:
        for start in range(0, region.size, step):
            piece = region.data[start : start + step]
            piece[:] = np.frombuffer(rng.bytes(piece.size), dtype=np.uint8)




def catalog_of(
    settings: AgentSettings, classes: Any, kernel: KernelHost | None, vfio_user: VfioUserHost | None = None
) -> HostCatalog:
    """The host report as the union of the agent's providers (DESIGN §9): sdk, kernel, then vfio-user.

    A release offered by both is a ``PROVIDER_CONFLICT`` (see :meth:`HostCatalog.raise_for_conflicts`).
    """
    offers = [Offer("sdk", tuple(Provided(cls.document(), "agent", "sdk") for cls in classes))]
    if kernel is not None:
        offers.append(kernel.offer())
    if vfio_user is not None:
        offers.append(vfio_user.offer())
    return merge_offers(settings.host_name, offers)
