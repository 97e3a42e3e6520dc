"""Configurations: expansion, validation and the canonical form (DESIGN §2).

Expansion, in order: every parameter at its off value; the named version's
parameters, or else the init values; then each explicitly named value. The
result is validated (types, allowed values, constraints), collecting every
problem, and frozen as a :class:`Config` in canonical form: off values
dropped, sorted by name.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from devmig._errors import ConfigError, Loc, Problem
from devmig.model._conditions import condition_json, render_condition
from devmig.model._document import DeviceModel
from devmig.model._options import convert_value, format_options, split_options
from devmig.model._values import Value, format_value, show_value, type_of

__all__ = ["Config", "check_full", "constraint_problems", "expand", "parse_canonical", "version_of"]


@dataclass(frozen=True, slots=True, eq=False)
class Config:
    """A device's canonical configuration: frozen, off values dropped, sorted by name.

    Equality and hashing are *typed*: ``rss=True`` never equals ``rss=1``
    (Python's ``True == 1`` would otherwise make two configurations of
    different releases of a model compare equal).

    Attributes:
        model: the model id.
        items: ``(parameter, value)`` pairs, sorted by parameter name.
    """

    model: str
    items: tuple[tuple[str, Value], ...] = field(default=())

    @property
    def values(self) -> dict[str, Value]:
        """The canonical configuration as a dict (a fresh copy)."""
        return dict(self.items)

    @property
    def string(self) -> str:
        """The canonical configuration in option syntax (``rss=on,rx-queues=4``)."""
        return format_options(self.items)

    def full(self, model: DeviceModel) -> dict[str, Value]:
        """Return the full configuration on ``model``: its off values, then these values."""
        out = dict(model.off_values)
        out.update(self.items)
        return out

    def to_dict(self) -> dict[str, Any]:
        """Return the wire form ``{"model": ..., "config": {...}}``."""
        return {"model": self.model, "config": dict(self.items)}

    def typed_key(self) -> tuple[str, tuple[tuple[str, str, Value], ...]]:
        """Return a hashable key that tells ``True`` from ``1`` (for typed equality)."""
        return self.model, tuple((k, type(v).__name__, v) for k, v in self.items)

    def same_as(self, other: Config) -> bool:
        """Return whether two configurations are equal as *typed* values."""
        return self.typed_key() == other.typed_key()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Config):
            return NotImplemented
        return self.typed_key() == other.typed_key()

    def __hash__(self) -> int:
        return hash(self.typed_key())

    def __iter__(self) -> Iterator[tuple[str, Value]]:
        return iter(self.items)

    def __str__(self) -> str:
        return self.string


def _value_problem(
    model: DeviceModel, name: str, value: Value, loc: Loc, code: str = "VALUE_NOT_ALLOWED"
) -> Problem:
    param = model.params[name]
    return Problem(
        code,
        loc,
        f"{name}={format_value(value)} is not allowed (allowed: {param.describe_allowed()})",
        value=value,
        allowed=param.allowed_json(),
        hint=param.hint_for(value),
    )


def check_full(
    model: DeviceModel,
    full: Mapping[str, Value],
    *,
    loc: Loc = ("config",),
    only: set[str] | None = None,
    value_code: str = "VALUE_NOT_ALLOWED",
    constraint_code: str = "CONSTRAINT_VIOLATED",
) -> list[Problem]:
    """Validate a full configuration against ``model``'s allowed values and constraints.

    Args:
        model: the model whose parameters and constraints apply.
        full: every parameter's value.
        loc: prefix of each problem's ``loc`` (the parameter name is appended).
        only: if given, check allowed values of these parameters only.
        value_code, constraint_code: the codes to report (documents use the
            ``VERSION_``/``INIT_`` variants).

    Returns:
        Every problem found (empty when the configuration is valid).
    """
    problems: list[Problem] = []
    for name, value in full.items():
        if only is not None and name not in only:
            continue
        param = model.params.get(name)
        if param is not None and not param.allows(value):
            problems.append(_value_problem(model, name, value, (*loc, name), value_code))
    problems += constraint_problems(model, full, loc=loc, code=constraint_code)
    return problems


def constraint_problems(
    model: DeviceModel,
    full: Mapping[str, Value],
    *,
    loc: Loc,
    code: str = "CONSTRAINT_VIOLATED",
    by_constraint: bool = False,
) -> list[Problem]:
    """Return one problem per constraint of ``model`` that ``full`` violates.

    Each problem's ``loc`` is ``loc`` plus the first failing parameter, or plus
    the constraint's index when ``by_constraint`` is true.
    """
    problems = []
    for index, constraint, failing in model.violated(full):
        first = failing[0]
        problems.append(
            Problem(
                code,
                (*loc, index if by_constraint else first),
                f"{constraint.render()}: "
                + ", ".join(f"{n}={format_value(full[n])}" for n in failing if n in full),
                value={n: full.get(n) for n in (*constraint.when, *failing)},
                allowed={n: condition_json(constraint.require[n]) for n in failing},
                hint="set " + " and ".join(render_condition(n, constraint.require[n]) for n in failing),
                context={"constraint": index},
            )
        )
    return problems


def _unknown_param(model: DeviceModel, key: str, value: object, loc: Loc) -> Problem:
    by_folded: dict[str, str] = {}
    for name in model.params:
        by_folded.setdefault(name.casefold(), name)
    close = [by_folded[n] for n in difflib.get_close_matches(key.casefold(), list(by_folded), n=3)]
    hint = f"did you mean {', '.join(close)}?" if close else None
    return Problem(
        "PARAM_UNKNOWN",
        loc,
        f"model {model.model} has no parameter {key!r}",
        value=value,
        allowed=sorted(model.params),
        hint=hint,
    )


def _introduced_hint(problem: Problem, introduced: Mapping[str, str]) -> Problem:
    name = problem.loc[-1] if problem.loc else None
    if problem.code != "PARAM_UNKNOWN" or not isinstance(name, str) or name not in introduced:
        return problem
    return replace(
        problem, hint=f"{name} is introduced in {introduced[name]}: this release predates it"
    )


def _unknown_version(model: DeviceModel, name: object, loc: Loc) -> Problem:
    names = [v.name for v in model.versions]
    return Problem(
        "VERSION_UNKNOWN",
        loc,
        f"model {model.model} has no version {show_value(name)}",
        value=name,
        allowed=names,
        hint=f"published versions: {', '.join(names)}" if names else "this model publishes no version",
    )


def _read_string(
    model: DeviceModel, text: str, loc: Loc, *, canonical: bool
) -> tuple[dict[str, Value], str | None, list[Problem]]:
    """Read an option string into typed explicit values and a version name.

    Returns ``(explicit, version name or None, problems)``. With ``canonical``
    the string is a canonical configuration, which names no version.
    """
    items, problems = split_options(text)
    explicit: dict[str, Value] = {}
    version_name: str | None = None
    seen: set[str] = set()
    for item in items:
        if item.key in seen:
            problems.append(
                Problem(
                    "DUPLICATE_PARAM",
                    (*loc, item.key),
                    f"{item.key} is given twice",
                    value=item.value,
                    hint="name each parameter at most once",
                )
            )
            continue
        seen.add(item.key)
        if item.key == "version":
            if canonical:
                problems.append(_version_in_canonical(item.value, loc))
            elif item.value is None or item.value == "":
                names = [v.name for v in model.versions]
                problems.append(
                    Problem(
                        "SYNTAX",
                        (*loc, "version"),
                        "version needs a name: version=NAME",
                        value=item.value,
                        allowed=names,
                        hint="write version=NAME; "
                        + (
                            f"published versions: {', '.join(names)}"
                            if names
                            else "this model publishes no version"
                        ),
                    )
                )
            else:
                version_name = item.value
            continue
        param = model.params.get(item.key)
        if param is None:
            problems.append(_unknown_param(model, item.key, item.value, (*loc, item.key)))
            continue
        converted = convert_value(param.type_name, item.value)
        if converted is None:
            shown = "(bare key, meaning on)" if item.value is None else show_value(item.value)
            problems.append(
                Problem(
                    "TYPE_MISMATCH",
                    (*loc, item.key),
                    f"{item.key} is {_a(param.type_name)}; {shown} is not {_a(param.type_name)}",
                    value=item.value,
                    allowed=param.allowed_json(),
                    hint=_type_hint(param.type_name),
                )
            )
            continue
        explicit[item.key] = converted
    return explicit, version_name, problems


def _read_mapping(
    model: DeviceModel, config: Mapping[Any, Any], loc: Loc, *, canonical: bool
) -> tuple[dict[str, Value], str | None, list[Problem]]:
    """Read a mapping of typed values; the mapping counterpart of :func:`_read_string`."""
    problems: list[Problem] = []
    explicit: dict[str, Value] = {}
    version_name: str | None = None
    for key, value in config.items():
        if key == "version":
            if canonical:
                problems.append(_version_in_canonical(value, loc))
            elif isinstance(value, str) and value:
                version_name = value
            else:
                problems.append(
                    Problem(
                        "TYPE_MISMATCH",
                        (*loc, "version"),
                        "version must be a non-empty string",
                        value=value if type_of(value) else show_value(value),
                        allowed=[v.name for v in model.versions],
                        hint="name a published version: {\"version\": \"NAME\"}",
                    )
                )
            continue
        param = model.params.get(key) if isinstance(key, str) else None
        if param is None:
            name = key if isinstance(key, str) else show_value(key)
            problems.append(
                _unknown_param(model, name, value if type_of(value) else show_value(value), (*loc, name))
            )
            continue
        if type_of(value) != param.type_name:
            problems.append(
                Problem(
                    "TYPE_MISMATCH",
                    (*loc, key),
                    f"{key} is {_a(param.type_name)}; {show_value(value)} is "
                    f"{_a(type_of(value) or type(value).__name__)}",
                    value=value if type_of(value) else show_value(value),
                    allowed=param.allowed_json(),
                    hint=_type_hint(param.type_name),
                )
            )
            continue
        explicit[key] = value
    return explicit, version_name, problems


def _version_in_canonical(value: object, loc: Loc) -> Problem:
    return Problem(
        "PARAM_UNKNOWN",
        (*loc, "version"),
        "a canonical configuration names no version",
        value=value if value is None or type_of(value) else show_value(value),
        hint="send the expanded parameters, not the version name",
    )


def _read(
    model: DeviceModel, config: object, loc: Loc, *, canonical: bool
) -> tuple[dict[str, Value], str | None, list[Problem]]:
    if config is None or isinstance(config, str):
        return _read_string(model, config or "", loc, canonical=canonical)
    if isinstance(config, Mapping):
        return _read_mapping(model, config, loc, canonical=canonical)
    raise ConfigError(
        [
            Problem(
                "SYNTAX",
                loc,
                "a configuration is an option string or a mapping",
                value=show_value(config),
                hint="write key=value,key=value or pass a mapping of typed values",
            )
        ]
    )


def _finish(
    model: DeviceModel, full: dict[str, Value], explicit: dict[str, Value], problems: list[Problem], loc: Loc
) -> Config:
    """Validate ``full`` and return it canonical, or raise with every problem."""
    if problems:
        # Still report value problems of what parsed, but skip constraints on a
        # configuration that is already wrong in shape.
        problems += check_full(model, explicit, loc=loc) if explicit else []
        raise ConfigError([p for p in problems if p.code != "CONSTRAINT_VIOLATED"])
    problems = check_full(model, full, loc=loc)
    if problems:
        raise ConfigError(problems)
    return Config(model.model, model.canonical_items(full))


def expand(
    model: DeviceModel,
    config: str | Mapping[str, Any] | None = None,
    *,
    loc: Loc = ("config",),
    introduced: Mapping[str, str] | None = None,
) -> Config:
    """Expand a configuration for ``model`` and return it in canonical form.

    Expansion, in order (DESIGN §2): every parameter at its off value; the
    named version's parameters, or else the init values; then each explicitly
    named value. So a parameter a string does not name takes its *init* value
    (or its version's value), not its off value: a canonical string fed back
    here names a different configuration whenever it leaves out a parameter
    whose init value differs from its off value. Read a canonical string with
    :func:`parse_canonical`.

    Args:
        model: the model the device is created as.
        config: an option string (``version=2,rx-table-size=48``), a mapping of
            typed values (``{"version": "2", "rss": True}``), or ``None``/``""``
            for the init values.
        loc: prefix of each problem's ``loc``.
        introduced: parameter → the release that introduced it, for parameters
            of *later* releases (from a release history): an unknown parameter
            found there is hinted "introduced in RELEASE", not as a typo.

    Returns:
        The canonical :class:`Config`.

    Raises:
        ConfigError: with every problem found (syntax, duplicate, unknown
            version or parameter, wrong type, value not allowed, violated
            constraint). Nothing is created on error.
    """
    explicit, version_name, problems = _read(model, config, loc, canonical=False)
    if introduced:
        problems = [_introduced_hint(p, introduced) for p in problems]
    full = dict(model.off_values)
    if version_name is not None:
        version = model.version_map.get(version_name)
        if version is None:
            problems.append(_unknown_version(model, version_name, (*loc, "version")))
        else:
            full.update(version.params)
    else:
        full.update(model.init_values)
    full.update(explicit)
    return _finish(model, full, explicit, problems, loc)


def _a(type_name: str) -> str:
    return f"an {type_name}" if type_name == "int" else f"a {type_name}"


def _type_hint(type_name: str) -> str:
    return {
        "bool": "write on/off, true/false or yes/no",
        "int": "write a decimal integer or 0x hexadecimal",
        "str": "write a string value: key=value",
    }[type_name]


def parse_canonical(
    model: DeviceModel, canonical: Mapping[str, Any] | str, *, loc: Loc = ("config",)
) -> Config:
    """Validate an already-canonical configuration (the wire form) on ``model``.

    ``canonical`` is the ``config`` mapping of the wire form
    ``{"model": ..., "config": {...}}`` or its string form
    (``rss=on,rx-queues=4``, as :attr:`Config.string` renders it). It names no
    version, and every parameter it omits is at its *off* value (not its init
    value, as in :func:`expand`), so ``parse_canonical(model, c.string)``
    equals ``c``. A parameter given at its off value is accepted and dropped.

    Raises:
        ConfigError: on a syntax error, a duplicate, ``version``, an unknown
            parameter, a wrong type, a disallowed value or a violated
            constraint; or ``SYNTAX`` when ``canonical`` is neither a string
            nor a mapping.
    """
    explicit, _, problems = _read(model, canonical, loc, canonical=True)
    full = dict(model.off_values)
    full.update(explicit)
    return _finish(model, full, explicit, problems, loc)


def version_of(model: DeviceModel, config: Config) -> str | None:
    """Return the newest published version whose expansion equals ``config``, or ``None``."""
    key = config.typed_key()
    for version in reversed(model.versions):
        candidate = Config(model.model, model.canonical_items(model.version_values(version)))
        if candidate.typed_key() == key:
            return version.name
    return None
