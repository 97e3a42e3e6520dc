"""The one error hierarchy of devmig.

Every failure a caller can act on is a :class:`DevmigError`. An error carries
*data*: one or more :class:`Problem` entries, each with a stable ``code``, a
``loc`` path naming where the problem is, the offending ``value``, what is
``allowed`` there, and a human ``hint``. ``str()`` only renders that data.

Validation collects every problem it finds rather than stopping at the first,
so an error usually holds several problems; ``error.code`` is the code of the
first one (or the class default when it holds none).

What a code means, its HTTP status and whether it is worth retrying are
defined once, in :data:`devmig._codes.CODES`; an error looks its status up
there (:attr:`DevmigError.status`) and never carries one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from devmig._codes import code_info, status_of

Loc = tuple[str | int, ...]

__all__ = [
    "CompatibilityError",
    "ConfigError",
    "DevmigError",
    "DocumentError",
    "Loc",
    "Problem",
    "StreamError",
    "TransitionError",
]


@dataclass(frozen=True, slots=True)
class Problem:
    """One problem found while validating or checking something.

    Attributes:
        code: a stable, upper-case code (DESIGN §7), e.g. ``VALUE_NOT_ALLOWED``.
        loc: where the problem is, as a path: ``("config", "rx-table-size")``
            in a configuration, ``("models", 0, "params", "rss")`` in a document.
        message: one sentence for a person; rendered from the other fields.
        value: the offending value, when there is one.
        allowed: what would have been accepted there (a JSON-able value).
        hint: a suggestion: nearest allowed values, the release that added a
            parameter, ...
        context: further machine-readable details specific to the code.
    """

    code: str
    loc: Loc
    message: str
    value: Any = None
    allowed: Any = None
    hint: str | None = None
    context: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Return the problem as a JSON-able dict (the ``--json`` and HTTP shape)."""
        out: dict[str, Any] = {
            "code": self.code,
            "loc": list(self.loc),
            "message": self.message,
            "value": _jsonable(self.value),
            "allowed": _jsonable(self.allowed),
            "hint": self.hint,
        }
        if self.context:
            out["context"] = _jsonable(dict(self.context))
        return out

    def render(self) -> str:
        """Return a one-line rendering: ``loc: message (hint)``."""
        where = ".".join(str(p) for p in self.loc)
        text = f"{where}: {self.message}" if where else self.message
        if self.hint:
            text += f" ({self.hint})"
        return text


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, frozenset, set)):
        items = [_jsonable(v) for v in value]
        if isinstance(value, (frozenset, set)):
            items.sort(key=repr)
        return items
    if isinstance(value, bytes):
        return value.hex()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict):
        return to_dict()
    return str(value)


class DevmigError(Exception):
    """Root of every error devmig raises on purpose.

    Args:
        problems: the problems found (at least one is usual). A bare message
            may be given instead; it becomes a single problem with the class's
            default code.
    """

    default_code: ClassVar[str] = "ERROR"

    def __init__(
        self,
        problems: Iterable[Problem] | str = (),
        *,
        code: str | None = None,
        loc: Loc = (),
    ) -> None:
        if isinstance(problems, str):
            problems = [Problem(code or self.default_code, loc, problems)]
        self.problems: tuple[Problem, ...] = tuple(problems)
        super().__init__(self._render())

    @property
    def code(self) -> str:
        """The code of the first problem (or the class default)."""
        return self.problems[0].code if self.problems else self.default_code

    @property
    def codes(self) -> list[str]:
        """The codes of every problem, in order."""
        return [p.code for p in self.problems]

    @classmethod
    def of(
        cls,
        code: str,
        message: str,
        *,
        loc: Loc = (),
        value: Any = None,
        allowed: Any = None,
        hint: str | None = None,
        context: Mapping[str, Any] | None = None,
    ) -> DevmigError:
        """Build the error of one problem: the way to build one by its code.

        ``code`` is a name of :data:`devmig._codes.CODES`; the HTTP status is
        looked up from it (:attr:`status`), never given here.
        """
        return cls([Problem(code, loc, message, value, allowed, hint, dict(context or {}))])

    @property
    def status(self) -> int:
        """The HTTP status of this error: its first code's, from the one table of codes."""
        return status_of(self.code)

    @property
    def retryable(self) -> bool:
        """Whether the same request may succeed later, unchanged (its first code's)."""
        return code_info(self.code).retryable

    def _render(self) -> str:
        if not self.problems:
            return self.default_code
        if len(self.problems) == 1:
            return f"[{self.problems[0].code}] {self.problems[0].render()}"
        lines = [f"{len(self.problems)} problems:"]
        lines += [f"  [{p.code}] {p.render()}" for p in self.problems]
        return "\n".join(lines)

    def to_dicts(self) -> list[dict[str, Any]]:
        """Return every problem as a JSON-able dict."""
        return [p.to_dict() for p in self.problems]


class ConfigError(DevmigError):
    """A configuration (option string or mapping) is refused for a model."""

    default_code = "CONFIG_INVALID"


class DocumentError(DevmigError):
    """A model document or host report is malformed or inconsistent."""

    default_code = "DOCUMENT_INVALID"


class CompatibilityError(DevmigError):
    """A device cannot move to a destination; problems are the verdict's reasons."""

    default_code = "INCOMPATIBLE"


class TransitionError(DevmigError):
    """A migration state transition is refused (not reachable, or not provided)."""

    default_code = "TRANSITION_INVALID"


class StreamError(DevmigError):
    """A migration stream is refused while encoding or decoding.

    The location attributes are ``None`` where they do not apply.

    Attributes:
        record: index of the record being processed (0 = first after the magic).
        round: pre-copy round number (0-based) when the error happened.
        section: name of the section involved.
        region: index of the bulk region involved.
        offset: byte offset in the region, or in the stream for framing errors.
    """

    default_code = "STREAM_INVALID"

    def __init__(
        self,
        code: str,
        message: str,
        *,
        record: int | None = None,
        round: int | None = None,
        section: str | None = None,
        region: int | None = None,
        offset: int | None = None,
        value: Any = None,
        allowed: Any = None,
        hint: str | None = None,
    ) -> None:
        self.record = record
        self.round = round
        self.section = section
        self.region = region
        self.offset = offset
        loc: list[str | int] = []
        for key, item in (
            ("record", record),
            ("round", round),
            ("section", section),
            ("region", region),
            ("offset", offset),
        ):
            if item is not None:
                loc += [key, item]
        super().__init__(
            [Problem(code, tuple(loc), message, value=value, allowed=allowed, hint=hint)]
        )

