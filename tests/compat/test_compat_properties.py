"""Properties tying the release diff to the pairwise check.

- never more lenient: if a configuration OLD accepts (a published version, the
  init configuration, a random one) fails the check against NEW, the diff
  reports an upgrade break;
- exact on small documents: enumerating every configuration OLD accepts, some
  fails the check against NEW exactly when the diff reports a check-based
  upgrade break (every rule but VERSION_REDEFINED, which breaks upgrade by
  definition);
- every example of an upgrade break is a configuration OLD accepts that NEW
  refuses;
- not needlessly strict: an identical document has no change, a widening
  breaks nothing;
- the same, for every pair of shipped example releases.
"""

from __future__ import annotations

import copy
import itertools
from typing import Any

import pytest
from compat_fixtures import canonical, example_documents, model_of, version_configs
from compat_strategies import (
    accepted_configs,
    allowed_values,
    documents,
    load,
    raw_models,
    release_pairs,
)
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from devmig.compat import ReleaseDiff, check, diff
from devmig.model import Config, DeviceModel, ModelDocument, check_full, expand

PROPS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]
)


def _upgrade_broken(d: ReleaseDiff, model: str) -> bool:
    return any("upgrade" in c.breaks and c.model == model for c in d.changes)


def _check_based_break(d: ReleaseDiff, model: str) -> bool:
    return any("upgrade" in c.breaks and c.model == model and c.rule != "VERSION_REDEFINED" for c in d.changes)


def _published(model: DeviceModel) -> list[Config]:
    return [c for _, c in version_configs(model)] + [canonical(model, dict(model.init_values))]


def _assert_examples(old: ModelDocument, new: ModelDocument, d: ReleaseDiff) -> None:
    for change in d.changes:
        if "upgrade" not in change.breaks or change.rule.startswith("VERSION_"):
            continue
        if not change.exact:
            assert change.example is None
            continue
        assert change.example is not None, change
        om = model_of(old, change.model)
        config = expand(om, change.example)
        if change.example_version is not None:
            assert change.example == f"version={change.example_version}"
        assert not check(om, config, new).compatible, (change, config)


@PROPS
@given(st.data())
def test_diff_is_never_more_lenient_than_the_check(data: st.DataObject) -> None:
    old, new = data.draw(release_pairs())
    om = old.models[0]
    d = diff(old, new)
    configs = _published(om) + [data.draw(accepted_configs(om)) for _ in range(3)]
    failing = [c for c in configs if not check(om, c, new).compatible]
    if failing:
        assert _upgrade_broken(d, om.model), (failing[0], d.render())
    _assert_examples(old, new, d)


def _all_accepted(model: DeviceModel, limit: int = 4000) -> list[Config] | None:
    raw = {n: p.model_dump(mode="json", exclude_none=True) for n, p in model.params.items()}
    domains = [[(n, v) for v in allowed_values(raw[n])] for n in model.params]
    total = 1
    for dom in domains:
        total *= len(dom)
    if total > limit:
        return None
    out = []
    for combo in itertools.product(*domains):
        full = dict(combo)
        if not check_full(model, full):
            out.append(canonical(model, full))
    return out


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(release_pairs(small=True))
def test_diff_is_exact_on_small_documents(pair: tuple[ModelDocument, ModelDocument]) -> None:
    old, new = pair
    om = old.models[0]
    every = _all_accepted(om)
    if every is None:
        return
    d = diff(old, new)
    failing = [c for c in every if not check(om, c, new).compatible]
    assert all(c.exact for c in d.changes), d.render()
    assert bool(failing) == _check_based_break(d, om.model), (failing[:3], d.render())
    for change in d.changes:
        if change.rule.startswith("STATE_"):
            event(f"{change.rule} {'breaking' if change.breaks else 'listed'}")
    if any(r.code == "STATE_LAYOUT_MISMATCH" for c in failing for r in check(om, c, new).reasons):
        event("a configuration fails rule 6 alone")
    _assert_examples(old, new, d)


@PROPS
@given(documents())
def test_identical_document_has_no_changes(doc: ModelDocument) -> None:
    twin = ModelDocument.model_validate(doc.to_json())
    assert diff(doc, twin).changes == ()
    assert diff(doc, doc).changes == ()


@st.composite
def widened(draw: st.DrawFn) -> tuple[ModelDocument, ModelDocument]:
    raw = draw(raw_models())
    old = load(copy.deepcopy(raw), "1.0.0")
    new_raw: dict[str, Any] = old.models[0].model_dump(mode="json", by_alias=True, exclude_none=True)
    for p in new_raw["params"].values():
        if p["type"] == "int":
            p["allowed"] = [*p["allowed"], {"min": draw(st.integers(-10, 50)), "max": 60}]
        elif p["type"] == "str":
            p["allowed"] = list(dict.fromkeys([*p["allowed"], "z"]))
        else:
            p["allowed"] = [False, True]
    return old, load(new_raw, "2.0.0")


@PROPS
@given(widened())
def test_widening_breaks_nothing(pair: tuple[ModelDocument, ModelDocument]) -> None:
    old, new = pair
    d = diff(old, new)
    assert not d.breaking, d.render()
    assert set(d.rules()) <= {"ALLOWED_WIDENED"}


# -- the shipped examples ---------------------------------------------------------

EXAMPLES = example_documents()
PAIRS = [
    (a, b)
    for docs in EXAMPLES.values()
    for a, b in itertools.permutations(docs, 2)
]


def _pair_id(pair: tuple[ModelDocument, ModelDocument]) -> str:
    a, b = pair
    return f"{a.implementation.name}:{a.implementation.release}->{b.implementation.release}"


@pytest.mark.skipif(not PAIRS, reason="no example documents shipped")
@pytest.mark.parametrize("pair", PAIRS, ids=[_pair_id(p) for p in PAIRS])
def test_example_pairs_diff_agrees_with_check(pair: tuple[ModelDocument, ModelDocument]) -> None:
    old, new = pair
    d = diff(old, new)
    for om in old.models:
        failing = [c for c in _published(om) if not check(om, c, new).compatible]
        if failing:
            assert _upgrade_broken(d, om.model), (failing[0], d.render())
    _assert_examples(old, new, d)


@pytest.mark.skipif(not PAIRS, reason="no example documents shipped")
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_example_pairs_random_configurations(data: st.DataObject) -> None:
    old, new = data.draw(st.sampled_from(PAIRS))
    om = data.draw(st.sampled_from(old.models))
    config = data.draw(accepted_configs(om, tries=12))
    if not check(om, config, new).compatible:
        assert _upgrade_broken(diff(old, new), om.model)


@pytest.mark.skipif(not PAIRS, reason="no example documents shipped")
@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_example_releases_in_order(name: str) -> None:
    """Consecutive releases not named "broken" break nothing on upgrade; "broken" ones do."""
    docs = EXAMPLES[name]
    for old, new in itertools.pairwise(docs):
        d = diff(old, new)
        assert ("upgrade" in d.breaks) == ("broken" in new.implementation.release), d.render()
