"""Benchmark of devmig.compat: the pairwise check and the release diff.

Run: ``uv run python bench/compat.py`` (about half a minute on two cores).
The JSON figures are wall-clock medians; the process CPU time is printed too,
because on a shared machine other processes inflate wall-clock time.

- check: a 20-parameter configuration (mixed types, ranges with steps,
  constraints, a published state layout) checked against a newer release's
  document that accepts it and whose layout adds an optional section (so rule
  6 resolves and compares both layouts; each distinct configuration once);
  median over many calls, after the first (cold, compiling) call. Baseline, in
  the same run: the naive check that re-validates the configuration on the
  destination model with ``parse_canonical()`` and compares off values.
- diff: two seeded 100-model x 50-parameter documents (NEW with widenings,
  narrowings, added parameters and constraints, removed constraints, new
  versions; every model publishes a state layout, and NEW narrows a field
  in a tenth of them, renames one in another tenth and adds an optional section
  in a third, so the ``STATE_*`` rules search); every run diffs *fresh copies* of the documents (loaded from
  JSON outside the timing), so no cache carries over between runs. Baseline: plain JSON comparison of the two
  documents (``to_json() == to_json()``), which answers only "changed or not".

The last line printed is one JSON object:
``{"bench": "compat", "check_us_median": ..., "diff_ms": ...}``.
Targets: check <= 20 us median, diff <= 50 ms.
"""

from __future__ import annotations

import copy
import gc
import json
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

from devmig.compat import check, diff
from devmig.model import (
    Config,
    DeviceModel,
    ModelDocument,
    check_full,
    load_document,
    parse_canonical,
    same_value,
)

SEED = 20240611
CHECK_TARGET_US = 20.0
DIFF_TARGET_MS = 50.0
STRS = ["1G", "10G", "25G", "40G", "50G", "100G", "200G", "400G"]

Raw = dict[str, Any]


# -- generation ----------------------------------------------------------------


def _values(p: Raw) -> list[Any]:
    if p["type"] == "bool":
        return list(dict.fromkeys(p.get("allowed", [False, True])))
    if p["type"] == "str":
        return list(p["allowed"])
    out: list[int] = []
    for r in p["allowed"]:
        out += range(r["min"], r["max"] + 1, r.get("step") or 1)
    return sorted(set(out))


def _param(rng: random.Random) -> Raw:
    kind = rng.choices(["int", "bool", "str"], weights=[4, 3, 3])[0]
    if kind == "bool":
        return {"type": "bool", "off": False, "init": True, "description": "a feature"}
    if kind == "str":
        allowed = rng.sample(STRS, rng.randint(3, 6))
        return {"type": "str", "allowed": allowed, "off": allowed[0], "init": allowed[-1]}
    ranges = []
    lo = rng.choice([0, 1, 16, 64])
    for _ in range(rng.randint(1, 2)):
        step = rng.choice([None, 1, 8, 16, 64])
        hi = lo + (step or 1) * rng.randint(4, 64)
        r = {"min": lo, "max": hi}
        if step:
            r["step"] = step
        ranges.append(r)
        lo = hi + rng.choice([1, 32, 128])
    p = {"type": "int", "allowed": ranges, "off": ranges[0]["min"]}
    p["init"] = rng.choice(_values(p))
    return p


def _condition(rng: random.Random, p: Raw) -> Any:
    values = _values(p)
    if p["type"] == "bool":
        return rng.choice([True, False])
    if p["type"] == "str":
        return rng.choice(values) if rng.random() < 0.5 else {"in": rng.sample(values, 2)}
    v = rng.choice(values)
    return rng.choice([{"min": v}, {"max": v}, v, {"in": sorted({v, rng.choice(values)})}])


def _constraint(rng: random.Random, params: dict[str, Raw]) -> Raw:
    names = rng.sample(sorted(params), 3)
    return {
        "when": {names[0]: _condition(rng, params[names[0]])},
        "require": {n: _condition(rng, params[n]) for n in names[1 : rng.randint(2, 3)]},
        "message": "generated",
    }


def _repair(model: Raw, rng: random.Random) -> Raw:
    probe = DeviceModel.model_validate({**model, "versions": []})
    init = probe.init_values
    model["constraints"] = [
        raw for raw, k in zip(model["constraints"], probe.constraints, strict=True) if not k.failing(init)
    ]
    probe = DeviceModel.model_validate({**model, "versions": []})
    versions = []
    for v in model["versions"]:
        full = dict(probe.off_values)
        full.update(v["params"])
        if set(v["params"]) <= set(model["params"]) and not check_full(probe, full):
            versions.append(v)
    model["versions"] = versions
    return model


def _random_full(rng: random.Random, model: Raw, fraction: float) -> Raw:
    names = rng.sample(sorted(model["params"]), int(len(model["params"]) * fraction))
    return {n: rng.choice(_values(model["params"][n])) for n in names}


def _state(rng: random.Random, params: dict[str, Raw]) -> Raw:
    """A published state layout over the model's parameters: sized by int parameters, one section conditional."""
    ints = sorted(n for n, p in params.items() if p["type"] == "int")
    bools = sorted(n for n, p in params.items() if p["type"] == "bool")
    sections: list[Raw] = []
    for i in range(4):
        fields: list[Raw] = [{"name": f"count-{j}", "type": "u64"} for j in range(2)]
        if ints:
            fields.append({"name": "ring", "type": "u32[]", "max": rng.choice(ints)})
            fields.append({"name": "table", "type": "u8[]", "max": {"param": rng.choice(ints), "div": 2, "plus": 1}})
        section: Raw = {"name": f"section-{i}", "fields": fields}
        if bools and i == 3:
            section["when"] = {rng.choice(bools): True}
        sections.append(section)
    regions = [{"name": "memory", "size": {"param": rng.choice(ints), "times": 4096}}] if ints else []
    return {"sections": sections, "regions": regions}


def make_model(rng: random.Random, index: int, n_params: int, n_constraints: int) -> Raw:
    params = {f"param-{i:02d}": _param(rng) for i in range(n_params)}
    model: Raw = {
        "model": f"example.org/devices/gen-{index:03d}",
        "description": "generated",
        "params": params,
        "constraints": [_constraint(rng, params) for _ in range(n_constraints)],
        "versions": [],
        "state": _state(rng, params),
    }
    probe = _repair(copy.deepcopy(model), rng)
    model["constraints"] = probe["constraints"]
    for name in range(1, 7):
        model["versions"].append({"name": str(name), "params": _random_full(rng, model, 0.3)})
    return _repair(model, rng)


def make_new(rng: random.Random, old: Raw) -> Raw:
    new = copy.deepcopy(old)
    params = new["params"]
    names = sorted(params)
    for name in rng.sample(names, 3):  # widenings
        p = params[name]
        if p["type"] == "int":
            last = p["allowed"][-1]
            p["allowed"][-1] = {**last, "max": last["max"] + 4 * (last.get("step") or 1)}
        elif p["type"] == "str":
            p["allowed"] = list(dict.fromkeys([*p["allowed"], "800G"]))
    for name in rng.sample(names, 2):  # narrowings
        p = params[name]
        if p["type"] == "int":
            first = p["allowed"][0]
            p["allowed"][0] = {**first, "max": first["min"] + (first["max"] - first["min"]) // 2}
        elif p["type"] == "str" and len(p["allowed"]) > 2:
            p["allowed"] = p["allowed"][:-1]
            p["init"] = p["allowed"][-1]
        values = _values(p)
        if p["type"] == "int" and p["init"] not in values:
            p["init"] = values[-1]
    for i in range(2):  # added parameters
        params[f"new-{i}"] = {"type": "bool", "off": False, "init": True}
    new["constraints"] = new["constraints"][1:] + [_constraint(rng, params) for _ in range(2)]
    name = rng.choice(names)
    params[name]["init"] = rng.choice(_values(params[name]))
    new["versions"].append({"name": "7", "params": _random_full(rng, new, 0.5)})
    state = new["state"]
    luck = rng.random()
    if luck < 0.1:  # a field narrowed: breaks both ways
        state["sections"][1]["fields"][0]["type"] = "u32"
    elif luck < 0.2:  # a field renamed: removed and added
        state["sections"][2]["fields"][1]["name"] = "renamed"
    elif luck < 0.55:  # an optional section: the old reader skips it
        state["sections"].append({"name": "stats", "optional": True, "fields": [{"name": "hits", "type": "u64"}]})
    return _repair(new, rng)


def document(release: str, models: list[Raw]) -> ModelDocument:
    return load_document(
        {"format": "devmig/model-document/1", "implementation": {"name": "gen", "release": release}, "models": models}
    )


def accepted_config(rng: random.Random, model: DeviceModel, n: int) -> Config:
    """A configuration the model accepts that sets ``n`` parameters to non-off values."""
    names = sorted(model.params)[:n]
    for _ in range(100000):
        full = dict(model.off_values)
        for name in names:
            p = model.params[name]
            raw = p.model_dump(mode="json", exclude_none=True)
            full[name] = rng.choice([v for v in _values(raw) if not same_value(v, p.off)])
        if not check_full(model, full):
            return Config(model.model, model.canonical_items(full))
    raise RuntimeError("no accepted configuration found")


# -- timing --------------------------------------------------------------------


def per_call_us(fn: Callable[[], object], calls: int, rounds: int) -> float:
    """Median over ``rounds`` of the mean time of ``calls`` calls, in microseconds."""
    samples = []
    for _ in range(rounds):
        start = time.perf_counter_ns()
        for _ in range(calls):
            fn()
        samples.append((time.perf_counter_ns() - start) / calls / 1000)
    return statistics.median(samples)


def main() -> None:
    rng = random.Random(SEED)

    # check: a 20-parameter configuration against a newer release
    old_raw = make_model(rng, 0, 20, 10)
    new_raw = copy.deepcopy(old_raw)
    for p in new_raw["params"].values():  # a newer release that only widens
        if p["type"] == "int":
            p["allowed"] = [*p["allowed"], {"min": 10_000, "max": 20_000, "step": 4}]
    # ... and adds an optional section to its state layout: rule 6 compares the two
    new_raw["state"]["sections"].append({"name": "stats", "optional": True, "fields": [{"name": "n", "type": "u64"}]})
    src_doc, dst_doc = document("1.0.0", [old_raw]), document("2.0.0", [new_raw])
    src, dst = src_doc.models[0], dst_doc.models[0]
    config = accepted_config(rng, src, 20)
    assert len(config.items) == 20, config
    t0 = time.perf_counter_ns()
    verdict = check(src, config, dst_doc)
    cold_us = (time.perf_counter_ns() - t0) / 1000
    assert verdict.compatible, verdict.render()

    def naive() -> bool:
        parse_canonical(dst, config.values)
        return all(
            same_value(p.off, dst.params[n].off) for n, p in src.params.items() if n in dst.params
        )

    assert naive()
    gc.collect()
    check_us = per_call_us(lambda: check(src, config, dst_doc), 2000, 31)
    check_cpu = time.process_time_ns()
    for _ in range(20000):
        check(src, config, dst_doc)
    check_cpu_us = (time.process_time_ns() - check_cpu) / 20000 / 1000
    naive_us = per_call_us(naive, 200, 31)
    bad = Config(src.model, (*config.items[:-1], (config.items[-1][0], 10**9)))
    refused_us = per_call_us(lambda: check(src, bad, dst_doc), 200, 11)
    print(f"check  20 params, compatible:   {check_us:8.2f} us median (target <= {CHECK_TARGET_US} us)")
    print(f"       process CPU time:        {check_cpu_us:8.2f} us mean")
    print(f"       cold first call:         {cold_us:8.2f} us (compiles both models)")
    print(f"       refused (with reasons):  {refused_us:8.2f} us")
    print(f"       naive re-validation:     {naive_us:8.2f} us  -> {naive_us / check_us:5.1f}x faster")

    # diff: 100 models x 50 parameters
    models = [make_model(rng, i, 50, 12) for i in range(100)]
    news = [make_new(rng, m) for m in models]
    old_json = document("1.0.0", models).to_json()
    new_json = document("2.0.0", news).to_json()
    samples, cpu_samples = [], []
    result = None
    for _ in range(15):
        old_doc, new_doc = ModelDocument.model_validate(old_json), ModelDocument.model_validate(new_json)
        gc.collect()
        start, cpu = time.perf_counter_ns(), time.process_time_ns()
        result = diff(old_doc, new_doc)
        samples.append((time.perf_counter_ns() - start) / 1e6)
        cpu_samples.append((time.process_time_ns() - cpu) / 1e6)
        del old_doc, new_doc
    assert result is not None
    diff_ms = statistics.median(samples)
    base = ModelDocument.model_validate(old_json), ModelDocument.model_validate(new_json)
    plain_ms = per_call_us(lambda: base[0].to_json() == base[1].to_json(), 3, 5) / 1000
    rules: dict[str, int] = {}
    for c in result.changes:
        rules[c.rule] = rules.get(c.rule, 0) + 1
    inexact = sum(1 for c in result.changes if not c.exact)
    print(f"diff   100 models x 50 params:  {diff_ms:8.2f} ms median of {len(samples)} fresh runs "
          f"(target <= {DIFF_TARGET_MS} ms; min {min(samples):.2f}, max {max(samples):.2f})")
    print(f"       process CPU time:        {statistics.median(cpu_samples):8.2f} ms median "
          "(differs from wall time when other processes compete for the cores)")
    print(f"       plain JSON comparison:   {plain_ms:8.2f} ms  -> {diff_ms / plain_ms:5.2f}x its time")
    print(f"       {len(result.changes)} changes, {sum(1 for c in result.changes if c.breaks)} breaking, "
          f"{inexact} inexact: {json.dumps(dict(sorted(rules.items())))}")
    print(json.dumps({"bench": "compat", "check_us_median": round(check_us, 3), "diff_ms": round(diff_ms, 3)}))


if __name__ == "__main__":
    main()
