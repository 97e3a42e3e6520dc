"""The shipped example documents' state layouts, generated from the reference devices' declarations.

Each example ``<implementation>/<release>`` publishes, per model, the layout
that the class serving that model in that release declares. A breaking
release (``3.1.0-broken``) is a document without an implementation: it
publishes none.
``tools/gen_state_layouts.py`` writes them; a test checks they are current.
"""

from __future__ import annotations

from typing import Any

from devmig._examples import example_text, list_examples
from devmig.device import Device
from devmig.model import load_document, with_layouts
from devmig.state import published_layout

__all__ = ["example_with_layouts", "serving_classes"]


def serving_classes(implementation: str, release: str) -> dict[str, type[Device]]:
    """Return model id → the reference class whose declaration a release's document publishes."""
    from devmig.devices import CATALOG, OTHER_MODELS

    groups = [*CATALOG.get(implementation, ()), *OTHER_MODELS.get(implementation, ())]
    out: dict[str, type[Device]] = {}
    for cls in groups:
        if cls.implementation().release == release:
            out.setdefault(cls.model_id, cls)
    return out


def example_with_layouts(name: str) -> str:
    """Return the text of example ``name`` with every model's generated ``"state"``."""
    text = example_text(name)
    implementation, release = name.split("/", 1)
    classes = serving_classes(implementation, release)
    doc = load_document(text)
    layouts: dict[str, Any] = {}
    for model in doc.models:
        cls = classes.get(model.model)
        if cls is None:
            continue
        layout = published_layout(cls.state, model)
        layouts[model.model] = None if layout is None else layout.to_json()
    return with_layouts(text, layouts)


def names() -> list[str]:
    """Every shipped example's name."""
    return [e.name for e in list_examples()]
