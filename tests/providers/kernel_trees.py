"""Model documents of kernel drivers and the twin of one host, shared by the kernel provider's tests.

The host: an mdev parent ``0000:00:02.0`` (driver ``acme_mdev``) with two types —
``acme-vgpu-2g`` publishing acme-vgpu 5.1.0 (two instances) and ``acme-vgpu-legacy``
without attributes (opaque, one instance) — and two VFs of the PF ``0000:00:03.0``
bound to the variant driver ``acme_vfio_pci`` publishing acme-nicvf 2.0.0, beside a
plain ``vfio-pci`` function that is no variant driver's.
"""

from __future__ import annotations

from typing import Any

from devmig.model import ModelDocument, load_document
from devmig.providers import DriverTwin, MdevParentSpec, MdevTypeSpec, VfSpec, driver_twin

VGPU = "example.org/devices/vgpu"
VGPU_LITE = "example.org/devices/vgpu-lite"
NICVF = "example.org/devices/nic-vf"
PARENT = "0000:00:02.0"
VF1, VF2 = "0000:01:00.2", "0000:01:00.3"
TYPE = f"devices/pci0000:00/{PARENT}/mdev_supported_types/acme-vgpu-2g"


def vgpu_raw(*, framebuffer_max: int = 2048, lite: bool = True) -> dict[str, Any]:
    models: list[dict[str, Any]] = [
        {
            "model": VGPU,
            "description": "Acme virtual GPU",
            "params": {
                "framebuffer": {
                    "type": "int",
                    "allowed": [{"min": 256, "max": framebuffer_max, "step": 256}],
                    "off": 256,
                    "init": 1024,
                },
                "display": {"type": "bool", "off": False, "init": True},
                "encoder": {
                    "type": "str",
                    "allowed": ["none", "h264", "av1"],
                    "off": "none",
                    "init": "h264",
                },
            },
            "constraints": [
                {
                    "when": {"encoder": "av1"},
                    "require": {"framebuffer": {"min": 1024}},
                    "message": "AV1 needs 1 GiB of framebuffer",
                }
            ],
            "versions": [
                {"name": "1", "params": {}},
                {"name": "2", "params": {"framebuffer": 512, "display": True}},
            ],
        }
    ]
    if lite:
        models.append(
            {
                "model": VGPU_LITE,
                "params": {
                    "heads": {"type": "int", "allowed": [{"min": 1, "max": 4}], "off": 1, "init": 2}
                },
            }
        )
    return {
        "format": "devmig/model-document/1",
        "implementation": {"name": "acme-vgpu", "release": "5.1.0"},
        "models": models,
    }


def vgpu(**kw: Any) -> ModelDocument:
    return load_document(vgpu_raw(**kw))


def nicvf(release: str = "2.0.0", *, queues_max: int = 16) -> ModelDocument:
    return load_document({
        "format": "devmig/model-document/1",
        "implementation": {"name": "acme-nicvf", "release": release},
        "models": [{
            "model": NICVF,
            "params": {
                "rss": {"type": "bool", "off": False, "init": True},
                "queues": {"type": "int", "allowed": [{"min": 1, "max": queues_max}], "off": 1, "init": 4},
            },
            "constraints": [{"when": {"rss": True}, "require": {"queues": {"min": 2}}}],
            "versions": [{"name": "1", "params": {}}, {"name": "2", "params": {"rss": True, "queues": 4}}],
        }],
    })  # fmt: skip


def host_twin(
    *,
    available: int = 2,
    vgpu_accepts: ModelDocument | None = None,
    vf_accepts: ModelDocument | None = None,
    label: str = "/sys",
) -> DriverTwin:
    """The host of this module's docstring, as a driver twin."""
    return driver_twin(
        [
            MdevParentSpec(
                PARENT,
                "acme_mdev",
                (
                    MdevTypeSpec("acme-vgpu-2g", vgpu(), available, accepts=vgpu_accepts),
                    MdevTypeSpec("acme-vgpu-legacy", None, 1),
                ),
            )
        ],
        [VfSpec(VF1, "acme_vfio_pci", nicvf(), accepts=vf_accepts),
         VfSpec(VF2, "acme_vfio_pci", nicvf(), accepts=vf_accepts),
         VfSpec("0000:01:00.4", "vfio-pci", None)],
        label=label,
    )  # fmt: skip
