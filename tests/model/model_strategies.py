"""Hypothesis strategies: random *valid* model documents and accepted configurations.

A generated document is valid by construction (DESIGN §7):
- every ``init`` is allowed; ``off`` is any value of the type (often allowed,
  sometimes not);
- a version names a value for every parameter whose off value is not allowed,
  and only allowed values;
- constraints are drawn at random and then kept only when the init
  configuration and every version satisfy them;
- version names are unique; when two versions expand to the same
  configuration, that is legal and :func:`version_of` must name the newest.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from devmig.model import DeviceModel, load_document
from devmig.model._document import Constraint

NAME_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-"

param_names = st.text(NAME_ALPHABET, min_size=1, max_size=12).filter(
    lambda n: n[0].isalnum() and n.isascii() and n != "version"
)

# String values: anything printable, including the characters option syntax
# treats specially (``,`` and ``=``) and non-ASCII text.
str_values = st.one_of(
    st.sampled_from(["", ",", ",,", "a,b", "=", "a=b", "on", "1G", "25G", "é", "日本", " x "]),
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=8),
)


@st.composite
def int_ranges(draw: st.DrawFn) -> dict[str, Any]:
    low = draw(st.integers(-1000, 1000))
    high = low + draw(st.integers(0, 200))
    out: dict[str, Any] = {"min": low, "max": high}
    if draw(st.booleans()):
        out["step"] = draw(st.integers(1, 50))
    return out


def range_values(r: dict[str, Any]) -> st.SearchStrategy[int]:
    step = r.get("step", 1)
    count = (r["max"] - r["min"]) // step
    return st.integers(0, count).map(lambda k: r["min"] + k * step)


def allowed_values(param: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Return a strategy of the values a parameter allows."""
    if param["type"] == "bool":
        return st.sampled_from(param.get("allowed", [False, True]))
    if param["type"] == "int":
        return st.one_of(*[range_values(r) for r in param["allowed"]])
    return st.sampled_from(param["allowed"])


def allows(param: dict[str, Any], value: Any) -> bool:
    if param["type"] == "bool":
        return type(value) is bool and value in param.get("allowed", [False, True])
    if param["type"] == "int":
        return type(value) is int and any(
            r["min"] <= value <= r["max"] and (value - r["min"]) % r.get("step", 1) == 0
            for r in param["allowed"]
        )
    return type(value) is str and value in param["allowed"]


@st.composite
def params(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["bool", "int", "str"]))
    out: dict[str, Any] = {"type": kind}
    if kind == "bool":
        if draw(st.booleans()):
            out["allowed"] = draw(st.sampled_from([[False], [True], [False, True], [True, False]]))
        out["off"] = draw(st.booleans())
    elif kind == "int":
        out["allowed"] = draw(st.lists(int_ranges(), min_size=1, max_size=3))
        out["off"] = draw(st.one_of(st.integers(-1100, 1300), range_values(out["allowed"][0])))
    else:
        out["allowed"] = draw(st.lists(str_values, min_size=1, max_size=4, unique=True))
        out["off"] = draw(st.one_of(st.sampled_from(out["allowed"]), str_values))
    out["init"] = draw(allowed_values(out))
    if draw(st.booleans()):
        out["description"] = draw(st.text(max_size=20))
    return out


def conditions(param: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Return a strategy of well-typed constraint conditions on ``param``."""
    kind = param["type"]
    if kind == "bool":
        literal: st.SearchStrategy[Any] = st.booleans()
    elif kind == "int":
        literal = st.one_of(allowed_values(param), st.integers(-1100, 1300))
    else:
        literal = st.one_of(allowed_values(param), str_values)
    options = [literal, st.lists(literal, min_size=1, max_size=3).map(lambda v: {"in": v})]
    if kind == "int":
        bound = st.one_of(allowed_values(param), st.integers(-1100, 1300))
        options.append(st.fixed_dictionaries({}, optional={"min": bound, "max": bound}))
    return st.one_of(*options)


@st.composite
def constraints(draw: st.DrawFn, ps: dict[str, Any]) -> dict[str, Any]:
    names = sorted(ps)
    when_names = draw(st.lists(st.sampled_from(names), max_size=2, unique=True))
    require_names = draw(st.lists(st.sampled_from(names), min_size=1, max_size=2, unique=True))
    out: dict[str, Any] = {"require": {n: draw(conditions(ps[n])) for n in require_names}}
    if when_names or draw(st.booleans()):
        out["when"] = {n: draw(conditions(ps[n])) for n in when_names}
    if draw(st.booleans()):
        out["message"] = draw(st.text(max_size=20))
    return out


@st.composite
def versions(draw: st.DrawFn, ps: dict[str, Any]) -> list[dict[str, Any]]:
    names = draw(st.lists(st.text(min_size=1, max_size=6), max_size=4, unique=True))
    out = []
    for name in names:
        chosen: dict[str, Any] = {}
        for pname, param in ps.items():
            if not allows(param, param["off"]) or draw(st.booleans()):
                chosen[pname] = draw(allowed_values(param))
        out.append({"name": name, "params": chosen})
    return out


def satisfied(constraint: dict[str, Any], full: dict[str, Any]) -> bool:
    parsed = Constraint.model_validate(constraint, by_alias=True, by_name=False)
    return not parsed.failing(full)


@st.composite
def models(draw: st.DrawFn, model_id: str | None = None, min_params: int = 0) -> dict[str, Any]:
    ps = draw(st.dictionaries(param_names, params(), min_size=min_params, max_size=5))
    out: dict[str, Any] = {"model": model_id or draw(st.text(min_size=1, max_size=30))}
    if draw(st.booleans()):
        out["description"] = draw(st.text(max_size=30))
    if ps or draw(st.booleans()):
        out["params"] = ps
    vs = draw(versions(ps)) if ps else []
    if vs or draw(st.booleans()):
        out["versions"] = vs
    if ps:
        init = {n: p["init"] for n, p in ps.items()}
        fulls = [init] + [{**{n: p["off"] for n, p in ps.items()}, **v["params"]} for v in vs]
        candidates = draw(st.lists(constraints(ps), max_size=3))
        kept = [c for c in candidates if all(satisfied(c, f) for f in fulls)]
        if kept or draw(st.booleans()):
            out["constraints"] = kept
    return out


@st.composite
def documents(draw: st.DrawFn) -> dict[str, Any]:
    count = draw(st.integers(1, 3))
    ids = draw(
        st.lists(st.text(min_size=1, max_size=20), min_size=count, max_size=count, unique=True)
    )
    return {
        "format": "devmig/model-document/1",
        "implementation": {
            "name": draw(st.text(min_size=1, max_size=10)),
            "release": draw(st.text(min_size=1, max_size=10)),
        },
        "models": [draw(models(i)) for i in ids],
    }


@st.composite
def host_reports(draw: st.DrawFn) -> dict[str, Any]:
    docs = draw(st.lists(documents(), max_size=3))
    seen = set()
    unique = []
    for doc in docs:
        key = (doc["implementation"]["name"], doc["implementation"]["release"])
        if key not in seen:
            seen.add(key)
            unique.append(doc)
    return {
        "format": "devmig/host-report/1",
        "host": draw(st.text(min_size=1, max_size=10)),
        "implementations": unique,
    }


@st.composite
def model_and_raw(draw: st.DrawFn) -> tuple[DeviceModel, dict[str, Any]]:
    """Return a loaded random model with at least one parameter, and its raw form."""
    raw = draw(models("example.org/random", min_params=1))
    doc = {
        "format": "devmig/model-document/1",
        "implementation": {"name": "random", "release": "1"},
        "models": [raw],
    }
    return load_document(doc).models[0], raw


@st.composite
def option_strings(draw: st.DrawFn, raw: dict[str, Any]) -> str:
    """Return an option string for ``raw`` that names allowed values (it may still violate a constraint).

    Values are written in every accepted spelling: any case of the boolean
    words, a bare key, signs, ``0x`` hex, ``,,`` for commas.
    """
    ps = raw["params"]
    items = []
    vs = raw.get("versions", [])
    if vs and draw(st.booleans()):
        items.append("version=" + draw(st.sampled_from(vs))["name"].replace(",", ",,"))
    for name in draw(st.lists(st.sampled_from(sorted(ps)), unique=True, max_size=len(ps))):
        value = draw(allowed_values(ps[name]))
        items.append(draw(spellings(name, value)))
    return ",".join(draw(st.permutations(items)))


@st.composite
def spellings(draw: st.DrawFn, name: str, value: Any) -> str:
    if isinstance(value, bool):
        if value and draw(st.booleans()):
            return name
        word = draw(st.sampled_from(["on", "true", "yes"] if value else ["off", "false", "no"]))
        word = "".join(c.upper() if draw(st.booleans()) else c for c in word)
        return f"{name}={word}"
    if isinstance(value, int):
        sign = "-" if value < 0 else draw(st.sampled_from(["", "+"]))
        digits = abs(value)
        body = draw(
            st.sampled_from(
                [
                    str(digits),
                    hex(digits),
                    hex(digits).upper().replace("X", "x"),
                    "0X" + format(digits, "x"),
                    "00" + str(digits),
                ]
            )
        )
        return f"{name}={sign}{body}"
    return f"{name}={value.replace(',', ',,')}"
