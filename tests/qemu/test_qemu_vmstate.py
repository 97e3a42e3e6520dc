"""QEMU's own devices: importing `-dump-vmstate` output, and the release diff's QEMU judgement.

The two dumps in data/ are real (tools/qemu-vmstate-dumps): Debian bookworm's QEMU 7.2 and
trixie-backports' QEMU 11.1, both for machine pc-i440fx-7.2.
"""

from __future__ import annotations

import copy
import gzip
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from devmig.cli import app
from devmig.compat import Change, ReleaseDiff, check, diff, qemu_versions
from devmig.model import ModelDocument, expand, load_document
from devmig.qemu import import_vmstate

DATA = Path(__file__).parent / "data"
OLD_DUMP = DATA / "vmstate-7.2-pc-i440fx-7.2.json.gz"
NEW_DUMP = DATA / "vmstate-11.1-pc-i440fx-7.2.json.gz"
DEV = "qemu.org/devices/"

runner = CliRunner()


def _dump(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(gzip.decompress(path.read_bytes()))
    return data


@pytest.fixture(scope="module")
def docs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Both dumps imported by the CLI, as files."""
    out = tmp_path_factory.mktemp("qemu")
    paths = []
    for dump, release in ((OLD_DUMP, "7.2"), (NEW_DUMP, "11.1")):
        path = out / f"qemu-{release}.json"
        result = runner.invoke(
            app, ["qemu", "import-vmstate", str(dump), "--release", release, "-o", str(path)]
        )
        assert result.exit_code == 0, result.output
        paths.append(path)
    return paths[0], paths[1]


@pytest.fixture(scope="module")
def real_diff(docs: tuple[Path, Path]) -> ReleaseDiff:
    old, new = (load_document(p.read_text()) for p in docs)
    return diff(old, new)


def _find(d: ReleaseDiff, device: str, rule: str, *loc: str) -> Change:
    found = [c for c in d.changes if c.model == DEV + device and c.rule == rule and c.loc == loc]
    assert len(found) == 1, [c for c in d.changes if c.model == DEV + device]
    return found[0]


# -- import ---------------------------------------------------------------------------


def test_import_of_both_dumps(docs: tuple[Path, Path]) -> None:
    counts = []
    for path, release, dump in zip(docs, ("7.2", "11.1"), (OLD_DUMP, NEW_DUMP), strict=True):
        doc = load_document(path.read_text())
        result = runner.invoke(app, ["validate", str(path)])
        assert result.exit_code == 0, result.output
        assert doc.implementation.release == release
        sections = [k for k, v in _dump(dump).items() if "Description" in v]
        assert sorted(m.model for m in doc.models) == sorted(DEV + k for k in sections)
        assert all(not m.params and m.state is not None for m in doc.models)
        counts.append(len(doc.models))
    assert counts == [214, 236]


def test_import_maps_e1000(docs: tuple[Path, Path]) -> None:
    doc = load_document(docs[0].read_text())
    e1000 = doc.find(DEV + "e1000")
    assert e1000 is not None and e1000.state is not None
    main, *subs = e1000.state.sections
    assert (main.name, main.optional) == ("e1000", False)
    fields = {f.name: (f.type, f.max) for f in main.fields}
    # a nested struct flattened, alternatives and placeholders numbered, sizes as maxima
    assert fields["parent_obj.config"] == ("bytes", 256)
    assert fields["parent_obj.config#2"] == ("bytes", 4096)
    assert fields["unused"] == fields["unused#2"] == ("bytes", 4)
    assert fields["eecd_state.bitnum_in"] == ("bytes", 2)
    assert [(s.name, s.optional) for s in subs][:1] == [("e1000/mit_state", True)]
    versions = qemu_versions(e1000.description)
    assert (versions["e1000"].version_id, versions["e1000"].minimum_version_id) == (2, 1)


def test_version_gated_fields_are_named_by_their_version(docs: tuple[Path, Path]) -> None:
    rtc = load_document(docs[0].read_text()).find(DEV + "mc146818rtc")
    assert rtc is not None and rtc.state is not None
    names = [f.name for f in rtc.state.sections[0].fields]
    assert "period@v2" in names and "base_rtc@v3" in names


def test_import_refuses_what_is_not_a_dump(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"e1000": {"Description": {"version_id": 1}}}')
    result = runner.invoke(app, ["qemu", "import-vmstate", str(bad), "-r", "1", "--json"])
    assert result.exit_code == 2
    assert {e["code"] for e in json.loads(result.output)["errors"]} == {"SCHEMA"}
    result = runner.invoke(app, ["qemu", "import-vmstate", str(tmp_path / "none.json"), "-r", "1"])
    assert result.exit_code == 2


# -- the diff of the two real releases --------------------------------------------------


def test_a_dump_compared_with_itself_has_no_change(docs: tuple[Path, Path]) -> None:
    for path in docs:
        result = runner.invoke(app, ["diff", str(path), str(path), "--json"])
        assert result.exit_code == 0, result.output
        assert json.loads(result.output)["changes"] == []


def test_the_real_diff_by_device_and_field(real_diff: ReleaseDiff) -> None:
    d = real_diff
    # subsections added: rollback only (an older QEMU refuses them, a newer one sends them when needed)
    for device, sub in (
        ("isa-i8259", "i8259/ltim"),
        ("tpm-crb", "tpm-crb/chunk"),
        ("scsi-hd", "scsi-disk/pr"),
        ("virtio-gpu-device", "virtio-gpu/blob"),
    ):
        assert _find(d, device, "STATE_SECTION_ADDED", "state", "sections", sub).breaks == (
            "rollback",
        )
    # a subsection removed: upgrade only (7.2 may send it, 11.1 does not know it)
    assert _find(
        d, "sysbus-esp", "STATE_SECTION_REMOVED", "state", "sections", "esp/pdma"
    ).breaks == ("upgrade",)
    # fields removed and added: both directions
    c = _find(
        d, "e1000e", "STATE_FIELD_ADDED", "state", "sections", "e1000e", "fields", "core.timadj"
    )
    assert c.breaks == ("upgrade", "rollback") and "8 bytes" in c.message
    c = _find(
        d,
        "pvscsi",
        "STATE_FIELD_REMOVED",
        "state",
        "sections",
        "pvscsi",
        "fields",
        "parent_obj.config",
    )
    assert c.breaks == ("upgrade", "rollback")
    # sb16's irq, dma, hdma, port, ver became one 20-byte unused placeholder: no change
    assert not [c for c in d.changes if c.model == DEV + "sb16"]
    # e1000e's itr_intr_pending became an unused byte: no change there
    assert not [
        c
        for c in d.changes
        if c.model == DEV + "e1000e"
        and "itr_intr_pending" in str(c.loc)
        and "eitr" not in str(c.loc)
    ]
    # the minimum version raised to the version both send: listed, nothing broken
    c = _find(
        d, "mc146818rtc", "STATE_CONDITION_CHANGED", "state", "sections", "mc146818rtc", "version"
    )
    assert c.breaks == ()
    assert c.old == {"version_id": 3, "minimum_version_id": 1}
    assert c.new == {"version_id": 3, "minimum_version_id": 3}
    # ... and the gates it made moot are no change of its fields
    assert [c.rule for c in d.changes if c.model == DEV + "mc146818rtc"] == [
        "STATE_CONDITION_CHANGED"
    ]
    # a version going down below the old minimum: both directions
    c = _find(d, "isa-vga", "STATE_CONDITION_CHANGED", "state", "sections", "vga-isa", "version")
    assert c.breaks == ("upgrade", "rollback")
    # renames at the same place and size, fields moved into a struct: listed, nothing broken
    c = _find(
        d, "hpet", "STATE_FIELD_ADDED", "state", "sections", "hpet", "fields", "num_timers_save"
    )
    assert (c.old, c.breaks) == ("num_timers@v2", ())
    c = _find(
        d, "isa-vga", "STATE_FIELD_ADDED", "state", "sections", "vga-isa", "fields", "state.latch"
    )
    assert (c.old, c.breaks) == ("latch", ())
    # a device present in only one release is a model added or removed
    assert _find(d, "pci-qxl", "MODEL_REMOVED").breaks == ("upgrade", "instantiate")
    assert d.breaking


def test_the_real_diff_reports_only_devices_in_both_as_state_changes(
    real_diff: ReleaseDiff,
) -> None:
    rules = {c.rule for c in real_diff.changes}
    assert "DESCRIPTION_CHANGED" not in rules  # the description holds the versions: judged above
    moved = {c.model for c in real_diff.changes if c.rule.startswith("STATE_")}
    assert len(moved) >= 20
    untouched = _find_unchanged(real_diff)
    assert DEV + "e1000" in untouched and DEV + "virtio-net-device" in untouched


def _find_unchanged(d: ReleaseDiff) -> set[str]:
    return {m.model for m in import_vmstate(_dump(OLD_DUMP), "7.2").models} - {
        c.model for c in d.changes
    }


# -- QEMU's one-directional rules, one at a time ---------------------------------------


def _field(name: str, size: int, version: int = 0) -> dict[str, Any]:
    return {"field": name, "version_id": version, "field_exists": False, "size": size}


BASE: dict[str, Any] = {
    "vmschkmachine": {"Name": "pc"},
    "dev": {
        "Name": "dev",
        "version_id": 2,
        "minimum_version_id": 1,
        "Description": {
            "name": "dev",
            "version_id": 2,
            "minimum_version_id": 1,
            "Fields": [_field("a", 4), _field("b", 2), _field("c", 8, 2)],
            "Subsections": [
                {
                    "name": "dev/extra",
                    "version_id": 1,
                    "minimum_version_id": 1,
                    "Fields": [_field("x", 4)],
                }
            ],
        },
    },
}


def _edited(edit: Any) -> dict[str, Any]:
    dump = copy.deepcopy(BASE)
    edit(dump["dev"]["Description"])
    return dump


def _changes(edit: Any) -> list[tuple[str, tuple[Any, ...], tuple[str, ...]]]:
    d = diff(import_vmstate(BASE, "1"), import_vmstate(_edited(edit), "2"))
    return [(c.rule, c.loc[1:], c.breaks) for c in d.changes]


def _bump(desc: dict[str, Any], version: int = 3, minimum: int = 1) -> None:
    desc["version_id"], desc["minimum_version_id"] = version, minimum


def test_a_subsection_added_breaks_rollback_only() -> None:
    def edit(desc: dict[str, Any]) -> None:
        desc["Subsections"].append(
            {
                "name": "dev/more",
                "version_id": 1,
                "minimum_version_id": 1,
                "Fields": [_field("y", 1)],
            }
        )

    assert _changes(edit) == [("STATE_SECTION_ADDED", ("sections", "dev/more"), ("rollback",))]


def test_a_subsection_removed_breaks_upgrade_only() -> None:
    assert _changes(lambda desc: desc.pop("Subsections")) == [
        ("STATE_SECTION_REMOVED", ("sections", "dev/extra"), ("upgrade",))
    ]


def test_a_version_bump_within_the_minimum_breaks_rollback_only() -> None:
    def edit(desc: dict[str, Any]) -> None:
        _bump(desc)
        desc["Fields"].append(_field("d", 4, 3))

    assert _changes(edit) == [
        ("STATE_CONDITION_CHANGED", ("sections", "dev", "version"), ("rollback",)),
        ("STATE_FIELD_ADDED", ("sections", "dev", "fields", "d@v3"), ("rollback",)),
    ]


def test_a_version_bump_past_the_old_version_breaks_both() -> None:
    assert _changes(lambda desc: _bump(desc, 3, 3)) == [
        ("STATE_CONDITION_CHANGED", ("sections", "dev", "version"), ("upgrade", "rollback"))
    ]


def test_a_field_added_without_a_version_gate_breaks_both() -> None:
    def edit(desc: dict[str, Any]) -> None:
        _bump(desc)
        desc["Fields"].insert(1, _field("new", 4))

    assert _changes(edit)[1:] == [
        ("STATE_FIELD_ADDED", ("sections", "dev", "fields", "new"), ("upgrade", "rollback"))
    ]


def test_an_unused_placeholder_of_the_same_size_is_no_change() -> None:
    def edit(desc: dict[str, Any]) -> None:
        desc["Fields"][1] = _field("unused", 2)

    assert _changes(edit) == []

    def two_into_one(desc: dict[str, Any]) -> None:
        desc["Fields"][:2] = [_field("unused", 6)]

    assert _changes(two_into_one) == []


def test_a_placeholder_taken_by_a_field_is_listed_with_nothing_broken() -> None:
    old = _edited(lambda desc: desc["Fields"].__setitem__(1, _field("unused", 2)))
    d = diff(import_vmstate(old, "1"), import_vmstate(BASE, "2"))
    assert [(c.rule, c.loc[-1], c.breaks) for c in d.changes] == [("STATE_FIELD_ADDED", "b", ())]


def test_a_gated_field_removed_with_the_version_going_back_breaks_upgrade_only() -> None:
    def newer(desc: dict[str, Any]) -> None:
        _bump(desc)
        desc["Fields"].append(_field("d", 4, 3))

    d = diff(import_vmstate(_edited(newer), "2"), import_vmstate(BASE, "1"))
    assert [(c.rule, c.loc[-1], c.breaks) for c in d.changes] == [
        ("STATE_CONDITION_CHANGED", "version", ("upgrade",)),
        ("STATE_FIELD_REMOVED", "d@v3", ("upgrade",)),
    ]


def test_removed_and_resized_fields_break_both() -> None:
    assert _changes(lambda desc: desc["Fields"].pop(0)) == [
        ("STATE_FIELD_REMOVED", ("sections", "dev", "fields", "a"), ("upgrade", "rollback"))
    ]
    assert _changes(lambda desc: desc["Fields"][1].update(size=4)) == [
        ("STATE_FIELD_MAX_CHANGED", ("sections", "dev", "fields", "b"), ("upgrade", "rollback"))
    ]
    sub = _changes(lambda desc: desc["Subsections"][0]["Fields"][0].update(size=8))
    assert sub == [
        (
            "STATE_FIELD_MAX_CHANGED",
            ("sections", "dev/extra", "fields", "x"),
            ("upgrade", "rollback"),
        )
    ]


def test_a_rename_at_the_same_place_and_size_breaks_nothing() -> None:
    assert _changes(lambda desc: desc["Fields"][0].update(field="a2")) == [
        ("STATE_FIELD_ADDED", ("sections", "dev", "fields", "a2"), ())
    ]


def test_devmig_documents_keep_the_general_rules() -> None:
    """The same change in a model that is not an imported QEMU one is judged by the STATE_* rules."""

    def edit(desc: dict[str, Any]) -> None:
        _bump(desc)
        desc["Fields"].append(_field("d", 4, 3))

    old_data = import_vmstate(BASE, "1").model_dump(mode="json", exclude_none=True)
    new_data = import_vmstate(_edited(edit), "2").model_dump(mode="json", exclude_none=True)
    for data in (old_data, new_data):
        data["models"][0]["model"] = "example.org/devices/dev"
    d = diff(ModelDocument.model_validate(old_data), ModelDocument.model_validate(new_data))
    assert [(c.rule, c.breaks) for c in d.changes] == [
        ("DESCRIPTION_CHANGED", ()),
        ("STATE_FIELD_ADDED", ("upgrade", "rollback")),
    ]


# -- the check agrees with the diff ---------------------------------------------------------


def test_the_check_agrees_with_the_diff_in_both_directions(docs: tuple[Path, Path]) -> None:
    """Rule 6 on QEMU models is QEMU's rule: check(OLD -> NEW) fails exactly where the diff
    says upgrade breaks, check(NEW -> OLD) exactly where it says rollback breaks, and the diff
    of NEW to OLD says upgrade where the diff of OLD to NEW says rollback."""
    old, new = (load_document(p.read_text()) for p in docs)
    forward, backward = diff(old, new), diff(new, old)
    refused = {"upgrade": 0, "rollback": 0}
    for om in old.models:
        nm = new.find(om.model)
        if nm is None:
            continue
        breaks = {b for c in forward.changes if c.model == om.model for b in c.breaks}
        back = {b for c in backward.changes if c.model == om.model for b in c.breaks}
        up = check(om, expand(om, ""), new)
        down = check(nm, expand(nm, ""), old)
        assert up.compatible == ("upgrade" not in breaks), (om.model, up.reasons)
        assert down.compatible == ("rollback" not in breaks), (om.model, down.reasons)
        assert ("rollback" in breaks) == ("upgrade" in back), om.model
        assert ("upgrade" in breaks) == ("rollback" in back), om.model
        refused["upgrade"] += not up.compatible
        refused["rollback"] += not down.compatible
    assert refused == {"upgrade": 8, "rollback": 19}, refused


def test_the_check_names_the_qemu_difference(docs: tuple[Path, Path]) -> None:
    result = runner.invoke(app, ["check", str(docs[1]), str(docs[0]), DEV + "tpm-crb", "--json"])
    assert result.exit_code == 1, result.output
    reasons = json.loads(result.output)["reasons"]
    assert [(r["code"], r["loc"]) for r in reasons] == [
        ("STATE_LAYOUT_MISMATCH", ["state", "section", "tpm-crb/chunk"])
    ]
    result = runner.invoke(app, ["check", str(docs[0]), str(docs[1]), DEV + "tpm-crb"])
    assert result.exit_code == 0, result.output


def test_import_reads_stdin_and_zstd(tmp_path: Path) -> None:
    import zstandard

    raw = gzip.decompress(OLD_DUMP.read_bytes())
    result = runner.invoke(app, ["qemu", "import-vmstate", "-", "-r", "7.2"], input=raw.decode())
    assert result.exit_code == 0, result.output
    from_stdin = json.loads(result.output)
    packed = tmp_path / "dump.json.zst"
    packed.write_bytes(zstandard.ZstdCompressor().compress(raw))
    result = runner.invoke(app, ["qemu", "import-vmstate", str(packed), "-r", "7.2"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == from_stdin
    assert len(from_stdin["models"]) == 214
