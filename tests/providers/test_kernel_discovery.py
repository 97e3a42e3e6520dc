"""The kernel provider's discovery on on-disk trees shaped like real sysfs (DESIGN §9)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from kernel_trees import NICVF, PARENT, TYPE, VF1, VGPU, VGPU_LITE, host_twin, vgpu_raw

from devmig.compat import check
from devmig.model import expand, load_host_report
from devmig.providers import (
    DiskSysfs,
    KernelProvider,
    SdkProvider,
    is_variant_driver,
    materialize,
    merge_offers,
)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "sys"
    materialize(host_twin().files, str(root))
    return root


def test_the_tree_is_shaped_like_sysfs(tree: Path) -> None:
    link = tree / "class" / "mdev_bus" / PARENT
    assert link.is_symlink() and os.readlink(link) == f"../../devices/pci0000:00/{PARENT}"
    assert (
        link / "mdev_supported_types" / "acme-vgpu-2g" / "available_instances"
    ).read_text() == "2\n"
    vf = tree / "bus" / "pci" / "devices" / VF1
    assert vf.is_symlink() and (vf / "driver").resolve().name == "acme_vfio_pci"
    assert (vf / "driver" / "module" / "srcversion").is_file()


def test_discovery_finds_types_and_vfs_through_the_links(tree: Path) -> None:
    provider = KernelProvider.at(str(tree))
    offer = provider.offer()
    assert offer.problems == ()
    names = [d.implementation.name for d in offer.documents]
    assert names == ["acme-vgpu", "kernel:acme_mdev/acme-vgpu-legacy", "acme-nicvf"]
    assert {p.carrier for p in offer.provided} == {"vmm"}
    assert [m.model for m in offer.documents[0].models] == [VGPU, VGPU_LITE]
    opaque = offer.documents[1]
    assert opaque.models[0].model.startswith("opaque:") and not opaque.models[0].params
    assert opaque.implementation.release == "0123456789ABCDEF0123456"
    assert offer.capacity == {
        "acme-vgpu 5.1.0": 2,
        "kernel:acme_mdev/acme-vgpu-legacy 0123456789ABCDEF0123456": 1,
        "acme-nicvf 2.0.0": 2,
    }
    # sites are the resolved directories, sources the on-disk paths
    sites = provider.tree().sites
    assert [s.path for s in sites][:2] == [TYPE, TYPE.replace("acme-vgpu-2g", "acme-vgpu-legacy")]
    assert [(s.kind, s.name) for s in sites[2:]] == [("vf", VF1), ("vf", "0000:01:00.3")]
    assert offer.provided[0].source == str(tree / TYPE)


def test_disk_tree_and_in_memory_twin_offer_the_same(tree: Path) -> None:
    on_disk = KernelProvider.at(str(tree)).offer()
    in_memory = KernelProvider(host_twin().files).offer()
    assert on_disk.documents == in_memory.documents
    assert on_disk.capacity == in_memory.capacity


def test_opaque_identity_follows_driver_type_api_and_srcversion(tree: Path) -> None:
    before = KernelProvider.at(str(tree)).offer().documents[1].models[0].model
    (tree / "module" / "acme_mdev" / "srcversion").write_text("NEWBUILD\n")
    after = KernelProvider.at(str(tree)).offer().documents[1].models[0].model
    assert before != after and after.startswith("opaque:")
    legacy = KernelProvider.at(str(tree)).offer().documents[1].models[0]
    same = expand(legacy, "")
    assert check(legacy, same, KernelProvider.at(str(tree)).offer().documents[1]).compatible


@pytest.mark.parametrize(
    ("text", "codes", "loc"),
    [
        ('{"format": "devmig/model-document/1", ', ["JSON_SYNTAX"], ()),
        (json.dumps({**vgpu_raw(), "extra": 1}), ["SCHEMA"], ("extra",)),
        (
            json.dumps(vgpu_raw(framebuffer_max=128)),
            ["INIT_NOT_ALLOWED", "VERSION_VALUE_NOT_ALLOWED"],
            None,
        ),
    ],
)
def test_a_malformed_document_is_reported_with_its_path_and_the_rest_still_reports(
    tree: Path, text: str, codes: list[str], loc: tuple[object, ...] | None
) -> None:
    info = tree / TYPE / "migration_info.json"
    info.write_text(text)
    offer = KernelProvider.at(str(tree)).offer()
    assert sorted({p.code for p in offer.problems}) == codes
    for p in offer.problems:
        assert p.context["path"] == str(info) and p.message.startswith(str(info))
        if loc is not None:
            assert p.loc == loc
    names = [d.implementation.name for d in offer.documents]
    assert names == ["kernel:acme_mdev/acme-vgpu-legacy", "acme-nicvf"]


def test_model_list_and_document_must_agree(tree: Path) -> None:
    models = tree / TYPE / "migration_device_models"
    models.write_text(f"{VGPU}\n")
    offer = KernelProvider.at(str(tree)).offer()
    assert [(p.code, p.context["path"]) for p in offer.problems] == [("SCHEMA", str(models))]
    assert "acme-vgpu" not in [d.implementation.name for d in offer.documents]


def test_a_published_document_may_not_claim_an_opaque_model(tree: Path) -> None:
    raw = vgpu_raw(lite=False)
    raw["models"][0]["model"] = "opaque:" + "0" * 64
    (tree / TYPE / "migration_info.json").write_text(json.dumps(raw))
    (tree / TYPE / "migration_device_models").write_text(raw["models"][0]["model"] + "\n")
    offer = KernelProvider.at(str(tree)).offer()
    assert [(p.code, p.loc) for p in offer.problems] == [("SCHEMA", ("models", 0, "model"))]


def test_a_vf_without_attributes_is_opaque_and_plain_vfio_pci_is_ignored(tree: Path) -> None:
    vf = tree / "devices" / "pci0000:00" / "0000:00:03.0" / VF1
    (vf / "migration_info.json").unlink()
    (vf / "migration_device_models").unlink()
    docs = KernelProvider.at(str(tree)).offer().documents
    names = [d.implementation.name for d in docs]
    assert names == [
        "acme-vgpu",
        "kernel:acme_mdev/acme-vgpu-legacy",
        "kernel:acme_vfio_pci/15b3:101e",
        "acme-nicvf",
    ]
    assert docs[2].models[0].model.startswith("opaque:")
    assert is_variant_driver("mlx5_vfio_pci") and is_variant_driver("hisi-acc-vfio-pci")
    assert not is_variant_driver("vfio-pci") and not is_variant_driver("vfio_pci")
    assert not is_variant_driver("pcieport")


def test_two_sites_with_different_documents_for_one_release_conflict(tree: Path) -> None:
    vf2 = tree / "devices" / "pci0000:00" / "0000:00:03.0" / "0000:01:00.3" / "migration_info.json"
    raw = json.loads(vf2.read_text())
    raw["models"][0]["description"] = "changed"
    vf2.write_text(json.dumps(raw))
    offer = KernelProvider.at(str(tree)).offer()
    assert [(p.code, p.context["path"]) for p in offer.problems] == [
        ("PROVIDER_CONFLICT", str(vf2.parent))
    ]
    assert offer.capacity["acme-nicvf 2.0.0"] == 1


def test_the_host_report_is_the_union_with_the_sdk_provider(tree: Path) -> None:
    catalog = merge_offers(
        "host-k", [SdkProvider.from_releases().offer(), KernelProvider.at(str(tree)).offer()]
    )
    assert catalog.conflicts == ()
    report = load_host_report(json.dumps(catalog.report.to_json()))
    assert NICVF in {m.model for d in report.implementations for m in d.models}
    assert catalog.carriers()["acme-vgpu 5.1.0"] == "vmm"
    assert catalog.carriers()["acme-nic 3.0.0"] == "agent"


def test_disk_files_map_errors_once(tree: Path) -> None:
    files = DiskSysfs(tree)
    with pytest.raises(Exception) as e:
        files.read("no/such/file")
    assert type(e.value).__name__ == "SysfsError" and e.value.name == "ENOENT"  # type: ignore[attr-defined]
    assert files.realpath(f"class/mdev_bus/{PARENT}") == f"devices/pci0000:00/{PARENT}"
    assert files.describe("class") == str(tree / "class")
