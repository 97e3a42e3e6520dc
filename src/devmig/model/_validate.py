"""Loading model documents and host reports from raw JSON, collecting every problem.

Loading runs in three layers, each adding problems rather than stopping:

1. JSON syntax (``JSON_SYNTAX`` with line and column);
2. shape, by the pydantic classes (``SCHEMA``: wrong types, unknown keys,
   missing fields, another ``format``); each model is also validated on its
   own so that one malformed model does not hide the problems of the others;
3. consistency of every model that has the right shape (init values allowed
   and satisfying the constraints, versions valid and unique, constraints
   naming known parameters).

Only a document without any problem is returned; otherwise
:class:`~devmig.DocumentError` carries them all, each with a ``loc`` path into
the document.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pydantic import TypeAdapter, ValidationError

from devmig._errors import DocumentError, Loc, Problem
from devmig.model._config import check_full, constraint_problems
from devmig.model._document import (
    HOST_REPORT_FORMAT,
    MODEL_DOCUMENT_FORMAT,
    DeviceModel,
    HostReport,
    ModelDocument,
    Range,
)
from devmig.model._values import format_value, show_value, type_of

__all__ = ["load_document", "load_host_report", "load_any", "parse_json"]

_MODEL_ADAPTER: TypeAdapter[DeviceModel] = TypeAdapter(DeviceModel)


def parse_json(text: str | bytes) -> Any:
    """Parse JSON text, mapping a syntax error to ``JSON_SYNTAX`` with line and column.

    Raises:
        DocumentError: ``JSON_SYNTAX`` when the text is not JSON (or not UTF-8).
    """
    try:
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        return json.loads(text)
    except UnicodeDecodeError as exc:
        raise DocumentError(
            [Problem("JSON_SYNTAX", (), f"not UTF-8 text at byte {exc.start}", context={"byte": exc.start})]
        ) from exc
    except json.JSONDecodeError as exc:
        raise DocumentError(
            [
                Problem(
                    "JSON_SYNTAX",
                    (),
                    f"line {exc.lineno} column {exc.colno}: {exc.msg}",
                    hint="the document must be JSON",
                    context={"line": exc.lineno, "column": exc.colno},
                )
            ]
        ) from exc
    except RecursionError as exc:
        raise DocumentError([Problem("JSON_SYNTAX", (), "JSON nested too deeply")]) from exc


def _real_loc(raw: Any, loc: tuple[Any, ...]) -> Loc:
    """Keep only the parts of a pydantic ``loc`` that are real keys/indices of ``raw``.

    pydantic inserts union member tags (``int``, ``Range``, ...) into locations;
    walking the raw input tells them apart from real keys.
    """
    out: list[str | int] = []
    node = raw
    for part in loc:
        if (isinstance(node, Mapping) and part in node) or (isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)):
            out.append(part)
            node = node[part]
        elif isinstance(node, Mapping) and part in _FIELD_NAMES:
            # A missing field: a real location, where nothing is yet.
            out.append(part)
            node = None
    return tuple(out)


_FIELD_NAMES = {
    "format", "implementation", "models", "name", "release", "model", "description",
    "params", "constraints", "versions", "type", "allowed", "off", "init", "min", "max",
    "step", "when", "require", "message", "in", "host", "implementations",
}


def _schema_problems(raw: Any, exc: ValidationError, prefix: Loc) -> list[Problem]:
    problems: list[Problem] = []
    seen: set[tuple[Loc, str]] = set()
    for err in exc.errors(include_url=False):
        loc = (*prefix, *_real_loc(raw, tuple(err["loc"])))
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = f"unknown key {show_value(err['loc'][-1])}"
        elif err["type"] == "literal_error" and err["loc"][-1:] == ("format",):
            msg = f"format must be {err.get('ctx', {}).get('expected', '')}"
        key = (loc, msg)
        if key in seen:
            continue
        seen.add(key)
        value = err.get("input")
        problems.append(
            Problem(
                "SCHEMA",
                loc,
                msg,
                value=value if type_of(value) is not None else None,
                hint=None,
            )
        )
    # A union that fails in every member reports once per member; keep one
    # problem per location when several share it.
    by_loc: dict[Loc, Problem] = {}
    for p in problems:
        if p.loc in by_loc:
            first = by_loc[p.loc]
            by_loc[p.loc] = Problem(first.code, first.loc, f"{first.message}; or {p.message}",
                                    value=first.value)
        else:
            by_loc[p.loc] = p
    return list(by_loc.values())


def model_problems(model: DeviceModel, loc: Loc) -> list[Problem]:
    """Return the consistency problems of one well-shaped model (DESIGN §7 rules)."""
    problems: list[Problem] = []
    params = model.params
    if "version" in params:
        problems.append(
            Problem("SCHEMA", (*loc, "params", "version"), "'version' is reserved and cannot name a parameter")
        )
    for name, param in params.items():
        if not param.allows(param.init):
            problems.append(
                Problem(
                    "INIT_NOT_ALLOWED",
                    (*loc, "params", name, "init"),
                    f"init value {format_value(param.init)} of {name} is not allowed "
                    f"(allowed: {param.describe_allowed()})",
                    value=param.init,
                    allowed=param.allowed_json(),
                    hint=param.hint_for(param.init),
                )
            )
    for index, constraint in enumerate(model.constraints):
        for part in ("when", "require"):
            conditions = getattr(constraint, part)
            for name, cond in conditions.items():
                here = (*loc, "constraints", index, part, name)
                cparam = params.get(name)
                if cparam is None:
                    problems.append(
                        Problem(
                            "CONSTRAINT_PARAM_UNKNOWN",
                            here,
                            f"constraint {index} names unknown parameter {name!r}",
                            value=name,
                            allowed=sorted(params),
                        )
                    )
                    continue
                bad = _condition_type_problem(cparam.type_name, cond)
                if bad:
                    problems.append(Problem("SCHEMA", here, bad, allowed=cparam.type_name))
    shape_ok = not problems
    if shape_ok:
        problems += constraint_problems(
            model, model.init_values, loc=(*loc, "constraints"), code="INIT_CONSTRAINT_VIOLATED",
            by_constraint=True,
        )
    seen: dict[str, int] = {}
    for index, version in enumerate(model.versions):
        vloc = (*loc, "versions", index)
        if version.name in seen:
            problems.append(
                Problem(
                    "VERSION_DUPLICATE",
                    (*vloc, "name"),
                    f"version {version.name!r} is listed twice (first at index {seen[version.name]})",
                    value=version.name,
                )
            )
        else:
            seen[version.name] = index
        unknown = False
        for name, value in version.params.items():
            if name not in params:
                unknown = True
                problems.append(
                    Problem(
                        "VERSION_PARAM_UNKNOWN",
                        (*vloc, "params", name),
                        f"version {version.name!r} names unknown parameter {name!r}",
                        value=value,
                        allowed=sorted(params),
                    )
                )
        if unknown or not shape_ok:
            continue
        full = model.version_values(version)
        problems += check_full(
            model,
            full,
            loc=(*vloc, "params"),
            value_code="VERSION_VALUE_NOT_ALLOWED",
            constraint_code="VERSION_CONSTRAINT_VIOLATED",
        )
    return problems


def _condition_type_problem(type_name: str, cond: Any) -> str | None:
    from devmig.model._document import InSet

    if isinstance(cond, Range):
        return None if type_name == "int" else f"a min/max condition needs an int parameter, not {type_name}"
    values = cond.in_ if isinstance(cond, InSet) else (cond,)
    for v in values:
        if type_of(v) != type_name:
            return f"condition value {show_value(v)} is not a {type_name}"
    return None


def _check_format(raw: Any, expected: str) -> list[Problem]:
    if not isinstance(raw, Mapping):
        return [Problem("SCHEMA", (), f"a {expected} document is a JSON object", value=None)]
    fmt = raw.get("format")
    if fmt != expected:
        return [
            Problem(
                "SCHEMA",
                ("format",),
                f"format must be {expected!r}" + ("" if fmt is None else f", not {show_value(fmt)}"),
                value=fmt if type_of(fmt) else None,
                allowed=[expected],
            )
        ]
    return []


def _document_problems(raw: Any, prefix: Loc) -> tuple[ModelDocument | None, list[Problem]]:
    problems = _check_format(raw, MODEL_DOCUMENT_FORMAT)
    if problems and not isinstance(raw, Mapping):
        return None, [Problem(p.code, (*prefix, *p.loc), p.message) for p in problems]
    doc: ModelDocument | None = None
    try:
        doc = ModelDocument.model_validate(raw)
    except ValidationError as exc:
        problems = _schema_problems(raw, exc, ())
        # Validate each model alone so consistency problems of well-shaped
        # models are still reported next to the shape problems of others.
        models = raw.get("models") if isinstance(raw, Mapping) else None
        if isinstance(models, list):
            for index, item in enumerate(models):
                try:
                    model = _MODEL_ADAPTER.validate_python(item)
                except ValidationError:
                    continue
                problems += model_problems(model, ("models", index))
    else:
        ids: dict[str, int] = {}
        for index, model in enumerate(doc.models):
            if model.model in ids:
                problems.append(
                    Problem("SCHEMA", ("models", index, "model"),
                            f"model {model.model!r} is listed twice (first at index {ids[model.model]})",
                            value=model.model)
                )
            ids.setdefault(model.model, index)
            problems += model_problems(model, ("models", index))
    if prefix:
        problems = [
            Problem(p.code, (*prefix, *p.loc), p.message, p.value, p.allowed, p.hint, p.context)
            for p in problems
        ]
    return (doc if not problems else None), problems


def load_document(source: str | bytes | Mapping[str, Any]) -> ModelDocument:
    """Load and fully validate a model document.

    Args:
        source: JSON text or bytes, or already-parsed JSON data.

    Returns:
        The frozen :class:`ModelDocument`.

    Raises:
        DocumentError: with every problem found (codes of DESIGN §7).
    """
    raw = source if isinstance(source, Mapping) else parse_json(source)
    doc, problems = _document_problems(raw, ())
    if problems or doc is None:
        raise DocumentError(problems)
    return doc


def load_host_report(source: str | bytes | Mapping[str, Any]) -> HostReport:
    """Load and fully validate a host report; every implementation is checked as a document.

    Raises:
        DocumentError: with every problem found, located under ``implementations``.
    """
    raw = source if isinstance(source, Mapping) else parse_json(source)
    problems = _check_format(raw, HOST_REPORT_FORMAT)
    if problems and not isinstance(raw, Mapping):
        raise DocumentError(problems)
    assert isinstance(raw, Mapping)
    impls = raw.get("implementations", [])
    envelope = {k: v for k, v in raw.items() if k != "implementations"}
    if not problems:
        try:
            HostReport.model_validate({**envelope, "implementations": []})
        except ValidationError as exc:
            problems += _schema_problems(envelope, exc, ())
    docs = []
    if not isinstance(impls, list):
        problems.append(Problem("SCHEMA", ("implementations",), "implementations must be a list"))
    else:
        seen: dict[tuple[str, str], int] = {}
        for index, item in enumerate(impls):
            doc, doc_problems = _document_problems(item, ("implementations", index))
            problems += doc_problems
            if doc is not None:
                key = (doc.implementation.name, doc.implementation.release)
                if key in seen:
                    problems.append(
                        Problem("SCHEMA", ("implementations", index, "implementation"),
                                f"implementation {key[0]} {key[1]} is listed twice", value=key[0])
                    )
                seen.setdefault(key, index)
                docs.append(doc)
    if problems:
        raise DocumentError(problems)
    return HostReport.model_validate({**envelope, "implementations": docs})


def load_any(source: str | bytes | Mapping[str, Any]) -> ModelDocument | HostReport:
    """Load a model document or a host report, telling them apart by ``format``.

    Raises:
        DocumentError: as :func:`load_document` / :func:`load_host_report`.
    """
    raw = source if isinstance(source, Mapping) else parse_json(source)
    if isinstance(raw, Mapping) and raw.get("format") == HOST_REPORT_FORMAT:
        return load_host_report(raw)
    if isinstance(raw, Mapping) and raw.get("format") != MODEL_DOCUMENT_FORMAT:
        fmt = raw.get("format")
        raise DocumentError(
            [
                Problem(
                    "SCHEMA",
                    ("format",),
                    f"unknown format {show_value(fmt)}" if fmt is not None else "missing key 'format'",
                    value=fmt if type_of(fmt) else None,
                    allowed=[MODEL_DOCUMENT_FORMAT, HOST_REPORT_FORMAT],
                )
            ]
        )
    return load_document(raw)
