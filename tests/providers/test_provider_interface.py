"""The provider interface (DESIGN §9): the sdk provider, the union of offers, opaque identities."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from example_docs import host_report

from devmig import DevmigError
from devmig.compat import FleetSnapshot, RunningDevice, check, place
from devmig.devices import CATALOG
from devmig.model import HOST_REPORT_FORMAT, Config, HostReport, Implementation, expand
from devmig.providers import (
    CreateRequest,
    DeviceStatus,
    Offer,
    Provided,
    Provider,
    SdkDevice,
    SdkProvider,
    load_published,
    merge_offers,
    opaque_document,
    opaque_model_id,
)

NIC = "example.org/devices/nic"


def test_sdk_provider_offers_one_release_of_each_implementation() -> None:
    provider = SdkProvider.from_releases({"acme-nic": "2.0.0"})
    assert isinstance(provider, Provider)
    offer = provider.offer()
    assert {d.implementation.name for d in offer.documents} == set(CATALOG)
    assert offer.find(Implementation(name="acme-nic", release="2.0.0")) is not None
    assert {p.carrier for p in offer.provided} == {"agent"}
    assert offer.problems == ()


def test_sdk_provider_refuses_unknown_releases() -> None:
    with pytest.raises(DevmigError) as e:
        SdkProvider.from_releases({"acme-gpu": "1.0.0"})
    assert e.value.codes == ["RELEASE_UNKNOWN"]
    with pytest.raises(DevmigError) as e:
        SdkProvider.from_releases({"acme-nic": "9.9.9"})
    assert e.value.codes == ["RELEASE_UNKNOWN"]


def test_sdk_provider_creates_every_model_of_a_release_and_deletes(tmp_path: Path) -> None:
    provider = SdkProvider.from_releases()
    image = tmp_path / "blk.img"
    image.write_bytes(bytes(1 << 20))
    for doc in provider.offer().documents:
        for model in doc.models:
            config = expand(model, "")
            host = {"image": str(image)} if model.model == "example.org/devices/blk" else {}
            device = asyncio.run(provider.create(CreateRequest(doc.implementation, config, host)))
            assert isinstance(device, SdkDevice) and device.device is not None
            assert device.config == config and device.carrier == "agent"
            assert device.model == model
            assert provider.status(device) is DeviceStatus.RUNNING
            asyncio.run(provider.delete(device))
            assert provider.status(device) is DeviceStatus.LOST


def test_sdk_provider_create_reports_every_problem() -> None:
    provider = SdkProvider.from_releases({"acme-nic": "1.0.0"})
    impl = Implementation(name="acme-nic", release="1.0.0")
    v3 = (
        SdkProvider.from_releases()
        .device_class(Implementation(name="acme-nic", release="3.0.0"), NIC)
        .model()
    )
    config = expand(v3, "version=3")
    with pytest.raises(DevmigError) as e:
        asyncio.run(provider.create(CreateRequest(impl, config)))
    assert set(e.value.codes) <= {"PARAM_UNKNOWN", "VALUE_NOT_ALLOWED"} and len(e.value.codes) >= 1
    with pytest.raises(DevmigError) as e:
        asyncio.run(provider.create(CreateRequest(impl, Config("example.org/x"))))
    assert e.value.codes == ["MODEL_UNKNOWN"]
    with pytest.raises(DevmigError) as e:
        asyncio.run(
            provider.create(CreateRequest(Implementation(name="acme-nic", release="3.0.0"), config))
        )
    assert e.value.codes == ["MODEL_UNKNOWN"]


def _offer(provider: str, *docs: tuple[str, str], carrier: str = "agent") -> Offer:
    return Offer(provider, tuple(Provided(_doc(n, r), carrier, f"{provider}:{n}") for n, r in docs))  # type: ignore[arg-type]


def _doc(name: str, release: str):  # type: ignore[no-untyped-def]
    return opaque_document(name, release, opaque_model_id([name, release]), f"{name} {release}")


def test_union_of_offers_is_the_host_report() -> None:
    sdk = SdkProvider.from_releases().offer()
    kernel = _offer("kernel", ("kernel:i915/GVTg", "abc"), carrier="vmm")
    catalog = merge_offers("host-a", [sdk, kernel])
    assert catalog.report.host == "host-a"
    assert catalog.report.implementations == sdk.documents + kernel.documents
    HostReport.model_validate(json.loads(json.dumps(catalog.report.to_json())))
    impl = kernel.documents[0].implementation
    assert catalog.owner(impl) == "kernel" and catalog.carrier(impl) == "vmm"
    assert catalog.owner(sdk.documents[0].implementation) == "sdk"
    assert catalog.carriers()["kernel:i915/GVTg abc"] == "vmm"
    catalog.raise_for_conflicts()


def test_a_release_offered_by_two_providers_is_a_conflict() -> None:
    a = _offer("vfio-user", ("acme-x", "1.0"), ("acme-y", "1.0"))
    b = _offer("kernel", ("acme-x", "1.0"), carrier="vmm")
    catalog = merge_offers("h", [a, b])
    assert [p.code for p in catalog.conflicts] == ["PROVIDER_CONFLICT"]
    assert catalog.conflicts[0].allowed == ["kernel", "vfio-user"]
    assert [d.implementation.name for d in catalog.report.implementations] == ["acme-y"]
    assert catalog.owner(Implementation(name="acme-x", release="1.0")) is None
    with pytest.raises(DevmigError) as e:
        catalog.raise_for_conflicts()
    assert e.value.codes == ["PROVIDER_CONFLICT"]
    # the same provider publishing a release twice (two parents of one type) is no conflict
    same = merge_offers("h", [_offer("kernel", ("acme-x", "1.0"), ("acme-x", "1.0"))])
    assert same.conflicts == () and len(same.report.implementations) == 1


def test_opaque_identity_is_a_digest_of_its_parts() -> None:
    a = opaque_model_id(["i915", "i915-GVTg_V5_4", "vfio-pci", "ABC"])
    assert a.startswith("opaque:") and len(a) == len("opaque:") + 64
    assert a == opaque_model_id(["i915", "i915-GVTg_V5_4", "vfio-pci", "ABC"])
    assert a != opaque_model_id(["i915", "i915-GVTg_V5_4", "vfio-pci", "ABD"])
    assert opaque_model_id(["ab", "c"]) != opaque_model_id(["a", "bc"])


def test_published_documents_may_not_use_the_opaque_prefix() -> None:
    raw = {
        "format": "devmig/model-document/1",
        "implementation": {"name": "x", "release": "1"},
        "models": [{"model": "example.org/ok"}, {"model": "opaque:1234"}],
    }
    doc, problems = load_published(json.dumps(raw), "/sys/x/migration_info.json")
    assert doc is None
    assert [(p.code, p.loc) for p in problems] == [("SCHEMA", ("models", 1, "model"))]
    assert problems[0].context["path"] == "/sys/x/migration_info.json"
    doc, problems = load_published('{"format": 1', "/p")
    assert doc is None and [p.code for p in problems] == ["JSON_SYNTAX"]
    assert problems[0].message.startswith("/p: ")


def _opaque_host(host: str, name: str, parts: list[str]) -> HostReport:
    doc = opaque_document(name, "r", opaque_model_id(parts), "")
    return host_report(host, doc)


def test_an_opaque_device_moves_only_to_the_very_same_identity() -> None:
    same = _opaque_host("b", "kernel:i915/GVTg", ["i915", "GVTg", "vfio-pci", "S1"])
    other = _opaque_host("c", "kernel:i915/GVTg", ["i915", "GVTg", "vfio-pci", "S2"])
    source = same.implementations[0].models[0]
    config = expand(source, "")
    assert check(source, config, same).compatible
    verdict = check(source, config, other)
    assert not verdict.compatible and verdict.codes == ["NO_MIGRATION_INFO"]
    assert check(source, config, SdkProvider.from_releases().offer().documents[0]).codes == [
        "NO_MIGRATION_INFO"
    ]
    # a documented model still answers MODEL_UNKNOWN on a host of opaque devices
    nic = SdkProvider.from_releases().offer().documents[0].models[0]
    assert check(nic, expand(nic, ""), other).codes == ["MODEL_UNKNOWN"]
    # placement answers as the pairwise check
    snapshot = FleetSnapshot.of_reports([same, other])
    placement = place(snapshot, [RunningDevice(source.model, config, source)])
    assert list(placement.accepted) == ["b"]
    assert [p.code for p in placement.rejected["c"]] == ["NO_MIGRATION_INFO"]


def test_report_is_a_valid_host_report() -> None:
    catalog = merge_offers("h", [SdkProvider.from_releases().offer()])
    assert catalog.report.format == HOST_REPORT_FORMAT
