"""History-aware checks and sharper diff messages (DESIGN §3, "history")."""

from __future__ import annotations

import copy
import json
from typing import Any

from typer.testing import CliRunner

from devmig._examples import example_text
from devmig.cli import app
from devmig.compat import ReleaseHistory, check, diff
from devmig.model import ModelDocument, expand, load_document

NIC = "example.org/devices/nic"
runner = CliRunner()


def _nic(release: str, edit: Any = None) -> ModelDocument:
    raw = json.loads(example_text(f"acme-nic/{release}"))
    raw["models"][0].pop("state")  # these tests are about parameters
    if edit is not None:
        raw["implementation"]["release"] = edit[0]
        edit[1](raw["models"][0])
    return load_document(raw)


def _tso_off_on(model: dict[str, Any]) -> None:
    """3.1.0 makes tso's off value on (a mistake); every version keeps its params."""
    model["params"]["tso"]["off"] = True


V2, V3 = _nic("2.0.0"), _nic("3.0.0")
V31 = _nic("3.0.0", ("3.1.0", _tso_off_on))


def test_without_history_a_parameter_the_destination_lacks_is_not_judged() -> None:
    source = V31.models[0]
    config = expand(source, "version=1")  # tso left at 3.1.0's off value: on
    assert config.items == ()
    assert check(source, config, V2).compatible  # today's verdict, unchanged without history


def test_with_history_it_is_judged_by_the_off_value_it_was_introduced_with() -> None:
    source = V31.models[0]
    config = expand(source, "version=1")
    verdict = check(source, config, V2, history=[V2, V3, V31])
    assert not verdict.compatible
    (reason,) = verdict.reasons
    assert reason.code == "OFF_VALUE_MISMATCH" and reason.loc == ("config", "tso")
    assert (reason.value, reason.allowed) == (True, False)
    assert "acme-nic 3.0.0" in (reason.hint or "")
    assert reason.context == {"rule": 5, "history": True}
    # a device that sets tso explicitly is refused by rule 2 as before; one of 3.0.0 is fine
    assert check(V3.models[0], expand(V3.models[0], "version=3"), V2, history=ReleaseHistory.learn([V2, V3])).compatible


def test_off_value_changed_names_the_versions_it_changes_and_redefines_none() -> None:
    d = diff(V3, V31)
    rules = d.rules()
    assert "OFF_VALUE_CHANGED" in rules
    # version 4 names tso=on in both: its canonical form differs (on is 3.1.0's off value),
    # but it was not redefined -- the off value changed, and OFF_VALUE_CHANGED says so
    assert "VERSION_REDEFINED" not in rules, d.render()
    (change,) = [c for c in d.changes if c.rule == "OFF_VALUE_CHANGED"]
    assert change.message.endswith("versions that leave it off change meaning: 1, 2, 3")
    # a version whose params really changed is still redefined
    raw = json.loads(example_text("acme-nic/3.0.0"))
    raw["models"][0].pop("state")
    changed = copy.deepcopy(raw)
    changed["implementation"]["release"] = "3.1.0"
    changed["models"][0]["versions"][1]["params"]["mac-filters"] = 64
    d = diff(load_document(raw), load_document(changed))
    assert [c.loc for c in d.changes if c.rule == "VERSION_REDEFINED"] == [("versions", "2")]


def test_a_parameter_of_a_later_release_is_hinted_as_introduced_not_as_a_typo(tmp_path: Any) -> None:
    old, new = tmp_path / "2.json", tmp_path / "3.json"
    old.write_text(example_text("acme-nic/2.0.0"))
    new.write_text(example_text("acme-nic/3.0.0"))
    plain = runner.invoke(app, ["expand", str(old), NIC, "tso=on", "--json"])
    assert plain.exit_code == 1
    with_history = runner.invoke(app, ["expand", str(old), NIC, "tso=on", "--history", str(new), "--json"])
    assert with_history.exit_code == 1
    hint = json.loads(with_history.output)["errors"][0]["hint"]
    assert hint == "tso is introduced in acme-nic 3.0.0: this release predates it"
    checked = runner.invoke(
        app, ["check", str(new), str(old), NIC, "", "--history", str(old), "--history", str(new), "--json"]
    )
    reasons = json.loads(checked.output)["reasons"]
    assert any(r["hint"] == "tso is introduced in acme-nic 3.0.0" for r in reasons), reasons
