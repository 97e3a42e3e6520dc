"""The document commands of the CLI: output shapes, exit codes, no tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from devmig.cli import app

runner = CliRunner()

NIC = "example.org/devices/nic"


def run(*args: str, input: str | None = None) -> tuple[int, str]:
    result = runner.invoke(app, list(args), input=input)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


def run_json(*args: str) -> tuple[int, dict]:
    code, out = run(*args, "--json")
    return code, json.loads(out)


@pytest.fixture
def bad_doc(tmp_path: Path) -> Path:
    doc = {
        "format": "devmig/model-document/1",
        "implementation": {"name": "x", "release": "1"},
        "models": [
            {
                "model": "m",
                "params": {"a": {"type": "int", "allowed": [{"min": 0, "max": 4}], "off": 0, "init": 9}},
                "versions": [{"name": "1", "params": {"zz": 1}}],
            }
        ],
    }
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    return path


def test_validate_all_examples_valid() -> None:
    code, data = run_json("validate", "example:acme-nic/1.0.0", "example:acme-blk/2.0.0")
    assert code == 0
    assert [f["valid"] for f in data["files"]] == [True, True]


def test_validate_reports_every_problem(bad_doc: Path, tmp_path: Path) -> None:
    syntax = tmp_path / "syntax.json"
    syntax.write_text('{"format": \n  oops}')
    code, data = run_json("validate", str(bad_doc), str(syntax), "example:acme-nic/1.0.0")
    assert code == 1
    bad, syn, good = data["files"]
    assert {e["code"] for e in bad["errors"]} == {"INIT_NOT_ALLOWED", "VERSION_PARAM_UNKNOWN"}
    assert syn["errors"][0]["code"] == "JSON_SYNTAX"
    assert syn["errors"][0]["context"]["line"] == 2
    assert good["valid"] is True
    for entry in bad["errors"]:
        assert set(entry) >= {"code", "loc", "value", "allowed", "hint"}


def test_validate_missing_file_is_reported_not_raised(tmp_path: Path) -> None:
    code, out = run("validate", str(tmp_path / "nope.json"))
    assert code == 1
    assert "FILE_UNREADABLE" in out


def test_expand_json_shape() -> None:
    code, data = run_json("expand", "example:acme-nic/3.0.0", NIC, "version=2")
    assert code == 0
    assert data["model"] == NIC
    assert data["version"] == "2"
    assert data["config"]["rss"] is True
    assert data["string"].startswith("link-speed=10G")


def test_expand_refused_config_exit_1() -> None:
    code, data = run_json("expand", "example:acme-nic/3.0.0", NIC, "version=2,rx-table-size=40,bogus=1")
    assert code == 1
    codes = {e["code"] for e in data["errors"]}
    assert codes == {"VALUE_NOT_ALLOWED", "PARAM_UNKNOWN"}
    near = next(e for e in data["errors"] if e["code"] == "VALUE_NOT_ALLOWED")
    assert near["hint"] == "nearest allowed values: 32, 48"


def test_expand_invalid_document_exit_2(bad_doc: Path) -> None:
    code, data = run_json("expand", str(bad_doc), "m", "")
    assert code == 2
    assert data["errors"]


def test_check_compatible_and_incompatible() -> None:
    code, data = run_json("check", "example:acme-nic/2.0.0", "example:acme-nic/3.0.0", NIC, "version=3")
    assert code == 0
    assert data["compatible"] is True
    assert data["implementation"] == {"name": "acme-nic", "release": "3.0.0"}
    code, data = run_json("check", "example:acme-nic/3.0.0", "example:acme-nic/1.0.0", NIC, "version=4")
    assert code == 1
    assert data["compatible"] is False
    assert data["reasons"]
    for reason in data["reasons"]:
        assert set(reason) >= {"code", "loc", "value", "allowed", "hint"}


def test_check_unanswerable_exit_2() -> None:
    code, data = run_json("check", "example:acme-nic/1.0.0", "example:acme-nic/3.0.0", NIC, "tso=on")
    assert code == 2
    assert data["errors"][0]["code"] == "PARAM_UNKNOWN"
    code, data = run_json("check", "example:acme-nic/1.0.0", "example:acme-nic/3.0.0", "no/such", "")
    assert code == 2
    assert data["errors"][0]["code"] == "MODEL_UNKNOWN"


def test_diff_breaking_and_not() -> None:
    code, data = run_json("diff", "example:acme-nic/1.0.0", "example:acme-nic/2.0.0")
    assert code == 0
    assert data["breaking"] is False
    assert data["changes"]
    code, data = run_json("diff", "example:acme-nic/3.0.0", "example:acme-nic/3.1.0-broken")
    assert code == 1
    assert data["breaking"] is True
    for change in data["changes"]:
        assert set(change) >= {"rule", "model", "loc", "breaks", "message"}


def test_diff_unreadable_exit_2(tmp_path: Path) -> None:
    code, data = run_json("diff", str(tmp_path / "missing.json"), "example:acme-nic/2.0.0")
    assert code == 2
    assert data["errors"][0]["code"] == "FILE_UNREADABLE"


def test_schema_command_matches_committed_schema() -> None:
    code, out = run("schema", "model-document")
    assert code == 0
    committed = json.loads((Path(__file__).parents[2] / "schema" / "model-document.json").read_text())
    assert json.loads(out) == committed
    code, _ = run("schema", "nonsense")
    assert code == 2


def test_examples_lists_three_devices_with_releases() -> None:
    code, data = run_json("examples")
    assert code == 0
    impls = {e["implementation"] for e in data["examples"]}
    assert {"acme-nic", "acme-blk", "acme-accel"} <= impls
    for impl in impls:
        releases = [e for e in data["examples"] if e["implementation"] == impl]
        assert len([e for e in releases if not e["broken"]]) >= 3
        assert any(e["broken"] for e in releases)


def test_human_output_has_no_traceback(bad_doc: Path) -> None:
    """The real console script: a user error is a message and an exit status, never a traceback."""
    proc = subprocess.run(
        [sys.executable, "-m", "devmig", "expand", str(bad_doc), "m", "a=9"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr + proc.stdout
    assert "INIT_NOT_ALLOWED" in proc.stderr + proc.stdout
