"""The manager's questions answered from an inventory snapshot, and its request shapes.

Each answer takes the inventory's plain snapshot (:class:`InventorySnapshot`),
turns it into the core's :class:`~devmig.compat.FleetSnapshot` once, and asks
the sans-IO algorithms of :mod:`devmig.compat` — placement, baseline,
rollback set, upgrade plan. Everything returned is JSON data (the HTTP
bodies); everything raised is a :class:`DevmigError` with a code the
manager's problem table maps to a status.

A host that has never reported has no profile: the algorithms cannot see it.
Placement lists it as rejected with ``HOST_NOT_REPORTED``; a pool question
about a pool with such a member refuses with the same code.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from devmig._errors import ConfigError, DevmigError, Problem
from devmig._examples import list_examples, load_example
from devmig.compat import (
    DeviceRequest,
    FleetSnapshot,
    HostState,
    NewDevice,
    Profile,
    RunningDevice,
    baseline,
    place,
    plan_upgrade,
    release_key,
    rollback_set,
)
from devmig.inventory import (
    DeviceRecord,
    HostView,
    Inventory,
    InventorySnapshot,
)
from devmig.model import DeviceModel, ModelDocument, load_document, parse_canonical
from devmig.orchestration._journal_phases import MIGRATIONS
from devmig.orchestration._migration_records import Created, lineage

__all__ = [
    "SHORT_NAMES",
    "NewRef",
    "PlaceRequest",
    "RunningRef",
    "UpgradeRequest",
    "answer_baseline",
    "answer_place",
    "answer_plan_upgrade",
    "answer_rollback_set",
    "catalogue_of",
    "device_history",
    "fleet_of",
    "host_dict",
    "manager_error",
    "profile_docs",
    "running_device",
]

SHORT_NAMES = {"nic": "acme-nic", "blk": "acme-blk", "accel": "acme-accel"}
"""Short implementation names accepted in ``to`` (``nic=3.0.0``)."""


def manager_error(code: str, loc: tuple[str | int, ...], message: str, *, value: object = None,
                  allowed: object = None, hint: str | None = None) -> DevmigError:
    """Build the :class:`DevmigError` of one manager problem.

    Codes: ``HOST_NOT_REPORTED``, ``DEVICE_NOT_FOUND``, ``DEVICE_INVALID``,
    ``RELEASE_UNKNOWN``, ``REQUEST_INVALID`` (plus the inventory's and the agents').
    """
    return DevmigError.of(code, message, loc=loc, value=value, allowed=allowed, hint=hint)


# -- request bodies ------------------------------------------------------------------------


class RunningRef(BaseModel):
    """A running device, named ``HOST/ID``."""

    model_config = ConfigDict(extra="forbid")

    device: str = Field(min_length=3, description="HOST/ID of a device the inventory lists.")


class NewRef(BaseModel):
    """A device to create: a model id and an option string."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, max_length=256)
    config: str = Field("", max_length=65536, description="An option string (version=3,rss=on); empty: init values.")


class PlaceRequest(BaseModel):
    """A VM: the devices that must all be accepted by one destination."""

    model_config = ConfigDict(extra="forbid")

    vm: list[RunningRef | NewRef] = Field(min_length=1, max_length=64)


class UpgradeRequest(BaseModel):
    """Target releases: shipped examples by ``implementation → release``, or whole documents."""

    model_config = ConfigDict(extra="forbid")

    to: dict[str, str] = Field(default_factory=dict, description='e.g. {"acme-nic": "3.0.0"} or {"nic": "3.0.0"}.')
    documents: list[dict[str, Any]] = Field(default_factory=list, description="Model documents (JSON).")


# -- snapshot → core ---------------------------------------------------------------------


def releases_of(docs: Sequence[ModelDocument]) -> dict[str, str]:
    """Return ``{implementation: release}`` of a profile's documents."""
    return {d.implementation.name: d.implementation.release for d in docs}


def host_dict(view: HostView, docs: Sequence[ModelDocument] | None) -> dict[str, Any]:
    """Return one host as the API lists it."""
    return {
        "name": view.name,
        "url": view.url,
        "fingerprint": view.fingerprint,
        "profile": view.fingerprint[:12] if view.fingerprint else None,
        "releases": releases_of(docs or ()),
        "reachable": view.reachable,
        "cordoned": view.cordoned,
        "missed_polls": view.missed_polls,
        "last_seen": view.last_seen.isoformat() if view.last_seen else None,
        "devices": view.device_count,
        "load": view.load,
        "pools": list(view.pools),
    }


def fleet_of(snap: InventorySnapshot) -> FleetSnapshot:
    """Return the core's fleet snapshot of the hosts that have reported (the others are left out)."""
    hosts = [
        HostState(h.name, h.fingerprint, cordoned=h.cordoned, reachable=h.reachable, load=h.load,
                  pools=frozenset(h.pools))
        for h in snap.hosts if h.fingerprint is not None
    ]
    return FleetSnapshot.from_documents(snap.profiles, hosts)


def _profile_dict(fleet: FleetSnapshot, fingerprint: str) -> dict[str, Any]:
    profile = fleet.profiles[fingerprint]
    return {"fingerprint": fingerprint, "profile": profile.short,
            "releases": releases_of(profile.implementations)}


def _source_model(fleet: FleetSnapshot, host: str, record: DeviceRecord) -> tuple[DeviceModel, Any]:
    """The definition a device runs on (the candidate that takes its configuration) and that configuration."""
    problems: list[Problem] = []
    for _impl, model in fleet.profile_of(host).candidates(record.model):
        try:
            return model, parse_canonical(model, record.config)
        except ConfigError as exc:
            problems += exc.problems
    raise DevmigError(problems or [Problem(
        "DEVICE_INVALID", ("device", "model"),
        f"host {host} reports no definition of model {record.model} its device {record.id} runs on",
        value=record.model)])


def running_device(inventory: Inventory, fleet: FleetSnapshot, ref: str) -> tuple[str, str, RunningDevice]:
    """Return ``(host, id, device)`` of a running device named ``HOST/ID``.

    Raises:
        DevmigError: ``REQUEST_INVALID`` for a malformed name, ``HOST_UNKNOWN``,
            ``HOST_NOT_REPORTED``, ``DEVICE_NOT_FOUND``.
    """
    host, _, device_id = ref.partition("/")
    if not host or not device_id:
        raise manager_error("REQUEST_INVALID", ("device",), f"a device is HOST/ID, not {ref!r}", value=ref)
    records = {d.id: d for d in inventory.list_devices(host)}  # HOST_UNKNOWN when unknown
    if host not in fleet.hosts:
        raise manager_error("HOST_NOT_REPORTED", ("device",), f"host {host} has not reported yet", value=host,
                            hint="poll it (devmig hosts poll)")
    record = records.get(device_id)
    if record is None:
        raise manager_error("DEVICE_NOT_FOUND", ("device",), f"host {host} lists no device {device_id}",
                            value=ref, allowed=sorted(records))
    model, config = _source_model(fleet, host, record)
    return host, device_id, RunningDevice(record.model, config, model, current_host=host)


def _not_reported(snap: InventorySnapshot) -> list[str]:
    return [h.name for h in snap.hosts if h.fingerprint is None]


# -- answers -----------------------------------------------------------------------------


def answer_place(inventory: Inventory, snap: InventorySnapshot, body: PlaceRequest) -> dict[str, Any]:
    """Place a VM: accepted hosts ranked, rejected hosts with reasons, and verdicts per profile."""
    fleet = fleet_of(snap)
    vm: list[DeviceRequest] = []
    for ref in body.vm:
        if isinstance(ref, RunningRef):
            vm.append(running_device(inventory, fleet, ref.device)[2])
        else:
            vm.append(NewDevice(ref.model, ref.config))
    placement = place(fleet, vm)
    rejected = {h: [p.to_dict() for p in ps] for h, ps in placement.rejected.items()}
    for name in _not_reported(snap):
        rejected[name] = [Problem("HOST_NOT_REPORTED", ("host",), f"host {name} has not reported yet",
                                  value=name, hint="the manager polls it; or devmig hosts poll").to_dict()]
    by_fp: dict[str, list[str]] = {}
    for state in fleet.hosts.values():
        by_fp.setdefault(state.fingerprint, []).append(state.name)
    profiles = []
    for fp in sorted(by_fp):
        entry = _profile_dict(fleet, fp)
        ok = placement.profile_accepts(fp)
        entry.update(hosts=sorted(by_fp[fp]), accepted=ok, reasons=[])
        if not ok:
            entry["reasons"] = [
                {**p.to_dict(), "loc": ["devices", i, *p.loc]}
                for i, verdict in enumerate(placement.by_profile[fp]) for p in verdict.reasons
            ]
        profiles.append(entry)
    accepted = [
        {"host": h, "load": fleet.hosts[h].load, **_profile_dict(fleet, fleet.hosts[h].fingerprint)}
        for h in placement.accepted
    ]
    return {"accepted": accepted, "rejected": dict(sorted(rejected.items())), "profiles": profiles}


def _pool_members(inventory: Inventory, snap: InventorySnapshot, pool: str) -> list[str]:
    pools = inventory.list_pools()
    if pool not in pools:
        raise DevmigError([Problem("POOL_UNKNOWN", ("pool",), f"no pool {pool!r}", value=pool,
                                   allowed=sorted(pools))])
    members = pools[pool]
    missing = sorted(set(members) & set(_not_reported(snap)))
    if missing:
        raise manager_error("HOST_NOT_REPORTED", ("pool", pool), f"pool {pool} has hosts that never reported: "
                            + ", ".join(missing), value=missing, hint="poll them, or take them out of the pool")
    return members


def answer_baseline(inventory: Inventory, snap: InventorySnapshot, pool: str, model: str) -> dict[str, Any]:
    """The newest version and richest configuration every member of ``pool`` accepts for ``model``."""
    members = _pool_members(inventory, snap, pool)
    result = baseline(fleet_of(snap), members, model)
    out: dict[str, Any] = {"pool": pool, "hosts": members, **result.to_dict()}
    ref = result.reference
    out["reference"] = None
    if ref is not None:
        for profile in fleet_of(snap).profiles.values():
            for impl, m in profile.candidates(model):
                if m is ref or m == ref:
                    out["reference"] = {"name": impl.name, "release": impl.release}
                    break
            if out["reference"] is not None:
                break
    return out


def catalogue_of(fleet: FleetSnapshot) -> list[ModelDocument]:
    """Every known release (shipped examples and the fleet's), each implementation's oldest first."""
    docs: dict[tuple[str, str], ModelDocument] = {}
    for ex in list_examples():
        if not ex.broken:
            docs.setdefault((ex.implementation, ex.release), load_example(ex.name))
    for profile in fleet.profiles.values():
        for d in profile.implementations:
            docs.setdefault((d.implementation.name, d.implementation.release), d)
    return [docs[k] for k in sorted(docs, key=lambda k: (k[0], release_key(k[1])))]


def device_history(inventory: Inventory, fleet: FleetSnapshot, host: str, device_id: str,
                   created: Created | None = None) -> tuple[list[Profile], list[dict[str, Any]]]:
    """The profiles a device ran on before, from the manager's migration journal.

    Each migration that brought the device where it runs names the host it ran on before and
    when; the host's profile history (``Inventory.history``) says which profile that host ran
    then. A profile no host runs any more is rebuilt from its stored documents.

    Args:
        created: the journal's :func:`created_devices` index (read from ``inventory`` when not
            given; the matrix builds it once for every device).

    Returns:
        The profiles (most recent first, as found) and the history as the API shows it:
        ``[{"migration", "host", "device", "profile"}]`` (``profile`` ``None`` when unknown).
    """
    hops = lineage(inventory.journal(MIGRATIONS).list() if created is None else created, host, device_id)
    profiles: list[Profile] = []
    shown: list[dict[str, Any]] = []
    for hop in hops:
        fingerprint = None
        try:
            stretches = inventory.history(hop.host)
        except DevmigError:  # the host was removed since
            stretches = []
        for stretch in stretches:  # oldest first: the last one that had begun by then
            if stretch.first_seen <= hop.at or fingerprint is None:
                fingerprint = stretch.fingerprint
        profile = fleet.profiles.get(fingerprint) if fingerprint else None
        if profile is None and fingerprint:
            docs = inventory.profile(fingerprint)
            profile = Profile.of(docs) if docs else None
        if profile is not None:
            profiles.append(profile)
        shown.append({"migration": hop.migration, "host": hop.host, "device": f"{hop.host}/{hop.device_id}",
                      "profile": profile.short if profile is not None else None})
    return profiles, shown


def answer_rollback_set(inventory: Inventory, snap: InventorySnapshot, host: str, device_id: str,
                        window: int) -> dict[str, Any]:
    """The hosts a device can move to and return from: to its current profile, to every profile it
    ran on before (the migration journal), and ``window`` releases back of each."""
    fleet = fleet_of(snap)
    _, _, device = running_device(inventory, fleet, f"{host}/{device_id}")
    before, history = device_history(inventory, fleet, host, device_id)
    result = rollback_set(fleet, device, before, window=window, catalogue=catalogue_of(fleet) if window else ())
    return {
        "device": f"{host}/{device_id}",
        "model": device.model,
        "config": dict(device.config.items),
        "window": window,
        "history": history,
        "hosts": list(result.hosts),
        "one_way": {h: {fp: [p.to_dict() for p in ps] for fp, ps in by.items()} for h, by in result.one_way.items()},
        "rejected": {h: [p.to_dict() for p in ps] for h, ps in result.rejected.items()},
        "targets": [{"fingerprint": t.fingerprint, "profile": t.short, "releases": releases_of(t.implementations)}
                    for t in result.targets],
    }


def target_documents(body: UpgradeRequest) -> list[ModelDocument]:
    """The target releases of an upgrade request: shipped examples and given documents.

    Raises:
        DevmigError: ``RELEASE_UNKNOWN`` for a release with no shipped example;
            the document's problems for an invalid one; ``REQUEST_INVALID`` when empty.
    """
    docs: list[ModelDocument] = []
    known = [e.name for e in list_examples()]
    problems: list[Problem] = []
    for name, release in sorted(body.to.items()):
        full = f"{SHORT_NAMES.get(name, name)}/{release}"
        if full not in known:
            problems.append(Problem("RELEASE_UNKNOWN", ("to", name), f"no shipped document of {full}",
                                    value=full, allowed=known, hint="or send the document itself (--doc FILE)"))
            continue
        docs.append(load_example(full))
    for i, raw in enumerate(body.documents):
        try:
            docs.append(load_document(raw))
        except DevmigError as exc:
            problems += [Problem(p.code, ("documents", i, *p.loc), p.message, p.value, p.allowed, p.hint)
                         for p in exc.problems]
    if problems:
        raise DevmigError(problems)
    if not docs:
        raise manager_error("REQUEST_INVALID", ("to",), "no target release given",
                            hint='e.g. {"to": {"acme-nic": "3.0.0"}}')
    return docs


def answer_plan_upgrade(inventory: Inventory, snap: InventorySnapshot, pool: str,
                        body: UpgradeRequest) -> dict[str, Any]:
    """Each member's planned profile, devices stranded or one-way, and a safe order to upgrade hosts."""
    targets = target_documents(body)
    members = _pool_members(inventory, snap, pool)
    fleet = fleet_of(snap)
    running: dict[str, list[RunningDevice]] = {}
    ids: dict[str, list[str]] = {}
    listed = inventory.devices_by_host(members)  # one query for the pool
    for host in members:
        # a member removed since the pools were read: list_devices raises HOST_UNKNOWN, as it always did
        for record in listed[host] if host in listed else inventory.list_devices(host):
            if record.running:
                model, config = _source_model(fleet, host, record)
                running.setdefault(host, []).append(RunningDevice(record.model, config, model, current_host=host))
                ids.setdefault(host, []).append(record.id)
    plan = plan_upgrade(fleet, members, targets, running)

    def issue(i: Any) -> dict[str, Any]:
        return {"device": f"{i.host}/{ids[i.host][i.index]}", "model": i.device.model,
                "config": dict(i.device.config.items),
                "reasons": {fp: [p.to_dict() for p in ps] for fp, ps in i.reasons.items()}}

    return {
        "pool": pool,
        "to": [{"name": d.implementation.name, "release": d.implementation.release} for d in targets],
        "planned": {h: {"fingerprint": p.fingerprint, "profile": p.short, "releases": releases_of(p.implementations)}
                    for h, p in plan.planned.items()},
        "order": plan.order,
        "unchanged": plan.unchanged,
        "stranded": [issue(i) for i in plan.stranded],
        "one_way": [issue(i) for i in plan.one_way],
    }


def profile_docs(snap: InventorySnapshot, fingerprint: str | None) -> Sequence[ModelDocument] | None:
    """The documents of a profile in a snapshot (``None`` when unknown)."""
    if fingerprint is None:
        return None
    docs: Mapping[str, Sequence[ModelDocument]] = snap.profiles
    return docs.get(fingerprint)

