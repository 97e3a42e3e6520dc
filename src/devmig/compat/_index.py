"""The fleet index: what placement precomputes once per snapshot.

Theory of operation: a device's verdict on a profile depends only on the
profile's definitions of the device's model (DESIGN §3: some candidate that
accepts, rules 2-6). Profiles built from the same releases share definitions,
so the index interns every distinct :class:`~devmig.model.DeviceModel` by
content and records, per definition, the profiles that offer it as a
candidate. A question about a device is then answered by checking each
distinct definition once (the compiled fast path of the pairwise check) and
marking its profiles — never by looping over hosts.

Hosts are kept as arrays in *rank order*, computed once: fewest spare
capabilities of the profile first (the number of published ``(model,
version)`` configurations it accepts, over every version any profile
publishes, so rich hosts stay free), then load, then name. Placing a VM is a
boolean mask over that order.

Per model, the distinct definitions are numbered and every question is answered
with Python integers as bitsets over them (:class:`ModelIndex`): per parameter
the distinct specifications, so the definitions allowing a value are found by
testing each distinct specification once (and remembered per value); the
definitions refusing an omitted parameter's off value; per distinct constraint
(with the off values it reads) the definitions that have it, so rule 4 is
evaluated once per distinct constraint; the off-value groups (rule 5, once per group
and source definition); the layout groups — definitions publishing the same
state layout with the same off values for the parameters it reads — for rule
6, decided once per group through the check's own evaluator
(:func:`~devmig.compat._layouts.layout_rule`). The accepting definitions then
map to a bitset over the profiles, and a VM's devices intersect those.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import xxhash

from devmig.compat._compiled import (
    CompiledModel,
    CondSpec,
    ParamSpec,
    compiled,
    off_mismatches,
)
from devmig.compat._layouts import layout_rule
from devmig.compat._profile import FleetSnapshot
from devmig.model import Config, DeviceModel, Value, layout_params

__all__ = ["Definition", "FleetIndex", "ModelIndex", "bits_to_mask", "fleet_index"]

BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.intp]


@dataclass(frozen=True, slots=True)
class Definition:
    """One distinct definition of a model in a fleet, compiled, with the profiles offering it.

    ``off_group`` numbers the distinct off-value maps of the model's
    definitions: rule 5 is decided once per group.
    """

    model: DeviceModel
    compiled: CompiledModel
    profiles: IntArray
    off_group: int


def model_key(model: DeviceModel) -> str:
    """Return a content key of a model definition (equal definitions, equal keys)."""
    return _json_key(model.model_dump(mode="json", by_alias=True, exclude_none=True))


def _json_key(data: Any) -> str:
    return xxhash.xxh3_128_hexdigest(json.dumps(data, sort_keys=True, separators=(",", ":")).encode("utf-8"))


Rule = tuple[tuple[CondSpec, ...], tuple[CondSpec, ...]]
"""One compiled constraint: ``(when conditions, require conditions)``."""

_OFF: Any = object()  # a parameter the configuration omits (its off value applies)
_VALUE_CACHE_LIMIT = 65536  # remembered (parameter, value) answers per model
_SOURCE_CACHE_LIMIT = 1024  # remembered source definitions (rule 5) per model


class ModelIndex:
    """One model's distinct definitions in a fleet, as bitsets (bit ``i``: ``definitions[i]``).

    Args:
        definitions: the model's distinct definitions.
    """

    def __init__(self, definitions: Sequence[Definition]) -> None:
        self.definitions = tuple(definitions)
        self.all = (1 << len(self.definitions)) - 1
        self.profile_bits: list[int] = []
        by_name: dict[str, dict[ParamSpec, int]] = {}
        refusals: dict[frozenset[str], int] = {}
        rules: dict[tuple[Rule, tuple[tuple[str, type, Value], ...]], int] = {}
        groups: dict[int, tuple[DeviceModel, int]] = {}
        layouts: dict[tuple[str, tuple[tuple[str, str, Value], ...]], tuple[DeviceModel, int]] = {}
        for i, d in enumerate(self.definitions):
            bit = 1 << i
            self.profile_bits.append(sum(1 << int(p) for p in d.profiles))
            cm = d.compiled
            for name, spec in cm.specs.items():
                specs = by_name.setdefault(name, {})
                specs[spec] = specs.get(spec, 0) | bit
            if cm.off_refused:
                refused = frozenset(cm.off_refused)
                refusals[refused] = refusals.get(refused, 0) | bit
            for k in cm.constraints:
                read = sorted({c[0] for c in (*k[0], *k[1])})
                ckey = (k, tuple((n, type(cm.off[n]), cm.off[n]) for n in read if n in cm.off))
                rules[ckey] = rules.get(ckey, 0) | bit
            rep, bits = groups.get(d.off_group, (d.model, 0))
            groups[d.off_group] = (rep, bits | bit)
            state = d.model.state
            if state is not None:
                offs = d.model.off_values
                lkey = (
                    _json_key(state.to_json()),
                    tuple((n, type(offs[n]).__name__, offs[n]) for n in sorted(layout_params(state))),
                )
                rep, bits = layouts.get(lkey, (d.model, 0))
                layouts[lkey] = (rep, bits | bit)
        self.specs: dict[str, tuple[tuple[ParamSpec, int], ...]] = {
            name: tuple(specs.items()) for name, specs in by_name.items()
        }
        self.refusals = tuple(refusals.items())
        self.constraints: tuple[tuple[Rule, dict[str, Value], int], ...] = tuple(
            (k, {n: v for n, _, v in offs}, bits) for (k, offs), bits in rules.items()
        )
        self.groups = tuple(groups.values())
        self.layouts = tuple(layouts.values())
        self._values: dict[tuple[str, type, Value], int] = {}
        self._sources: dict[int, tuple[DeviceModel, int]] = {}
        self._tables: list[dict[int, int]] = [{} for _ in range((len(self.definitions) + 7) // 8)]

    def allowing(self, name: str, value: Value) -> int:
        """Return the definitions that know parameter ``name`` and allow ``value`` (rule 2)."""
        key = (name, type(value), value)
        got = self._values.get(key)
        if got is None:
            got = 0
            t = type(value)
            for (st, vals, ranges), bits in self.specs.get(name, ()):
                if t is not st:
                    continue
                if vals is not None:
                    if value in vals:
                        got |= bits
                else:
                    for lo, hi, step in ranges:
                        if lo <= value <= hi and (value - lo) % step == 0:  # type: ignore[operator]
                            got |= bits
                            break
            if len(self._values) >= _VALUE_CACHE_LIMIT:
                self._values.clear()
            self._values[key] = got
        return got

    def same_off(self, source: DeviceModel) -> int:
        """Return the definitions whose off values agree with the source's (rule 5)."""
        entry = self._sources.get(id(source))
        if entry is not None and entry[0] is source:
            return entry[1]
        bits = 0
        for rep, group in self.groups:
            if not off_mismatches(source, rep):
                bits |= group
        if len(self._sources) >= _SOURCE_CACHE_LIMIT:
            self._sources.clear()
        self._sources[id(source)] = (source, bits)  # holds the source: its id stays unique
        return bits

    def accepting(self, source: DeviceModel, items: Sequence[tuple[str, Value]]) -> int:
        """Return the definitions accepting a device (rules 2-6), as a bitset."""
        m = self.same_off(source)
        allowing = self.allowing
        for name, value in items:
            if not m:
                return 0
            m &= allowing(name, value)
        if not m:
            return 0
        if self.refusals:
            names = frozenset(n for n, _ in items)
            for refused, bits in self.refusals:
                if m & bits and not refused <= names:
                    m &= ~bits
        if self.constraints:
            given = dict(items)
            get = given.get
            for (when, require), offs, bits in self.constraints:
                if not m & bits:
                    continue
                for cname, ct, cvals, clo, chi in when:
                    cv = get(cname, _OFF)
                    if cv is _OFF:
                        cv = offs.get(cname)
                    if ct is None:
                        if cvals is None or (type(cv), cv) not in cvals:
                            break
                    elif type(cv) is not ct or (
                        not (clo <= cv <= chi) if cvals is None else cv not in cvals  # type: ignore[operator]
                    ):
                        break
                else:
                    for cname, ct, cvals, clo, chi in require:
                        cv = get(cname, _OFF)
                        if cv is _OFF:
                            cv = offs.get(cname)
                        if ct is None:
                            if cvals is None or (type(cv), cv) not in cvals:
                                m &= ~bits
                                break
                        elif type(cv) is not ct or (
                            not (clo <= cv <= chi) if cvals is None else cv not in cvals  # type: ignore[operator]
                        ):
                            m &= ~bits
                            break
        if m and source.state is not None:
            for rep, bits in self.layouts:
                if m & bits:
                    rule = layout_rule(source, rep)
                    if rule is not None and not rule.agrees(items):
                        m &= ~bits
        return m

    def profiles_of(self, definitions: int) -> int:
        """Return the profiles offering some of ``definitions``, as a bitset over the profiles.

        Eight definitions at a time: the union for each value of a byte of the
        bitset is remembered (at most 256 per byte, filled on first use).
        """
        out = 0
        chunk = 0
        tables = self._tables
        while definitions:
            byte = definitions & 0xFF
            if byte:
                table = tables[chunk]
                got = table.get(byte)
                if got is None:
                    got = 0
                    pb = self.profile_bits
                    for j in range(8):
                        if byte >> j & 1:
                            got |= pb[chunk * 8 + j]
                    table[byte] = got
                out |= got
            definitions >>= 8
            chunk += 1
        return out


def bits_to_mask(bits: int, count: int) -> BoolArray:
    """Return a bitset over ``count`` items as a boolean array (bit ``i``: item ``i``)."""
    raw = np.frombuffer(bits.to_bytes((count + 7) // 8 or 1, "little"), dtype=np.uint8)
    return np.unpackbits(raw, count=count, bitorder="little").view(np.bool_)


@dataclass(frozen=True, slots=True)
class FleetIndex:
    """Precomputed answers about a snapshot, built by :func:`fleet_index`.

    Attributes:
        fingerprints: the profiles, in index order (sorted fingerprints).
        position: profile index by fingerprint.
        definitions: the distinct definitions of every model, by model id.
        models: the bitset index of every model, by model id.
        spare: per profile, its spare capabilities (see the module docstring).
        rank_names: host names in rank order.
        rank_profiles: per ranked host, its profile index.
        rank_available: per ranked host, reachable and not cordoned.
        rank_of: per host name, its position in rank order.
    """

    fingerprints: tuple[str, ...]
    position: dict[str, int]
    definitions: dict[str, tuple[Definition, ...]]
    models: dict[str, ModelIndex]
    spare: IntArray
    rank_names: npt.NDArray[np.object_]
    rank_profiles: IntArray
    rank_available: BoolArray
    rank_of: dict[str, int]

    @property
    def all_profiles(self) -> int:
        """Every profile, as a bitset."""
        return (1 << len(self.fingerprints)) - 1

    def accepting_bits(self, source: DeviceModel, items: Sequence[tuple[str, Value]]) -> int:
        """Return the profiles accepting a device (DESIGN §3 rules 1-6), as a bitset.

        Args:
            source: the source's definition of the model (rule 5).
            items: the canonical configuration's items.

        Returns:
            Bit ``i`` set when profile ``fingerprints[i]`` has some candidate
            with the source's off values that accepts the configuration.
        """
        mi = self.models.get(source.model)
        if mi is None:
            return 0
        return mi.profiles_of(mi.accepting(source, items))

    def accepting_profiles(self, source: DeviceModel, items: Sequence[tuple[str, Value]]) -> BoolArray:
        """Return, per profile, whether it accepts a device (see :meth:`accepting_bits`)."""
        return bits_to_mask(self.accepting_bits(source, items), len(self.fingerprints))


def fleet_index(snapshot: FleetSnapshot) -> FleetIndex:
    """Return the index of a snapshot, building it on first use (cached with the snapshot)."""
    cached = snapshot.cached("fleet-index")
    if isinstance(cached, FleetIndex):
        return cached
    return snapshot.remember("fleet-index", _build(snapshot))  # type: ignore[no-any-return]


def _build(snapshot: FleetSnapshot) -> FleetIndex:
    fingerprints = tuple(sorted(snapshot.profiles))
    position = {fp: i for i, fp in enumerate(fingerprints)}
    by_key: dict[str, tuple[DeviceModel, list[int]]] = {}
    ident: dict[int, str] = {}
    for i, fp in enumerate(fingerprints):
        for doc in snapshot.profiles[fp].implementations:
            for model in doc.models:
                key = ident.get(id(model))
                if key is None:
                    key = ident[id(model)] = model_key(model)
                entry = by_key.setdefault(key, (model, []))
                if not entry[1] or entry[1][-1] != i:
                    entry[1].append(i)
    definitions: dict[str, list[Definition]] = {}
    off_groups: dict[str, dict[tuple[tuple[str, str, Value], ...], int]] = {}
    for key in sorted(by_key):
        model, profiles = by_key[key]
        groups = off_groups.setdefault(model.model, {})
        off_key = tuple(sorted((n, type(v).__name__, v) for n, v in model.off_values.items()))
        group = groups.setdefault(off_key, len(groups))
        definitions.setdefault(model.model, []).append(
            Definition(model, compiled(model), np.array(profiles, dtype=np.intp), group)
        )
    defs = {k: tuple(v) for k, v in definitions.items()}
    models = {k: ModelIndex(v) for k, v in defs.items()}
    spare = _spare(defs, models, len(fingerprints))
    hosts = sorted(snapshot.hosts.values(), key=lambda h: (int(spare[position[h.fingerprint]]), h.load, h.name))
    rank_names = np.empty(len(hosts), dtype=object)
    # Copies of the names, allocated in rank order: placement copies runs of them into
    # lists, which is much faster when neighbours in rank order are neighbours in memory.
    rank_names[:] = [(h.name + " ")[:-1] for h in hosts]
    return FleetIndex(
        fingerprints,
        position,
        defs,
        models,
        spare,
        rank_names,
        np.array([position[h.fingerprint] for h in hosts], dtype=np.intp),
        np.array([h.available for h in hosts], dtype=np.bool_),
        {h.name: i for i, h in enumerate(hosts)},
    )


def published_configs(definitions: Sequence[DeviceModel]) -> list[tuple[DeviceModel, Config]]:
    """Return every distinct published ``(model, version)`` configuration, with its first publisher.

    Args:
        definitions: definitions of one or several models.

    Returns:
        ``(publishing definition, canonical configuration)`` pairs, one per
        distinct typed configuration per model, in the order first published.
    """
    seen: set[tuple[str, tuple[tuple[str, str, Value], ...]]] = set()
    out: list[tuple[DeviceModel, Config]] = []
    for model in definitions:
        for version in model.versions:
            config = Config(model.model, model.canonical_items(model.version_values(version)))
            key = config.typed_key()
            if key not in seen:
                seen.add(key)
                out.append((model, config))
    return out


def _spare(
    definitions: dict[str, tuple[Definition, ...]], models: dict[str, ModelIndex], count: int
) -> IntArray:
    """Count, per profile, the published configurations it accepts (rules 1-6)."""
    spare = np.zeros(count, dtype=np.intp)
    for model_id, defs in definitions.items():
        mi = models[model_id]
        for source, config in published_configs([d.model for d in defs]):
            spare += bits_to_mask(mi.profiles_of(mi.accepting(source, config.items)), count)
    return spare
