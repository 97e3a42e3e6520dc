"""tiny-uart: both releases migrate to each other, and what cannot move is refused early."""

from __future__ import annotations

from uart import UartV1, UartV2

from devmig.testing import (
    assert_layout_published,
    cross_release_matrix,
    migrate_round_trip,
    run_unmigrated,
)


def test_upgrade_and_rollback_continue_the_same_run() -> None:
    for source, destination in [(UartV1, UartV2), (UartV2, UartV1)]:
        trip = migrate_round_trip(source, destination, "version=1", seed=7, steps=400, migrate_at=200)
        assert trip.digest_source == trip.digest_destination
        unmigrated = run_unmigrated(destination, trip.config, seed=7, steps=400)
        assert trip.log == unmigrated.log
        assert trip.digest_final == unmigrated.digest


def test_every_pair_of_releases_in_both_directions() -> None:
    report = cross_release_matrix([UartV1, UartV2], steps=300, migrate_at=150)
    report.raise_for_failures()
    migrated = {(c.source, c.destination) for c in report.cells if c.outcome == "migrated"}
    assert migrated == {("1.0.0", "1.0.0"), ("1.0.0", "2.0.0"), ("2.0.0", "1.0.0"), ("2.0.0", "2.0.0")}
    refused = [c for c in report.cells if c.outcome == "refused"]
    assert {(c.source, c.destination) for c in refused} == {("2.0.0", "1.0.0")}  # rollbacks only
    assert any(c.label.startswith("boundary:") for c in refused)
    assert all(c.reasons for c in refused)


def test_documents_publish_the_declared_state() -> None:
    assert_layout_published(UartV1)
    assert_layout_published(UartV2)


def test_flow_control_pauses_instead_of_overrunning() -> None:
    trip = migrate_round_trip(UartV2, UartV2, "fifo-depth=8,flow-control=on", steps=400, migrate_at=200)
    kinds = {entry[0] for entry in trip.log}
    assert "paused" in kinds
    assert "overrun" not in kinds
