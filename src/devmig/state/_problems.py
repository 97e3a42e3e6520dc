"""Small helpers shared by the state modules: typed configuration values and errors.

A configuration value is ``bool``, ``int`` or ``str`` and is compared *typed*:
``True`` and ``1`` are different values (``True == 1`` in Python, so plain
``==`` is never used on configuration values: :func:`devmig.model.same_value`
is).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from devmig._errors import DevmigError, Problem, StreamError
from devmig.model import same_value

ConfigValue = bool | int | str
"""The type of one configuration parameter value."""

Config = Mapping[str, ConfigValue]
"""A configuration: parameter name to typed value."""

__all__ = [
    "Config",
    "ConfigValue",
    "config_differences",
    "error_from_problems",
    "freeze_config",
    "is_config_value",
]


def is_config_value(value: object) -> bool:
    """Return whether ``value`` is exactly a ``bool``, ``int`` or ``str``."""
    return type(value) in (bool, int, str)


def freeze_config(
    config: Mapping[str, Any], *, what: str = "configuration"
) -> dict[str, ConfigValue]:
    """Copy a configuration into a plain dict, checking every key and value type.

    Args:
        config: parameter name to value.
        what: how the configuration is named in an error.

    Returns:
        A new ``dict`` with the same items.

    Raises:
        StreamError: ``CONFIG_INVALID`` when a key is not a string or a value is
            not exactly ``bool``, ``int`` or ``str``.
    """
    if not isinstance(config, Mapping):
        raise StreamError(
            "CONFIG_INVALID", f"{what} must be a mapping", value=type(config).__name__
        )
    out: dict[str, ConfigValue] = {}
    problems: list[Problem] = []
    for key, value in config.items():
        if not isinstance(key, str):
            problems.append(
                Problem("CONFIG_INVALID", ("config",), f"{what}: key {key!r} is not a string")
            )
        elif not is_config_value(value):
            problems.append(
                Problem(
                    "CONFIG_INVALID",
                    ("config", key),
                    f"{what}: value of {key!r} must be bool, int or str",
                    value=repr(value),
                    allowed=["bool", "int", "str"],
                )
            )
        else:
            out[key] = value
    if problems:
        raise error_from_problems(problems)
    return out


def config_differences(
    got: Mapping[str, Any], expected: Mapping[str, Any]
) -> list[tuple[str, Any, Any]]:
    """List the parameters on which two configurations differ, comparing typed values.

    Returns:
        ``(name, got_value, expected_value)`` for every differing parameter,
        sorted by name; a value absent on one side is ``None`` there.
    """
    out: list[tuple[str, Any, Any]] = []
    for name in sorted(set(got) | set(expected), key=str):
        a = got.get(name)
        b = expected.get(name)
        if name not in got or name not in expected or not same_value(a, b):
            out.append((str(name), a, b))
    return out


def error_from_problems(
    problems: Sequence[Problem],
    *,
    record: int | None = None,
    round: int | None = None,
    section: str | None = None,
    region: int | None = None,
    offset: int | None = None,
) -> StreamError:
    """Build one :class:`StreamError` that carries every problem found.

    ``StreamError`` is built for one problem; validation collects several. The
    error's code is the first problem's and its location attributes are the
    ones given. Each problem's ``loc`` becomes the error's location prefix
    (``record``, ``round``, ``region``, ``offset`` as given) followed by the
    problem's own ``loc`` (for example ``("section", "regs", "field", "head")``).
    """
    if not problems:
        raise ValueError("error_from_problems needs at least one problem")
    first = problems[0]
    err = StreamError(
        first.code,
        first.message,
        record=record,
        round=round,
        section=section,
        region=region,
        offset=offset,
        value=first.value,
        allowed=first.allowed,
        hint=first.hint,
    )
    prefix: list[str | int] = []
    for key, item in (("record", record), ("round", round), ("region", region), ("offset", offset)):
        if item is not None:
            prefix += [key, item]
    if len(problems) > 1 or first.loc:
        located = [
            Problem(
                p.code,
                (*prefix, *p.loc),
                p.message,
                value=p.value,
                allowed=p.allowed,
                hint=p.hint,
                context=p.context,
            )
            for p in problems
        ]
        # Re-initialise the base with every problem; keeps the location attributes.
        DevmigError.__init__(err, located)
    return err
