"""Hypothesis strategies for the compat tests: random documents, configurations, releases.

Documents are built as raw JSON, repaired so that they are consistent (init
allowed and satisfying the constraints, versions valid) and loaded with
:func:`devmig.model.load_document`, so every document the tests see is one
the loader accepts.
"""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import assume
from hypothesis import strategies as st

from devmig import DocumentError
from devmig.model import Config, DeviceModel, ModelDocument, check_full, load_document

MODEL_ID = "example.org/devices/rand"
STRS = ["a", "b", "c", "d", "e"]
Raw = dict[str, Any]


# -- values ------------------------------------------------------------------


def _int_values(allowed: list[dict[str, int]]) -> list[int]:
    out: list[int] = []
    for r in allowed:
        out += list(range(r["min"], r["max"] + 1, r.get("step") or 1))
    return sorted(set(out))


def allowed_values(param: Raw) -> list[Any]:
    """Every value a raw parameter allows (domains are kept small)."""
    if param["type"] == "bool":
        return list(dict.fromkeys(param.get("allowed", [False, True])))
    if param["type"] == "int":
        return _int_values(param["allowed"])
    return list(dict.fromkeys(param["allowed"]))


@st.composite
def int_ranges(draw: st.DrawFn, small: bool = False) -> list[dict[str, int]]:
    n = draw(st.integers(1, 2 if small else 3))
    out = []
    for _ in range(n):
        lo = draw(st.integers(-4, 12))
        span = draw(st.integers(0, 6 if small else 24))
        r = {"min": lo, "max": lo + span}
        step = draw(st.sampled_from([None, None, 1, 2, 3, 4, 8]))
        if step is not None:
            r["step"] = step
        out.append(r)
    return out


@st.composite
def params(draw: st.DrawFn, small: bool = False) -> Raw:
    kind = draw(st.sampled_from(["bool", "int", "str"]))
    p: Raw = {"type": kind}
    if kind == "bool":
        allowed = draw(st.sampled_from([None, [True], [False], [False, True]]))
        if allowed is not None:
            p["allowed"] = allowed
        p["off"] = draw(st.booleans())
    elif kind == "int":
        p["allowed"] = draw(int_ranges(small))
        values = allowed_values(p)
        p["off"] = draw(st.one_of(st.sampled_from(values), st.integers(-6, 40)))
    else:
        p["allowed"] = draw(st.lists(st.sampled_from(STRS[:4]), min_size=1, max_size=4, unique=True))
        p["off"] = draw(st.sampled_from(STRS))
    values = allowed_values(p)
    p["init"] = draw(st.sampled_from(values))
    return p


@st.composite
def condition(draw: st.DrawFn, param: Raw) -> Any:
    kind = param["type"]
    values = allowed_values(param) or [param["off"]]
    pool = [*values, param["off"]]
    if kind == "bool":
        return draw(st.booleans())
    if kind == "str":
        if draw(st.booleans()):
            return draw(st.sampled_from(STRS))
        return {"in": draw(st.lists(st.sampled_from(STRS), min_size=1, max_size=3, unique=True))}
    shape = draw(st.sampled_from(["literal", "min", "max", "both", "in"]))
    a = draw(st.sampled_from(pool))
    b = draw(st.sampled_from(pool))
    if shape == "literal":
        return a
    if shape == "min":
        return {"min": a}
    if shape == "max":
        return {"max": a}
    if shape == "both":
        return {"min": min(a, b), "max": max(a, b)}
    return {"in": sorted({a, b})}


@st.composite
def constraint(draw: st.DrawFn, ps: dict[str, Raw]) -> Raw:
    names = sorted(ps)
    when_names = draw(st.lists(st.sampled_from(names), max_size=2, unique=True))
    req_names = draw(st.lists(st.sampled_from(names), min_size=1, max_size=2, unique=True))
    return {
        "when": {n: draw(condition(ps[n])) for n in when_names},
        "require": {n: draw(condition(ps[n])) for n in req_names},
    }


@st.composite
def version_params(draw: st.DrawFn, ps: dict[str, Raw]) -> Raw:
    names = draw(st.lists(st.sampled_from(sorted(ps)), max_size=len(ps), unique=True)) if ps else []
    return {n: draw(st.sampled_from(allowed_values(ps[n]))) for n in names}


# -- state layouts ---------------------------------------------------------------

FIXED_KINDS = ["u8", "u16", "u32", "u64"]
VARIABLE_KINDS = ["u8[]", "u16[]", "u32[]", "bytes"]


@st.composite
def size_expr(draw: st.DrawFn, ps: dict[str, Raw], depth: int = 0) -> Any:
    """A §7 size: a constant, an int parameter, ``{"param", ...}`` or ``{"when", "then"}``."""
    ints = sorted(n for n, p in ps.items() if p["type"] == "int")
    shapes = ["const", "const"] + (["param", "scaled"] if ints else []) + (["when"] if ps and depth == 0 else [])
    shape = draw(st.sampled_from(shapes))
    if shape == "const":
        return draw(st.integers(0, 8))
    if shape == "param":
        return draw(st.sampled_from(ints))
    if shape == "scaled":
        out: Raw = {"param": draw(st.sampled_from(ints))}
        if draw(st.booleans()):
            out["div"] = draw(st.integers(1, 3))
        if draw(st.booleans()):
            out["times"] = draw(st.one_of(st.integers(0, 3), st.sampled_from(ints)))
        if draw(st.booleans()):
            out["plus"] = draw(st.integers(0, 40))
        return out
    name = draw(st.sampled_from(sorted(ps)))
    return {"when": {name: draw(condition(ps[name]))}, "then": draw(size_expr(ps, depth + 1))}


@st.composite
def state_layouts(draw: st.DrawFn, ps: dict[str, Raw]) -> Raw:
    """A random published layout over a model's parameters."""
    sections = []
    for i in range(draw(st.integers(1, 3))):
        fields = []
        for j in range(draw(st.integers(1, 3))):
            if draw(st.booleans()):
                fields.append({"name": f"f{j}", "type": draw(st.sampled_from(FIXED_KINDS))})
            else:
                fields.append(
                    {"name": f"f{j}", "type": draw(st.sampled_from(VARIABLE_KINDS)), "max": draw(size_expr(ps))}
                )
        section: Raw = {"name": f"s{i}", "fields": fields}
        if ps and draw(st.integers(0, 2)) == 0:
            name = draw(st.sampled_from(sorted(ps)))
            section["when"] = {name: draw(condition(ps[name]))}
        if draw(st.integers(0, 3)) == 0:
            section["optional"] = True
        sections.append(section)
    regions = [{"name": "r0", "size": draw(size_expr(ps))}] if draw(st.booleans()) else []
    return {"sections": sections, "regions": regions}


@st.composite
def mutated_layout(draw: st.DrawFn, state: Raw, ps: dict[str, Raw]) -> Raw:
    """A NEW release's layout: unchanged, or one of the mistakes rule 6 and the STATE_* rules exist for."""
    new = copy.deepcopy(state)
    op = draw(
        st.sampled_from(["keep", "rename", "type", "max", "drop", "add", "when", "optional", "region"])
    )
    sections = new["sections"]
    section = draw(st.sampled_from(sections))
    field = draw(st.sampled_from(section["fields"]))
    if op == "rename":
        field["name"] = field["name"] + "x"
    elif op == "type":
        kinds = VARIABLE_KINDS if "max" in field else FIXED_KINDS
        field["type"] = draw(st.sampled_from(kinds))
    elif op == "max" and "max" in field:
        field["max"] = draw(size_expr(ps))
    elif op == "drop" and len(sections) > 1:
        sections.remove(section)
    elif op == "add":
        section["fields"].append({"name": "added", "type": "u32"})
    elif op == "when":
        if "when" in section:
            del section["when"]
        elif ps:
            name = draw(st.sampled_from(sorted(ps)))
            section["when"] = {name: draw(condition(ps[name]))}
    elif op == "optional":
        section["optional"] = not section.get("optional", False)
    elif op == "region":
        new["regions"] = [{"name": "r0", "size": draw(size_expr(ps))}]
    return new


def _repair_size(expr: Any, ps: dict[str, Raw]) -> Any:
    def is_int(name: Any) -> bool:
        return isinstance(name, str) and name in ps and ps[name]["type"] == "int"

    if isinstance(expr, str):
        return expr if is_int(expr) else 1
    if isinstance(expr, dict) and "param" in expr:
        if not is_int(expr["param"]):
            return 1
        if isinstance(expr.get("times"), str) and not is_int(expr["times"]):
            expr["times"] = 2
        return expr
    if isinstance(expr, dict) and "when" in expr:
        expr["when"] = {n: c for n, c in expr["when"].items() if n in ps and _cond_fits(ps[n], c)}
        then = _repair_size(expr["then"], ps)
        return {"when": expr["when"], "then": then} if expr["when"] else then
    return expr


def _repair_state(state: Raw, ps: dict[str, Raw]) -> Raw:
    """Keep a layout consistent with its model: only its parameters, of the right types."""
    for section in state["sections"]:
        if "when" in section:
            section["when"] = {n: c for n, c in section["when"].items() if n in ps and _cond_fits(ps[n], c)}
            if not section["when"]:
                del section["when"]
        for field in section["fields"]:
            if "max" in field:
                field["max"] = _repair_size(field["max"], ps)
    for region in state["regions"]:
        region["size"] = _repair_size(region["size"], ps)
    return state


# -- repair and load -----------------------------------------------------------


def repair(model: Raw) -> Raw:
    """Make a raw model consistent: init allowed, constraints hold at init, versions valid."""
    ps = model["params"]
    for p in ps.values():
        values = allowed_values(p)
        if not values:
            if p["type"] == "int":
                p["allowed"] = [{"min": 0, "max": 0}]
            elif p["type"] == "str":
                p["allowed"] = ["a"]
            else:
                p.pop("allowed", None)
            values = allowed_values(p)
        if p["init"] not in values or type(p["init"]) is not type(values[0]):
            p["init"] = values[0]
    model["constraints"] = [
        k for k in model.get("constraints", []) if set(k["when"]) <= set(ps) and set(k["require"]) <= set(ps)
        and all(_cond_fits(ps[n], c) for part in ("when", "require") for n, c in k[part].items())
    ]
    probe = DeviceModel.model_validate({**model, "versions": []})
    init = probe.init_values
    model["constraints"] = [
        raw for raw, k in zip(model["constraints"], probe.constraints, strict=True) if not k.failing(init)
    ]
    probe = DeviceModel.model_validate({**model, "versions": []})
    kept = []
    seen = set()
    for v in model.get("versions", []):
        if v["name"] in seen or not set(v["params"]) <= set(ps):
            continue
        full = dict(probe.off_values)
        full.update(v["params"])
        if any(type(full[n]) is not type(ps[n]["off"]) for n in v["params"]):
            continue
        if check_full(probe, full):
            continue
        seen.add(v["name"])
        kept.append(v)
    model["versions"] = kept
    if "state" in model:
        model["state"] = _repair_state(model["state"], ps)
    return model


def _cond_fits(p: Raw, cond: Any) -> bool:
    kind = p["type"]
    if isinstance(cond, dict) and "in" in cond:
        values = cond["in"]
    elif isinstance(cond, dict):
        return kind == "int"
    else:
        values = [cond]
    py = {"bool": bool, "int": int, "str": str}[kind]
    return all(type(v) is py for v in values)


def load(model: Raw, release: str) -> ModelDocument:
    raw = {
        "format": "devmig/model-document/1",
        "implementation": {"name": "rand", "release": release},
        "models": [repair(model)],
    }
    try:
        return load_document(raw)
    except DocumentError:  # pragma: no cover - a repair gap; skip the example
        assume(False)
        raise


@st.composite
def raw_models(draw: st.DrawFn, small: bool = False, state: bool = False) -> Raw:
    n = draw(st.integers(1, 4 if small else 6))
    ps = {f"p{i}": draw(params(small)) for i in range(n)}
    cons = draw(st.lists(constraint(ps), max_size=3))
    versions = [{"name": str(i + 1), "params": draw(version_params(ps))} for i in range(draw(st.integers(0, 3)))]
    out = {"model": MODEL_ID, "params": ps, "constraints": cons, "versions": versions}
    if state and draw(st.integers(0, 4)) > 0:
        out["state"] = draw(state_layouts(ps))
    return out


@st.composite
def documents(draw: st.DrawFn, small: bool = False) -> ModelDocument:
    """A random consistent model document with one model."""
    return load(draw(raw_models(small)), "1.0.0")


# -- configurations -----------------------------------------------------------


@st.composite
def accepted_configs(draw: st.DrawFn, model: DeviceModel, tries: int = 6) -> Config:
    """A random configuration the model accepts (the init configuration when no try succeeds)."""
    raw = {n: p.model_dump(mode="json", exclude_none=True) for n, p in model.params.items()}
    for _ in range(tries):
        full = {}
        for n, p in model.params.items():
            values = allowed_values(raw[n])
            choices = [*values, p.init] + ([p.off] if p.allows(p.off) else [])
            full[n] = draw(st.sampled_from(choices))
        if not check_full(model, full):
            return Config(model.model, model.canonical_items(full))
    return Config(model.model, model.canonical_items(model.init_values))


# -- releases -------------------------------------------------------------------


@st.composite
def mutated(draw: st.DrawFn, model: Raw, small: bool = False) -> Raw:
    """A NEW release of a raw model: random widenings, narrowings, removals, additions..."""
    new = copy.deepcopy(model)
    ps = new["params"]
    for name in sorted(ps):
        op = draw(
            st.sampled_from(
                ["keep", "keep", "keep", "widen", "narrow", "off", "type", "remove", "init", "describe"]
            )
        )
        p = ps[name]
        if op == "widen":
            if p["type"] == "int":
                p["allowed"] = [*p["allowed"], *draw(int_ranges(small))]
            elif p["type"] == "str":
                p["allowed"] = list(dict.fromkeys([*p["allowed"], draw(st.sampled_from(STRS))]))
            else:
                p.pop("allowed", None)
        elif op == "narrow":
            if p["type"] == "int":
                rs = p["allowed"]
                i = draw(st.integers(0, len(rs) - 1))
                r = dict(rs[i])
                cut = draw(st.sampled_from(["max", "min", "step", "drop"]))
                if cut == "max":
                    r["max"] = r["min"] + (r["max"] - r["min"]) // 2
                elif cut == "min":
                    r["min"] = r["min"] + (r["max"] - r["min"] + 1) // 2
                elif cut == "step":
                    r["step"] = r.get("step", 1) * 2
                rs = [*rs[:i], *([] if cut == "drop" else [r]), *rs[i + 1 :]]
                p["allowed"] = rs or [r]
            elif p["type"] == "str":
                if len(p["allowed"]) > 1:
                    p["allowed"] = p["allowed"][1:]
            else:
                p["allowed"] = [draw(st.booleans())]
        elif op == "off":
            p["off"] = draw(params(small).filter(lambda q, t=p["type"]: q["type"] == t))["off"]
        elif op == "type":
            ps[name] = draw(params(small))
        elif op == "remove" and len(ps) > 1:
            del ps[name]
        elif op == "init":
            p["init"] = draw(st.sampled_from(allowed_values(p)))
        elif op == "describe":
            p["description"] = "changed"
    for i in range(draw(st.integers(0, 2))):
        ps[f"n{i}"] = draw(params(small))
    cons = [k for k in new["constraints"] if draw(st.booleans()) or draw(st.booleans())]
    cons += draw(st.lists(constraint(ps), max_size=2))
    new["constraints"] = cons
    versions = [v for v in new["versions"] if draw(st.integers(0, 5)) > 0]
    for v in versions:
        if draw(st.integers(0, 5)) == 0:
            v["params"] = draw(version_params(ps))
    start = len(versions) + 10
    versions += [{"name": str(start + i), "params": draw(version_params(ps))} for i in range(draw(st.integers(0, 2)))]
    new["versions"] = versions
    if "state" in new:
        if draw(st.integers(0, 7)) == 0:
            del new["state"]
        else:
            new["state"] = draw(mutated_layout(new["state"], ps))
    return new


@st.composite
def release_pairs(draw: st.DrawFn, small: bool = False) -> tuple[ModelDocument, ModelDocument]:
    """A random OLD document and a random NEW release of it (both usually with a state layout)."""
    old_raw = draw(raw_models(small, state=True))
    old = load(copy.deepcopy(old_raw), "1.0.0")
    new = load(draw(mutated(old.models[0].model_dump(mode="json", by_alias=True, exclude_none=True), small)), "2.0.0")
    return old, new
