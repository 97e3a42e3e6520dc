"""Hypothesis strategies and helpers for the fleet tests: random profiles, fleets and VMs.

Profiles are combinations of random documents (one random model, releases of
it mutated as in the release-diff tests) and the NIC example document, so
that fleets mix shared definitions, conflicting definitions and hosts that
lack a model.
"""

from __future__ import annotations

import copy
from typing import Any

from compat_fixtures import NIC_ID, nic
from compat_strategies import MODEL_ID, accepted_configs, load, mutated, raw_models
from hypothesis import strategies as st

from devmig.compat import FleetSnapshot, HostState, NewDevice, Profile, RunningDevice
from devmig.model import ModelDocument


@st.composite
def releases(draw: st.DrawFn, count: int = 3, least: int = 1) -> list[ModelDocument]:
    """A few releases of one random model: each a random mutation of the first (small domains)."""
    base = draw(raw_models(small=True, state=True))
    docs = [load(copy.deepcopy(base), "1.0.0")]
    for i in range(1, draw(st.integers(least, count))):
        raw = docs[0].models[0].model_dump(mode="json", by_alias=True, exclude_none=True)
        docs.append(load(draw(mutated(raw, small=True)), f"{i + 1}.0.0"))
    return docs


@st.composite
def fleets(draw: st.DrawFn, max_hosts: int = 8, least_releases: int = 1) -> FleetSnapshot:
    """A random fleet: 1-4 profiles over 1-``max_hosts`` hosts, some cordoned or unreachable."""
    docs = draw(releases(least=least_releases))
    nic_doc = nic()
    profiles = []
    least = 1 if least_releases > 1 else 0  # several releases: every profile runs one
    for _ in range(draw(st.integers(max(1, least_releases), 4))):
        chosen = draw(
            st.lists(st.sampled_from(docs), min_size=least, max_size=2, unique_by=lambda d: d.implementation.release)
        )
        if draw(st.booleans()):
            chosen.append(nic_doc)
        profiles.append(Profile.of(chosen))
    hosts = []
    for i in range(draw(st.integers(1, max_hosts))):
        profile = draw(st.sampled_from(profiles))
        hosts.append(
            HostState(
                f"h{i}",
                profile.fingerprint,
                cordoned=draw(st.integers(0, 5)) == 0,
                reachable=draw(st.integers(0, 5)) != 0,
                load=draw(st.integers(0, 3)),
            )
        )
    return FleetSnapshot.build(profiles, hosts)


def all_models(snapshot: FleetSnapshot) -> list[Any]:
    """Every model definition of a fleet, in a stable order."""
    out = []
    for fp in sorted(snapshot.profiles):
        for doc in snapshot.profiles[fp].implementations:
            out += list(doc.models)
    return out


@st.composite
def running_devices(draw: st.DrawFn, snapshot: FleetSnapshot) -> RunningDevice:
    """A device running on some definition of the fleet, with a configuration it accepts."""
    model = draw(st.sampled_from(all_models(snapshot)))
    config = draw(accepted_configs(model))
    host = draw(st.sampled_from([None, *sorted(snapshot.hosts)]))
    return RunningDevice(model.model, config, model, host)


@st.composite
def new_devices(draw: st.DrawFn, snapshot: FleetSnapshot) -> NewDevice:
    """A device to create: the init values or a version of the newest definition."""
    from devmig.compat import newest_definition

    model_id = draw(st.sampled_from(sorted({m.model for m in all_models(snapshot)})))
    newest = newest_definition(snapshot, model_id)
    assert newest is not None
    names = [v.name for v in newest[1].versions]
    config = draw(st.sampled_from(["", *(f"version={n}" for n in names)]))
    return NewDevice(model_id, config)


@st.composite
def vms(draw: st.DrawFn, snapshot: FleetSnapshot) -> list[RunningDevice | NewDevice]:
    """A VM of 0-3 devices, running or new."""
    out: list[RunningDevice | NewDevice] = []
    if not all_models(snapshot):
        return out
    for _ in range(draw(st.integers(0, 3))):
        if draw(st.booleans()):
            out.append(draw(running_devices(snapshot)))
        else:
            out.append(draw(new_devices(snapshot)))
    return out


__all__ = ["MODEL_ID", "NIC_ID", "fleets", "new_devices", "releases", "running_devices", "vms"]
