"""``devmig vfio-user check`` passes on every reference release (real processes, strict client)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from devmig.devices import CATALOG

RELEASES = [
    f"{impl}/{cls.implementation().release}" for impl, classes in CATALOG.items() for cls in classes
]


@pytest.mark.parametrize("release", RELEASES)
def test_check_passes_on_every_reference_release(release, tmp_path):
    serve = f"{sys.executable} -m devmig vfio-user serve {release}"
    args = []
    if release.startswith("acme-blk"):
        image = tmp_path / "disk.img"
        image.write_bytes(bytes(4 << 20))
        args.append(
            f"--host-image={image}"
        )  # both instances share the image, as hosts share storage
    done = subprocess.run(
        [sys.executable, "-m", "devmig", "vfio-user", "check", serve, "--json", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    report = json.loads(done.stdout)
    failed = [s for s in report["steps"] if s["ok"] is False]
    assert done.returncode == 0 and not failed, failed or done.stderr
    assert [s["step"] for s in report["steps"]] == [
        "describe",
        "start",
        "negotiate",
        "regions",
        "interrupts",
        "dma",
        "migrate",
        "exit",
    ]
    migrate = next(s for s in report["steps"] if s["step"] == "migrate")
    assert "equal" in migrate["detail"] and "pre-copy rounds" in migrate["detail"]


def test_check_fails_a_backend_that_refuses_its_configuration():
    serve = f"{sys.executable} -m devmig vfio-user serve acme-nic/3.0.0"
    done = subprocess.run(
        [sys.executable, "-m", "devmig", "vfio-user", "check", serve, "--m-rss=maybe"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1
    assert "✗ start" in done.stdout and "TYPE_MISMATCH" in done.stdout
