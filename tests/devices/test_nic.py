"""The reference NIC: cross-release matrix, and the SDK's behaviour on bad input."""

from __future__ import annotations

import pytest
import xxhash

from devmig import ConfigError, StreamError, TransitionError
from devmig.device import DeviceError
from devmig.devices.nic import NicV1, NicV2, NicV3
from devmig.migration import State
from devmig.testing import cross_release_matrix, migrate_round_trip, run_unmigrated

RELEASES = [NicV1, NicV2, NicV3]


def test_cross_release_matrix_all_pairs_both_directions() -> None:
    report = cross_release_matrix(RELEASES, steps=160, migrate_at=80)
    report.raise_for_failures()
    assert report.count("migrated") >= 30
    assert report.count("refused") >= 5
    pairs = {(c.source, c.destination) for c in report.cells if c.outcome == "migrated"}
    assert ("1.0.0", "3.0.0") in pairs  # upgrade
    assert ("3.0.0", "1.0.0") in pairs  # rollback of an old version
    refused = [c for c in report.cells if c.outcome == "refused"]
    assert all(c.reasons for c in refused)
    assert {p.code for c in refused for p in c.reasons} >= {"PARAM_UNKNOWN", "VALUE_NOT_ALLOWED"}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_migrated_run_equals_unmigrated(seed: int) -> None:
    trip = migrate_round_trip(NicV3, NicV2, "version=3", seed=seed, steps=200, migrate_at=120)
    assert trip.digest_source == trip.digest_destination
    base = run_unmigrated(NicV2, trip.config, seed=seed, steps=200)
    assert trip.log == base.log
    assert trip.digest_final == base.digest
    kinds = {entry[0] for entry in trip.log}
    assert {"rx", "tx", "filter", "rss-table"} <= kinds


def test_creation_refused_creates_nothing() -> None:
    with pytest.raises(ConfigError) as info:
        NicV1.create("version=3,rx-table-size=16")
    assert {p.code for p in info.value.problems} == {"VERSION_UNKNOWN", "PARAM_UNKNOWN"}
    with pytest.raises(ConfigError) as info:
        NicV2.create_canonical({"tso": True})
    assert info.value.code == "PARAM_UNKNOWN"


def test_work_needs_a_running_device() -> None:
    nic = NicV3.create("version=2")
    nic.set_state(State.STOP)
    with pytest.raises(DeviceError) as info:
        nic.step()
    assert info.value.code == "DEVICE_STOPPED"


def test_transitions_follow_the_kernel_path() -> None:
    nic = NicV3.create("")
    assert nic.set_state(State.STOP_COPY) == [State.RUNNING_P2P, State.STOP, State.STOP_COPY]
    with pytest.raises(TransitionError):
        nic.set_state(State.PRE_COPY)
    assert nic.state_name == State.STOP_COPY


def _forge_trailer(data: bytes) -> bytes:
    """Flip a bit of the TRAILER's stream digest and re-seal the record's own digest."""
    payload = bytearray(data[-24:-8])
    payload[0] ^= 0x80
    return data[:-24] + bytes(payload) + xxhash.xxh3_64_intdigest(bytes(payload)).to_bytes(8, "big")


def _saved(cls: type, config: str, steps: int = 50) -> tuple[bytes, bytes]:
    source = cls.create(config, seed=3)
    source.step(steps)
    source.set_state(State.STOP)
    return source.save_stream(), source.digest()


@pytest.mark.parametrize(
    ("mutate", "code"),
    [
        (lambda d: d[: len(d) // 2], "TRUNCATED"),
        (lambda d: d[:40] + bytes([d[40] ^ 0x01]) + d[41:], "RECORD_CORRUPT"),
        (_forge_trailer, "DIGEST_MISMATCH"),
    ],
)
def test_bad_stream_leaves_destination_as_created(mutate, code: str) -> None:
    data, digest = _saved(NicV3, "version=3")
    destination = NicV2.create_canonical(NicV3.create("version=3").config)
    fresh = destination.digest()
    destination.set_state(State.RESUMING)
    with pytest.raises(StreamError) as info:
        destination.write_data(mutate(data))
        destination.set_state(State.STOP)
    assert info.value.code == code
    assert destination.state_name == State.RESUMING
    assert destination.digest() == fresh
    destination.write_data(data)  # a valid stream still loads afterwards
    destination.set_state(State.STOP)
    assert destination.digest() == digest


def test_stream_of_another_configuration_is_refused_at_header() -> None:
    data, _ = _saved(NicV3, "version=2")
    destination = NicV3.create("version=3")
    destination.set_state(State.RESUMING)
    with pytest.raises(StreamError) as info:
        destination.write_data(data[:200])
    assert info.value.code == "CONFIG_MISMATCH"
    assert info.value.record == 0


def test_optional_section_skipped_by_an_older_reader() -> None:
    data, digest = _saved(NicV3, "version=2")
    older = NicV1.create("version=2")
    older.load_stream(data)
    assert older.digest() == digest
