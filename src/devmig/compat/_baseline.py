"""Baseline of a pool: what a new device should be created with so it can move anywhere in it.

Theory of operation: the pool's members are evaluated per profile. The
*reference* is the newest release among the members that defines the model
(:func:`~devmig.compat.newest_definition`): a new device is created there, so
it is the source of rule 5 for every check, and its init values are where the
richest configuration heads.

(a) **Newest version**: every version any member publishes, newest first (the
reference's publication order, then older releases' order), excluding a
version that expands to different canonical configurations in two releases
(it does not name one configuration); the first whose configuration every
member accepts (:func:`~devmig.compat.check`), with a string that creates it
on the reference.

(b) **Richest configuration**: from (a) (or, when no version is accepted, the
all-off configuration if every member accepts it), repeatedly, for each
parameter of the reference in name order, move its value toward the
reference's init value as far as every member still accepts the whole
configuration (constraints included); stop when a full pass moves nothing.
A boolean or string parameter can only jump to its init value; an integer
tries the reference's allowed values between its value and the init value,
farthest first. Each move brings a value strictly closer to its init value,
so the loop ends, and the result is locally maximal: no single parameter can
move further toward its init value while every member accepts.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from devmig._errors import ConfigError, Problem
from devmig.compat._check import check
from devmig.compat._profile import FleetSnapshot, Profile, newest_definition
from devmig.model import (
    Config,
    DeviceModel,
    IntParam,
    Value,
    expand,
    format_options,
    same_value,
)

__all__ = ["Baseline", "baseline", "creation_string"]

_INT_TRIES = 100_000  # values tried per parameter per pass, at most


@dataclass(frozen=True, slots=True)
class Baseline:
    """What every member of a pool accepts, for one model.

    Attributes:
        model: the model id.
        reference: the definition new devices are created on (newest release
            among the members), or ``None`` when no member defines the model.
        version: the newest version every member accepts, or ``None``.
        version_config: its canonical configuration.
        version_string: an option string that creates it on the reference.
        richest: the richest configuration every member accepts (``None`` when
            nothing is accepted by all).
        richest_string: an option string that creates it on the reference.
        excluded_versions: versions left out because two releases expand them differently.
        refused: per version tried, the hosts that refuse it.
        blocking: when nothing is accepted by all: per host, why it refuses the
            least demanding configuration (the all-off one).
    """

    model: str
    reference: DeviceModel | None
    version: str | None = None
    version_config: Config | None = None
    version_string: str | None = None
    richest: Config | None = None
    richest_string: str | None = None
    excluded_versions: tuple[str, ...] = ()
    refused: dict[str, tuple[str, ...]] = field(default_factory=dict)
    blocking: dict[str, tuple[Problem, ...]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        """Return the baseline as JSON data."""
        return {
            "model": self.model,
            "version": self.version,
            "version_config": None if self.version_config is None else dict(self.version_config.items),
            "version_string": self.version_string,
            "richest": None if self.richest is None else dict(self.richest.items),
            "richest_string": self.richest_string,
            "excluded_versions": list(self.excluded_versions),
            "refused": {v: list(h) for v, h in self.refused.items()},
            "blocking": {h: [p.to_dict() for p in ps] for h, ps in self.blocking.items()},
        }


def creation_string(model: DeviceModel, config: Config) -> str | None:
    """Return an option string that creates exactly ``config`` on ``model``, or ``None``.

    The newest version that expands to it when there is one, else every
    parameter of ``model`` named explicitly (off values included, since
    omitted parameters take their init values on creation).
    """
    for version in reversed(model.versions):
        if Config(model.model, model.canonical_items(model.version_values(version))) == config:
            return f"version={version.name}"
    full = config.full(model)
    if set(full) != set(model.params):
        return None
    text = format_options(sorted(full.items()))
    try:
        created = expand(model, text)
    except ConfigError:  # a configuration the model refuses: no string creates it
        return None
    return text if created == config else None


class _Pool:
    """The members of a pool, by profile, with the checks memoized per configuration."""

    def __init__(self, snapshot: FleetSnapshot, hosts: Sequence[str], reference: DeviceModel) -> None:
        self.snapshot = snapshot
        self.hosts = sorted(set(hosts))
        self.reference = reference
        self.profiles: dict[str, Profile] = {}
        for h in self.hosts:
            p = snapshot.profile_of(h)
            self.profiles.setdefault(p.fingerprint, p)
        self._memo: dict[Config, bool] = {}

    def accepts(self, config: Config) -> bool:
        done = self._memo.get(config)
        if done is None:
            done = self._memo[config] = all(
                check(self.reference, config, p.report()).compatible for p in self.profiles.values()
            )
        return done

    def refusing(self, config: Config) -> tuple[str, ...]:
        bad = {fp for fp, p in self.profiles.items() if not check(self.reference, config, p.report()).compatible}
        return tuple(h for h in self.hosts if self.snapshot.hosts[h].fingerprint in bad)

    def reasons(self, config: Config) -> dict[str, tuple[Problem, ...]]:
        out = {}
        for h in self.refusing(config):
            out[h] = check(self.reference, config, self.snapshot.report_of(h)).reasons
        return out


def _versions(pool: _Pool, model_id: str) -> tuple[list[tuple[str, Config]], list[str]]:
    """Every version the members publish, newest first, and those excluded as redefined."""
    definitions: list[DeviceModel] = [pool.reference]
    for p in sorted(pool.profiles.values(), key=lambda p: p.fingerprint):
        for _, m in p.candidates(model_id):
            if all(m is not d for d in definitions):
                definitions.append(m)
    order: list[str] = []
    configs: dict[str, set[Config]] = {}
    for m in definitions:
        for v in reversed(m.versions):
            if v.name not in configs:
                order.append(v.name)
            configs.setdefault(v.name, set()).add(Config(m.model, m.canonical_items(m.version_values(v))))
    excluded = [n for n in order if len(configs[n]) > 1]
    return [(n, next(iter(configs[n]))) for n in order if len(configs[n]) == 1], excluded


def _toward(param: IntParam, current: int, target: int) -> Iterator[int]:
    """The reference's allowed values strictly between ``current`` and ``target`` (inclusive), farthest first."""
    lo, hi = (current + 1, target) if target > current else (target, current - 1)
    values: set[int] = set()
    for r in param.allowed:
        step = r.step or 1
        a, b = max(lo, r.min), min(hi, r.last)
        if a > b:
            continue
        first = r.min + -(-(a - r.min) // step) * step
        values.update(range(first, b + 1, step))
        if len(values) > _INT_TRIES:
            break
    yield from sorted(values, key=lambda v: abs(target - v))


def _moves(model: DeviceModel, name: str, current: Value) -> Iterator[Value]:
    param = model.params[name]
    target = param.init
    if same_value(current, target):
        return
    if isinstance(param, IntParam) and type(current) is int and type(target) is int:
        yield from _toward(param, current, target)
    else:
        yield target


def richest_from(pool: _Pool, start: Config) -> Config:
    """Move each parameter toward the reference's init value while every member accepts."""
    model = pool.reference
    full = start.full(model)
    moved = True
    while moved:
        moved = False
        for name in sorted(model.params):
            for value in _moves(model, name, full[name]):
                trial = dict(full)
                trial[name] = value
                config = Config(model.model, model.canonical_items(trial))
                if pool.accepts(config):
                    full = trial
                    moved = True
                    break
    return Config(model.model, model.canonical_items(full))


def baseline(snapshot: FleetSnapshot, pool_hosts: Sequence[str], model_id: str) -> Baseline:
    """Return the newest version and the richest configuration every pool member accepts.

    Args:
        snapshot: the fleet.
        pool_hosts: the pool's host names (their software counts; cordoned or
            unreachable members count like the others).
        model_id: the model id.

    Returns:
        The :class:`Baseline`; when nothing is accepted by all, ``blocking``
        says which hosts refuse and why. When no member defines the model,
        every member blocks with ``MODEL_UNKNOWN``.

    Raises:
        KeyError: a host of the pool is not in the snapshot.
    """
    members = [snapshot.hosts[h] for h in pool_hosts]
    newest = newest_definition([snapshot.profiles[h.fingerprint] for h in members], model_id)
    if newest is None:
        problem = Problem(
            "MODEL_UNKNOWN",
            ("model",),
            f"no member of the pool defines model {model_id}",
            value=model_id,
            context={"rule": 1},
        )
        return Baseline(model_id, None, blocking={h.name: (problem,) for h in members})
    reference = newest[1]
    pool = _Pool(snapshot, pool_hosts, reference)
    versions, excluded = _versions(pool, model_id)
    refused: dict[str, tuple[str, ...]] = {}
    chosen: tuple[str, Config] | None = None
    for name, config in versions:
        if pool.accepts(config):
            chosen = (name, config)
            break
        refused[name] = pool.refusing(config)
    empty = Config(model_id, ())
    start = chosen[1] if chosen is not None else (empty if pool.accepts(empty) else None)
    if start is None:
        return Baseline(
            model_id,
            reference,
            excluded_versions=tuple(excluded),
            refused=refused,
            blocking=pool.reasons(empty),
        )
    richest = richest_from(pool, start)
    return Baseline(
        model_id,
        reference,
        version=None if chosen is None else chosen[0],
        version_config=None if chosen is None else chosen[1],
        version_string=None if chosen is None else creation_string(reference, chosen[1]),
        richest=richest,
        richest_string=creation_string(reference, richest),
        excluded_versions=tuple(excluded),
        refused=refused,
    )
