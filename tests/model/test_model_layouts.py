"""The ``"state"`` of a model document (DESIGN §7): its shape, its consistency, its resolution, its splicing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from pydantic import ValidationError

from devmig._errors import DocumentError
from devmig.model import layout_difference, load_document, model_document_schema, resolve_layout
from devmig.model._layout_text import with_layouts

BLK = Path(__file__).resolve().parents[2] / "src" / "devmig" / "examples" / "acme-blk" / "2.0.0.json"


def _doc(state: Any) -> dict[str, Any]:
    raw = json.loads(BLK.read_text())
    raw["models"][0]["state"] = state
    return raw


def test_a_published_layout_loads_frozen_and_resolves() -> None:
    doc = load_document(BLK.read_text())
    model = doc.models[0]
    assert model.state is not None
    with pytest.raises(ValidationError):
        model.state.sections[0].name = "x"  # type: ignore[misc]
    full = dict(model.init_values)
    layout = resolve_layout(model.state, full)
    inflight = layout.section("inflight")
    assert inflight is not None and inflight.fields[0].max == full["queue-depth"] * full["num-queues"]
    assert layout.regions == (("cache", full["queue-depth"] // 8 * full["block-size"]),)
    off = resolve_layout(model.state, {**full, "write-cache": False})
    assert off.section("cache") is None and off.regions == (("cache", 0),)
    difference = layout_difference(layout, off)
    assert difference is not None and difference.loc == ("state", "section", "cache")
    jsonschema.validate(doc.to_json(), model_document_schema())


@pytest.mark.parametrize(
    ("state", "code", "loc"),
    [
        ({"sections": [{"name": "s", "when": {"nope": True}}]}, "STATE_PARAM_UNKNOWN", ("sections", 0, "when", "nope")),
        (
            {"regions": [{"name": "r", "size": {"param": "queue-depth", "times": "nope"}}]},
            "STATE_PARAM_UNKNOWN",
            ("regions", 0, "size", "times"),
        ),
        ({"regions": [{"name": "r", "size": "write-cache"}]}, "SCHEMA", ("regions", 0, "size")),
        (
            {"sections": [{"name": "s", "fields": [{"name": "f", "type": "u32", "max": 4}]}]},
            "SCHEMA",
            ("sections", 0, "fields", 0, "max"),
        ),
        (
            {"sections": [{"name": "s", "fields": [{"name": "f", "type": "u32[]"}]}]},
            "SCHEMA",
            ("sections", 0, "fields", 0, "max"),
        ),
        ({"sections": [{"name": "s"}, {"name": "s"}]}, "SCHEMA", ("sections", 1, "name")),
        ({"sections": [{"name": "s", "when": {"write-cache": 1}}]}, "SCHEMA", ("sections", 0, "when", "write-cache")),
        (
            {"sections": [{"name": "s", "fields": [{"name": "f", "type": "u33"}]}]},
            "SCHEMA",
            ("sections", 0, "fields", 0, "type"),
        ),
        ({"regions": [{"name": "r", "size": -1}]}, "SCHEMA", ("regions", 0, "size")),
        (
            {"regions": [{"name": "r", "size": {"param": "queue-depth", "div": 0}}]},
            "SCHEMA",
            ("regions", 0, "size", "div"),
        ),
        ({"sections": [], "extra": 1}, "SCHEMA", ("extra",)),
    ],
)
def test_a_layout_names_only_its_documents_parameters_and_is_well_typed(
    state: Any, code: str, loc: tuple[Any, ...]
) -> None:
    raw = _doc(state)
    with pytest.raises(DocumentError) as caught:
        load_document(raw)
    found = [(p.code, p.loc[3:]) for p in caught.value.problems]
    assert (code, loc) in found, found


def test_layouts_are_spliced_into_the_text_leaving_the_rest_alone() -> None:
    text = BLK.read_text()
    raw = json.loads(text)
    state = raw["models"][0].pop("state")
    without = with_layouts(text, {"example.org/devices/blk": None})
    assert json.loads(without) == raw
    assert without.startswith(text[: text.index('"state"') - 10])
    assert with_layouts(without, {"example.org/devices/blk": state}) == text
    assert with_layouts(text, {"example.org/devices/blk": state}) == text
    with pytest.raises(DocumentError):
        with_layouts(text, {"example.org/devices/nic": state})
