"""``devmig kernel mdevctl-json``: the JSON mdevctl defines a device from."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kernel_trees import NICVF, PARENT, TYPE, VGPU, host_twin, vgpu
from typer.testing import CliRunner

from devmig.cli import app
from devmig.model import expand
from devmig.providers import KernelProvider, attribute_writes, materialize

runner = CliRunner()


def run(*args: str, input: str | None = None) -> tuple[int, str]:
    result = runner.invoke(app, ["kernel", "mdevctl-json", *args], input=input)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


@pytest.fixture
def sysfs(tmp_path: Path) -> Path:
    root = tmp_path / "sys"
    materialize(host_twin().files, str(root))
    return root


def test_attrs_are_the_writes_in_order_as_one_key_string_objects(sysfs: Path) -> None:
    device = json.dumps(
        {"model": VGPU, "config": {"display": True, "framebuffer": 512, "encoder": "h264"}}
    )
    code, out = run(device, "--type", "acme-vgpu-2g", "--sysfs", str(sysfs))
    assert code == 0, out
    data = json.loads(out)
    assert data["mdev_type"] == "acme-vgpu-2g" and data["start"] == "auto"
    assert data["attrs"] == [
        {"migration/device_model": VGPU},
        {"migration/framebuffer": "256"}, {"migration/display": "0"}, {"migration/encoder": "none"},
        {"migration/display": "1"}, {"migration/encoder": "h264"}, {"migration/framebuffer": "512"},
    ]  # fmt: skip
    assert all(len(a) == 1 and all(isinstance(v, str) for v in a.values()) for a in data["attrs"])
    model = vgpu().find(VGPU)
    assert model is not None
    config = expand(model, "version=2,encoder=h264")
    assert [next(iter(a.items())) for a in data["attrs"]] == [
        (p, v.decode()) for p, v in attribute_writes(model, config)
    ]


def test_a_model_id_with_options_and_a_document_file(sysfs: Path, tmp_path: Path) -> None:
    doc = tmp_path / "info.json"
    doc.write_text((sysfs / TYPE / "migration_info.json").read_text())
    out_file = tmp_path / "dev.json"
    code, out = run(VGPU, "--options", "version=1", "--type", "acme-vgpu-2g", "--document", str(doc),
                    "--start", "manual", "-o", str(out_file))  # fmt: skip
    assert code == 0 and out == ""
    data = json.loads(out_file.read_text())
    assert data["start"] == "manual" and len(data["attrs"]) == 4  # the model and three off values
    code, out = run("-", "--type", "acme-vgpu-2g", "--sysfs", str(sysfs), "-p", PARENT,
                    input=json.dumps({"model": VGPU, "config": {}}))  # fmt: skip
    assert code == 0 and len(json.loads(out)["attrs"]) == 4


def test_refusals(sysfs: Path) -> None:
    code, out = run(json.dumps({"model": VGPU, "config": {"framebuffer": 4096}}), "--type", "acme-vgpu-2g",
                    "--sysfs", str(sysfs), "--json")  # fmt: skip
    assert code == 1 and json.loads(out)["errors"][0]["code"] == "VALUE_NOT_ALLOWED"
    code, out = run(NICVF, "--type", "acme-vgpu-2g", "--sysfs", str(sysfs), "--json")
    assert code == 1 and json.loads(out)["errors"][0]["code"] == "MODEL_UNKNOWN"
    code, out = run(VGPU, "--type", "nope", "--sysfs", str(sysfs), "--json")
    assert code == 2 and json.loads(out)["errors"][0]["code"] == "TYPE_UNKNOWN"
    code, out = run(VGPU, "--type", "acme-vgpu-legacy", "--sysfs", str(sysfs), "--json")
    assert code == 1 and json.loads(out)["errors"][0]["code"] == "NO_MIGRATION_INFO"
    code, out = run(VGPU, "--type", "acme-vgpu-2g", "--sysfs", str(sysfs), "--start", "later")
    assert code == 2


def test_the_json_configures_the_twin_as_the_provider_does(sysfs: Path) -> None:
    """Writing the attrs in order, as mdevctl does, gives the device the provider's configuration."""
    twin = host_twin()
    code, out = run(json.dumps({"model": VGPU, "config": {"framebuffer": 1024, "encoder": "av1"}}),
                    "--type", "acme-vgpu-2g", "--sysfs", str(sysfs))  # fmt: skip
    assert code == 0
    name = "8d9e6a2c-7b1f-4c3e-9a5d-2f6b8c0e1a47"
    twin.files.write(f"{TYPE}/create", name.encode())
    for attr in json.loads(out)["attrs"]:
        ((path, value),) = attr.items()
        twin.files.write(f"bus/mdev/devices/{name}/{path}", value.encode())
    model = vgpu().find(VGPU)
    assert model is not None
    assert twin.devices[name].config() == expand(model, "framebuffer=1024,encoder=av1,display=off")
    assert KernelProvider(twin.files).offer().capacity["acme-vgpu 5.1.0"] == 1
