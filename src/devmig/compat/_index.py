"""The fleet index: what placement precomputes once per snapshot.

Theory of operation: a device's verdict on a profile depends only on the
profile's definitions of the device's model (DESIGN §3: some candidate that
accepts, rules 2-5). Profiles built from the same releases share definitions,
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
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import xxhash

from devmig.compat._compiled import CompiledModel, accepts, compiled, off_mismatches
from devmig.compat._profile import FleetSnapshot
from devmig.model import Config, DeviceModel, Value

__all__ = ["Definition", "FleetIndex", "fleet_index"]

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
    data = model.model_dump(mode="json", by_alias=True, exclude_none=True)
    return xxhash.xxh3_128_hexdigest(
        json.dumps(data, sort_keys=True, separators=(",", ":")).encode("utf-8")
    )


@dataclass(frozen=True, slots=True)
class FleetIndex:
    """Precomputed answers about a snapshot, built by :func:`fleet_index`.

    Attributes:
        fingerprints: the profiles, in index order (sorted fingerprints).
        position: profile index by fingerprint.
        definitions: the distinct definitions of every model, by model id.
        spare: per profile, its spare capabilities (see the module docstring).
        rank_names: host names in rank order.
        rank_profiles: per ranked host, its profile index.
        rank_available: per ranked host, reachable and not cordoned.
        rank_of: per host name, its position in rank order.
    """

    fingerprints: tuple[str, ...]
    position: dict[str, int]
    definitions: dict[str, tuple[Definition, ...]]
    spare: IntArray
    rank_names: npt.NDArray[np.object_]
    rank_profiles: IntArray
    rank_available: BoolArray
    rank_of: dict[str, int]

    def accepting_profiles(self, source: DeviceModel, items: Sequence[tuple[str, Value]]) -> BoolArray:
        """Return, per profile, whether it accepts a device (DESIGN §3 rules 1-5).

        Args:
            source: the source's definition of the model (rule 5).
            items: the canonical configuration's items.

        Returns:
            A boolean array over the profiles: some candidate has the source's
            off values and accepts the configuration.
        """
        ok = np.zeros(len(self.fingerprints), dtype=np.bool_)
        names = frozenset(n for n, _ in items)
        same_off: dict[int, bool] = {}
        for d in self.definitions.get(source.model, ()):
            same = same_off.get(d.off_group)
            if same is None:
                same = same_off[d.off_group] = not off_mismatches(source, d.model)
            if same and accepts(d.compiled, items, names):
                ok[d.profiles] = True
        return ok


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
    spare = _spare(defs, len(fingerprints))
    hosts = sorted(snapshot.hosts.values(), key=lambda h: (int(spare[position[h.fingerprint]]), h.load, h.name))
    rank_names = np.empty(len(hosts), dtype=object)
    rank_names[:] = [h.name for h in hosts]
    return FleetIndex(
        fingerprints,
        position,
        defs,
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


def _spare(definitions: dict[str, tuple[Definition, ...]], count: int) -> IntArray:
    """Count, per profile, the published configurations it accepts (rules 1-5)."""
    spare = np.zeros(count, dtype=np.intp)
    for defs in definitions.values():
        for source, config in published_configs([d.model for d in defs]):
            ok = np.zeros(count, dtype=np.bool_)
            items = config.items
            for d in defs:
                if not off_mismatches(source, d.model) and accepts(d.compiled, items):
                    ok[d.profiles] = True
            spare += ok
    return spare
