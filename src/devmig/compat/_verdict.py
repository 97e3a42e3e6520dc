"""The verdict of a pairwise compatibility check: data first, rendered on demand."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from devmig._errors import CompatibilityError, Problem
from devmig.model import Implementation

__all__ = ["Verdict"]


@dataclass(frozen=True, slots=True)
class Verdict:
    """Whether a device can move to a destination, and every reason why not.

    Attributes:
        compatible: ``True`` when some implementation at the destination accepts
            the device (DESIGN §3 rules 1-6 all hold for it).
        implementation: the implementation that accepts; when none does, the
            candidate supporting the model with the fewest reasons; ``None``
            when no candidate supports the model, or when the destination was a
            bare :class:`~devmig.model.DeviceModel` (it names no implementation).
        reasons: every reason of that candidate (empty when compatible), each a
            :class:`~devmig.Problem` with a compatibility code: ``MODEL_UNKNOWN``,
            ``PARAM_UNKNOWN``, ``VALUE_NOT_ALLOWED``, ``CONSTRAINT_VIOLATED``,
            ``OFF_VALUE_MISMATCH`` or ``STATE_LAYOUT_MISMATCH``;
            ``context["rule"]`` is the DESIGN §3 rule.
    """

    compatible: bool
    implementation: Implementation | None = None
    reasons: tuple[Problem, ...] = ()

    @property
    def codes(self) -> list[str]:
        """The code of every reason, in order."""
        return [p.code for p in self.reasons]

    def to_dict(self) -> dict[str, Any]:
        """Return the verdict as JSON data.

        Returns:
            ``{"compatible": bool, "implementation": {"name", "release"} | None,
            "reasons": [problem dicts]}``.
        """
        impl = self.implementation
        return {
            "compatible": self.compatible,
            "implementation": None if impl is None else {"name": impl.name, "release": impl.release},
            "reasons": [p.to_dict() for p in self.reasons],
        }

    def raise_for(self) -> None:
        """Raise when the device is not compatible; do nothing otherwise.

        Raises:
            CompatibilityError: carrying every reason as its problems.
        """
        if not self.compatible:
            raise CompatibilityError(self.reasons)

    def render(self) -> str:
        """Return a short multi-line rendering for people."""
        impl = self.implementation.render() if self.implementation else None
        if self.compatible:
            return f"compatible ({impl})" if impl else "compatible"
        head = f"incompatible with {impl}" if impl else "incompatible"
        return "\n".join([head + ":", *(f"  [{p.code}] {p.render()}" for p in self.reasons)])
