"""Rollback sets: the hosts a device can move to *and* come back from.

Theory of operation: a device on host H (definition S, configuration C) can
move to a host D when ``check(S, C, D)`` accepts, with implementation I; on D
it is then defined by I's definition of the model, S'. It can come back when
``check(S', C, T)`` accepts for every *return target* T: the profile it runs
on now, every profile it ran on before (its journal), and — with a window of
N — every profile obtained from those by replacing implementations with any
of their N previous releases from a release catalogue (the product of the
choices, so N releases back of every implementation at once, transitively).
Everything is decided per destination profile, then spread over hosts.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import product

from devmig._errors import Problem
from devmig.compat._check import check
from devmig.compat._index import fleet_index
from devmig.compat._placement import host_problems
from devmig.compat._profile import FleetSnapshot, Profile
from devmig.compat._requests import RunningDevice
from devmig.compat._verdict import Verdict
from devmig.model import DeviceModel, ModelDocument

__all__ = ["RollbackSet", "return_targets", "rollback_set"]


@dataclass(frozen=True, slots=True)
class ProfileAnswer:
    """One destination profile's answer: the move, and each return."""

    move: Verdict
    returns: dict[str, Verdict] = field(default_factory=dict)

    @property
    def round_trip(self) -> bool:
        """Whether the device can move there and return to every target."""
        return self.move.compatible and all(v.compatible for v in self.returns.values())


@dataclass(frozen=True, slots=True)
class RollbackSet:
    """Where a device can go and come back from.

    Attributes:
        hosts: hosts it can move to and return from, in placement rank order.
        one_way: hosts it can move to but not return from: per host, per
            return target fingerprint, the reasons of the refused return.
        rejected: hosts it cannot move to: their problems (``HOST_*``,
            ``SAME_HOST``) and the move's reasons.
        targets: the return targets (current profile, history, window).
        by_profile: per destination fingerprint, the move and return verdicts.
    """

    hosts: list[str]
    one_way: dict[str, dict[str, tuple[Problem, ...]]]
    rejected: dict[str, tuple[Problem, ...]]
    targets: tuple[Profile, ...]
    by_profile: dict[str, ProfileAnswer]


def _previous(catalogue: Sequence[ModelDocument], window: int) -> dict[tuple[str, str], list[ModelDocument]]:
    """Per ``(implementation, release)``, itself then its ``window`` previous releases, newest first."""
    by_impl: dict[str, list[ModelDocument]] = {}
    for doc in catalogue:
        by_impl.setdefault(doc.implementation.name, []).append(doc)
    out = {}
    for docs in by_impl.values():
        for i, doc in enumerate(docs):
            out[(doc.implementation.name, doc.implementation.release)] = docs[max(0, i - window) : i + 1][::-1]
    return out


def return_targets(
    bases: Iterable[Profile], window: int = 0, catalogue: Sequence[ModelDocument] = ()
) -> tuple[Profile, ...]:
    """Return the profiles a device must be able to return to.

    Args:
        bases: the current profile and every profile of the device's history.
        window: how many previous releases of each implementation to add.
        catalogue: the known releases, each implementation's oldest first
            (e.g. the shipped examples); an implementation absent from it
            has no previous release.

    Returns:
        The distinct targets (by fingerprint), bases first.
    """
    previous = _previous(catalogue, window) if window > 0 else {}
    out: dict[str, Profile] = {}
    for base in bases:
        out.setdefault(base.fingerprint, base)
        if not previous:
            continue
        choices = [
            previous.get((d.implementation.name, d.implementation.release), [d]) for d in base.implementations
        ]
        for combo in product(*choices):
            p = Profile.of(combo)
            out.setdefault(p.fingerprint, p)
    return tuple(out.values())


def _destination_model(profile: Profile, verdict: Verdict, model_id: str) -> DeviceModel | None:
    for impl, model in profile.candidates(model_id):
        if impl == verdict.implementation:
            return model
    return None


def rollback_set(
    snapshot: FleetSnapshot,
    device: RunningDevice,
    history_profiles: Sequence[str | Profile] = (),
    window: int = 0,
    catalogue: Sequence[ModelDocument] = (),
) -> RollbackSet:
    """Return the hosts a device can move to and come back from.

    Args:
        snapshot: the fleet.
        device: the running device (its ``current_host`` gives its current profile).
        history_profiles: the profiles it ran on before (fingerprints known to
            the snapshot, or profiles).
        window: add the previous ``window`` releases of each implementation of
            every target, from ``catalogue``.
        catalogue: the release catalogue (each implementation's releases oldest first).

    Returns:
        The :class:`RollbackSet`.

    Raises:
        KeyError: the current host or a history fingerprint is unknown.
    """
    bases = []
    if device.current_host is not None:
        bases.append(snapshot.profile_of(device.current_host))
    for h in history_profiles:
        bases.append(h if isinstance(h, Profile) else snapshot.profiles[h])
    targets = return_targets(bases, window, catalogue)
    answers: dict[str, ProfileAnswer] = {}
    for fp, profile in snapshot.profiles.items():
        move = check(device.source_model, device.config, profile.report())
        returns: dict[str, Verdict] = {}
        if move.compatible:
            model = _destination_model(profile, move, device.model)
            assert model is not None
            returns = {t.fingerprint: check(model, device.config, t.report()) for t in targets}
        answers[fp] = ProfileAnswer(move, returns)
    index = fleet_index(snapshot)
    sources = frozenset({device.current_host} if device.current_host else ())
    hosts: list[str] = []
    one_way: dict[str, dict[str, tuple[Problem, ...]]] = {}
    rejected: dict[str, tuple[Problem, ...]] = {}
    for name in sorted(snapshot.hosts, key=index.rank_of.__getitem__):
        state = snapshot.hosts[name]
        answer = answers[state.fingerprint]
        own = host_problems(state, sources)
        if own or not answer.move.compatible:
            reasons = answer.move.reasons
            if answer.move.codes == ["MODEL_UNKNOWN"]:
                reasons = check(device.source_model, device.config, snapshot.report_of(name)).reasons
            rejected[name] = own + reasons
        elif answer.round_trip:
            hosts.append(name)
        else:
            one_way[name] = {fp: v.reasons for fp, v in answer.returns.items() if not v.compatible}
    return RollbackSet(hosts, one_way, rejected, targets, answers)
