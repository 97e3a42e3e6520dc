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
from dataclasses import dataclass, field
from typing import Any

from devmig._errors import ConfigError, Loc, Problem
from devmig.model._document import DeviceModel, condition_json, render_condition
from devmig.model._options import convert_value, format_options, split_options
from devmig.model._values import Value, format_value, type_of

__all__ = ["Config", "check_full", "constraint_problems", "expand", "parse_canonical", "version_of"]


@dataclass(frozen=True, slots=True)
class Config:
    """A device's canonical configuration: frozen, off values dropped, sorted by name.

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
    close = difflib.get_close_matches(key, list(model.params), n=3)
    hint = f"did you mean {', '.join(close)}?" if close else None
    return Problem(
        "PARAM_UNKNOWN",
        loc,
        f"model {model.model} has no parameter {key!r}",
        value=value,
        allowed=sorted(model.params),
        hint=hint,
    )


def _unknown_version(model: DeviceModel, name: object, loc: Loc) -> Problem:
    names = [v.name for v in model.versions]
    return Problem(
        "VERSION_UNKNOWN",
        loc,
        f"model {model.model} has no version {name!r}",
        value=name,
        allowed=names,
        hint=f"published versions: {', '.join(names)}" if names else "this model publishes no version",
    )


def expand(
    model: DeviceModel, config: str | Mapping[str, Any] | None = None, *, loc: Loc = ("config",)
) -> Config:
    """Expand a configuration for ``model`` and return it in canonical form.

    Args:
        model: the model the device is created as.
        config: an option string (``version=2,rx-table-size=48``), a mapping of
            typed values (``{"version": "2", "rss": True}``), or ``None``/``""``
            for the init values.
        loc: prefix of each problem's ``loc``.

    Returns:
        The canonical :class:`Config`.

    Raises:
        ConfigError: with every problem found (syntax, duplicate, unknown
            version or parameter, wrong type, value not allowed, violated
            constraint). Nothing is created on error.
    """
    problems: list[Problem] = []
    explicit: dict[str, Value] = {}
    version_name: str | None = None
    if config is None or isinstance(config, str):
        items, problems = split_options(config or "")
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
                if item.value is None or item.value == "":
                    problems.append(
                        Problem("SYNTAX", (*loc, "version"), "version needs a name: version=NAME",
                                value=item.value, allowed=[v.name for v in model.versions])
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
                shown = "(bare key, meaning on)" if item.value is None else repr(item.value)
                problems.append(
                    Problem(
                        "TYPE_MISMATCH",
                        (*loc, item.key),
                        f"{item.key} is {param.type_name}; {shown} is not a {param.type_name}",
                        value=item.value,
                        allowed=param.allowed_json(),
                        hint=_type_hint(param.type_name),
                    )
                )
                continue
            explicit[item.key] = converted
    elif isinstance(config, Mapping):
        for key, value in config.items():
            if key == "version":
                if isinstance(value, str) and value:
                    version_name = value
                else:
                    problems.append(
                        Problem("TYPE_MISMATCH", (*loc, "version"), "version must be a non-empty string",
                                value=value, allowed=[v.name for v in model.versions])
                    )
                continue
            param = model.params.get(key)
            if param is None:
                problems.append(_unknown_param(model, str(key), value, (*loc, str(key))))
                continue
            if type_of(value) != param.type_name:
                problems.append(
                    Problem(
                        "TYPE_MISMATCH",
                        (*loc, key),
                        f"{key} is {param.type_name}; {value!r} is a {type_of(value) or type(value).__name__}",
                        value=value if type_of(value) else repr(value),
                        allowed=param.allowed_json(),
                        hint=_type_hint(param.type_name),
                    )
                )
                continue
            explicit[key] = value
    else:
        raise ConfigError(
            [Problem("SYNTAX", loc, "a configuration is an option string or a mapping", value=repr(config))]
        )

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
    if problems:
        # Still report value problems of what parsed, but skip constraints on a
        # configuration that is already wrong in shape.
        problems += check_full(model, explicit, loc=loc) if explicit else []
        problems = [p for p in problems if p.code != "CONSTRAINT_VIOLATED"]
        raise ConfigError(problems)
    problems = check_full(model, full, loc=loc)
    if problems:
        raise ConfigError(problems)
    return Config(model.model, model.canonical_items(full))


def _type_hint(type_name: str) -> str:
    return {
        "bool": "write on/off, true/false or yes/no",
        "int": "write a decimal integer or 0x hexadecimal",
        "str": "write a string value: key=value",
    }[type_name]


def parse_canonical(model: DeviceModel, canonical: Mapping[str, Any], *, loc: Loc = ("config",)) -> Config:
    """Validate an already-canonical configuration (the wire form) on ``model``.

    The mapping names no version; parameters it omits are at their off values.

    Raises:
        ConfigError: on any unknown parameter, wrong type, disallowed value or
            violated constraint.
    """
    if "version" in canonical:
        raise ConfigError(
            [Problem("PARAM_UNKNOWN", (*loc, "version"), "a canonical configuration names no version",
                     value=canonical["version"])]
        )
    return _canon(model, dict(model.off_values), canonical, loc)


def _canon(model: DeviceModel, full: dict[str, Value], canonical: Mapping[str, Any], loc: Loc) -> Config:
    problems: list[Problem] = []
    for key, value in canonical.items():
        param = model.params.get(key)
        if param is None:
            problems.append(_unknown_param(model, str(key), value, (*loc, str(key))))
        elif type_of(value) != param.type_name:
            problems.append(
                Problem("TYPE_MISMATCH", (*loc, key), f"{key} is {param.type_name}; got {value!r}",
                        value=value if type_of(value) else repr(value), allowed=param.allowed_json(),
                        hint=_type_hint(param.type_name))
            )
        else:
            full[key] = value
    if problems:
        raise ConfigError(problems)
    problems = check_full(model, full, loc=loc)
    if problems:
        raise ConfigError(problems)
    return Config(model.model, model.canonical_items(full))


def version_of(model: DeviceModel, config: Config) -> str | None:
    """Return the newest published version whose expansion equals ``config``, or ``None``."""
    key = config.typed_key()
    for version in reversed(model.versions):
        candidate = Config(model.model, model.canonical_items(model.version_values(version)))
        if candidate.typed_key() == key:
            return version.name
    return None
