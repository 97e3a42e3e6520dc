"""The result of a release diff: every change, with a rule id and what it breaks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Literal, NamedTuple

from devmig._codes import CODES, DIFF
from devmig._errors import Loc
from devmig.model import Implementation

__all__ = ["BREAKS", "DIRECTIONS", "RULES", "Change", "Direction", "ReleaseDiff"]

Direction = Literal["upgrade", "rollback", "instantiate"]
DIRECTIONS: Final[tuple[Direction, ...]] = ("upgrade", "rollback", "instantiate")

RULES: Final[dict[str, str]] = {code.name: code.meaning for code in CODES.values() if code.where == DIFF}
"""Every rule id of the release diff, with what it means: the rows of the table of codes
(:data:`devmig._codes.CODES`) under ``release diff``; a new rule is one line there."""

BREAKS: Final[dict[str, tuple[Direction, ...]]] = {
    "MODEL_REMOVED": ("upgrade", "instantiate"),
    "PARAM_REMOVED": ("upgrade",),
    "ALLOWED_NARROWED": ("upgrade",),
    "OFF_NOT_ALLOWED": ("upgrade",),
    "CONSTRAINT_ADDED": ("upgrade",),
    "TYPE_CHANGED": ("upgrade",),
    "OFF_VALUE_CHANGED": ("upgrade", "rollback"),
    "VERSION_REDEFINED": ("upgrade", "rollback"),
    "VERSION_REMOVED": ("instantiate",),
    "STATE_SECTION_REMOVED": ("upgrade", "rollback"),
    "STATE_SECTION_ADDED": ("upgrade", "rollback"),
    "STATE_FIELD_REMOVED": ("upgrade", "rollback"),
    "STATE_FIELD_ADDED": ("upgrade", "rollback"),
    "STATE_FIELD_TYPE_CHANGED": ("upgrade", "rollback"),
    "STATE_FIELD_MAX_CHANGED": ("upgrade", "rollback"),
    "STATE_REGION_CHANGED": ("upgrade", "rollback"),
    "STATE_CONDITION_CHANGED": ("upgrade", "rollback"),
}
"""What each breaking rule breaks when it applies. ``PARAM_REMOVED``,
``ALLOWED_NARROWED`` and ``CONSTRAINT_ADDED`` are also listed with nothing
broken when no configuration OLD accepts is affected, and so are the
``STATE_*`` rules (a change of the published state layout that no
configuration OLD accepts shows). ``MODEL_REMOVED`` breaks
``upgrade`` too (DESIGN §3 names it under ``instantiate``): every device of
that model would fail the pairwise check against NEW, and the diff never
disagrees with the check."""


class Change(NamedTuple):
    """One difference between two releases of a model document.

    An immutable record (a named tuple: a diff builds one per change, and a
    tuple is built in C, several times faster than a frozen dataclass).

    Attributes:
        rule: the rule id (a key of :data:`RULES`).
        model: the model id.
        loc: where, inside the model: ``("params", "rx-table-size", "allowed")``,
            ``("constraints", 2)`` (index in NEW for an added constraint, in OLD
            for a removed one), ``("versions", "3")``; ``()`` for a whole model.
        breaks: what it breaks: a subset of ``upgrade`` (a device created on
            OLD can no longer move to NEW), ``rollback`` (a device created on
            NEW cannot move back, or changes meaning) and ``instantiate`` (a
            manager can no longer create by that name); empty when additive.
        message: one sentence for a person.
        example: when one exists, an option string (DESIGN §2) that creates on
            OLD a device NEW refuses: ``version=NAME`` for a published version,
            else the shortest of "init values plus changes" and
            "``version=NAME`` plus changes" (``""`` is the init values). For
            version changes, the version's name.
        example_version: the published version of OLD that ``example`` is, if any.
        old: the OLD side as JSON data (a value, allowed values, a canonical
            configuration string, a constraint...).
        new: the NEW side as JSON data.
        exact: ``False`` when the solver could not decide whether a configuration
            OLD accepts is affected, and the break is reported conservatively.
    """

    rule: str
    model: str
    loc: Loc
    breaks: tuple[Direction, ...]
    message: str
    example: str | None = None
    example_version: str | None = None
    old: Any = None
    new: Any = None
    exact: bool = True

    @property
    def breaking(self) -> bool:
        """Whether the change breaks anything."""
        return bool(self.breaks)

    def to_dict(self) -> dict[str, Any]:
        """Return the change as JSON data."""
        return {
            "rule": self.rule,
            "model": self.model,
            "loc": list(self.loc),
            "breaks": list(self.breaks),
            "message": self.message,
            "example": self.example,
            "example_version": self.example_version,
            "old": self.old,
            "new": self.new,
            "exact": self.exact,
        }

    def render(self) -> str:
        """Return a one-line rendering."""
        where = ".".join(str(p) for p in (self.model, *self.loc))
        broken = f" [breaks {', '.join(self.breaks)}]" if self.breaks else ""
        text = f"{self.rule} {where}: {self.message}{broken}"
        if self.example is not None:
            text += f" (e.g. {self.example!r})" if self.example else " (e.g. the init values '')"
        return text


@dataclass(frozen=True, slots=True)
class ReleaseDiff:
    """Every change between two releases OLD and NEW of a model document.

    Attributes:
        old: OLD's implementation release.
        new: NEW's implementation release.
        changes: every change: per model (OLD's order, then models new in NEW),
            its parameters (OLD's order, then new ones), constraints, versions.
    """

    old: Implementation
    new: Implementation
    changes: tuple[Change, ...] = ()

    @property
    def breaking(self) -> bool:
        """Whether any change breaks anything."""
        return any(c.breaks for c in self.changes)

    @property
    def breaks(self) -> frozenset[Direction]:
        """Every direction some change breaks."""
        return frozenset(d for c in self.changes for d in c.breaks)

    def rules(self) -> list[str]:
        """Return the rule id of every change, in order."""
        return [c.rule for c in self.changes]

    def to_dict(self) -> dict[str, Any]:
        """Return the diff as JSON data: ``{"breaking": bool, "changes": [change dicts]}``."""
        return {"breaking": self.breaking, "changes": [c.to_dict() for c in self.changes]}

    def render(self) -> str:
        """Return a multi-line rendering for people."""
        head = f"{self.old.render()} -> {self.new.render()}: "
        if not self.changes:
            return head + "no change"
        head += "breaking" if self.breaking else "compatible"
        return "\n".join([head, *(f"  {c.render()}" for c in self.changes)])
