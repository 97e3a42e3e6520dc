"""Profiles, host states and fleet snapshots: the in-memory fleet the algorithms run on.

Theory of operation: hosts that run the same software publish the same
implementations, so a fleet of 100 000 hosts usually runs a few hundred
distinct *profiles*. A profile is identified by its **fingerprint**, the
xxh3-128 of the canonical JSON (``sort_keys``, compact separators) of its
model documents sorted by ``(name, release)`` — the host name is not part of
it. Every algorithm of this package (placement, baseline, rollback sets,
upgrade plans) evaluates profiles, not hosts, and only then spreads the answer
over the hosts that run each profile.

A :class:`FleetSnapshot` is what the inventory (``devmig.inventory``) loads: the
profiles by fingerprint and the hosts (:class:`HostState`). It is immutable;
indexes the algorithms need are built on first use and kept with it.
:class:`ProfileRegistry` turns raw host reports (as received) into hosts and
profiles, validating a report's documents only the first time their exact
content is seen.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import xxhash

from devmig._errors import DocumentError, Problem
from devmig.model import (
    HOST_REPORT_FORMAT,
    DeviceModel,
    HostReport,
    Implementation,
    ModelDocument,
    load_host_report,
)

__all__ = [
    "FleetSnapshot",
    "HostState",
    "Profile",
    "ProfileRegistry",
    "document_json",
    "fingerprint_of",
    "newest_definition",
    "profile_fingerprint",
    "profile_json",
    "release_key",
]


def _canonical_json(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":")).encode("utf-8")


def _sorted_docs(docs: Iterable[ModelDocument]) -> tuple[ModelDocument, ...]:
    return tuple(sorted(docs, key=lambda d: (d.implementation.name, d.implementation.release)))


def document_json(doc: ModelDocument) -> str:
    """Return the canonical JSON of one model document: its published form, keys sorted, compact."""
    return json.dumps(doc.to_json(), sort_keys=True, separators=(",", ":"))


def profile_json(
    report_or_docs: HostReport | Iterable[ModelDocument],
    *,
    render: Callable[[ModelDocument], str] = document_json,
) -> str:
    """Return the canonical JSON of a profile: what its fingerprint is the digest of.

    Args:
        report_or_docs: a host report (its host name is ignored) or its model
            documents, in any order.
        render: :func:`document_json`, or a cache of it (the same text, faster
            for documents seen before).

    Returns:
        The JSON list of the documents' canonical JSON, sorted by
        ``(implementation name, release)`` -- the same text as ``json.dumps``
        of the list with sorted keys and compact separators.
    """
    docs = report_or_docs.implementations if isinstance(report_or_docs, HostReport) else report_or_docs
    return "[" + ",".join(map(render, _sorted_docs(docs))) + "]"


def fingerprint_of(canonical: str) -> str:
    """Return the fingerprint of a profile's canonical JSON: its xxh3-128 hex digest (32 characters)."""
    return xxhash.xxh3_128_hexdigest(canonical.encode("utf-8"))


def profile_fingerprint(report_or_docs: HostReport | Iterable[ModelDocument]) -> str:
    """Return the fingerprint of a host's software: the same for every host running it.

    This is the one definition: ``fingerprint_of(profile_json(report_or_docs))``.
    The inventory stores a profile by it (with its :func:`profile_json`), and an
    agent's report ETag is it.

    Args:
        report_or_docs: a host report (its host name is ignored) or its model
            documents, in any order.

    Returns:
        The xxh3-128 hex digest (32 characters) of :func:`profile_json`.
    """
    return fingerprint_of(profile_json(report_or_docs))


def release_key(release: str) -> tuple[tuple[int, str], ...]:
    """Return a sort key for a release string: numeric parts compare as numbers.

    ``2.10.0`` sorts after ``2.9.1``; a non-numeric part (``rc1``, ``broken``)
    sorts before any number at its position. The compatibility check never
    looks at releases; only "the newest release defining a model" does.
    """
    return tuple((int(p), "") if p.isdigit() else (-1, p) for p in re.split(r"[.+-]", release))


@dataclass(frozen=True, eq=False)
class Profile:
    """The software of one or more hosts: their model documents, with a fingerprint.

    Build one with :meth:`of`. Equality is by fingerprint.

    Attributes:
        fingerprint: :func:`profile_fingerprint` of the documents.
        implementations: the documents, sorted by ``(name, release)``.
    """

    fingerprint: str
    implementations: tuple[ModelDocument, ...]

    @classmethod
    def of(cls, report_or_docs: HostReport | Iterable[ModelDocument]) -> Profile:
        """Return the profile of a host report (host name ignored) or of documents.

        Args:
            report_or_docs: a host report or model documents, in any order.

        Returns:
            The profile, documents sorted, fingerprint computed.
        """
        docs = report_or_docs.implementations if isinstance(report_or_docs, HostReport) else report_or_docs
        ordered = _sorted_docs(docs)
        return cls(profile_fingerprint(ordered), ordered)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Profile) and other.fingerprint == self.fingerprint

    def __hash__(self) -> int:
        return hash(self.fingerprint)

    @property
    def short(self) -> str:
        """The first 12 hex digits of the fingerprint (for people)."""
        return self.fingerprint[:12]

    def report(self, host: str | None = None) -> HostReport:
        """Return a host report of this profile's documents.

        Args:
            host: the host name; ``None`` for ``profile-<short fingerprint>``
                (the report then stands for every host of the profile).
        """
        if host is None:
            return self._report
        return HostReport(format=HOST_REPORT_FORMAT, host=host, implementations=self.implementations)

    @cached_property
    def _report(self) -> HostReport:
        return HostReport(
            format=HOST_REPORT_FORMAT, host=f"profile-{self.short}", implementations=self.implementations
        )

    def candidates(self, model_id: str) -> list[tuple[Implementation, DeviceModel]]:
        """Return every ``(implementation, model)`` of this profile supporting ``model_id``."""
        return self._report.candidates(model_id)

    def describe(self) -> str:
        """Return ``acme-blk 2.0.0, acme-nic 3.0.0`` (the implementations, sorted)."""
        return ", ".join(d.implementation.render() for d in self.implementations) or "(no implementation)"


@dataclass(frozen=True, slots=True)
class HostState:
    """One host of a fleet as the algorithms see it.

    Attributes:
        name: the host name (its identity: the name it reports).
        fingerprint: the fingerprint of the profile it runs.
        cordoned: an operator excluded it as a destination.
        reachable: its agent answered the last query.
        load: devices running on it plus migrations arriving (ranks placement).
        pools: the pools it belongs to.
    """

    name: str
    fingerprint: str
    cordoned: bool = False
    reachable: bool = True
    load: int = 0
    pools: frozenset[str] = frozenset()

    @property
    def available(self) -> bool:
        """Whether the host may receive a device (reachable and not cordoned)."""
        return self.reachable and not self.cordoned


@dataclass(frozen=True, eq=False)
class FleetSnapshot:
    """An immutable view of a fleet: profiles by fingerprint and hosts by name.

    Build one with :meth:`build` (which checks that every host's profile is
    known). Indexes for the algorithms are built on first use and cached with
    the snapshot, so a snapshot answers many questions cheaply.

    Attributes:
        profiles: every profile by fingerprint.
        hosts: every host by name.
    """

    profiles: Mapping[str, Profile]
    hosts: Mapping[str, HostState]
    _cache: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def build(cls, profiles: Iterable[Profile], hosts: Iterable[HostState]) -> FleetSnapshot:
        """Return a snapshot of ``profiles`` and ``hosts``.

        Raises:
            ValueError: a host names an unknown profile, or two hosts share a name.
        """
        by_fp = {p.fingerprint: p for p in profiles}
        by_name: dict[str, HostState] = {}
        for host in hosts:
            if host.fingerprint not in by_fp:
                raise ValueError(f"host {host.name!r} runs unknown profile {host.fingerprint}")
            if host.name in by_name:
                raise ValueError(f"host {host.name!r} is listed twice")
            by_name[host.name] = host
        return cls(by_fp, by_name)

    @classmethod
    def from_documents(
        cls, profiles: Mapping[str, Sequence[ModelDocument]], hosts: Iterable[HostState]
    ) -> FleetSnapshot:
        """Return a snapshot of stored profiles (fingerprint → documents) and hosts.

        This is how an inventory's snapshot (``devmig.inventory``) becomes a
        :class:`FleetSnapshot`: the stored fingerprints are trusted (they were
        computed by :func:`profile_fingerprint`'s rule when recorded).

        Raises:
            ValueError: a host names an unknown profile, or two hosts share a name.
        """
        return cls.build(
            (Profile(fp, _sorted_docs(docs)) for fp, docs in profiles.items()), hosts
        )

    @classmethod
    def of_reports(cls, reports: Iterable[HostReport]) -> FleetSnapshot:
        """Return a snapshot of validated host reports (every host available, no load)."""
        registry = ProfileRegistry()
        for report in reports:
            registry.register(report)
        return registry.snapshot()

    def profile_of(self, host: str) -> Profile:
        """Return the profile a host runs.

        Raises:
            KeyError: no such host.
        """
        return self.profiles[self.hosts[host].fingerprint]

    def report_of(self, host: str) -> HostReport:
        """Return the host report of a host (its profile's documents, its name)."""
        return self.profile_of(host).report(host)

    def hosts_in(self, pool: str) -> list[str]:
        """Return the names of the hosts of a pool, sorted."""
        return sorted(h.name for h in self.hosts.values() if pool in h.pools)

    def cached(self, key: str) -> Any:
        """Return an index cached with this snapshot, or ``None`` (for the algorithms)."""
        return self._cache.get(key)

    def remember(self, key: str, value: Any) -> Any:
        """Cache an index with this snapshot and return it (for the algorithms)."""
        self._cache[key] = value
        return value


def newest_definition(
    snapshot: FleetSnapshot | Iterable[Profile], model_id: str
) -> tuple[Implementation, DeviceModel] | None:
    """Return the newest release's definition of a model among a fleet's profiles.

    "Newest" is the largest :func:`release_key`, then the largest
    implementation name; among equal releases the first profile by
    fingerprint wins, so the answer is deterministic.

    Args:
        snapshot: a snapshot, or some profiles.
        model_id: the model id.

    Returns:
        ``(implementation, model)``, or ``None`` when no profile defines the model.
    """
    profiles = snapshot.profiles.values() if isinstance(snapshot, FleetSnapshot) else snapshot
    best: tuple[Any, Implementation, DeviceModel] | None = None
    for profile in sorted(profiles, key=lambda p: p.fingerprint):
        for impl, model in profile.candidates(model_id):
            key = (release_key(impl.release), impl.name)
            if best is None or key > best[0]:
                best = (key, impl, model)
    return None if best is None else (best[1], best[2])


class ProfileRegistry:
    """Turns host reports into hosts and shared profiles (registration).

    A report is fingerprinted from its *validated* documents; the raw
    documents are validated only the first time their exact content (the hash
    of their canonical JSON) is seen, so registering the thousandth host of a
    profile costs a JSON parse and a hash.
    """

    def __init__(self) -> None:
        self._profiles: dict[str, Profile] = {}
        self._by_raw: dict[str, str] = {}
        self._hosts: dict[str, HostState] = {}

    def register(
        self,
        report: HostReport | Mapping[str, Any] | str | bytes,
        *,
        cordoned: bool = False,
        reachable: bool = True,
        load: int = 0,
        pools: Iterable[str] = (),
    ) -> HostState:
        """Register (or re-register) one host from its report.

        Args:
            report: a validated host report, or its raw JSON (text or data).
            cordoned, reachable, load, pools: the host's state.

        Returns:
            The host's state (its fingerprint names a profile of the registry).

        Raises:
            DocumentError: the raw report is not a valid host report (every problem).
        """
        if isinstance(report, HostReport):
            profile = Profile.of(report)
            fingerprint = self._profiles.setdefault(profile.fingerprint, profile).fingerprint
            name = report.host
        else:
            data = json.loads(report) if isinstance(report, (str, bytes)) else report
            if not isinstance(data, Mapping) or not isinstance(data.get("host"), str):
                raise DocumentError(
                    [Problem("SCHEMA", ("host",), "a host report is an object with a host name")]
                )
            raw_key = xxhash.xxh3_128_hexdigest(
                _canonical_json({k: v for k, v in data.items() if k != "host"})
            )
            known = self._by_raw.get(raw_key)
            if known is None:
                profile = Profile.of(load_host_report(dict(data)))
                known = self._profiles.setdefault(profile.fingerprint, profile).fingerprint
                self._by_raw[raw_key] = known
            fingerprint = known
            name = data["host"]
        state = HostState(name, fingerprint, cordoned, reachable, load, frozenset(pools))
        self._hosts[name] = state
        return state

    def add_host(self, state: HostState) -> None:
        """Add a host whose profile is already registered (as loaded from an inventory).

        Raises:
            KeyError: its profile is unknown.
        """
        if state.fingerprint not in self._profiles:
            raise KeyError(state.fingerprint)
        self._hosts[state.name] = state

    def add_profile(self, profile: Profile) -> Profile:
        """Add a profile (or return the equal one already known)."""
        return self._profiles.setdefault(profile.fingerprint, profile)

    @property
    def profiles(self) -> Mapping[str, Profile]:
        """The profiles registered so far, by fingerprint."""
        return self._profiles

    def snapshot(self) -> FleetSnapshot:
        """Return a snapshot of every registered host and the profiles they run."""
        used = {h.fingerprint for h in self._hosts.values()}
        return FleetSnapshot.build(
            (p for fp, p in self._profiles.items() if fp in used), list(self._hosts.values())
        )


def sorted_docs(docs: Sequence[ModelDocument]) -> tuple[ModelDocument, ...]:
    """Return documents sorted by ``(implementation name, release)`` (profile order)."""
    return _sorted_docs(docs)
