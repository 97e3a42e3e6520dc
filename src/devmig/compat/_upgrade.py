"""Upgrade plans: upgrade a pool's hosts one at a time without stranding a device.

Theory of operation: each pool host's *planned* profile is its documents with
every implementation named by the target documents replaced by the target
release (an implementation a host lacks is not installed). Upgrading a host
is *drain, upgrade, return*: while it is upgraded, every device running on it
must be accepted by some other available host — in its planned profile if
that host was upgraded already, in its current profile otherwise (hosts
outside the pool keep theirs). Capacity is not modelled.

A device's fate depends only on which profiles accept it, so each device is
reduced to its *acceptance set* (profiles, by fingerprint, whose check
accepts it) and each host to a class: (current profile, planned profile,
available, the acceptance sets of its devices). Hosts of one class are
interchangeable, so the search state is the number of hosts upgraded per
class; a depth-first search over those states, remembering the states known
to be dead ends, finds an order whenever one exists.

Also reported, against the pool fully upgraded (others unchanged): devices
with no destination at all (*stranded*), and devices that can be placed but,
from every host accepting them, cannot return to the profile they run on now
(*one-way*).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from devmig._errors import Problem
from devmig.compat._check import check
from devmig.compat._profile import FleetSnapshot, Profile
from devmig.compat._requests import RunningDevice
from devmig.model import ModelDocument

__all__ = ["UpgradePlan", "plan_upgrade", "planned_profile"]


@dataclass(frozen=True, slots=True)
class DeviceIssue:
    """A running device the upgrade would leave without a destination or a way back.

    Attributes:
        host: where it runs.
        index: its position in that host's list of running devices.
        device: the device.
        reasons: per profile (fingerprint) that refuses it, the reasons.
    """

    host: str
    index: int
    device: RunningDevice
    reasons: dict[str, tuple[Problem, ...]]


@dataclass(frozen=True, slots=True)
class UpgradePlan:
    """How to upgrade a pool.

    Attributes:
        planned: per pool host, its planned profile.
        order: the hosts to upgrade, in order (hosts whose profile does not
            change are left out), or ``None`` when no order keeps every device
            placeable at every step.
        unchanged: pool hosts whose planned profile is their current one.
        stranded: devices no host accepts once the pool is upgraded.
        one_way: devices that can be placed but not return to their current profile.
    """

    planned: dict[str, Profile]
    order: list[str] | None
    unchanged: list[str]
    stranded: list[DeviceIssue]
    one_way: list[DeviceIssue]


def planned_profile(profile: Profile, target_docs: Sequence[ModelDocument]) -> Profile:
    """Return a profile with each implementation named in ``target_docs`` replaced by that release."""
    by_name = {d.implementation.name: d for d in target_docs}
    return Profile.of(by_name.get(d.implementation.name, d) for d in profile.implementations)


class _Acceptance:
    """Which profiles accept which device (memoized pairwise checks)."""

    def __init__(self, profiles: Mapping[str, Profile]) -> None:
        self.profiles = profiles
        self._memo: dict[tuple[int, str], bool] = {}

    def accepts(self, device: RunningDevice, fingerprint: str) -> bool:
        key = (id(device), fingerprint)
        done = self._memo.get(key)
        if done is None:
            report = self.profiles[fingerprint].report()
            done = self._memo[key] = check(device.source_model, device.config, report).compatible
        return done

    def accepting(self, device: RunningDevice) -> frozenset[str]:
        return frozenset(fp for fp in sorted(self.profiles) if self.accepts(device, fp))


def plan_upgrade(
    snapshot: FleetSnapshot,
    pool_hosts: Sequence[str],
    target_docs: Sequence[ModelDocument],
    running: Mapping[str, Sequence[RunningDevice]],
) -> UpgradePlan:
    """Plan the upgrade of a pool to target releases.

    Args:
        snapshot: the fleet.
        pool_hosts: the hosts to upgrade.
        target_docs: the target releases (each replaces the same implementation).
        running: per host, the devices running there (hosts outside the pool
            are ignored: their devices do not move).

    Returns:
        The :class:`UpgradePlan`.

    Raises:
        KeyError: a pool host is not in the snapshot.
    """
    pool = sorted(set(pool_hosts))
    planned = {h: planned_profile(snapshot.profile_of(h), target_docs) for h in pool}
    profiles: dict[str, Profile] = dict(snapshot.profiles)
    for p in planned.values():
        profiles.setdefault(p.fingerprint, p)
    acceptance = _Acceptance(profiles)
    hosts = snapshot.hosts
    changing = [h for h in pool if planned[h].fingerprint != hosts[h].fingerprint]
    unchanged = [h for h in pool if h not in set(changing)]

    # static destinations: available hosts whose profile does not change
    static: dict[str, int] = {}
    moving = set(changing)
    for name, state in hosts.items():
        if state.available and name not in moving:
            static[state.fingerprint] = static.get(state.fingerprint, 0) + 1
    classes: dict[tuple[str, str, bool, frozenset[frozenset[str]]], list[str]] = {}
    for h in changing:
        needs = frozenset(acceptance.accepting(d) for d in running.get(h, ()))
        key = (hosts[h].fingerprint, planned[h].fingerprint, hosts[h].available, needs)
        classes.setdefault(key, []).append(h)
    keys = sorted(classes, key=lambda k: (classes[k][0]))
    order = _search(keys, [len(classes[k]) for k in keys], static)
    plan_order = None
    if order is not None:
        taken = {k: 0 for k in keys}
        plan_order = []
        for i in order:
            k = keys[i]
            plan_order.append(classes[k][taken[k]])
            taken[k] += 1

    final: dict[str, str] = {}
    for name, state in hosts.items():
        final[name] = planned[name].fingerprint if name in planned else state.fingerprint
    stranded, one_way = [], []
    for h in pool:
        for i, device in enumerate(running.get(h, ())):
            destinations = sorted({final[n] for n in hosts if acceptance.accepts(device, final[n])})
            if not destinations:
                reasons = {
                    fp: check(device.source_model, device.config, profiles[fp].report()).reasons
                    for fp in sorted(set(final.values()))
                }
                stranded.append(DeviceIssue(h, i, device, reasons))
                continue
            home = profiles[hosts[h].fingerprint].report()
            back: dict[str, tuple[Problem, ...]] = {}
            for fp in destinations:
                verdict = check(device.source_model, device.config, profiles[fp].report())
                model = next(m for impl, m in profiles[fp].candidates(device.model) if impl == verdict.implementation)
                way = check(model, device.config, home)
                if way.compatible:
                    back = {}
                    break
                back[fp] = way.reasons
            if back:
                one_way.append(DeviceIssue(h, i, device, back))
    return UpgradePlan(planned, plan_order, unchanged, stranded, one_way)


def _search(
    keys: Sequence[tuple[str, str, bool, frozenset[frozenset[str]]]],
    sizes: Sequence[int],
    static: Mapping[str, int],
) -> list[int] | None:
    """Return an order of class indexes (one entry per host) upgrading everything, or ``None``."""
    dead: set[tuple[int, ...]] = set()
    total = sum(sizes)

    def count(state: tuple[int, ...], fp: str) -> int:
        n = static.get(fp, 0)
        for (old, new, available, _), size, done in zip(keys, sizes, state, strict=True):
            if available:
                n += (size - done) * (old == fp) + done * (new == fp)
        return n

    def feasible(state: tuple[int, ...], i: int) -> bool:
        old, _, available, needs = keys[i]
        for need in needs:
            if not any(count(state, fp) - (available and fp == old) > 0 for fp in need):
                return False
        return True

    path: list[int] = []

    def walk(state: tuple[int, ...]) -> bool:
        if len(path) == total:
            return True
        if state in dead:
            return False
        for i in range(len(keys)):
            if state[i] < sizes[i] and feasible(state, i):
                path.append(i)
                if walk((*state[:i], state[i] + 1, *state[i + 1 :])):
                    return True
                path.pop()
        dead.add(state)
        return False

    return list(path) if walk(tuple(0 for _ in keys)) else None
