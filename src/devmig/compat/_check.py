"""The pairwise compatibility check (DESIGN §3).

A source device ``(model M, canonical configuration C)`` is compatible with a
destination when some implementation there supports ``M`` (rule 1) and, for
that implementation's definition of ``M``:

2. every ``(p, v)`` of ``C`` names a known parameter and ``v`` is allowed;
3. every parameter ``C`` omits is allowed at its off value;
4. the full configuration (its off values, then ``C``) satisfies its constraints;
5. every parameter both the source's and its definition of ``M`` define has
   the same off value in both;
6. where both publish a state layout, the two resolve to the same layout for
   the full configuration (:mod:`devmig.compat._layouts`); reported only when
   rules 2-5 hold, since a refused parameter already explains a layout that
   follows it.

Theory of operation: the happy path runs on compiled models
(:mod:`devmig.compat._compiled`) and builds nothing; only a refused candidate
is checked again, slowly, to collect every reason with its hint. The check
never looks at releases and is conservative: it may refuse a migration that
would have worked, never the reverse.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from devmig._errors import Problem
from devmig.compat._compiled import CompiledModel, IdentityCache, accepts, compiled, off_mismatches
from devmig.compat._history import ReleaseHistory
from devmig.compat._layouts import LayoutRule, layout_rule, state_problem
from devmig.compat._opaque import is_opaque, no_migration_info
from devmig.compat._verdict import Verdict
from devmig.model import (
    Config,
    DeviceModel,
    HostReport,
    Implementation,
    ModelDocument,
    Value,
    constraint_problems,
    format_value,
)

__all__ = ["Candidate", "candidates", "check"]

Candidate = tuple[Implementation | None, DeviceModel]
Destination = ModelDocument | HostReport | DeviceModel
History = ReleaseHistory | Iterable[ModelDocument] | None

# (source model, destination) -> per candidate (its verdict when it accepts, compiled
# model, rule 5 holds, rule 6 or None when it always holds); verdicts are immutable,
# so the happy path returns a shared one.
_PLANS: IdentityCache[tuple[tuple[Verdict, CompiledModel, bool, LayoutRule | None], ...]] = (
    IdentityCache()
)
# per model document: model id -> its candidates, each with the verdict when it accepts
_DOCS: IdentityCache[dict[str, tuple[tuple[Implementation | None, DeviceModel, Verdict], ...]]] = (
    IdentityCache()
)
# (source model, candidate model) -> rule 5 holds: shared by every destination offering that model
_SAME_OFF: IdentityCache[bool] = IdentityCache()


def _doc_index(
    doc: ModelDocument, _: None
) -> dict[str, tuple[tuple[Implementation | None, DeviceModel, Verdict], ...]]:
    out: dict[str, list[tuple[Implementation | None, DeviceModel, Verdict]]] = {}
    accepted = Verdict(True, doc.implementation, ())
    for model in doc.models:
        out.setdefault(model.model, []).append((doc.implementation, model, accepted))
    return {k: tuple(v) for k, v in out.items()}


def _offered(
    destination: Destination, model_id: str
) -> tuple[tuple[Implementation | None, DeviceModel, Verdict], ...]:
    """Return the candidates of a destination, each with its verdict when it accepts."""
    kind = type(destination)
    if kind is HostReport or (kind is not ModelDocument and isinstance(destination, HostReport)):
        docs = destination.implementations  # type: ignore[union-attr]
        if len(docs) == 1:
            return _DOCS.get(docs[0], None, _doc_index).get(model_id, ())
        out: tuple[tuple[Implementation | None, DeviceModel, Verdict], ...] = ()
        for doc in docs:
            out += _DOCS.get(doc, None, _doc_index).get(model_id, ())
        return out
    if kind is ModelDocument or isinstance(destination, ModelDocument):
        return _DOCS.get(destination, None, _doc_index).get(model_id, ())  # type: ignore[arg-type]
    assert isinstance(destination, DeviceModel)
    return ((None, destination, Verdict(True, None, ())),) if destination.model == model_id else ()


def candidates(destination: Destination, model_id: str) -> tuple[Candidate, ...]:
    """Return every ``(implementation, model)`` of ``destination`` that supports ``model_id``.

    Args:
        destination: a host report, a model document or a bare device model
            (whose implementation is then ``None``).
        model_id: the model id.

    Returns:
        The candidates in the destination's order (empty when none supports it).
    """
    return tuple((impl, model) for impl, model, _ in _offered(destination, model_id))


def _same_off(source: DeviceModel, model: DeviceModel) -> bool:
    return not off_mismatches(source, model)


def _plan(
    source: DeviceModel, destination: Destination
) -> tuple[tuple[Verdict, CompiledModel, bool, LayoutRule | None], ...]:
    return tuple(
        (
            accepted,
            compiled(model),
            _SAME_OFF.get(source, model, _same_off),
            layout_rule(source, model),
        )
        for _, model, accepted in _offered(destination, source.model)
    )


def check(
    source_model: DeviceModel,
    config: Config,
    destination: Destination,
    *,
    history: History = None,
) -> Verdict:
    """Check whether a device can move to a destination (DESIGN §3, rules 1-6).

    Args:
        source_model: the source implementation's definition of the device's
            model (its off values are compared with each candidate's, rule 5).
        config: the device's canonical configuration (of ``source_model``).
        destination: a host report (any implementation accepting is enough), a
            model document, or a bare device model.
        history: earlier model documents (oldest first), or a
            :class:`ReleaseHistory`: hints name the release that added a
            parameter, and a parameter the destination does not define is
            judged by the off value of the release that introduced it (a
            source whose off value for it differs cannot go there: the
            destination runs it "as before", which is that value). Without
            it, verdicts are the ones of rules 1-6.

    Returns:
        The :class:`Verdict`: compatible and the implementation that accepts;
        or not, with every reason of the candidate with the fewest reasons
        (``MODEL_UNKNOWN`` alone when no candidate supports the model).

    Raises:
        ValueError: when ``config`` is not a configuration of ``source_model``'s
            model (a caller's mistake, not an incompatibility).
    """
    model_id = source_model.model
    if config.model != model_id:
        raise ValueError(f"configuration is of model {config.model!r}, not {model_id!r}")
    items = config.items
    hist = _history(history)
    plans = _PLANS.get(source_model, destination, _plan)
    if hist is None:
        for accepted, cm, same_off, rule6 in plans:
            if same_off and accepts(cm, items) and (rule6 is None or rule6.agrees(items)):
                return accepted
    else:
        for (accepted, cm, same_off, rule6), (impl, model) in zip(
            plans, candidates(destination, model_id), strict=True
        ):
            if (
                same_off
                and accepts(cm, items)
                and (rule6 is None or rule6.agrees(items))
                and not _introduced_off_mismatches(source_model, config, impl, model, hist)
            ):
                return accepted
    found = candidates(destination, model_id)
    if not found:
        if is_opaque(model_id):  # DESIGN §9: only the very same identity (accepted above)
            return Verdict(False, None, (no_migration_info(model_id, _where(destination)),))
        return Verdict(False, None, (_model_unknown(model_id, destination, hist),))
    best: tuple[Implementation | None, tuple[Problem, ...]] | None = None
    for impl, model in found:
        reasons = reasons_for(source_model, config, impl, model, history=hist)
        if best is None or len(reasons) < len(best[1]):
            best = (impl, reasons)
    assert best is not None
    return Verdict(not best[1], best[0], best[1])


def _history(history: History) -> ReleaseHistory | None:
    if history is None or isinstance(history, ReleaseHistory):
        return history
    return ReleaseHistory.learn(history)


def reasons_for(
    source_model: DeviceModel,
    config: Config,
    implementation: Implementation | None,
    model: DeviceModel,
    *,
    history: ReleaseHistory | None = None,
) -> tuple[Problem, ...]:
    """Return every reason why one candidate refuses a device (rules 2-6), slowly.

    Args:
        source_model: the source's definition of the model.
        config: the canonical configuration.
        implementation: the candidate's implementation (for messages and history).
        model: the candidate's definition of the model.
        history: earlier documents, for hints.

    Returns:
        The reasons in rule order, each with ``context["rule"]``; empty when
        the candidate accepts.
    """
    where = implementation.render() if implementation else "the destination"
    impl_name = implementation.name if implementation else None
    problems: list[Problem] = []
    named = {name for name, _ in config.items}
    params = model.params
    for name, value in config.items:
        param = params.get(name)
        if param is None:
            problems.append(
                _param_unknown(source_model, model, name, value, where, impl_name, history)
            )
        elif not param.allows(value):
            problems.append(_value_not_allowed(model, name, value, where, impl_name, history))
    for name, param in params.items():
        if name not in named and not param.allows(param.off):
            problems.append(
                Problem(
                    "VALUE_NOT_ALLOWED",
                    ("config", name),
                    f"the configuration leaves {name} at its off value "
                    f"{format_value(param.off)}, which {where} does not allow "
                    f"(allowed: {param.describe_allowed()})",
                    value=param.off,
                    allowed=param.allowed_json(),
                    hint=f"{where} requires {name} set; a device created without it cannot move there",
                    context={"rule": 3, "off": True},
                )
            )
    full = dict(model.off_values)
    full.update((name, value) for name, value in config.items if name in params)
    for p in constraint_problems(model, full, loc=("config",)):
        problems.append(replace(p, context={**p.context, "rule": 4}))
    for name in off_mismatches(source_model, model):
        src_off = source_model.params[name].off
        dst_off = params[name].off
        problems.append(
            Problem(
                "OFF_VALUE_MISMATCH",
                ("config", name),
                f"{name} is off at {_typed(src_off)} in the source's definition of {model.model} "
                f"but at {_typed(dst_off)} in {where}'s: a configuration that omits it would "
                "change meaning",
                value=src_off,
                allowed=dst_off,
                hint="off values belong to the model and never change; one of the two "
                "implementations defines the model wrongly",
                context={"rule": 5},
            )
        )
    if history is not None:
        for name, intro, intro_off in _introduced_off_mismatches(
            source_model, config, implementation, model, history
        ):
            src_off = source_model.params[name].off
            problems.append(
                Problem(
                    "OFF_VALUE_MISMATCH",
                    ("config", name),
                    f"{where} does not define {name}, so it runs it as before {intro.render()} introduced it "
                    f"(off {_typed(intro_off)}); the source's definition leaves it at its off value "
                    f"{_typed(src_off)}: the device would change meaning",
                    value=src_off,
                    allowed=intro_off,
                    hint=f"{name} was introduced in {intro.render()} with off value {format_value(intro_off)}; "
                    "a later release changed it",
                    context={"rule": 5, "history": True},
                )
            )
    if not problems:
        rule6 = layout_rule(source_model, model)
        found = None if rule6 is None else rule6.difference(config.items)
        if found is not None:
            problems.append(state_problem(found, where))
    return tuple(problems)


def _introduced_off_mismatches(
    source: DeviceModel,
    config: Config,
    implementation: Implementation | None,
    model: DeviceModel,
    history: ReleaseHistory,
) -> list[tuple[str, Implementation, Value]]:
    """Parameters the source leaves at an off value that differs from the one they were introduced with.

    Only parameters the destination does not define, and the configuration
    omits (so the source runs them at its own off value), count.
    """
    named = {n for n, _ in config.items}
    out = []
    impl_name = implementation.name if implementation is not None else None
    for name, param in source.params.items():
        if name in model.params or name in named:
            continue
        found = history.introduced_off(source.model, name, impl_name)
        if found is not None and not (type(found[1]) is type(param.off) and found[1] == param.off):
            out.append((name, found[0], found[1]))
    return out


def _typed(value: Value) -> str:
    return f"{format_value(value)} ({type(value).__name__})"


def _param_unknown(
    source: DeviceModel,
    model: DeviceModel,
    name: str,
    value: Value,
    where: str,
    impl_name: str | None,
    history: ReleaseHistory | None,
) -> Problem:
    added = None
    if history is not None:
        added = history.added_in(model.model, name, impl_name) or history.added_in(
            model.model, name
        )
    if added is not None:
        hint = f"{name} is introduced in {added.render()}"
    else:
        src = source.params.get(name)
        off = f" ({format_value(src.off)})" if src is not None else ""
        hint = f"{where} predates or dropped {name}: only a device with {name} at its off value{off} can move there"
    return Problem(
        "PARAM_UNKNOWN",
        ("config", name),
        f"{where} does not know parameter {name} (set to {format_value(value)})",
        value=value,
        allowed=sorted(model.params),
        hint=hint,
        context={"rule": 2},
    )


def _value_not_allowed(
    model: DeviceModel,
    name: str,
    value: Value,
    where: str,
    impl_name: str | None,
    history: ReleaseHistory | None,
) -> Problem:
    param = model.params[name]
    if type(value).__name__ != param.type_name:
        message = (
            f"{name} is a {param.type_name} in {where}, but the configuration sets the "
            f"{type(value).__name__} {format_value(value)}"
        )
        hint = f"the parameter's type differs between the implementations; {param.hint_for(value)}"
    else:
        message = (
            f"{name}={format_value(value)} is not allowed by {where} "
            f"(allowed: {param.describe_allowed()})"
        )
        hint = param.hint_for(value)
        if history is not None:
            since = history.allowed_since(model.model, name, value, impl_name)
            if since is not None:
                hint += f"; {name}={format_value(value)} is first allowed in {since.render()}"
    return Problem(
        "VALUE_NOT_ALLOWED",
        ("config", name),
        message,
        value=value,
        allowed=param.allowed_json(),
        hint=hint,
        context={"rule": 2},
    )


def _where(destination: Destination) -> str:
    if isinstance(destination, HostReport):
        return f"host {destination.host}"
    if isinstance(destination, ModelDocument):
        return destination.implementation.render()
    return "the destination"


def _model_unknown(
    model_id: str, destination: Destination, history: ReleaseHistory | None
) -> Problem:
    if isinstance(destination, HostReport):
        where = f"host {destination.host}"
        message = f"no implementation on {where} supports model {model_id}"
        known = sorted({m.model for d in destination.implementations for m in d.models})
    elif isinstance(destination, ModelDocument):
        where = destination.implementation.render()
        message = f"{where} does not support model {model_id}"
        known = sorted(m.model for m in destination.models)
    else:
        where = "the destination"
        message = f"the destination is model {destination.model}, not {model_id}"
        known = [destination.model]
    hint = f"{where} supports: {', '.join(known)}" if known else f"{where} supports no model"
    if history is not None:
        for doc in history.documents:
            if doc.find(model_id) is not None:
                hint += f"; {model_id} is supported by {doc.implementation.render()}"
                break
    return Problem(
        "MODEL_UNKNOWN",
        ("model",),
        message,
        value=model_id,
        allowed=known,
        hint=hint,
        context={"rule": 1},
    )
