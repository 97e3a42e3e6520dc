"""JSON at the border: text to data, and data checked for what JSON cannot carry.

:func:`parse_json` turns text or bytes into data (``JSON_SYNTAX`` with line and
column on failure). :func:`json_data` also accepts already-parsed data and
refuses, with a ``SCHEMA`` problem at its ``loc``, what JSON text cannot carry
and the rest of devmig cannot render: object keys that are not strings,
integers of more than 4300 digits, strings with a lone surrogate.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, NoReturn

from devmig._errors import DocumentError, Loc, Problem
from devmig.model._values import show_value

__all__ = ["json_data", "parse_json"]

_MAX_DIGITS = 4300  # Python's default limit of int <-> decimal str conversion
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)
_NOT_JSON = re.compile(rf"-?Infinity|NaN|-?\d{{{_MAX_DIGITS + 1},}}")


class _NotJson(ValueError):
    """A token Python's ``json`` accepts but JSON does not (``NaN``, ``Infinity``)."""


def _refuse_constant(name: str) -> NoReturn:
    raise _NotJson(name)


def parse_json(text: str | bytes | bytearray) -> Any:  # JSON boundary
    """Parse JSON text, mapping a syntax error to ``JSON_SYNTAX`` with line and column.

    ``NaN``, ``Infinity`` and integers of more than 4300 digits (which Python
    cannot convert) are refused, as is text nested too deeply.

    Raises:
        DocumentError: ``JSON_SYNTAX`` when the text is not JSON (or not UTF-8).
    """
    try:
        if isinstance(text, (bytes, bytearray)):
            text = bytes(text).decode("utf-8")
        return json.loads(text, parse_constant=_refuse_constant)
    except UnicodeDecodeError as exc:
        raise DocumentError(
            [
                Problem(
                    "JSON_SYNTAX",
                    (),
                    f"not UTF-8 text at byte {exc.start}",
                    hint="the document must be UTF-8 encoded JSON",
                    context={"byte": exc.start},
                )
            ]
        ) from exc
    except json.JSONDecodeError as exc:
        raise _syntax_error(exc.msg, exc.lineno, exc.colno) from exc
    except RecursionError as exc:
        raise DocumentError(
            [Problem("JSON_SYNTAX", (), "JSON nested too deeply", hint="the document must be JSON")]
        ) from exc
    except ValueError as exc:  # NaN/Infinity, or an integer beyond Python's digit limit
        line, column = _position(text) if isinstance(text, str) else (1, 1)
        what = (
            f"{exc} is not JSON" if isinstance(exc, _NotJson) else f"a number has more than {_MAX_DIGITS} digits"
        )
        raise _syntax_error(what, line, column) from exc


def _syntax_error(message: str, line: int, column: int) -> DocumentError:
    return DocumentError(
        [
            Problem(
                "JSON_SYNTAX",
                (),
                f"line {line} column {column}: {message}",
                hint="the document must be JSON",
                context={"line": line, "column": column},
            )
        ]
    )


def _position(text: str) -> tuple[int, int]:
    """Return the 1-based line and column of the first token outside strings that is not JSON."""
    blank = _STRING.sub(lambda m: " " * len(m.group()), text)
    match = _NOT_JSON.search(blank)
    index = match.start() if match else 0
    line = text.count("\n", 0, index) + 1
    return line, index - (text.rfind("\n", 0, index) + 1) + 1


def json_data(source: Any) -> Any:  # JSON boundary
    """Return JSON data: text and bytes are parsed, anything else is taken as parsed data.

    The data is checked for what JSON text cannot carry and the rest of devmig
    cannot render: object keys that are not strings, integers of more than
    4300 digits (Python cannot print them), and strings with a lone surrogate
    (``"\\ud800"`` parses, but is no Unicode text: it cannot be sent on as UTF-8).

    Raises:
        DocumentError: ``JSON_SYNTAX`` for text, ``SCHEMA`` for such data.
    """
    if isinstance(source, (str, bytes, bytearray)):
        raw = parse_json(source)
    elif isinstance(source, memoryview):
        raw = parse_json(source.tobytes())
    else:
        raw = source
    problems = _not_json_problems(raw)
    if problems:
        raise DocumentError(problems)
    return raw


_HUGE = 10**_MAX_DIGITS


def _not_json_problems(raw: Any) -> list[Problem]:
    """Walk parsed data without recursion and report what JSON cannot hold."""
    problems: list[Problem] = []
    # A path is a linked list (key, parent) so that deep data costs no more
    # than its size; it becomes a ``loc`` tuple only for a problem.
    stack: list[tuple[Any, Any]] = [(raw, None)]
    seen: set[int] = set()
    while stack:
        node, path = stack.pop()
        if isinstance(node, str):
            if not _is_text(node):
                problems.append(_surrogate_problem(_loc_of(path), node))
        elif type(node) is int and not -_HUGE < node < _HUGE:
            problems.append(
                Problem(
                    "SCHEMA",
                    _loc_of(path),
                    f"an integer of more than {_MAX_DIGITS} digits",
                    value=show_value(node),
                    hint="JSON numbers this large cannot be read back",
                )
            )
        elif isinstance(node, (Mapping, list, tuple)):
            if id(node) in seen:
                continue  # shared (or cyclic) data: checked once
            seen.add(id(node))
            children: list[tuple[Any, Any]] = []
            if isinstance(node, Mapping):
                for key, value in node.items():
                    if isinstance(key, str) and not _is_text(key):
                        # the key cannot even name a location: show it escaped, skip its value
                        problems.append(_surrogate_problem(_loc_of((_escaped(key), path)), key))
                    elif isinstance(key, str):
                        children.append((value, (key, path)))
                    else:
                        problems.append(
                            Problem(
                                "SCHEMA",
                                _loc_of((show_value(key), path)),
                                f"a JSON object key is a string, not {show_value(key)}",
                                hint="JSON objects have string keys",
                            )
                        )
            else:
                children = [(value, (index, path)) for index, value in enumerate(node)]
            stack.extend(reversed(children))  # popped in document order
    return problems


def _is_text(value: str) -> bool:
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _escaped(value: str) -> str:
    return value.encode("utf-8", "backslashreplace").decode("utf-8")


def _surrogate_problem(loc: Loc, value: str) -> Problem:
    return Problem(
        "SCHEMA",
        loc,
        "a string with a lone surrogate is not Unicode text",
        value=_escaped(value),
        hint="escape only complete surrogate pairs (\\ud83d\\ude00)",
    )


def _loc_of(path: Any) -> Loc:
    parts: list[str | int] = []
    while path is not None:
        key, path = path
        parts.append(key)
    return tuple(reversed(parts))
