"""``devmig kernel``: kernel VFIO/mdev devices (DESIGN §9) — the mdevctl JSON of a device."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from devmig._errors import ConfigError, DevmigError, DocumentError, Problem
from devmig.cli._output import EXIT_NO, EXIT_USAGE, Output, read_source, with_file
from devmig.model import (
    Config,
    DeviceModel,
    ModelDocument,
    expand,
    load_document,
    parse_canonical,
    parse_json,
)
from devmig.providers import KernelProvider, mdevctl_config

__all__ = ["register"]

kernel_app = typer.Typer(
    no_args_is_help=True,
    help="Kernel VFIO/mdev drivers: their sysfs migration attributes (docs/kernel.md).",
)


def _document(
    out: Output, document: str | None, sysfs: str, mdev_type: str, parent: str | None
) -> ModelDocument:
    if document is not None:
        try:
            return load_document(read_source(document))
        except DevmigError as exc:
            out.fail(with_file(exc, document), EXIT_USAGE, title=f"cannot use {document}")
    provider = KernelProvider.at(sysfs)
    tree = provider.tree()
    for site in tree.sites:
        if site.kind == "mdev" and site.name == mdev_type and parent in (None, site.parent):
            if site.opaque:
                out.fail(
                    DevmigError(
                        [
                            Problem(
                                "NO_MIGRATION_INFO",
                                ("type",),
                                f"mdev type {mdev_type} publishes no migration attributes",
                                value=mdev_type,
                                hint="its devices are opaque: there is nothing to write",
                            )
                        ]
                    ),
                    EXIT_NO,
                )
            return site.document
    problems = [p for p in tree.problems if mdev_type in p.message]
    known = sorted({s.name for s in tree.sites if s.kind == "mdev"})
    out.fail(
        DevmigError(
            problems
            or [
                Problem(
                    "TYPE_UNKNOWN",
                    ("type",),
                    f"no mdev type {mdev_type!r} under {sysfs}",
                    value=mdev_type,
                    allowed=known,
                    hint="types there: " + (", ".join(known) or "none"),
                )
            ]
        ),
        EXIT_USAGE,
    )


def _device(
    out: Output, device: str, options: str | None, doc: ModelDocument
) -> tuple[DeviceModel, Config]:
    raw: Any  # JSON boundary
    if device.lstrip().startswith("{") or device == "-" or Path(device).is_file():
        text = device if device.lstrip().startswith("{") else read_source(device)
        try:
            raw = parse_json(text)
        except DevmigError as exc:
            out.fail(with_file(exc, device), EXIT_USAGE, title="cannot read the device")
        if not isinstance(raw, dict) or not isinstance(raw.get("model"), str):
            out.fail(
                DocumentError(
                    [
                        Problem(
                            "SCHEMA",
                            (),
                            'a device is {"model": "...", "config": {...}}',
                            value=None,
                        )
                    ]
                ),
                EXIT_USAGE,
            )
        model_id, values = raw["model"], raw.get("config", {})
    else:
        model_id, values = device, None
    model = doc.find(model_id)
    if model is None:
        known = [m.model for m in doc.models]
        out.fail(
            DevmigError(
                [
                    Problem(
                        "MODEL_UNKNOWN",
                        ("model",),
                        f"{doc.implementation.render()} has no model {model_id!r}",
                        value=model_id,
                        allowed=known,
                    )
                ]
            ),
            EXIT_NO,
        )
    try:
        config = expand(model, options or "") if values is None else parse_canonical(model, values)
    except ConfigError as exc:
        out.fail(
            exc, EXIT_NO, title=f"the configuration is refused by {doc.implementation.render()}"
        )
    if values is not None and options:
        out.fail(
            DevmigError(
                "give the configuration in DEVICE or with --options, not both", code="USAGE"
            ),
            EXIT_USAGE,
        )
    return model, config


@kernel_app.command("mdevctl-json")
def mdevctl_json(
    device: Annotated[
        str,
        typer.Argument(
            help='The device: its wire form {"model": ..., "config": {canonical}} (inline, a file or -), '
            "or a model id with --options."
        ),
    ],
    mdev_type: Annotated[str, typer.Option("--type", "-t", help="The mdev type (acme-vgpu-2g).")],
    options: Annotated[
        str | None,
        typer.Option(
            "--options", help="With a model id: an option string (version=2,...; '' = init)."
        ),
    ] = None,
    document: Annotated[
        str | None,
        typer.Option("--document", help="The type's model document (else read from --sysfs)."),
    ] = None,
    sysfs: Annotated[
        str, typer.Option("--sysfs", help="The sysfs root to read the type from.")
    ] = "/sys",
    parent: Annotated[
        str | None, typer.Option("--parent", "-p", help="The type's parent (0000:00:02.0).")
    ] = None,
    start: Annotated[str, typer.Option("--start", help="auto (at boot) or manual.")] = "auto",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the JSON here, not to stdout.")
    ] = None,
    json_mode: Annotated[bool, typer.Option("--json", help="Errors as JSON for programs.")] = False,
) -> None:
    """Print the JSON `mdevctl define --jsonfile` takes for a device of a kernel mdev type.

    Its `attrs` are DESIGN §9's writes in order: migration/device_model, every
    parameter's off value, then the canonical configuration's values — one-key
    objects with string values. Exit 0 written, 1 the type refuses the device,
    2 unreadable input or unknown type.
    """
    out = Output(json_mode)
    if start not in ("auto", "manual"):
        out.fail(DevmigError(f"--start is auto or manual, not {start!r}", code="USAGE"), EXIT_USAGE)
    doc = _document(out, document, sysfs, mdev_type, parent)
    model, config = _device(out, device, options, doc)
    text = json.dumps(mdevctl_config(model, config, mdev_type, start=start), indent=2) + "\n"
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")


def _spec(out: Output, option: str, value: str) -> tuple[str, str, ModelDocument | None]:
    """Split ``WHERE=DOC`` (``DOC`` a file, - or example:NAME; none for an opaque type)."""
    where, _, doc = value.partition("=")
    if not where or (option != "--opaque-mdev" and not doc):
        out.fail(
            DevmigError(f"{option} takes WHERE=DOCUMENT, not {value!r}", code="USAGE"), EXIT_USAGE
        )
    if option == "--opaque-mdev":
        return where, "", None
    try:
        return where, doc, load_document(read_source(doc))
    except DevmigError as exc:
        out.fail(with_file(exc, doc), EXIT_USAGE, title=f"cannot use {doc}")


@kernel_app.command("twin")
def twin_cmd(
    mountpoint: Annotated[
        Path, typer.Argument(help="An empty directory to mount the twin's sysfs tree on.")
    ],
    mdev: Annotated[
        list[str] | None,
        typer.Option(
            "--mdev", help="PARENT/TYPE=DOC: an mdev type publishing a model document (repeatable)."
        ),
    ] = None,
    opaque_mdev: Annotated[
        list[str] | None,
        typer.Option("--opaque-mdev", help="PARENT/TYPE: a type without attributes."),
    ] = None,
    vf: Annotated[
        list[str] | None,
        typer.Option("--vf", help="ADDRESS=DOC: a VF bound to a variant driver (repeatable)."),
    ] = None,
    instances: Annotated[
        int, typer.Option("--instances", help="available_instances of every type.")
    ] = 4,
    driver: Annotated[
        str, typer.Option("--driver", help="The mdev parents' driver.")
    ] = "twin_mdev",
    vf_driver: Annotated[
        str, typer.Option("--vf-driver", help="The VFs' variant driver.")
    ] = "twin_vfio_pci",
    json_mode: Annotated[
        bool, typer.Option("--json", help="Announce the mount as one JSON line.")
    ] = False,
) -> None:
    """Mount a driver twin with FUSE and serve it until Ctrl-C or SIGTERM.

    The tree is shaped like /sys (class/mdev_bus, bus/mdev, bus/pci, devices,
    module) and behaves as docs/kernel.md asks a driver to, so that cat, echo,
    mdevctl and devmig's kernel provider (--sysfs MOUNTPOINT) act on it as on
    a driver. Exit 0 when stopped, 2 when it cannot mount.
    """
    import signal
    import threading

    from devmig.providers import MdevParentSpec, MdevTypeSpec, VfSpec, driver_twin, fuse_mounted

    out = Output(json_mode)
    parents: dict[str, list[MdevTypeSpec]] = {}
    for option, values in (("--mdev", mdev or []), ("--opaque-mdev", opaque_mdev or [])):
        for value in values:
            where, _, doc = _spec(out, option, value)
            parent, _, type_name = where.partition("/")
            if not type_name:
                out.fail(
                    DevmigError(f"{option} names PARENT/TYPE, not {where!r}", code="USAGE"),
                    EXIT_USAGE,
                )
            parents.setdefault(parent, []).append(MdevTypeSpec(type_name, doc, instances))
    vfs = []
    for value in vf or []:
        address, _, doc = _spec(out, "--vf", value)
        vfs.append(VfSpec(address, vf_driver, doc))
    twin = driver_twin([MdevParentSpec(p, driver, tuple(t)) for p, t in parents.items()], vfs)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        with fuse_mounted(twin.files, str(mountpoint)):
            if json_mode:
                typer.echo(json.dumps({"mount": str(mountpoint), "pid": os.getpid()}))
            else:
                out.console.print(f"driver twin mounted at {mountpoint} (Ctrl-C to unmount)")
            stop.wait()
    except DevmigError as exc:
        out.fail(exc, EXIT_USAGE, title=f"cannot mount the twin at {mountpoint}")


def register(app: typer.Typer) -> None:
    """Add ``devmig kernel`` to ``app``."""
    app.add_typer(kernel_app, name="kernel")
