"""The host report as the union of the providers' offers (DESIGN §9).

Each implementation release is published by one provider: a release two
providers offer is a ``PROVIDER_CONFLICT`` — neither publishes it, and an
agent whose settings name it twice refuses to start
(:meth:`HostCatalog.raise_for_conflicts`). The provider of the release the
check chose creates the device (:meth:`HostCatalog.owner`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from devmig._errors import DevmigError, Problem
from devmig.model import HOST_REPORT_FORMAT, HostReport, Implementation
from devmig.providers._interface import Carrier, Offer, Provided

__all__ = ["HostCatalog", "merge_offers"]


@dataclass(frozen=True, slots=True)
class HostCatalog:
    """The union of a host's offers.

    Attributes:
        report: the host report: every published document, in provider order.
        owners: implementation release → the name of the provider publishing it.
        provided: implementation release → what its provider publishes about it.
        problems: every offer's problems, then the conflicts.
    """

    report: HostReport
    owners: Mapping[Implementation, str] = field(default_factory=dict)
    provided: Mapping[Implementation, Provided] = field(default_factory=dict)
    problems: tuple[Problem, ...] = ()

    @property
    def conflicts(self) -> tuple[Problem, ...]:
        """The ``PROVIDER_CONFLICT`` problems."""
        return tuple(p for p in self.problems if p.code == "PROVIDER_CONFLICT")

    def raise_for_conflicts(self) -> None:
        """Raise when some release is offered by two providers.

        Raises:
            DevmigError: every ``PROVIDER_CONFLICT``.
        """
        if self.conflicts:
            raise DevmigError(self.conflicts)

    def owner(self, implementation: Implementation) -> str | None:
        """Return the provider publishing an implementation release (``None``: nobody)."""
        return self.owners.get(implementation)

    def carrier(self, implementation: Implementation) -> Carrier | None:
        """Return who carries the migration data of an implementation's devices."""
        p = self.provided.get(implementation)
        return p.carrier if p is not None else None

    def carriers(self) -> dict[str, Carrier]:
        """Return ``"name release"`` → carrier, for every published release (the report's companion)."""
        return {impl.render(): p.carrier for impl, p in self.provided.items()}


def merge_offers(host: str, offers: Iterable[Offer]) -> HostCatalog:
    """Merge the offers of a host's providers into its host report.

    Args:
        host: the host name of the report.
        offers: one offer per provider, in the order the agent's settings list them.

    Returns:
        The catalog; a release offered by two or more providers is in none
        of it, and a ``PROVIDER_CONFLICT`` names the providers and sources.
    """
    offers = list(offers)
    seen: dict[Implementation, list[tuple[str, Provided]]] = {}
    problems: list[Problem] = []
    for offer in offers:
        problems += offer.problems
        for p in offer.provided:
            seen.setdefault(p.implementation, []).append((offer.provider, p))
    owners: dict[Implementation, str] = {}
    provided: dict[Implementation, Provided] = {}
    for impl, by in seen.items():
        names = [name for name, _ in by]
        if len(set(names)) > 1:
            problems.append(
                Problem(
                    "PROVIDER_CONFLICT",
                    ("providers", impl.name, impl.release),
                    f"{impl.render()} is offered by {len(by)} providers: "
                    + ", ".join(f"{name} ({p.source or 'no source'})" for name, p in by),
                    value=impl.render(),
                    allowed=sorted(set(names)),
                    hint="each implementation release is published by one provider; "
                    "remove it from all but one of the agent's providers",
                )
            )
            continue
        owners[impl] = names[0]
        provided[impl] = by[0][1]
    report = HostReport(
        format=HOST_REPORT_FORMAT,
        host=host,
        implementations=tuple(p.document for p in provided.values()),
        # Said only when some release is VMM-carried: absent means ``agent`` for all (old reports stay valid).
        carriers={f"{i.name}/{i.release}": p.carrier for i, p in provided.items()}
        if any(p.carrier == "vmm" for p in provided.values())
        else None,
    )
    return HostCatalog(report, owners, provided, tuple(problems))
