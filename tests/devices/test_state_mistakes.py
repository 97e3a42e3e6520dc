"""The must-show of issue 16: a state change the parameters do not announce is caught before any byte moves.

A device author has a watchdog device, release 1.0.0, whose document publishes
its generated state layout. Each test makes one mistake in the *state
declaration* only — a field renamed, a ``u32`` narrowed to ``u16`` or ``u8``,
a section dropped, a conditional section made unconditional — in a required
section and inside an optional one, regenerates the layout (the document is
otherwise untouched) and runs the real CLI: ``devmig diff`` exits 1 naming
the ``STATE_*`` rule, ``devmig check`` exits 1 with ``STATE_LAYOUT_MISMATCH``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from devmig.cli import app
from devmig.model import load_document
from devmig.model._layout_text import with_layouts
from devmig.state import FieldSpec, SectionSpec, StateDeclaration, published_layout

MODEL = "example.org/devices/watchdog"
DOCUMENT = {
    "format": "devmig/model-document/1",
    "implementation": {"name": "watchdog", "release": "1.0.0"},
    "models": [
        {
            "model": MODEL,
            "description": "A watchdog timer with an optional pre-timeout interrupt",
            "params": {
                "timeout-ms": {
                    "type": "int",
                    "allowed": [{"min": 100, "max": 60000, "step": 100}],
                    "off": 1000,
                    "init": 5000,
                },
                "pretimeout": {"type": "bool", "off": False, "init": True},
                "history": {"type": "int", "allowed": [{"min": 1, "max": 16}], "off": 1, "init": 8},
            },
            "versions": [{"name": "1", "params": {}}, {"name": "2", "params": {"pretimeout": True, "history": 8}}],
        }
    ],
}

BASE = StateDeclaration(
    [
        SectionSpec(
            "timer", [FieldSpec("counter", "u32"), FieldSpec("reload", "u32"), FieldSpec("log", "u32[]", max="history")]
        ),
        SectionSpec("pretimeout", [FieldSpec("fired", "u32"), FieldSpec("margin", "u32")], when={"pretimeout": True}),
        SectionSpec(
            "trace", [FieldSpec("events", "u32"), FieldSpec("last", "u32")], when={"pretimeout": True}, optional=True
        ),
    ]
)  # fmt: skip

runner = CliRunner()


def _text(declaration: StateDeclaration) -> str:
    """The 1.0.0 document's text with the declaration's generated layout, nothing else changed."""
    raw = json.dumps(DOCUMENT, indent=2)
    layout = published_layout(declaration, load_document(raw).models[0])
    assert layout is not None
    return with_layouts(raw, {MODEL: layout.to_json()})


def _edit_section(name: str, edit: Callable[[SectionSpec], SectionSpec | None]) -> StateDeclaration:
    sections = []
    for s in BASE.sections:
        if s.name == name:
            changed = edit(s)
            if changed is not None:
                sections.append(changed)
        else:
            sections.append(s)
    return StateDeclaration(sections, BASE.regions)


def _field(section: str, field: str, **change: Any) -> StateDeclaration:
    def edit(s: SectionSpec) -> SectionSpec:
        fields = [dataclasses.replace(f, **change) if f.name == field else f for f in s.fields]
        return dataclasses.replace(s, fields=fields)

    return _edit_section(section, edit)


MISTAKES: dict[str, tuple[StateDeclaration, str, set[str]]] = {
    # name: (the mistaken declaration, a configuration where it shows, the diff's rule ids)
    "field renamed": (_field("timer", "counter", name="count"), "", {"STATE_FIELD_REMOVED", "STATE_FIELD_ADDED"}),
    "u32 to u16": (_field("timer", "counter", kind="u16"), "", {"STATE_FIELD_TYPE_CHANGED"}),
    "u32 to u8": (_field("timer", "counter", kind="u8"), "", {"STATE_FIELD_TYPE_CHANGED"}),
    "section dropped": (_edit_section("pretimeout", lambda s: None), "", {"STATE_SECTION_REMOVED"}),
    "section made unconditional": (
        _edit_section("pretimeout", lambda s: dataclasses.replace(s, when=None)),
        "pretimeout=off",
        {"STATE_CONDITION_CHANGED"},
    ),
    "optional: field renamed": (
        _field("trace", "events", name="count"), "", {"STATE_FIELD_REMOVED", "STATE_FIELD_ADDED"}
    ),
    "optional: u32 to u16": (_field("trace", "events", kind="u16"), "", {"STATE_FIELD_TYPE_CHANGED"}),
    "optional: u32 to u8": (_field("trace", "events", kind="u8"), "", {"STATE_FIELD_TYPE_CHANGED"}),
    "optional: made required": (
        _edit_section("trace", lambda s: dataclasses.replace(s, optional=False)),
        "",
        {"STATE_CONDITION_CHANGED"},
    ),
    "optional: made unconditional and required": (
        _edit_section("trace", lambda s: dataclasses.replace(s, when=None, optional=False)),
        "pretimeout=off",
        {"STATE_CONDITION_CHANGED"},
    ),
}  # fmt: skip


@pytest.fixture
def old(tmp_path: Path) -> Path:
    path = tmp_path / "watchdog-1.0.0.json"
    path.write_text(_text(BASE))
    return path


@pytest.mark.parametrize("name", MISTAKES)
def test_a_state_mistake_is_caught_by_diff_and_check(name: str, old: Path, tmp_path: Path) -> None:
    declaration, config, rules = MISTAKES[name]
    new = tmp_path / "watchdog-1.0.1.json"
    new.write_text(_text(declaration))
    before, after = json.loads(old.read_text()), json.loads(new.read_text())
    assert before["models"][0].pop("state") != after["models"][0].pop("state")
    assert before == after, "the document is untouched except its generated layout"

    result = runner.invoke(app, ["diff", str(old), str(new), "--json"])
    assert result.exit_code == 1, result.output
    changes = json.loads(result.output)["changes"]
    breaking = {c["rule"] for c in changes if c["breaks"]}
    assert breaking == rules, changes
    assert all(set(c["breaks"]) == {"upgrade", "rollback"} for c in changes if c["breaks"])

    for source, destination in ((old, new), (new, old)):  # upgrade and rollback
        result = runner.invoke(app, ["check", str(source), str(destination), MODEL, config, "--json"])
        assert result.exit_code == 1, result.output
        reasons = json.loads(result.output)["reasons"]
        assert [r["code"] for r in reasons] == ["STATE_LAYOUT_MISMATCH"], reasons
        assert reasons[0]["loc"][0] == "state"

    human = runner.invoke(app, ["check", str(old), str(new), MODEL, config])
    assert human.exit_code == 1 and "STATE_LAYOUT_MISMATCH" in human.output


def test_the_mismatch_names_the_first_difference_and_both_values(old: Path, tmp_path: Path) -> None:
    new = tmp_path / "new.json"
    new.write_text(_text(MISTAKES["u32 to u8"][0]))
    result = runner.invoke(app, ["check", str(old), str(new), MODEL, "", "--json"])
    (reason,) = json.loads(result.output)["reasons"]
    assert reason["loc"] == ["state", "section", "timer", "field", "counter"]
    assert (reason["value"], reason["allowed"]) == ("u32", "u8")
    assert "u32" in reason["message"] and "u8" in reason["message"]


def test_dropping_an_optional_section_breaks_nothing(old: Path, tmp_path: Path) -> None:
    """Its reader skips it (DESIGN §3 rule 6): neither the check nor the diff objects."""
    new = tmp_path / "new.json"
    new.write_text(_text(_edit_section("trace", lambda s: None)))
    result = runner.invoke(app, ["diff", str(old), str(new), "--json"])
    assert result.exit_code == 0, result.output
    assert runner.invoke(app, ["check", str(old), str(new), MODEL, ""]).exit_code == 0
    assert runner.invoke(app, ["check", str(new), str(old), MODEL, ""]).exit_code == 0


def test_an_unchanged_declaration_is_no_change(old: Path, tmp_path: Path) -> None:
    new = tmp_path / "new.json"
    new.write_text(_text(BASE))
    result = runner.invoke(app, ["diff", str(old), str(new), "--json"])
    assert result.exit_code == 0 and json.loads(result.output)["changes"] == []
    assert runner.invoke(app, ["check", str(old), str(new), MODEL, ""]).exit_code == 0
