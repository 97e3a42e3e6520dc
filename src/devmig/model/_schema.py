"""The published JSON Schemas of model documents and host reports.

They are generated from the pydantic classes, and committed under
``schema/`` in the repository; a test checks that the two agree.
"""

from __future__ import annotations

from typing import Any

from devmig.model._document import HostReport, ModelDocument

__all__ = ["host_report_schema", "model_document_schema"]

_ID_BASE = "https://devmig.dev/schema/"


def model_document_schema() -> dict[str, Any]:
    """Return the JSON Schema (draft 2020-12) of a model document."""
    schema = ModelDocument.model_json_schema(by_alias=True, mode="validation")
    return _decorate(schema, "model-document", "devmig model document")


def host_report_schema() -> dict[str, Any]:
    """Return the JSON Schema (draft 2020-12) of a host report."""
    schema = HostReport.model_json_schema(by_alias=True, mode="validation")
    return _decorate(schema, "host-report", "devmig host report")


def _decorate(schema: dict[str, Any], name: str, title: str) -> dict[str, Any]:
    out: dict[str, Any] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"{_ID_BASE}{name}-1.json",
        "title": title,
    }
    out.update({k: v for k, v in schema.items() if k not in ("title", "description")})
    for definition in out.get("$defs", {}).values():
        definition.pop("description", None)
    _close_pattern_objects(out)
    # 'version' is reserved: no parameter may be named so (DESIGN §2).
    params = out["$defs"]["DeviceModel"]["properties"]["params"]
    params["propertyNames"]["not"] = {"anyOf": [params["propertyNames"]["not"], {"const": "version"}]}
    return out


def _close_pattern_objects(node: Any) -> None:
    """Forbid keys that match no ``patternProperties`` (pydantic leaves them open).

    A key pattern ends in ``$``, which in ECMA-262 (the regex dialect of JSON
    Schema) matches only at the end, but in Python's ``re`` (used by the
    ``jsonschema`` library) also before a final newline: keys with a newline
    are refused explicitly so that both read the schema as the loader does.
    """
    if isinstance(node, dict):
        if "patternProperties" in node:
            node.setdefault("additionalProperties", False)
            node.setdefault("propertyNames", {})["not"] = {"pattern": "\n"}
        for value in node.values():
            _close_pattern_objects(value)
    elif isinstance(node, list):
        for value in node:
            _close_pattern_objects(value)
