"""Loading model documents and host reports from raw JSON, collecting every problem.

Loading runs in three layers, each adding problems rather than stopping:

1. JSON syntax (``JSON_SYNTAX`` with line and column);
2. shape, by the pydantic classes (``SCHEMA``: wrong types, unknown keys,
   missing fields, another ``format``); each model is also validated on its
   own so that one malformed model does not hide the problems of the others;
3. consistency of every model that has the right shape (init values allowed
   and satisfying the constraints, versions valid and unique, constraints
   naming known parameters). One problem never hides another: a constraint
   that names an unknown parameter is left out of the constraint checks, but
   the init values and the versions are still checked against the others.

Only a document without any problem is returned; otherwise
:class:`~devmig.DocumentError` carries them all, each with a ``loc`` path into
the document. Whatever the input — any text, any bytes, any JSON-like data —
the loaders raise nothing but :class:`~devmig.DocumentError`.
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import TypeAdapter, ValidationError
from pydantic_core import ErrorDetails

from devmig._errors import DocumentError, Loc, Problem
from devmig.model._config import check_full, constraint_problems
from devmig.model._document import (
    HOST_REPORT_FORMAT,
    MODEL_DOCUMENT_FORMAT,
    DeviceModel,
    HostReport,
    InSet,
    ModelDocument,
    Range,
)
from devmig.model._json import json_data
from devmig.model._layout import layout_problems
from devmig.model._values import format_value, show_value, type_of

__all__ = ["load_document", "load_host_report", "load_any"]

_MODEL_ADAPTER: TypeAdapter[DeviceModel] = TypeAdapter(DeviceModel)


def _real_loc(raw: object, loc: tuple[int | str, ...]) -> Loc:
    """Keep only the parts of a pydantic ``loc`` that are real keys/indices of ``raw``.

    pydantic inserts union member tags (``int``, ``range``, ...) into locations;
    walking the raw input tells them apart from real keys.
    """
    out: list[str | int] = []
    node = raw
    for part in loc:
        if (isinstance(node, Mapping) and _has_key(node, part)) or (
            isinstance(node, (list, tuple)) and isinstance(part, int) and 0 <= part < len(node)
        ):
            out.append(part)
            node = node[part] if isinstance(node, Mapping) else node[int(part)]
        elif isinstance(node, Mapping) and part in _FIELD_NAMES:
            # A missing field: a real location, where nothing is yet.
            out.append(part)
            node = None
    return tuple(out)


def _has_key(node: Mapping[object, object], key: object) -> bool:
    try:
        return key in node
    except TypeError:  # pragma: no cover - a key type the mapping cannot hash
        return False


_FIELD_NAMES = {
    "format", "implementation", "models", "name", "release", "model", "description",
    "params", "constraints", "versions", "type", "allowed", "off", "init", "min", "max",
    "step", "when", "require", "message", "in", "host", "implementations",
    "state", "sections", "fields", "regions", "size", "then", "param", "div", "times", "plus", "optional",
}  # fmt: skip


def _schema_problems(raw: object, exc: ValidationError, prefix: Loc) -> list[Problem]:
    problems: list[Problem] = []
    seen: set[tuple[Loc, str]] = set()
    for err in exc.errors(include_url=False):
        loc = (*prefix, *_real_loc(raw, tuple(err["loc"])))
        msg = err["msg"]
        if err["type"] == "too_short" and _long_enough(err):
            continue  # the list has enough items, but some are invalid: they are reported
        if err["type"] == "extra_forbidden":
            msg = f"unknown key {show_value(err['loc'][-1])}"
        key = (loc, msg)
        if key in seen:
            continue
        seen.add(key)
        value = err.get("input")
        problems.append(
            Problem("SCHEMA", loc, msg, value=value if type_of(value) is not None else None)
        )
    # A union that fails in every member reports once per member; keep one
    # problem per location when several share it.
    by_loc: dict[Loc, Problem] = {}
    for p in problems:
        if p.loc in by_loc:
            first = by_loc[p.loc]
            by_loc[p.loc] = Problem(
                first.code, first.loc, f"{first.message}; or {p.message}", value=first.value
            )
        else:
            by_loc[p.loc] = p
    return list(by_loc.values())


def _long_enough(err: ErrorDetails) -> bool:
    given = err.get("input")
    need = err.get("ctx", {}).get("min_length")
    return isinstance(given, (list, tuple, Mapping)) and isinstance(need, int) and len(given) >= need


def model_problems(model: DeviceModel, loc: Loc) -> list[Problem]:
    """Return the consistency problems of one well-shaped model (DESIGN §7 rules)."""
    problems: list[Problem] = []
    params = model.params
    if "version" in params:
        problems.append(
            Problem(
                "SCHEMA",
                (*loc, "params", "version"),
                "'version' is reserved and cannot name a parameter",
                value="version",
                hint="rename the parameter",
            )
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
    # Constraints that name unknown parameters or compare with a value of the
    # wrong type are reported and left out of every evaluation below.
    broken: set[int] = set()
    for index, constraint in enumerate(model.constraints):
        for part in ("when", "require"):
            conditions = getattr(constraint, part)
            for name, cond in conditions.items():
                here = (*loc, "constraints", index, part, name)
                cparam = params.get(name)
                if cparam is None:
                    broken.add(index)
                    problems.append(
                        Problem(
                            "CONSTRAINT_PARAM_UNKNOWN",
                            here,
                            f"constraint {index} names unknown parameter {show_value(name)}",
                            value=name,
                            allowed=sorted(params),
                        )
                    )
                    continue
                bad = _condition_type_problem(cparam.type_name, cond)
                if bad:
                    broken.add(index)
                    problems.append(Problem("SCHEMA", here, bad, allowed=cparam.type_name))

    def sound(found: list[Problem]) -> list[Problem]:
        return [p for p in found if p.context.get("constraint") not in broken]

    if model.state is not None:
        types = {name: p.type_name for name, p in params.items()}
        problems += layout_problems(model.state, types, (*loc, "state"))
    problems += sound(
        constraint_problems(
            model,
            model.init_values,
            loc=(*loc, "constraints"),
            code="INIT_CONSTRAINT_VIOLATED",
            by_constraint=True,
        )
    )
    seen: dict[str, int] = {}
    for index, version in enumerate(model.versions):
        vloc = (*loc, "versions", index)
        if version.name in seen:
            problems.append(
                Problem(
                    "VERSION_DUPLICATE",
                    (*vloc, "name"),
                    f"version {show_value(version.name)} is listed twice (first at index {seen[version.name]})",
                    value=version.name,
                    allowed=None,
                    hint="a published version never changes: publish a new name",
                    context={"first": seen[version.name]},
                )
            )
        else:
            seen[version.name] = index
        unknown = [name for name in version.params if name not in params]
        mistyped = any(
            type_of(value) != params[name].type_name
            for name, value in version.params.items()
            if name in params
        )
        for name in unknown:
            problems.append(
                Problem(
                    "VERSION_PARAM_UNKNOWN",
                    (*vloc, "params", name),
                    f"version {show_value(version.name)} names unknown parameter {show_value(name)}",
                    value=version.params[name],
                    allowed=sorted(params),
                )
            )
        found = check_full(
            model,
            model.version_values(version),
            loc=(*vloc, "params"),
            value_code="VERSION_VALUE_NOT_ALLOWED",
            constraint_code="VERSION_CONSTRAINT_VIOLATED",
        )
        if unknown or mistyped:  # already wrong: judge its values, not its constraints
            found = [p for p in found if p.code != "VERSION_CONSTRAINT_VIOLATED"]
        problems += sound(found)
    return problems


def _condition_type_problem(type_name: str, cond: object) -> str | None:
    if isinstance(cond, Range):
        return None if type_name == "int" else f"a min/max condition needs an int parameter, not {type_name}"
    values = cond.in_ if isinstance(cond, InSet) else (cond,)
    for v in values:
        if type_of(v) != type_name:
            return f"condition value {show_value(v)} is not a {type_name}"
    return None


def _format_problem(raw: Mapping[str, object], expected: str, loc: Loc = ("format",)) -> Problem:
    fmt = raw.get("format")
    other = {MODEL_DOCUMENT_FORMAT: "model document", HOST_REPORT_FORMAT: "host report"}
    hint = None
    if isinstance(fmt, str) and fmt in other and fmt != expected:
        hint = f"this is a {other[fmt]}: load it as one (load_any tells them apart)"
    return Problem(
        "SCHEMA",
        loc,
        f"format must be {expected!r}" + ("" if fmt is None else f", not {show_value(fmt)}"),
        value=fmt if type_of(fmt) else None,
        allowed=[expected],
        hint=hint,
    )


def _not_an_object(raw: object, what: str, loc: Loc = ()) -> Problem:
    return Problem(
        "SCHEMA",
        loc,
        f"a {what} is a JSON object, not {_json_kind(raw)}",
        value=raw if type_of(raw) else None,
        allowed="object",
    )


def _json_kind(raw: object) -> str:
    if raw is None:
        return "null"
    if isinstance(raw, bool):
        return "a boolean"
    if isinstance(raw, (int, float)):
        return "a number"
    if isinstance(raw, str):
        return "a string"
    if isinstance(raw, (list, tuple)):
        return "an array"
    return f"a {type(raw).__name__}"


def _shape_problems(raw: Mapping[str, object], exc: ValidationError, expected: str) -> list[Problem]:
    """Return the ``SCHEMA`` problems of ``exc``, with one clear problem for the format."""
    problems = [p for p in _schema_problems(raw, exc, ()) if p.loc != ("format",)]
    if raw.get("format") != expected:
        problems.insert(0, _format_problem(raw, expected))
    return problems


def _document_problems(raw: object, prefix: Loc) -> tuple[ModelDocument | None, list[Problem]]:
    if not isinstance(raw, Mapping):
        return None, [_not_an_object(raw, "model document", prefix)]
    problems: list[Problem] = []
    doc: ModelDocument | None = None
    models: list[tuple[int, DeviceModel]] = []
    try:
        # Raw JSON is validated by alias only: ``{"in_": [...]}`` is no condition.
        doc = ModelDocument.model_validate(dict(raw), by_alias=True, by_name=False)
    except ValidationError as exc:
        problems = _shape_problems(raw, exc, MODEL_DOCUMENT_FORMAT)
        # Validate each model alone so consistency problems of well-shaped
        # models are still reported next to the shape problems of others.
        raw_models = raw.get("models")
        if isinstance(raw_models, (list, tuple)):
            for index, item in enumerate(raw_models):
                try:
                    models.append((index, _MODEL_ADAPTER.validate_python(item, by_alias=True, by_name=False)))
                except ValidationError:
                    continue
    else:
        models = list(enumerate(doc.models))
    ids: dict[str, int] = {}
    for index, model in models:
        if model.model in ids:
            problems.append(
                Problem(
                    "SCHEMA",
                    ("models", index, "model"),
                    f"model {model.model!r} is listed twice (first at index {ids[model.model]})",
                    value=model.model,
                    hint="list each model once",
                )
            )
        ids.setdefault(model.model, index)
        problems += model_problems(model, ("models", index))
    if prefix:
        problems = [
            Problem(p.code, (*prefix, *p.loc), p.message, p.value, p.allowed, p.hint, p.context)
            for p in problems
        ]
    return (doc if not problems else None), problems


def load_document(source: str | bytes | Mapping[str, object]) -> ModelDocument:
    """Load and fully validate a model document.

    Args:
        source: JSON text or bytes, or already-parsed JSON data.

    Returns:
        The frozen :class:`ModelDocument`.

    Raises:
        DocumentError: with every problem found (codes of DESIGN §7).
    """
    doc, problems = _document_problems(json_data(source), ())
    if problems or doc is None:
        raise DocumentError(problems)
    return doc


def load_host_report(source: str | bytes | Mapping[str, object]) -> HostReport:
    """Load and fully validate a host report; every implementation is checked as a document.

    Raises:
        DocumentError: with every problem found, located under ``implementations``.
    """
    raw = json_data(source)
    if not isinstance(raw, Mapping):
        raise DocumentError([_not_an_object(raw, "host report")])
    problems: list[Problem] = []
    envelope = {k: v for k, v in raw.items() if k != "implementations"}
    try:
        HostReport.model_validate({**envelope, "implementations": []}, by_alias=True, by_name=False)
    except ValidationError as exc:
        problems += _shape_problems(envelope, exc, HOST_REPORT_FORMAT)
    impls = raw.get("implementations", [])
    docs = []
    if not isinstance(impls, (list, tuple)):
        problems.append(
            Problem(
                "SCHEMA",
                ("implementations",),
                f"implementations must be an array, not {_json_kind(impls)}",
                value=impls if type_of(impls) else None,
                allowed="array",
            )
        )
    else:
        seen: dict[tuple[str, str], int] = {}
        for index, item in enumerate(impls):
            doc, doc_problems = _document_problems(item, ("implementations", index))
            problems += doc_problems
            if doc is not None:
                key = (doc.implementation.name, doc.implementation.release)
                if key in seen:
                    problems.append(
                        Problem(
                            "SCHEMA",
                            ("implementations", index, "implementation"),
                            f"implementation {key[0]} {key[1]} is listed twice (first at index {seen[key]})",
                            value=key[0],
                            hint="list each implementation release once",
                        )
                    )
                seen.setdefault(key, index)
                docs.append(doc)
    if problems:
        raise DocumentError(problems)
    return HostReport.model_validate({**envelope, "implementations": docs}, by_alias=True, by_name=False)


def load_any(source: str | bytes | Mapping[str, object]) -> ModelDocument | HostReport:
    """Load a model document or a host report, telling them apart by ``format``.

    Raises:
        DocumentError: as :func:`load_document` / :func:`load_host_report`; a
            ``SCHEMA`` problem at ``format`` when it names neither.
    """
    raw = json_data(source)
    if not isinstance(raw, Mapping):
        raise DocumentError([_not_an_object(raw, "model document or host report")])
    fmt = raw.get("format")
    if fmt == HOST_REPORT_FORMAT:
        return load_host_report(raw)
    if fmt == MODEL_DOCUMENT_FORMAT:
        return load_document(raw)
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
