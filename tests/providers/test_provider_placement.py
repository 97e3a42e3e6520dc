"""Placement over a fleet mixing sdk, vfio-user and kernel devices answers as the pairwise check.

Each host's report is the union of its providers' offers (``merge_offers``):
the sdk provider on some releases of the reference devices, a vfio-user
provider publishing a backend's document or an opaque backend, and the
kernel provider on a driver twin (an mdev type with attributes, an opaque
type, VFs). For every device of every host, the placement of that device
accepts exactly the hosts the pairwise check accepts, and rejects the others
with exactly the check's reasons (property test).
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kernel_trees import nicvf, vgpu

from devmig.compat import FleetSnapshot, RunningDevice, check, place
from devmig.devices import CATALOG, releases
from devmig.model import Config, DeviceModel, HostReport, ModelDocument, expand
from devmig.providers import (
    DriverTwin,
    KernelProvider,
    MdevParentSpec,
    MdevTypeSpec,
    Offer,
    Provided,
    SdkProvider,
    VfSpec,
    driver_twin,
    merge_offers,
    opaque_document,
    opaque_model_id,
)


def _renamed(doc: ModelDocument, name: str) -> ModelDocument:
    raw = doc.to_json()
    raw["implementation"]["name"] = name
    return ModelDocument.model_validate(raw)


# vfio-user backends: an SDK release served by `devmig vfio-user serve` under its own
# implementation name, and opaque backends (two programs: two identities)
BACKENDS: list[ModelDocument] = [
    _renamed(CATALOG["acme-accel"][i].document(), "acme-accel-vfio-user") for i in (1, 2)
] + [
    opaque_document(f"vfio-user:prog{i}", "1", opaque_model_id(["prog", str(i)]), "")
    for i in (1, 2)
]


@dataclass(frozen=True)
class HostPlan:
    sdk: dict[str, str]
    backend: int | None
    framebuffer_max: int
    queues_max: int
    nicvf_release: str
    srcversion: str


def _twin(plan: HostPlan) -> DriverTwin:
    return driver_twin(
        [MdevParentSpec("0000:00:02.0", "acme_mdev",
                        (MdevTypeSpec("acme-vgpu-2g", vgpu(framebuffer_max=plan.framebuffer_max)),
                         MdevTypeSpec("acme-vgpu-legacy", None)), srcversion=plan.srcversion)],
        [VfSpec("0000:01:00.2", "acme_vfio_pci", nicvf(plan.nicvf_release, queues_max=plan.queues_max))],
    )  # fmt: skip


def _report(name: str, plan: HostPlan) -> HostReport:
    offers = [
        SdkProvider.from_releases(plan.sdk).offer(),
        KernelProvider(_twin(plan).files).offer(),
    ]
    if plan.backend is not None:
        offers.append(Offer("vfio-user", (Provided(BACKENDS[plan.backend], "agent", "prog"),)))
    catalog = merge_offers(name, offers)
    assert catalog.problems == ()
    return catalog.report


host_plans = st.builds(
    HostPlan,
    sdk=st.fixed_dictionaries({name: st.sampled_from(releases(name)) for name in CATALOG}),
    backend=st.none() | st.integers(0, len(BACKENDS) - 1),
    framebuffer_max=st.sampled_from([1024, 2048]),
    queues_max=st.sampled_from([4, 16]),
    nicvf_release=st.sampled_from(["2.0.0", "2.1.0"]),
    srcversion=st.sampled_from(["AAAA", "BBBB"]),
)


def _configs(model: DeviceModel) -> list[Config]:
    out = [expand(model, ""), Config(model.model, ())]
    out += [expand(model, f"version={v.name}") for v in model.versions]
    return out


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plans=st.lists(host_plans, min_size=2, max_size=5), pick=st.randoms(use_true_random=False))
def test_placement_of_every_device_equals_the_pairwise_check(
    plans: list[HostPlan], pick: object
) -> None:
    reports = [_report(f"host-{i}", plan) for i, plan in enumerate(plans)]
    snapshot = FleetSnapshot.of_reports(reports)
    kinds: set[str] = set()
    for source in reports:
        for doc in source.implementations:
            for model in doc.models:
                kinds.add("opaque" if model.model.startswith("opaque:") else "documented")
                for config in _configs(model)[:3]:
                    if not check(model, config, model).compatible:
                        continue  # a configuration its own definition refuses runs nowhere
                    device = RunningDevice(model.model, config, model, source.host)
                    placement = place(snapshot, [device])
                    for target in reports:
                        if target.host == source.host:
                            assert target.host not in placement.accepted
                            continue
                        verdict = check(model, config, target)
                        assert (target.host in placement.accepted) is verdict.compatible, (
                            model.model,
                            config,
                            target.host,
                            verdict.codes,
                        )
                        if not verdict.compatible:
                            reasons = placement.rejected[target.host]
                            assert [(r.code, r.loc[2:]) for r in reasons] == [
                                (r.code, r.loc) for r in verdict.reasons
                            ]
    assert kinds == {"opaque", "documented"}


def test_an_opaque_kernel_type_moves_only_to_the_same_driver_build() -> None:
    plan = HostPlan({}, None, 2048, 16, "2.0.0", "AAAA")
    a, b, c = (
        _report(n, p)
        for n, p in [("a", plan), ("b", plan), ("c", HostPlan({}, 0, 2048, 16, "2.0.0", "BBBB"))]
    )
    legacy = next(
        d for d in a.implementations if d.implementation.name == "kernel:acme_mdev/acme-vgpu-legacy"
    )
    model = legacy.models[0]
    placement = place(
        FleetSnapshot.of_reports([a, b, c]),
        [RunningDevice(model.model, expand(model, ""), model, "a")],
    )
    assert placement.accepted == ["b"]
    assert [r.code for r in placement.rejected["c"]] == ["NO_MIGRATION_INFO"]
    vf = next(d for d in a.implementations if d.implementation.name == "acme-nicvf").models[0]
    assert check(vf, expand(vf, "version=2"), c).compatible  # a documented VF moves by its document
