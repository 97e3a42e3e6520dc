"""The published JSON Schemas: committed files, and agreement with the loader on shape."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import jsonschema
import pytest
from model_fixtures import EXAMPLES_DIR, NIC_DOC, SCHEMA_DIR, host_report, nic_doc
from test_model_config import LAYERED
from test_model_documents import CODE_ROWS, SCHEMA_ROWS, _broken_doc, edit

from devmig import DocumentError
from devmig.model import host_report_schema, load_document, load_host_report, model_document_schema

Doc = dict[str, Any]


def committed(name: str) -> Any:
    return json.loads((SCHEMA_DIR / name).read_text(encoding="utf-8"))


@pytest.mark.parametrize(
    ("name", "generate"),
    [("model-document.json", model_document_schema), ("host-report.json", host_report_schema)],
)
def test_committed_schema_is_the_generated_one(
    name: str, generate: Callable[[], dict[str, Any]]
) -> None:
    schema = generate()
    assert committed(name) == schema
    # byte for byte, as the generator writes it
    assert (SCHEMA_DIR / name).read_text(encoding="utf-8") == json.dumps(
        schema, indent=2, sort_keys=True
    ) + "\n"
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"].endswith(name.replace(".json", "-1.json"))


def test_generating_twice_gives_equal_schemas() -> None:
    # the generator must not share mutable state between calls
    first = model_document_schema()
    first["$defs"].clear()
    assert model_document_schema() == committed("model-document.json")


DOC_SCHEMA = jsonschema.Draft202012Validator(committed("model-document.json"))
REPORT_SCHEMA = jsonschema.Draft202012Validator(committed("host-report.json"))


def _valid_documents() -> list[tuple[str, Doc]]:
    out: list[tuple[str, Doc]] = [("design example", nic_doc())]
    out += [
        (f"{p.parent.name}/{p.name}", json.loads(p.read_text()))
        for p in sorted(EXAMPLES_DIR.glob("*/*.json"))
    ]
    out.append(
        (
            "layered",
            {
                "format": "devmig/model-document/1",
                "implementation": {"name": "l", "release": "1"},
                "models": [LAYERED],
            },
        )
    )
    out.append(
        (
            "minimal",
            {
                "format": "devmig/model-document/1",
                "implementation": {"name": "l", "release": "1"},
                "models": [],
            },
        )
    )
    out.append(
        (
            "every optional field",
            edit(
                lambda d: d["models"][0]["constraints"].append(
                    {
                        "when": {"link-speed": {"in": ["10G"]}},
                        "require": {"rx-queues": {"min": None, "max": 16}},
                    }
                )
            ),
        )
    )
    return out


VALID = _valid_documents()


@pytest.mark.parametrize("doc", [d for _, d in VALID], ids=[n for n, _ in VALID])
def test_valid_documents_pass_the_schema_and_the_loader(doc: Doc) -> None:
    DOC_SCHEMA.validate(doc)
    loaded = load_document(doc)
    DOC_SCHEMA.validate(loaded.to_json())
    REPORT_SCHEMA.validate(host_report(doc))
    REPORT_SCHEMA.validate(load_host_report(host_report(doc)).to_json())


# Shape problems the loader reports as SCHEMA that a JSON Schema cannot see:
# they depend on another part of the document (the type of the parameter a
# condition names; a model id listed twice), or on JSON Schema's rule that
# ``1.0`` is an integer.
NOT_SHAPE = {
    "literal of the wrong type",
    "in of the wrong type",
    "range on a bool",
    "range on a str",
    "a model listed twice",
    "int off a float",
}
SHAPE_ROWS = [(name, change) for name, change, _ in SCHEMA_ROWS if name not in NOT_SHAPE]


@pytest.mark.parametrize("change", [c for _, c in SHAPE_ROWS], ids=[n for n, _ in SHAPE_ROWS])
def test_shape_invalid_documents_fail_the_schema_and_the_loader(
    change: Callable[[Doc], object],
) -> None:
    doc = edit(change)
    assert list(DOC_SCHEMA.iter_errors(doc)), "the committed schema accepts it"
    assert list(REPORT_SCHEMA.iter_errors(host_report(doc))), (
        "the committed host-report schema accepts it"
    )
    with pytest.raises(DocumentError) as info:
        load_document(doc)
    assert set(info.value.codes) == {"SCHEMA"}


@pytest.mark.parametrize("name", sorted(NOT_SHAPE))
def test_consistency_schema_problems_pass_the_schema(name: str) -> None:
    change = next(c for n, c, _ in SCHEMA_ROWS if n == name)
    doc = edit(change)
    DOC_SCHEMA.validate(doc)
    with pytest.raises(DocumentError):
        load_document(doc)


@pytest.mark.parametrize("change", [r[1] for r in CODE_ROWS], ids=[r[0] for r in CODE_ROWS])
def test_consistency_problems_are_no_shape_problems(change: Callable[[Doc], object]) -> None:
    # INIT_*, VERSION_*, CONSTRAINT_* need the whole model: the schema accepts them
    DOC_SCHEMA.validate(edit(change))


@pytest.mark.parametrize(
    "report",
    [
        {"format": "devmig/host-report/1", "implementations": []},
        {"format": "devmig/host-report/1", "host": "", "implementations": []},
        {"format": "devmig/host-report/2", "host": "h", "implementations": []},
        {"format": "devmig/host-report/1", "host": "h", "implementations": {}},
        {"format": "devmig/host-report/1", "host": "h", "implementations": [], "x": 1},
        {"format": "devmig/host-report/1", "host": "h", "implementations": [NIC_DOC], "x": 1},
        {"format": "devmig/host-report/1", "host": "h", "implementations": [[]]},
        {"format": "devmig/host-report/1", "host": "h", "carriers": {"acme-nic/3.0.0": "qemu"}},
        {"format": "devmig/host-report/1", "host": "h", "carriers": {"acme-nic": "vmm"}},
        {"format": "devmig/host-report/1", "host": "h", "carriers": ["acme-nic/3.0.0"]},
        {
            "format": "devmig/host-report/1",
            "host": "h",
            "implementations": [{**NIC_DOC, "format": "x"}],
        },
    ],
)
def test_shape_invalid_host_reports_fail_the_schema_and_the_loader(report: Doc) -> None:
    assert list(REPORT_SCHEMA.iter_errors(report))
    with pytest.raises(DocumentError) as info:
        load_host_report(report)
    assert set(info.value.codes) == {"SCHEMA"}


@pytest.mark.parametrize(
    "carriers", [None, {}, {"acme-nic/3.0.0": "vmm"}, {"acme-nic/3.0.0": "agent", "kernel:p/t/1": "vmm"}]
)
def test_host_reports_with_and_without_carriers_pass_the_schema_and_the_loader(
    carriers: dict[str, str] | None,
) -> None:
    report = {"format": "devmig/host-report/1", "host": "h", "implementations": [NIC_DOC]}
    if carriers is not None:
        report["carriers"] = carriers
    REPORT_SCHEMA.validate(report)
    loaded = load_host_report(report)
    REPORT_SCHEMA.validate(loaded.to_json())
    assert loaded.to_json().get("carriers") == carriers
    # absent means the agent carries it
    impl = loaded.implementations[0].implementation
    assert loaded.carrier(impl) == (carriers or {}).get("acme-nic/3.0.0", "agent")


def test_the_broken_document_fails_the_schema_only_on_shape() -> None:
    errors = {tuple(e.absolute_path) for e in DOC_SCHEMA.iter_errors(_broken_doc())}
    # the schema's best location for each shape problem lies on the loader's path
    assert ("implementation",) in errors
    assert any(path[:2] == ("models", 1) for path in errors)
    assert not any(path[:2] in {("models", 0), ("models", 2)} for path in errors)
