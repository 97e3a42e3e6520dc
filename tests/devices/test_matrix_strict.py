"""devmig.testing's stronger matrix: boundary configurations, extra ones, a region cap, strict mode,
and the declaration-equals-published-layout helper."""

from __future__ import annotations

import json
from typing import Any

import pytest

from devmig._examples import example_text
from devmig.device import Device
from devmig.devices import CATALOG, OTHER_MODELS, AccelV3, NicV2, NicV3
from devmig.model import load_document
from devmig.model._layout_text import with_layouts
from devmig.state import FieldSpec, SectionSpec, StateDeclaration, published_layout
from devmig.testing import assert_layout_published, boundary_configs, cross_release_matrix


def _release(cls: type[Device], name: str, edit: Any) -> type[Device]:
    """A release of ``cls`` whose document (NIC 3.0.0's) is edited, its layout regenerated."""
    raw = json.loads(example_text("acme-nic/3.0.0"))
    raw["implementation"]["release"] = "3.1.0"
    model = raw["models"][0]
    edit(model)
    model.pop("state")
    layout = published_layout(cls.state, load_document(raw).models[0])
    assert layout is not None
    doc = load_document(with_layouts(json.dumps(raw), {model["model"]: layout.to_json()}))
    return type(name, (cls,), {"document_source": doc, "_document": None})


def _narrow_rx_queues(model: dict[str, Any]) -> None:
    model["params"]["rx-queues"]["allowed"] = [{"min": 1, "max": 12}]
    model["params"]["rx-queues"]["init"] = 12
    for v in model["versions"]:
        if v["params"].get("rx-queues", 0) > 12:
            v["params"]["rx-queues"] = 12


def _remove_tso(model: dict[str, Any]) -> None:
    del model["params"]["tso"]
    for v in model["versions"]:
        v["params"].pop("tso", None)


NARROWED = _release(NicV3, "NicNarrowed", _narrow_rx_queues)
WITHOUT_TSO = _release(NicV2, "NicWithoutTso", _remove_tso)


def test_boundary_configurations_cover_range_ends_steps_strings_and_constraint_edges() -> None:
    labels = [label for label, _ in boundary_configs(NicV3.model())]
    for expected in ("rx-queues=2", "rx-queues=15", "rx-table-size=0", "rx-table-size=16",
                     "rx-table-size=112", "link-speed=1G", "link-speed=10G", "mac-filters=16", "mac-filters=128"):
        assert f"boundary:{expected}" in labels, labels
    # every one is accepted by the model (rss=on needs rx-queues>=2: 1 is left out) and listed once
    assert "boundary:rx-queues=1" not in labels
    assert len(labels) == len(set(labels))


@pytest.mark.parametrize(("newer", "code"), [(NARROWED, "VALUE_NOT_ALLOWED"), (WITHOUT_TSO, "PARAM_UNKNOWN")])
def test_strict_mode_fails_a_release_that_strands_old_devices(newer: type[Device], code: str) -> None:
    strict = cross_release_matrix([NicV3, newer], steps=40, migrate_at=20)
    stranded = [c for c in strict.failures if c.failure.startswith("stranded")]
    assert stranded, strict.render()
    assert all(c.source == "3.0.0" and c.destination == "3.1.0" for c in strict.failures), strict.render()
    assert any(code in c.failure for c in stranded)
    assert any(c.label.startswith("boundary:") for c in stranded), strict.render()
    with pytest.raises(AssertionError, match="stranded"):
        strict.raise_for_failures()
    lenient = cross_release_matrix([NicV3, newer], steps=40, migrate_at=20, strict=False)
    assert not lenient.failures, lenient.render()
    assert lenient.count("refused") == len(stranded)


def test_the_report_shows_generated_and_extra_configurations() -> None:
    report = cross_release_matrix(
        [NicV3], steps=20, migrate_at=10, configs=["rss=off,rx-queues=3,rx-table-size=0", "rx-queues=99"]
    )
    assert not report.failures, report.render()
    assert "extra:rss=off,rx-queues=3,rx-table-size=0" in report.configs
    assert "extra:rx-queues=99" not in report.configs  # NicV3 refuses it: not a configuration of the source
    assert any(label.startswith("boundary:") for label in report.configs)
    assert "boundary:rx-queues=15" in report.render()


def test_regions_above_the_cap_are_skipped_not_run() -> None:
    report = cross_release_matrix([AccelV3], steps=4, migrate_at=2, boundaries=False,
                                  configs=["mem-size-mib=8192"], max_region_bytes=64 << 20)
    (big,) = [c for c in report.cells if c.label == "extra:mem-size-mib=8192"]
    assert big.outcome == "skipped"
    assert report.count("skipped") >= 1 and not report.failures


@pytest.mark.parametrize(
    "cls", [c for group in (CATALOG, OTHER_MODELS) for releases in group.values() for c in releases],
    ids=lambda c: f"{c.implementation().render()} {c.model_id}",
)
def test_every_reference_release_publishes_its_declaration(cls: type[Device]) -> None:
    assert_layout_published(cls)


def test_the_helper_names_a_declaration_that_drifted() -> None:
    drifted_state = StateDeclaration(
        [*NicV3.state.sections[:-1], SectionSpec("stats", [FieldSpec("table_writes", "u32")], optional=True)],
        off_values=NicV3.state.off_values,
    )
    drifted = type("Drifted", (NicV3,), {"state": drifted_state, "_full_declaration": None})
    with pytest.raises(AssertionError, match="not the generated one"):
        assert_layout_published(drifted)
    callable_state = StateDeclaration([SectionSpec("s", [FieldSpec("x", "u8[]", max=lambda c: 1)])])
    with pytest.raises(AssertionError, match="callable"):
        assert_layout_published(type("Callable", (NicV3,), {"state": callable_state}))
