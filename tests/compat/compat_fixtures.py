"""Shared data for the ``devmig.compat`` tests: a small NIC document and helpers.

Tests edit deep copies of :data:`NIC` (the DESIGN §7 example) with
:func:`variant`, so each row of a table states only what it changes.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from design_example import NIC_DOC, NIC_ID

from devmig.model import (
    Config,
    DeviceModel,
    HostReport,
    ModelDocument,
    load_document,
    load_host_report,
)

REPO = Path(__file__).resolve().parents[2]
EXAMPLES_DIR = REPO / "src" / "devmig" / "examples"
NIC: dict[str, Any] = NIC_DOC
"""The DESIGN §7 example document (shared: edit deep copies only, see :func:`variant`)."""

Edit = Callable[[dict[str, Any]], object]


def variant(*edits: Edit, release: str = "3.0.0", base: dict[str, Any] | None = None) -> ModelDocument:
    """Return a loaded copy of ``base`` (the NIC document) after applying each edit to its raw data.

    Each edit receives the raw *model* dict (``models[0]``) and changes it in place.
    """
    raw = copy.deepcopy(base if base is not None else NIC)
    raw["implementation"]["release"] = release
    for edit in edits:
        edit(raw["models"][0])
    return load_document(raw)


def nic(release: str = "3.0.0") -> ModelDocument:
    """Return the NIC document as release ``release``."""
    return variant(release=release)


def model_of(doc: ModelDocument, model_id: str = NIC_ID) -> DeviceModel:
    """Return a model of a document (it must be there)."""
    m = doc.find(model_id)
    assert m is not None, model_id
    return m


def report(host: str, *docs: ModelDocument) -> HostReport:
    """Build and validate a host report of ``docs``."""
    return load_host_report(
        {"format": "devmig/host-report/1", "host": host, "implementations": [d.to_json() for d in docs]}
    )


def canonical(model: DeviceModel, full: dict[str, Any]) -> Config:
    """Return the canonical configuration of a full one."""
    return Config(model.model, model.canonical_items(full))


def example_documents() -> dict[str, list[ModelDocument]]:
    """Return the shipped example documents by implementation, in release order."""
    out: dict[str, list[ModelDocument]] = {}
    if not EXAMPLES_DIR.is_dir():
        return out
    for impl_dir in sorted(p for p in EXAMPLES_DIR.iterdir() if p.is_dir()):
        docs = [load_document(p.read_text()) for p in sorted(impl_dir.glob("*.json"), key=_release_key)]
        if docs:
            out[impl_dir.name] = docs
    return out


def _release_key(path: Path) -> tuple[tuple[int, ...], str]:
    head = path.stem.split("-", 1)[0]
    nums = tuple(int(x) for x in head.split(".") if x.isdigit())
    return nums, path.stem


def version_configs(model: DeviceModel) -> Iterator[tuple[str, Config]]:
    """Yield ``(name, canonical configuration)`` of every published version."""
    for v in model.versions:
        yield v.name, canonical(model, model.version_values(v))


def dump(obj: Any) -> str:
    """Render JSON data compactly (for assertion messages)."""
    return json.dumps(obj, sort_keys=True, default=str)
