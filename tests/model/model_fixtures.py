"""Shared data for the ``devmig.model`` tests: the DESIGN §7 example and helpers.

The example document (``NIC_DOC``, DESIGN §7, normative) lives in ``tests/support/design_example``;
tests that need a variant deep-copy it with :func:`nic_doc` and edit the copy.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from design_example import NIC_DOC, NIC_ID  # noqa: F401 (NIC_ID: re-exported to the model tests)

from devmig import DevmigError, Problem
from devmig.model import DeviceModel, load_document

REPO = Path(__file__).resolve().parents[2]
SCHEMA_DIR = REPO / "schema"
EXAMPLES_DIR = REPO / "src" / "devmig" / "examples"


def nic_doc() -> dict[str, Any]:
    """Return a fresh deep copy of the DESIGN §7 example document."""
    return copy.deepcopy(NIC_DOC)


def nic_model() -> dict[str, Any]:
    """Return a fresh copy of the example's only model."""
    model: dict[str, Any] = nic_doc()["models"][0]
    return model


def nic() -> DeviceModel:
    """Return the loaded example model."""
    return load_document(NIC_DOC).models[0]


def load_model(model: dict[str, Any], implementation: str = "test") -> DeviceModel:
    """Load a document (release 1 of ``implementation``) holding only the raw ``model``; return it loaded."""
    doc = {
        "format": "devmig/model-document/1",
        "implementation": {"name": implementation, "release": "1"},
        "models": [model],
    }
    return load_document(doc).models[0]


def host_report(*docs: dict[str, Any], host: str = "host-a") -> dict[str, Any]:
    """Return a host report holding ``docs``."""
    return {"format": "devmig/host-report/1", "host": host, "implementations": list(docs)}


def problems(error_type: type[DevmigError], call: Callable[[], object]) -> tuple[Problem, ...]:
    """Run ``call``, assert it raises ``error_type`` and return its problems."""
    with pytest.raises(error_type) as info:
        call()
    assert info.value.problems, "an error must carry at least one problem"
    return info.value.problems


def one(found: tuple[Problem, ...], code: str) -> Problem:
    """Return the only problem with ``code`` (fail when there are none or several)."""
    matching = [p for p in found if p.code == code]
    assert len(matching) == 1, f"expected one {code}, got {[(p.code, p.loc) for p in found]}"
    return matching[0]


def locs(found: tuple[Problem, ...]) -> set[tuple[str, tuple[str | int, ...]]]:
    """Return ``{(code, loc)}`` of the problems."""
    return {(p.code, p.loc) for p in found}


def json_text(data: Any) -> str:
    """Return ``data`` as JSON text (the form documents travel in)."""
    return json.dumps(data, indent=2)
