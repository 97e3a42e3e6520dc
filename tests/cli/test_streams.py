"""save / load / inspect: a saved stream round-trips, a corrupt one is named, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from devmig.cli import app

runner = CliRunner()


def invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


def test_save_inspect_load(tmp_path: Path) -> None:
    stream = tmp_path / "nic.dvmg"
    code, out = invoke("save", "acme-nic/3.0.0", "version=3", "-o", str(stream), "--json")
    assert code == 0
    saved = json.loads(out)
    code, out = invoke("inspect", str(stream), "--json")
    assert code == 0
    summary = json.loads(out)
    assert summary["model"] == "example.org/devices/nic"
    assert summary["digest_ok"] is True
    assert [s["name"] for s in summary["sections"]][:2] == ["devmig", "queues"]
    code, out = invoke("load", "acme-nic/1.0.0", str(stream), "--json")
    assert code == 1  # version 3 uses rx-table-size, which 1.0.0 does not know
    assert "PARAM_UNKNOWN" in {e["code"] for e in json.loads(out)["errors"]}
    code, out = invoke("load", "acme-nic/2.0.0", str(stream), "--json")
    assert code == 0
    assert json.loads(out)["digest"] == saved["digest"]


def test_inspect_corrupt_and_missing(tmp_path: Path) -> None:
    stream = tmp_path / "nic.dvmg"
    assert invoke("save", "acme-nic/2.0.0", "", "-o", str(stream))[0] == 0
    data = bytearray(stream.read_bytes())
    data[len(data) // 2] ^= 0x10
    bad = tmp_path / "bad.dvmg"
    bad.write_bytes(bytes(data))
    code, out = invoke("inspect", str(bad), "--json")
    assert code == 1
    error = json.loads(out)["errors"][0]
    assert error["code"] == "RECORD_CORRUPT"
    assert "record" in error["loc"]
    code, out = invoke("inspect", str(tmp_path / "nothing.dvmg"))
    assert code == 2
    assert "FILE_UNREADABLE" in out


def test_devices_lists_every_model_each_release_serves() -> None:
    code, out = invoke("devices", "--json")
    assert code == 0
    rows = {(r["implementation"], r["release"], r["model"]) for r in json.loads(out)["devices"]}
    lite = "example.org/devices/accel-lite"
    assert {release for impl, release, model in rows if model == lite} == {"2.0.0", "3.0.0"}
    assert ("acme-accel", "1.0.0", "example.org/devices/accel") in rows
    assert {impl for impl, _, _ in rows} == {"acme-nic", "acme-blk", "acme-accel"}
