"""``devmig qemu``: QEMU's own devices as model documents (docs/qemu.md)."""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from devmig._errors import DevmigError, DocumentError, Problem
from devmig.cli._output import EXIT_USAGE, Output, with_file
from devmig.qemu import import_vmstate, machine_of

__all__ = ["register"]

qemu_app = typer.Typer(
    no_args_is_help=True,
    help="QEMU's own device state (-dump-vmstate) as model documents (docs/qemu.md).",
)


def _read(dump: str) -> Any:  # JSON boundary
    """Read a dump: a file (``.gz``/``.zst`` decompressed) or - for stdin."""
    try:
        raw = sys.stdin.buffer.read() if dump == "-" else Path(dump).read_bytes()
        if dump.endswith(".gz"):
            raw = gzip.decompress(raw)
        elif dump.endswith(".zst"):
            import zstandard

            raw = zstandard.ZstdDecompressor().decompressobj().decompress(raw)
        return json.loads(raw)
    except OSError as exc:
        raise DocumentError(
            [
                Problem(
                    "FILE_UNREADABLE",
                    ("file", dump),
                    f"cannot read {dump}: {exc.strerror or exc}",
                    value=dump,
                )
            ]
        ) from exc
    except (ValueError, EOFError) as exc:  # JSON, UTF-8, gzip and zstd errors
        raise DocumentError(
            [Problem("JSON_SYNTAX", ("file", dump), f"{dump}: not a JSON vmstate dump: {exc}")]
        ) from exc


@qemu_app.command("import-vmstate")
def import_vmstate_command(
    dump: Annotated[
        str,
        typer.Argument(
            help="The JSON `qemu-system-x86_64 -dump-vmstate FILE` wrote (.gz/.zst too, - for stdin)."
        ),
    ],
    release: Annotated[
        str,
        typer.Option(
            "--release", "-r", help="The QEMU release the dump is of (7.2); the dump does not say."
        ),
    ],
    name: Annotated[str, typer.Option("--name", help="The implementation's name.")] = "qemu",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the document here, not to stdout.")
    ] = None,
    json_mode: Annotated[bool, typer.Option("--json", help="Errors as JSON for programs.")] = False,
) -> None:
    """Print a model document with one parameterless model per QEMU vmstate section.

    Each model is `qemu.org/devices/<section>`; its state layout holds the
    section's fields as `bytes` (the size as maximum), nested structs flattened
    (`parent_obj.config`), repeated names numbered (`unused#2`), version-gated
    fields named `field@vN`, subsections as optional sections; the section
    versions are in its description. Compare two with `devmig diff`. Exit 0
    written, 2 unreadable or not a vmstate dump.
    """
    out = Output(json_mode)
    try:
        data = _read(dump)
        doc = import_vmstate(data, release, name=name)
    except DevmigError as exc:
        out.fail(with_file(exc, dump), EXIT_USAGE, title=f"cannot import {dump}")
    document = doc.model_dump(mode="json", by_alias=True, exclude_none=True, exclude_defaults=True)
    text = json.dumps({"format": doc.format, **document}, indent=1) + "\n"
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        machine = machine_of(data)
        typer.echo(
            f"wrote {output}: {len(doc.models)} models"
            + (f" (machine {machine})" if machine else ""),
            err=True,
        )


def register(app: typer.Typer) -> None:
    """Add ``devmig qemu`` to the application."""
    app.add_typer(qemu_app, name="qemu")
