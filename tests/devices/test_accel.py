"""The reference accelerator: creation, releases alike, the matrix, pre-copy, bad streams."""

from __future__ import annotations

import struct
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devmig import ConfigError, StreamError
from devmig.device import Device, DeviceError
from devmig.devices.accel import AccelLiteV2, AccelLiteV3, AccelV1, AccelV2, AccelV3
from devmig.devices.accel._commands import (
    AXPY,
    CHECKSUM,
    COPY,
    FILL,
    LINE,
    MAX_LANES_SPAN,
    MAX_SPAN,
    SCALE,
    _beats,
)
from devmig.devices.accel._kernels import _NumpyKernels, _PythonKernels
from devmig.devices.accel._schedulers import (
    _DequeScheduler,
    _ListScheduler,
    _RingScheduler,
    _Scheduler,
)
from devmig.devices.accel._state import MIB
from devmig.migration import State
from devmig.state import PAGE_SIZE, RecordType, Region, RoundEndSignal, inspect_stream
from devmig.testing import cross_release_matrix, migrate_round_trip, run_unmigrated

RELEASES = [AccelV1, AccelV2, AccelV3]

# -- creation ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "config", "codes"),
    [
        (AccelV1, "fp16=on", {"PARAM_UNKNOWN"}),  # added in 2.0.0
        (AccelV1, "mem-size-mib=100", {"VALUE_NOT_ALLOWED"}),  # 1.0.0: step 64
        (AccelV1, "mem-size-mib=16", {"VALUE_NOT_ALLOWED"}),  # 16 arrived in 3.0.0
        (AccelV1, "engines=5,mem-size-mib=256", {"VALUE_NOT_ALLOWED"}),
        (AccelV1, "engines=4,mem-size-mib=128", {"CONSTRAINT_VIOLATED"}),
        (
            AccelV1,
            "fp16=on,mem-size-mib=100",
            {"PARAM_UNKNOWN", "VALUE_NOT_ALLOWED"},
        ),  # every problem
        (AccelV2, "fp16=on,engines=3", {"CONSTRAINT_VIOLATED"}),  # FP16 engines work in pairs
        (AccelV2, "version=4", {"VERSION_UNKNOWN"}),
        (AccelV3, "mem-size-mib=8208", {"VALUE_NOT_ALLOWED"}),
        (AccelV3, "ecc=maybe", {"TYPE_MISMATCH"}),
        (AccelV3, "queue-depth=33", {"VALUE_NOT_ALLOWED"}),
        (AccelLiteV2, "ecc=on", {"PARAM_UNKNOWN"}),  # the lite part has no ECC
        (AccelLiteV3, "engines=4", {"VALUE_NOT_ALLOWED"}),
    ],
)
def test_creation_refused_names_every_problem(
    cls: type[Device], config: str, codes: set[str]
) -> None:
    with pytest.raises(ConfigError) as info:
        cls.create(config)
    assert {p.code for p in info.value.problems} == codes
    named = {str(p.loc[-1]) for p in info.value.problems}
    assert named & {"fp16", "mem-size-mib", "engines", "ecc", "queue-depth", "version"}


@pytest.mark.parametrize("hot", [0, -1, "16", 1.5, True])
def test_bad_hot_set_host_setting_refused(hot: Any) -> None:
    with pytest.raises(DeviceError) as info:
        AccelV3.create("version=2", host={"hot_set_mib": hot})
    assert info.value.code == "HOST_SETTING_INVALID"
    assert info.value.problems[0].loc == ("host", "hot_set_mib")


def test_hot_set_defaults_caps_and_confines_work_in_a_large_memory() -> None:
    assert AccelV3.create("mem-size-mib=16,engines=2").hot_bytes == 16 * MIB  # capped at memory
    assert AccelV3.create("version=2", host={"hot_set_mib": 2}).hot_bytes == 2 * MIB
    big = AccelV3.create("mem-size-mib=1024,engines=2", seed=5)  # the benchmarks' size: lazily zero
    assert big.hot_bytes == AccelV3.hot_set_bytes == 64 * MIB
    big.step(300)
    dirty = np.flatnonzero(big.memory.dirty)
    assert dirty.size > 0
    assert dirty.max() < big.hot_bytes // PAGE_SIZE


# -- behaviour: every release alike ----------------------------------------------


@pytest.mark.parametrize(
    "config",
    [
        "version=1",
        "version=2",
        "version=2,ecc=on,queue-depth=32",
        "version=1,engines=3,queue-depth=32",
    ],
)
def test_releases_behave_alike_for_one_canonical_configuration(config: str) -> None:
    runs = [run_unmigrated(cls, config, seed=11, steps=250) for cls in RELEASES]
    assert runs[0].log == runs[1].log == runs[2].log
    assert runs[0].digest == runs[1].digest == runs[2].digest
    kinds = Counter(e[3] if e[0] == "done" else e[0] for e in runs[0].log)
    assert {"fill", "copy", "checksum", "scale"} <= set(kinds)
    if "queue-depth=32" in config:
        assert kinds["queue-full"] > 0
    if "ecc=on" in config:
        assert kinds["ecc-corrected"] > 0


def test_fp16_releases_behave_alike() -> None:
    runs = [
        run_unmigrated(cls, "version=3,ecc=on,queue-depth=32", seed=4, steps=250)
        for cls in (AccelV2, AccelV3)
    ]
    assert runs[0].log == runs[1].log
    assert runs[0].digest == runs[1].digest
    assert any(e[0] == "done" and e[3] == "axpy" for e in runs[0].log)


@pytest.mark.parametrize("cls", RELEASES)
def test_counters_account_for_every_command(cls: type[Device]) -> None:
    device = cls.create("version=2,queue-depth=32", seed=2)
    longest = 0
    for _ in range(200):
        device.step()
        queue, engines, _next = device.scheduler.snapshot()  # type: ignore[attr-defined]
        assert len(queue) <= 32  # bounded by queue-depth after every step
        longest = max(longest, len(queue))
    counters = device.all_sections()["counters"]
    in_flight = len(queue) + sum(1 for row in engines if row[0])
    assert counters["completed"] == sum(1 for e in device.log if e[0] == "done")
    assert counters["rejected"] == sum(1 for e in device.log if e[0] == "queue-full") > 0
    assert counters["submitted"] == counters["completed"] + in_flight
    assert longest == 32  # the queue filled up: the bound was reached (and commands were rejected)


# -- the pieces each release implements differently -------------------------------

_commands = st.tuples(
    st.sampled_from([FILL, COPY, CHECKSUM, SCALE, AXPY]), st.integers(1, MAX_SPAN // LINE)
)
_actions = st.lists(
    st.one_of(
        st.tuples(st.just("submit"), _commands), st.just(("dispatch",)), st.just(("advance",))
    ),
    max_size=80,
)


@settings(max_examples=60, deadline=None)
@given(
    engines=st.integers(1, 8), depth=st.integers(1, 12), actions=_actions, cut=st.integers(0, 80)
)
def test_schedulers_agree(
    engines: int, depth: int, actions: list[tuple[Any, ...]], cut: int
) -> None:
    """List, ring and deque schedulers: same completions and snapshots, restorable into each other."""
    kinds: list[type[_Scheduler]] = [_ListScheduler, _RingScheduler, _DequeScheduler]
    schedulers = [kind(depth, engines) for kind in kinds]
    tag = 0
    for index, action in enumerate(actions):
        if index == cut:  # migrate: each continues from the next one's snapshot
            snaps = [s.snapshot() for s in schedulers]
            schedulers = [kind(depth, engines) for kind in kinds]
            for s, snap in zip(schedulers, snaps[1:] + snaps[:1], strict=True):
                s.restore(*snap)
        if action[0] == "submit" and schedulers[0].pending() < depth:
            tag += 1
            op, lines = action[1]
            length = lines * LINE if op not in (SCALE, AXPY) else min(lines * LINE, MAX_LANES_SPAN)
            for s in schedulers:
                s.submit((tag, op, 0, 0, length, 7))
        elif action[0] == "dispatch":
            for s in schedulers:
                s.dispatch()
        elif action[0] == "advance":
            done = [s.advance() for s in schedulers]
            assert done[0] == done[1] == done[2]
        snaps = [s.snapshot() for s in schedulers]
        assert snaps[0] == snaps[1] == snaps[2]
        assert len({s.busy() for s in schedulers}) == 1
        assert all(row[6] < _beats(row[1], row[4]) for row in snaps[0][1] if row[0])


def test_round_robin_starts_after_the_last_engine_that_took_a_command() -> None:
    for kind in (_ListScheduler, _RingScheduler, _DequeScheduler):
        s = kind(8, 3)
        for tag in (1, 2):
            s.submit((tag, CHECKSUM, 0, 0, 64, 0))
        s.dispatch()  # engines 0 and 1 busy; engine 2 is next in turn
        s.submit((3, CHECKSUM, 0, 0, 64, 0))
        s.submit((4, CHECKSUM, 0, 0, 64, 0))
        assert s.advance() == [(0, (1, CHECKSUM, 0, 0, 64, 0)), (1, (2, CHECKSUM, 0, 0, 64, 0))]
        s.dispatch()  # 3 goes to engine 2, then 4 wraps round to engine 0
        assert [row[0] for row in s.snapshot()[1]] == [4, 0, 3], kind.__name__
        assert s.snapshot()[2] == 1


_kernel_ops = st.lists(
    st.tuples(
        st.sampled_from([FILL, COPY, CHECKSUM, SCALE]),
        st.integers(0, 255),
        st.integers(0, 255),
        st.integers(1, MAX_SPAN // LINE),
        st.integers(0, (1 << 32) - 1),
    ),
    max_size=25,
)


@settings(max_examples=60, deadline=None)
@given(ops=_kernel_ops, seed=st.integers(0, 1 << 16))
def test_python_and_numpy_kernels_agree(
    ops: list[tuple[int, int, int, int, int]], seed: int
) -> None:
    """Overlapping copies included: both kernels give the same bytes, dirty pages and checksums."""
    size = 4 * MAX_SPAN
    content = np.random.default_rng(seed).integers(0, 256, size=size, dtype=np.uint8)

    def fill(data: np.ndarray[Any, np.dtype[np.uint8]]) -> None:
        data[:] = content

    regions = [Region("memory", size, fill=fill) for _ in range(2)]
    kernels = [_PythonKernels(regions[0]), _NumpyKernels(regions[1])]
    for op, dst_line, src_line, lines, arg in ops:
        length = lines * LINE if op != SCALE else min(lines * LINE, MAX_LANES_SPAN)
        dst = min(dst_line * LINE * 8, size - length)
        src = min(src_line * LINE * 8, size - length)
        for k in kernels:
            if op == FILL:
                k.fill(dst, length, arg)
            elif op == COPY:
                k.copy(dst, src, length)
            elif op == SCALE:
                k.scale(dst, length, arg)
        assert kernels[0].checksum(src, length) == kernels[1].checksum(src, length)
        assert np.array_equal(regions[0].data, regions[1].data)
        assert np.array_equal(regions[0].dirty, regions[1].dirty)


def test_copy_is_a_memmove_and_fp16_needs_2_0_0() -> None:
    region = Region(
        "memory", 1 << 16, fill=lambda d: d.__setitem__(slice(None), np.arange(d.size) % 251)
    )
    expected = region.data.copy()
    expected[64:4160] = expected[0:4096].copy()
    _NumpyKernels(region).copy(64, 0, 4096)
    assert np.array_equal(region.data, expected)
    with pytest.raises(DeviceError) as info:
        _PythonKernels(region).axpy(0, 64, 64, 0x3C00, 0)
    assert info.value.code == "FP16_UNSUPPORTED"
    acc = _NumpyKernels(region).axpy(0, 64, 128, 0x3C00, 0)  # a = 1.0
    lanes = region.data[0:128].view("<f2")
    assert np.all(np.isfinite(lanes)) and acc == int(region.data[126:128].view("<u2")[0])


# -- migration -------------------------------------------------------------------


def test_cross_release_matrix() -> None:
    report = cross_release_matrix(RELEASES)
    report.raise_for_failures()
    assert report.count("migrated") >= 30
    assert report.count("refused") >= 5
    cells = {(c.source, c.destination, c.label): c for c in report.cells}
    assert cells["3.0.0", "2.0.0", "version=4"].outcome == "migrated"  # rollback of a new version
    assert cells["1.0.0", "3.0.0", "version=2"].outcome == "migrated"
    refused = cells["3.0.0", "1.0.0", "version=3"]
    assert refused.outcome == "refused"
    assert {p.code for p in refused.reasons} == {"PARAM_UNKNOWN"}


def test_cross_release_matrix_of_the_lite_model() -> None:
    report = cross_release_matrix([AccelLiteV2, AccelLiteV3])
    report.raise_for_failures()
    assert report.count("migrated") == len(report.cells) >= 8


def _read_round(device: Device, out: bytearray) -> int:
    """Read one pre-copy round into ``out``; return the bytes read."""
    before = len(out)
    while True:
        chunk = device.read_data(1 << 20)
        if isinstance(chunk, RoundEndSignal):
            return len(out) - before
        out += b"".join(bytes(b) for b in chunk)


def test_precopy_rounds_resend_pages_the_work_dirtied() -> None:
    config = "ecc=on,engines=2,mem-size-mib=64,queue-depth=64"
    source = AccelV1.create(config, host={"hot_set_mib": 16}, seed=7)
    source.step(20)
    source.set_state(State.PRE_COPY)
    assert source.precopy_info().initial_bytes == 64 * MIB
    stream = bytearray()
    _read_round(source, stream)
    info = source.precopy_info()
    assert (info.initial_bytes, info.dirty_bytes) == (0, 0)
    for _ in range(3):
        source.step(10)  # work while the pre-copy goes on
        dirty = source.precopy_info().dirty_bytes
        assert 0 < dirty <= 16 * MIB
        assert np.flatnonzero(source.memory.dirty).max() < 16 * MIB // PAGE_SIZE  # only the hot set
        assert _read_round(source, stream) > 0
        assert source.precopy_info().dirty_bytes == 0
    source.step(5)
    source.set_state(State.STOP_COPY)
    while chunk := source.read_data(1 << 20):
        assert not isinstance(chunk, RoundEndSignal)
        stream += b"".join(bytes(b) for b in chunk)
    summary = inspect_stream(bytes(stream))
    assert summary.digest_ok and summary.rounds == 4
    carried = summary.regions[0].bulk_bytes + summary.regions[0].zero_bytes
    assert carried > source.memory.size  # dirtied pages went more than once
    destination = AccelV3.create_canonical(source.config)  # a different release, default hot set
    destination.load_stream(bytes(stream))
    assert destination.digest() == source.digest()
    assert destination.hot_bytes == 16 * MIB  # the workload's hot set travels with it


@pytest.mark.parametrize(
    ("src", "dst"), [(AccelV1, AccelV3), (AccelV3, AccelV2), (AccelV2, AccelV1)]
)
def test_migration_while_working_equals_unmigrated_runs(
    src: type[Device], dst: type[Device]
) -> None:
    config = "version=1,ecc=on,engines=2,queue-depth=64"  # 64 MiB, no fp16: every release takes it
    hosts: dict[str, dict[str, Any]] = {
        "source": {"hot_set_mib": 16},
        "destination": {"hot_set_mib": 4},
    }

    def host(role: str) -> dict[str, Any]:
        return hosts.get(role, {"hot_set_mib": 16})

    trip = migrate_round_trip(
        src, dst, config, seed=9, steps=120, migrate_at=60, precopy_rounds=4, host=host
    )
    assert trip.rounds == 4
    assert trip.digest_source == trip.digest_destination
    for cls in (src, dst):
        base = run_unmigrated(cls, trip.config, seed=9, steps=120, host={"hot_set_mib": 16})
        assert trip.log == base.log
        assert trip.digest_final == base.digest
    assert trip.destination.hot_bytes == 16 * MIB  # type: ignore[attr-defined]


def _bulk_records(stream: bytes) -> list[int]:
    """Offsets of every BULK record in a stream."""
    out, pos = [], 8
    while pos < len(stream):
        rtype, _flags, length = struct.unpack_from(">BBI", stream, pos)
        if rtype == RecordType.BULK:
            out.append(pos)
        pos += 6 + length + 8
    return out


def test_corrupt_bulk_is_refused_and_leaves_memory_as_created() -> None:
    source = AccelV1.create("version=2", seed=5)
    source.step(80)
    source.set_state(State.STOP)
    stream = source.save_stream()
    bulks = _bulk_records(stream)
    assert len(bulks) >= 2
    bad = bytearray(stream)
    bad[bulks[-1] + 6 + 17 + 100] ^= (
        0x01  # a data byte of the last BULK: earlier ones already landed
    )
    destination = AccelV2.create_canonical(source.config)
    created = destination.digest()
    with pytest.raises(StreamError) as info:
        destination.load_stream(bytes(bad))
    assert info.value.code == "RECORD_CORRUPT"
    assert destination.state_name == State.RESUMING
    assert np.count_nonzero(destination.memory.data) == 0
    assert destination.digest() == created
    destination.load_stream(stream)  # the same device then takes a valid stream
    assert destination.digest() == source.digest()
    destination.set_state(State.RUNNING)
    source.set_state(State.RUNNING)
    seen = len(source.log)
    destination.step(40)
    source.step(40)
    assert destination.log == source.log[seen:] != []
    assert destination.digest() == source.digest()


def _sections(device: Device) -> dict[str, dict[str, Any]]:
    return {k: dict(v) for k, v in device.all_sections().items() if k != "devmig"}


def _busy(sections: dict[str, dict[str, Any]]) -> int:
    """The first busy engine."""
    return next(i for i, tag in enumerate(sections["engines"]["tag"]) if tag)


_BAD_SECTIONS: list[tuple[str, Callable[[dict[str, dict[str, Any]]], object]]] = [
    ("workload", lambda s: s["workload"].update(hot_bytes=3 * 4096)),
    ("workload", lambda s: s["workload"].update(hot_bytes=256 * MIB)),
    ("workload", lambda s: s["workload"].update(next_tag=0)),
    ("queue", lambda s: s["queue"]["op"].__setitem__(0, AXPY)),  # no fp16 in this configuration
    ("queue", lambda s: s["queue"]["dst"].__setitem__(0, 128 * MIB)),
    ("queue", lambda s: s["queue"]["length"].__setitem__(0, 65)),
    ("queue", lambda s: s["queue"]["tag"].__setitem__(1, s["queue"]["tag"][0])),
    ("queue", lambda s: s["queue"]["arg"].pop()),
    ("engines", lambda s: s["engines"].update(next=2)),
    ("engines", lambda s: [s["engines"][k].pop() for k in list(s["engines"]) if k != "next"]),
    ("engines", lambda s: s["engines"]["beats_done"].__setitem__(_busy(s), 9)),
    (
        "engines",
        lambda s: s["engines"]["tag"].__setitem__(_busy(s), 0),
    ),  # idle, yet holding a command
    ("ecc", lambda s: s["ecc"]["syndromes"].pop()),
    ("ecc", lambda s: s["ecc"].update(scrub_cursor=128)),
]


@pytest.mark.parametrize(("section", "spoil"), _BAD_SECTIONS)
@pytest.mark.parametrize("cls", RELEASES)
def test_inconsistent_sections_refused_without_change(
    cls: type[Device], section: str, spoil: Callable[[dict[str, dict[str, Any]]], object]
) -> None:
    device = cls.create("version=2,ecc=on,queue-depth=32", seed=1)
    device.step(60)  # a full queue
    while not device.scheduler.busy():  # type: ignore[attr-defined]
        device.step()  # and a command in flight
    sections = _sections(device)
    assert len(sections["queue"]["tag"]) >= 2 and any(sections["engines"]["tag"])
    before = device.digest()
    spoil(sections)
    with pytest.raises(StreamError) as info:
        device.load_sections(sections)
    assert info.value.code == "SECTION_INVALID"
    assert info.value.section == section
    assert device.digest() == before
    device.load_sections(_sections(device))  # its own state loads back
    assert device.digest() == before
