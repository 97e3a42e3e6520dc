"""Tests of the reference block device (acme-blk 1.0.0, 1.1.0, 2.0.0) against a real image file.

Every image is made in ``tmp_path`` from one seeded *seed image*. An
unmigrated run gets a fresh copy of it. The source and the destination of
one migration share one copy, as they would on shared storage.
"""

from __future__ import annotations

import itertools
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from devmig import ConfigError, DevmigError, StreamError
from devmig.device import Device, DeviceError
from devmig.devices.blk import DISCARD, WRITE, BlkV1, BlkV1_1, BlkV2, ImageError
from devmig.migration import State
from devmig.state import RoundEndSignal, inspect_stream
from devmig.testing import cross_release_matrix, migrate_round_trip

RELEASES: list[type[BlkV1]] = [BlkV1, BlkV1_1, BlkV2]
IMAGE_BYTES = 128 * 1024


@pytest.fixture
def seed_image(tmp_path: Path) -> Path:
    """A 128 KiB image of seeded random bytes (256 blocks of 512, 32 of 4096)."""
    path = tmp_path / "seed.img"
    path.write_bytes(np.random.default_rng(7).bytes(IMAGE_BYTES))
    return path


class Images:
    """Hands out image copies: one per unmigrated run, one per migration pair.

    The matrix asks for host settings by role. ``source`` gets a fresh copy,
    and the ``destination`` that follows gets the same path (shared storage).
    Every other role (``baseline``, ``probe``, ...) gets a fresh copy of its
    own.
    """

    def __init__(self, seed: Path, directory: Path) -> None:
        self.seed = seed
        self.directory = directory
        self._numbers = itertools.count()
        self.last_source: Path | None = None

    def copy(self, role: str = "image") -> Path:
        """Return a fresh copy of the seed image."""
        path = self.directory / f"{role}-{next(self._numbers)}.img"
        shutil.copyfile(self.seed, path)
        return path

    def host(self, role: str) -> dict[str, Any]:
        """Host settings for one role of :func:`devmig.testing.migrate_round_trip`."""
        if role == "destination":
            assert self.last_source is not None, "a destination always follows its source"
            return {"image": str(self.last_source)}
        path = self.copy(role)
        if role == "source":
            self.last_source = path
        return {"image": str(path)}

    def matrix_host(self, _cls: type[Device], role: str) -> Mapping[str, Any]:
        """Host settings per ``(release, role)`` for :func:`devmig.testing.cross_release_matrix`."""
        return self.host(role)


@pytest.fixture
def images(seed_image: Path, tmp_path: Path) -> Images:
    return Images(seed_image, tmp_path)


def _migrate(source: BlkV1, destination_cls: type[BlkV1], image: Path) -> BlkV1:
    """Stop ``source``, save its state, load it into a new destination on ``image``, resume it."""
    source.set_state(State.STOP)
    stream = source.save_stream()
    destination = destination_cls.create_canonical(source.config, host={"image": str(image)})
    destination.load_stream(stream)
    destination.set_state(State.RUNNING)
    return destination


# --------------------------------------------------------------------------
# Creation
# --------------------------------------------------------------------------


@pytest.mark.parametrize("cls", RELEASES)
def test_image_is_required(cls: type[BlkV1]) -> None:
    with pytest.raises(ImageError) as info:
        cls.create("")
    assert info.value.code == "IMAGE_MISSING"
    assert info.value.problems[0].loc == ("host", "image")
    assert not isinstance(info.value, ConfigError)  # the matrix must not read it as a refused configuration


@pytest.mark.parametrize(
    ("name", "size", "config", "code"),
    [
        ("absent.img", None, "", "IMAGE_UNREADABLE"),
        ("empty.img", 0, "", "IMAGE_SIZE"),
        ("odd.img", 1000, "", "IMAGE_SIZE"),
        ("small.img", 2048, "block-size=4096", "IMAGE_SIZE"),
        ("unaligned.img", 4096 + 512, "block-size=4096", "IMAGE_SIZE"),
    ],
)
def test_unusable_image_is_refused(tmp_path: Path, name: str, size: int | None, config: str, code: str) -> None:
    path = tmp_path / name
    if size is not None:
        path.write_bytes(bytes(size))
    for cls in RELEASES:
        with pytest.raises(ImageError) as info:
            cls.create(config, host={"image": str(path)})
        assert info.value.code == code
        assert info.value.problems[0].value in (str(path), size)


def test_image_that_is_no_path_is_refused() -> None:
    with pytest.raises(ImageError) as info:
        BlkV2.create("", host={"image": 42})
    assert info.value.code == "IMAGE_INVALID"


@pytest.mark.parametrize(
    ("cls", "config", "code"),
    [
        (BlkV1, "queue-depth=17", "VALUE_NOT_ALLOWED"),
        (BlkV1, "discard=on", "PARAM_UNKNOWN"),
        (BlkV1_1, "num-queues=8", "VALUE_NOT_ALLOWED"),
        (BlkV2, "num-queues=2,queue-depth=512", "CONSTRAINT_VIOLATED"),
        (BlkV2, "block-size=1024", "VALUE_NOT_ALLOWED"),
    ],
)
def test_bad_configuration_is_refused(cls: type[BlkV1], config: str, code: str, seed_image: Path) -> None:
    with pytest.raises(ConfigError) as info:
        cls.create(config, host={"image": str(seed_image)})
    assert code in info.value.codes


@pytest.mark.parametrize(("config", "blocks"), [("block-size=512", 256), ("block-size=4096", 32)])
def test_capacity_is_the_image_size_in_blocks(config: str, blocks: int, images: Images) -> None:
    for cls in RELEASES:
        device = cls.create(config, host={"image": str(images.copy())})
        assert device.capacity == blocks
        device.close()


def test_closed_device_cannot_touch_its_image(images: Images) -> None:
    device = BlkV2.create("version=2", host={"image": str(images.copy())})
    device.step(5)
    device.close()
    device.close()  # idempotent
    with pytest.raises(DeviceError) as info:
        device.step(50)
    assert info.value.code == "DEVICE_CLOSED"


# --------------------------------------------------------------------------
# Behaviour: one configuration, one behaviour, whatever the release
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "config",
    [
        "version=1",
        "version=2",
        "version=1,write-cache=on,queue-depth=16",
        "version=1,block-size=4096,write-cache=on,queue-depth=32",
        "version=1,num-queues=3,queue-depth=16",
    ],
)
def test_releases_behave_alike(config: str, images: Images) -> None:
    """Unmigrated, every release gives the same log, state digest and final image."""
    results = []
    for cls in RELEASES:
        image = images.copy()
        device = cls.create(config, host={"image": str(image)}, seed=3)
        device.step(150)
        digest = device.digest()
        final = device.flush_all()
        results.append((device.log, digest, final, image.read_bytes()))
        device.close()
    assert any(e[0] == "read" for e in results[0][0])
    for cls, other in zip(RELEASES[1:], results[1:], strict=True):
        assert other == results[0], f"{cls.__name__} differs from {RELEASES[0].__name__}"


def test_small_cache_writes_back_when_full(images: Images) -> None:
    """``queue-depth=16`` gives a 2-block cache: writes overflow it between flushes."""
    for cls in RELEASES:
        device = cls.create("version=1,write-cache=on,queue-depth=16", host={"image": str(images.copy())}, seed=1)
        device.step(100)
        assert device.capacity_flushes > 0
        assert len(device.dirty_blocks()) <= 2
        device.close()


def test_discard_reads_back_zeros(images: Images) -> None:
    for cls in (BlkV1_1, BlkV2):
        device = cls.create("version=3", host={"image": str(images.copy())}, seed=2)
        device.step(80)
        device.flush_all()
        data = Path(device.host["image"]).read_bytes()
        changes = [e for e in device.log if e[0] in ("write", "discard")]
        kept = [
            (lba, blocks)
            for i, (op, _q, _tag, lba, blocks) in enumerate(changes)
            if op == "discard" and not any(e[3] < lba + blocks and lba < e[3] + e[4] for e in changes[i + 1 :])
        ]
        assert kept, "the test needs a discard that no later write overlaps"
        for lba, blocks in kept:
            assert data[lba * 512 : (lba + blocks) * 512] == bytes(blocks * 512)
        device.close()


def test_stats_section_is_optional_and_only_from_1_1_0(images: Images) -> None:
    sections = {}
    for cls in RELEASES:
        device = cls.create("version=2", host={"image": str(images.copy())}, seed=4)
        device.step(30)
        device.set_state(State.STOP)
        summary = inspect_stream(device.save_stream())
        sections[cls] = {s.name: s.optional for s in summary.sections}
        device.close()
    assert "stats" not in sections[BlkV1]
    assert sections[BlkV1_1]["stats"] is True
    assert sections[BlkV2]["stats"] is True
    assert all("cache" in names for names in sections.values())


# --------------------------------------------------------------------------
# Migration
# --------------------------------------------------------------------------


def test_cross_release_matrix(images: Images) -> None:
    report = cross_release_matrix(RELEASES, host=images.matrix_host)
    report.raise_for_failures()
    assert report.count("migrated") > 0
    assert report.count("refused") > 0
    outcome = {(c.source, c.destination, c.label): c.outcome for c in report.cells}
    assert outcome["1.1.0", "1.0.0", "version=3"] == "refused"  # PARAM_UNKNOWN discard
    assert outcome["2.0.0", "1.1.0", "version=4"] == "refused"  # num-queues=8
    assert outcome["2.0.0", "1.0.0", "version=2"] == "migrated"


@pytest.mark.parametrize(("src", "dst"), [(BlkV1, BlkV2), (BlkV2, BlkV1), (BlkV1_1, BlkV2), (BlkV2, BlkV2)])
def test_cached_write_reaches_the_image_after_the_final_flush(src: type[BlkV1], dst: type[BlkV1],
                                                             images: Images) -> None:
    image = images.copy("shared")
    source = src.create("version=2", host={"image": str(image)}, seed=5)
    source.step(40)
    source.set_state(State.STOP)
    saved = source.save_sections()
    slots: list[int] = saved["cache"]["lba"]
    overwritten = {
        lba + i
        for op, lba, blocks in zip(saved["inflight"]["op"], saved["inflight"]["lba"], saved["inflight"]["blocks"],
                                   strict=True)
        if op in (WRITE, DISCARD)
        for i in range(blocks)
    }
    candidates = [lba for lba in source.dirty_blocks() if lba not in overwritten]
    assert candidates, "the test needs a dirty block that no queued request rewrites"
    block = candidates[0]
    cached = bytes(source.cache.read(slots.index(block) * 512, 512))
    at_switch_over = image.read_bytes()
    assert at_switch_over[block * 512 : (block + 1) * 512] != cached  # only in the cache, not durable yet

    destination = _migrate(source, dst, image)
    source.close()
    final = destination.flush_all()
    migrated = image.read_bytes()
    assert migrated[block * 512 : (block + 1) * 512] == cached

    baseline_image = images.copy("baseline")
    baseline = src.create("version=2", host={"image": str(baseline_image)}, seed=5)
    baseline.step(40)
    assert baseline.flush_all() == final
    assert baseline_image.read_bytes() == migrated
    assert source.log + destination.log == baseline.log
    destination.close()
    baseline.close()


@pytest.mark.parametrize(("src", "dst"), [(BlkV1, BlkV2), (BlkV2, BlkV1_1)])
@pytest.mark.parametrize("config", ["version=2", "version=1,write-cache=on,queue-depth=16", "version=1"])
def test_image_after_migration_with_precopy_equals_unmigrated(src: type[BlkV1], dst: type[BlkV1], config: str,
                                                              images: Images) -> None:
    trip = migrate_round_trip(src, dst, config, seed=9, steps=120, migrate_at=60, host=images.host)
    assert images.last_source is not None
    destination = trip.destination
    assert isinstance(destination, BlkV1)
    before = len(destination.log)
    final = destination.flush_all()
    migrated = images.last_source.read_bytes()
    drained = destination.log[before:]
    destination.close()

    baseline_image = images.copy("baseline")
    baseline = dst.create(config, host={"image": str(baseline_image)}, seed=9)
    baseline.step(120)
    assert baseline.flush_all() == final
    assert baseline_image.read_bytes() == migrated
    assert trip.log + drained == baseline.log
    baseline.close()


def _fresh_state(device: BlkV1) -> tuple[Any, ...]:
    return (device.digest(), device.save_sections(), device.log, bytes(device.cache.data))


@pytest.mark.parametrize("where", ["header", "middle", "trailer"])
def test_failed_load_leaves_the_destination_as_created(where: str, images: Images) -> None:
    image = images.copy("shared")
    source = BlkV2.create("version=3", host={"image": str(image)}, seed=6)
    source.step(60)
    while not source.dirty_blocks():
        source.step()
    source.set_state(State.STOP)
    stream = source.save_stream()
    position = {"header": 12, "middle": len(stream) // 2, "trailer": len(stream) - 3}[where]
    corrupt = bytearray(stream)
    corrupt[position] ^= 0x40

    for dst in (BlkV1_1, BlkV2):
        destination = dst.create_canonical(source.config, host={"image": str(image)})
        created = _fresh_state(destination)
        with pytest.raises(StreamError):
            destination.load_stream(bytes(corrupt))
        assert destination.state_name == State.RESUMING
        assert _fresh_state(destination) == created
        assert destination.dirty_blocks() == []
        destination.load_stream(stream)
        assert destination.digest() == source.digest()
        assert destination.dirty_blocks() == source.dirty_blocks()
        destination.close()
    source.close()


def test_stream_from_another_image_size_is_refused(images: Images, tmp_path: Path) -> None:
    source = BlkV1.create("version=2", host={"image": str(images.copy())}, seed=1)
    source.step(20)
    source.set_state(State.STOP)
    stream = source.save_stream()
    larger = tmp_path / "larger.img"
    larger.write_bytes(bytes(2 * IMAGE_BYTES))
    destination = BlkV2.create_canonical(source.config, host={"image": str(larger)})
    created = _fresh_state(destination)
    with pytest.raises(StreamError) as info:
        destination.load_stream(stream)
    assert info.value.code == "SECTION_INVALID"
    assert info.value.section == "disk"
    assert _fresh_state(destination) == created
    destination.close()
    source.close()


class _Tampered(BlkV2):
    """A faulty source: it saves a discard request and a cache slot beyond the image."""

    def save_sections(self) -> dict[str, dict[str, Any]]:
        out = super().save_sections()
        out["inflight"]["op"] = [DISCARD for _ in out["inflight"]["op"]]
        out["cache"]["lba"] = [self.capacity + 5, *out["cache"]["lba"][1:]]
        return out


def test_inconsistent_sections_are_refused_with_every_problem(images: Images) -> None:
    image = images.copy("shared")
    source = _Tampered.create("version=2", host={"image": str(image)}, seed=2)
    source.step(30)
    source.set_state(State.STOP)
    assert source.save_sections()["inflight"]["op"]
    stream = source.save_stream()
    destination = BlkV2.create_canonical(source.config, host={"image": str(image)})
    created = _fresh_state(destination)
    with pytest.raises(StreamError) as info:
        destination.load_stream(stream)
    assert info.value.code == "SECTION_INVALID"
    assert ("section", "inflight", "field", "op", 0) in [p.loc for p in info.value.problems]
    assert _fresh_state(destination) == created
    destination.close()
    source.close()


def test_source_never_writes_the_image_after_switch_over(images: Images) -> None:
    image = images.copy("shared")
    source = BlkV1_1.create("version=3", host={"image": str(image)}, seed=8)
    destination = BlkV2.create_canonical(source.config, host={"image": str(image)})
    destination.set_state(State.RESUMING)
    source.step(40)

    def pump() -> None:
        while True:
            chunk = source.read_data(1 << 14)
            if isinstance(chunk, RoundEndSignal) or chunk == []:
                return
            for buf in chunk:
                destination.write_data(buf)

    source.set_state(State.PRE_COPY)
    for _ in range(2):
        pump()
        source.step(5)  # still running: writes to the shared image are the source's to make
    source.set_state(State.STOP_COPY)
    pump()
    destination.set_state(State.STOP)
    source.set_state(State.STOP)
    assert source.dirty_blocks(), "the source holds dirty blocks it could wrongly write"

    at_switch_over = image.read_bytes()
    writes = source.image_writes
    with pytest.raises(DeviceError) as info:
        source.flush_all()
    assert info.value.code == "DEVICE_STOPPED"
    with pytest.raises(DeviceError):
        source.step()
    source.close()
    assert image.read_bytes() == at_switch_over
    assert source.image_writes == writes
    source.set_state(State.RUNNING)  # even resumed, a closed source cannot write
    with pytest.raises(DevmigError):
        source.flush_all()
    assert image.read_bytes() == at_switch_over

    destination.set_state(State.RUNNING)
    assert destination.dirty_blocks() == source.dirty_blocks()
    destination.flush_all()
    assert image.read_bytes() != at_switch_over  # the destination owns the image now
    assert destination.dirty_blocks() == []
    destination.close()
