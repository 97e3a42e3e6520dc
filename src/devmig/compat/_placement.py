"""Placement: which hosts of a fleet accept every device of a VM (DESIGN §3).

Theory of operation: each device is resolved to a source definition and a
canonical configuration (a running device brings both; a new device is
expanded on the newest release in the fleet that defines its model, which is
then its source for rule 5). The fleet index (:mod:`devmig.compat._index`)
tells, per device, which *profiles* accept it, by checking each distinct
definition of the model once; the VM's answer is the intersection, spread over
the hosts in rank order with one boolean mask. The reasons of a rejection are
computed only when asked, once per profile and device, by the pairwise
:func:`~devmig.compat.check` itself — so they are the pairwise verdicts,
exactly, and a placement that nobody inspects costs nothing more.

A host is rejected with its own codes when it is cordoned (``HOST_CORDONED``),
unreachable (``HOST_UNREACHABLE``) or the host a device of the VM runs on now
(``SAME_HOST``: moving there is not a migration); those problems come first,
then every device's reasons, each ``loc`` prefixed with ``("devices", i)``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from devmig._errors import Problem
from devmig.compat._check import check
from devmig.compat._index import FleetIndex, bits_to_mask, fleet_index
from devmig.compat._profile import FleetSnapshot, HostState, newest_definition
from devmig.compat._requests import DeviceRequest, RunningDevice
from devmig.compat._verdict import Verdict
from devmig.model import Config, DeviceModel, expand

__all__ = ["HOST_CODES", "Placement", "host_problems", "place", "resolve"]

HOST_CODES = ("HOST_CORDONED", "HOST_UNREACHABLE", "SAME_HOST")


@dataclass(frozen=True, slots=True)
class Resolved:
    """A device request made concrete: source definition and canonical configuration.

    ``source`` is ``None`` when no profile of the fleet defines a new device's model.
    """

    model: str
    source: DeviceModel | None
    config: Config | None
    current_host: str | None


def resolve(snapshot: FleetSnapshot, device: DeviceRequest) -> Resolved:
    """Return the source definition and canonical configuration of a device request.

    Args:
        snapshot: the fleet (its newest release defining the model expands a new device).
        device: a running device, or a new device's model and option string.

    Returns:
        The resolved device.

    Raises:
        ConfigError: a new device's option string is refused by the newest
            definition of its model (every problem).
    """
    if isinstance(device, RunningDevice):
        return Resolved(device.model, device.source_model, device.config, device.current_host)
    cache = snapshot.cached("newest-definitions")
    if cache is None:
        cache = snapshot.remember("newest-definitions", {})
    if device.model not in cache:
        cache[device.model] = newest_definition(snapshot, device.model)
    newest = cache[device.model]
    if newest is None:
        return Resolved(device.model, None, None, None)
    model = newest[1]
    return Resolved(device.model, model, expand(model, device.config), None)


def host_problems(host: HostState, sources: frozenset[str]) -> tuple[Problem, ...]:
    """Return the problems of a host itself: cordoned, unreachable, or a source of the VM."""
    out = []
    if host.cordoned:
        out.append(
            Problem(
                "HOST_CORDONED",
                ("host",),
                f"host {host.name} is cordoned",
                value=host.name,
                hint="uncordon it to use it as a destination",
            )
        )
    if not host.reachable:
        out.append(
            Problem(
                "HOST_UNREACHABLE",
                ("host",),
                f"host {host.name} did not answer the last query",
                value=host.name,
                hint="check its agent; it is used again once it reports",
            )
        )
    if host.name in sources:
        out.append(
            Problem(
                "SAME_HOST",
                ("host",),
                f"a device of the VM runs on {host.name} now",
                value=host.name,
                hint="a destination is another host",
            )
        )
    return tuple(out)


def _unknown(model_id: str) -> Verdict:
    return Verdict(
        False,
        None,
        (
            Problem(
                "MODEL_UNKNOWN",
                ("model",),
                f"no release in the fleet defines model {model_id}",
                value=model_id,
                hint="no host can create it",
                context={"rule": 1},
            ),
        ),
    )


class _ByProfile(Mapping[str, tuple[Verdict, ...]]):
    """Per profile fingerprint, the pairwise verdict of each device (computed on demand)."""

    def __init__(self, snapshot: FleetSnapshot, devices: tuple[Resolved, ...]) -> None:
        self._snapshot = snapshot
        self._devices = devices
        self._done: dict[str, tuple[Verdict, ...]] = {}

    def __getitem__(self, fingerprint: str) -> tuple[Verdict, ...]:
        done = self._done.get(fingerprint)
        if done is None:
            report = self._snapshot.profiles[fingerprint].report()
            done = self._done[fingerprint] = tuple(
                _unknown(d.model) if d.source is None or d.config is None else check(d.source, d.config, report)
                for d in self._devices
            )
        return done

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._snapshot.profiles))

    def __len__(self) -> int:
        return len(self._snapshot.profiles)


class _Rejected(Mapping[str, tuple[Problem, ...]]):
    """Per rejected host, its problems then every device's reasons (computed on demand)."""

    def __init__(self, placement: Placement) -> None:
        self._placement = placement
        self._keys: list[str] | None = None

    def _names(self) -> list[str]:
        if self._keys is None:
            accepted = set(self._placement.accepted)
            self._keys = sorted(h for h in self._placement.snapshot.hosts if h not in accepted)
        return self._keys

    def __getitem__(self, host: str) -> tuple[Problem, ...]:
        p = self._placement
        state = p.snapshot.hosts[host]
        own = host_problems(state, p.sources)
        if not own and p.profile_accepts(state.fingerprint):
            raise KeyError(host)
        out = list(own)
        verdicts = p.by_profile[state.fingerprint]
        for i, (device, verdict) in enumerate(zip(p.devices, verdicts, strict=True)):
            reasons = verdict.reasons
            if verdict.codes == ["MODEL_UNKNOWN"] and device.source is not None and device.config is not None:
                reasons = check(device.source, device.config, p.snapshot.report_of(host)).reasons
            out += [replace(r, loc=("devices", i, *r.loc), context={**r.context, "device": i}) for r in reasons]
        return tuple(out)

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __len__(self) -> int:
        return len(self._names())

    def __contains__(self, host: object) -> bool:
        p = self._placement
        if not isinstance(host, str) or host not in p.snapshot.hosts:
            return False
        state = p.snapshot.hosts[host]
        return bool(host_problems(state, p.sources)) or not p.profile_accepts(state.fingerprint)


@dataclass(frozen=True, eq=False)
class Placement:
    """Where a VM can go: accepted hosts ranked, and every rejected host's reasons.

    Attributes:
        accepted: host names accepting every device, best first (fewest spare
            capabilities, then load, then name).
        accepted_profiles: fingerprints of the profiles accepting every device.
        snapshot: the fleet asked.
        devices: the VM's devices, resolved.
        sources: the hosts the VM's devices run on now (never destinations).
    """

    accepted: list[str]
    accepted_profiles: frozenset[str]
    snapshot: FleetSnapshot
    devices: tuple[Resolved, ...]
    sources: frozenset[str]
    _by_profile: _ByProfile = field(repr=False)

    @property
    def by_profile(self) -> Mapping[str, tuple[Verdict, ...]]:
        """Per profile fingerprint, the pairwise verdict of each device, in VM order."""
        return self._by_profile

    @property
    def rejected(self) -> Mapping[str, tuple[Problem, ...]]:
        """Per rejected host, its reasons: host problems first, then each device's reasons.

        Device reasons carry ``loc`` ``("devices", i, ...)`` and ``context["device"]``.
        """
        return _Rejected(self)

    def profile_accepts(self, fingerprint: str) -> bool:
        """Return whether a profile accepts every device of the VM."""
        return fingerprint in self.accepted_profiles

    def to_dict(self, *, limit: int | None = None) -> dict[str, object]:
        """Return the placement as JSON data; ``limit`` caps the rejected hosts listed."""
        rejected = self.rejected
        names = list(rejected)[:limit] if limit is not None else list(rejected)
        return {
            "accepted": list(self.accepted),
            "rejected": {h: [p.to_dict() for p in rejected[h]] for h in names},
            "rejected_count": len(rejected),
        }


def place(snapshot: FleetSnapshot, vm: Sequence[DeviceRequest]) -> Placement:
    """Return the hosts that accept every device of a VM, ranked, and why the others do not.

    Args:
        snapshot: the fleet.
        vm: the VM's devices: running devices (moving) and new devices (creating).

    Returns:
        The :class:`Placement`. A VM without devices is accepted by every
        available host that is not its source.

    Raises:
        ConfigError: a new device's option string is refused by the newest
            definition of its model.
    """
    index: FleetIndex = fleet_index(snapshot)
    devices = tuple(resolve(snapshot, d) for d in vm)
    bits = index.all_profiles
    for d in devices:
        if d.source is None or d.config is None:
            bits = 0
            break
        if bits:
            bits &= index.accepting_bits(d.source, d.config.items)
    ok = bits_to_mask(bits, len(index.fingerprints))
    mask = ok[index.rank_profiles]
    mask &= index.rank_available
    sources = frozenset(d.current_host for d in devices if d.current_host is not None)
    for host in sources:
        rank = index.rank_of.get(host)
        if rank is not None:
            mask[rank] = False
    accepted = index.rank_names[mask].tolist()
    fingerprints = index.fingerprints
    profiles = frozenset([fingerprints[i] for i in np.flatnonzero(ok).tolist()])
    return Placement(accepted, profiles, snapshot, devices, sources, _ByProfile(snapshot, devices))
