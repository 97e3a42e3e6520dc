"""Commands about saved device state: save, load, inspect (in the spirit of QEMU's analyze-migration.py)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from devmig._errors import DevmigError, Problem
from devmig._json import JsonObject
from devmig.cli._output import EXIT_NO, EXIT_USAGE, Output
from devmig.device import Device
from devmig.devices import CATALOG, device_class, model_classes
from devmig.migration import State
from devmig.model import format_options
from devmig.state import RoundEndSignal, inspect_stream

__all__ = ["register"]

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document for programs.")]
ReleaseArg = Annotated[
    str, typer.Argument(help="A reference device release: IMPLEMENTATION/RELEASE, e.g. acme-nic/3.0.0.")
]


def _release(out: Output, name: str) -> type[Device]:
    impl, _, release = name.partition("/")
    try:
        return device_class(impl, release)
    except DevmigError as exc:
        out.fail(exc, EXIT_USAGE)


def _host(device_cls: type[Device], image: Path | None) -> JsonObject:
    """Host-only settings a reference device needs (the block device's image)."""
    if device_cls.model_id != "example.org/devices/blk":
        return {}
    if image is None:
        image = Path(tempfile.mkstemp(prefix="devmig-blk-", suffix=".img")[1])
        with image.open("r+b") as f:
            f.truncate(4 << 20)
    return {"image": str(image)}


def save_cmd(
    release: ReleaseArg,
    config: Annotated[str, typer.Argument(help="The configuration string ('' = init).")] = "",
    output: Annotated[Path, typer.Option("-o", "--output", help="Where to write the stream.")] = Path("device.dvmg"),
    steps: Annotated[int, typer.Option(help="Seeded work steps before saving.")] = 100,
    seed: Annotated[int, typer.Option(help="Workload seed.")] = 0,
    precopy_rounds: Annotated[int, typer.Option(help="Pre-copy rounds, with work between them.")] = 2,
    image: Annotated[Path | None, typer.Option(help="Block devices: the image file.")] = None,
    json_mode: JsonOpt = False,
) -> None:
    """Create a reference device, run it, and save its migration stream to a file."""
    out = Output(json_mode)
    cls = _release(out, release)
    try:
        device = cls.create(config, host=_host(cls, image), seed=seed)
    except DevmigError as exc:
        out.fail(exc, EXIT_NO, title=f"configuration {config!r} refused")
    device.step(steps)
    parts: list[bytes] = []

    def drain() -> None:
        while True:
            chunk = device.read_data(1 << 20)
            if isinstance(chunk, RoundEndSignal) or chunk == []:
                return
            parts.extend(bytes(b) for b in chunk)

    if precopy_rounds:
        device.set_state(State.PRE_COPY)
        for _ in range(precopy_rounds):
            drain()
            device.step(5)
    device.set_state(State.STOP_COPY)
    drain()
    device.set_state(State.STOP)
    data = b"".join(parts)
    try:
        output.write_bytes(data)
    except OSError as exc:
        out.fail(DevmigError([Problem("FILE_UNWRITABLE", ("output",), f"cannot write {output}: {exc.strerror}",
                                      value=str(output))]), EXIT_USAGE)
    result = {
        "path": str(output),
        "bytes": len(data),
        "model": device.config.model,
        "config": device.config.string,
        "digest": device.digest().hex(),
    }
    if json_mode:
        out.json(result)
    else:
        out.console.print(f"saved {len(data)} bytes to {escape(str(output))}; state digest {result['digest']}")


def load_cmd(
    release: ReleaseArg,
    file: Annotated[Path, typer.Argument(help="A saved stream.")],
    image: Annotated[Path | None, typer.Option(help="Block devices: the image file.")] = None,
    json_mode: JsonOpt = False,
) -> None:
    """Load a saved stream into a fresh device of RELEASE, as a migration destination would.

    Exit 0 loaded, 1 refused (configuration or stream), 2 unreadable file.
    """
    out = Output(json_mode)
    cls = _release(out, release)
    data = _read(out, file)
    try:
        summary = inspect_stream(data)
        device = cls.create_canonical(summary.config, host=_host(cls, image))
        device.load_stream(data)
    except DevmigError as exc:
        out.fail(exc, EXIT_NO, title=f"{file} refused by {release}")
    result = {"loaded": True, "model": device.config.model, "config": device.config.string,
              "digest": device.digest().hex()}
    if json_mode:
        out.json(result)
    else:
        out.console.print(f"[green]✓[/] loaded into {release}: state digest {result['digest']}")


def _read(out: Output, file: Path) -> bytes:
    try:
        return file.read_bytes()
    except OSError as exc:
        out.fail(
            DevmigError([Problem("FILE_UNREADABLE", ("file", str(file)), f"cannot read {file}: {exc.strerror}",
                                 value=str(file))]),
            EXIT_USAGE,
        )


def inspect_cmd(
    file: Annotated[Path, typer.Argument(help="A saved migration stream.")],
    json_mode: JsonOpt = False,
) -> None:
    """Decode a saved stream: header, rounds, sections, bulk coverage, digest verdict.

    Exit 0 a sound stream, 1 a corrupt one (the codec's error names where), 2 unreadable.
    """
    out = Output(json_mode)
    data = _read(out, file)
    try:
        summary = inspect_stream(data)
    except DevmigError as exc:
        out.fail(exc, EXIT_NO, title=f"{file} is not a sound stream")
    if json_mode:
        out.json(summary.to_dict())
    else:
        c = out.console
        c.print(f"[bold]{escape(str(file))}[/]: devmig stream {summary.major}.{summary.minor}, {summary.size} bytes, "
                f"{summary.records} records")
        c.print(f"  model     {escape(summary.model)}")
        config = format_options(sorted(summary.config.items()))
        c.print(f"  config    {escape(config) or '(all off)'}")
        c.print(f"  producer  {escape(str(summary.producer))}")
        c.print(f"  rounds    {summary.rounds} pre-copy round(s)")
        counts = ", ".join(f"{k} {v}" for k, v in sorted(summary.record_counts.items()))
        c.print(f"  records   {counts}")
        table = Table(title="bulk coverage", title_justify="left")
        for col in ("region", "BULK", "ZERO", "bulk bytes", "compressed", "covered bytes"):
            table.add_column(col, justify="right")
        for r in summary.regions:
            table.add_row(str(r.region), str(r.bulk_records), str(r.zero_records), str(r.bulk_bytes),
                          str(r.compressed_records), str(r.covered_bytes))
        if summary.regions:
            c.print(table)
        for s in summary.sections:
            flag = " (optional)" if s.optional else ""
            c.print(f"  section   {escape(s.name)}{flag}: {', '.join(s.fields)} — {s.size} bytes")
        verdict = {True: "[green]✓ trailer digest matches[/]", False: "[red]✗ trailer digest MISMATCH[/]",
                   None: "[yellow]no trailer[/]"}[summary.digest_ok]
        c.print(f"  {verdict}")
    raise typer.Exit(0 if summary.digest_ok else EXIT_NO)


def devices_cmd(json_mode: JsonOpt = False) -> None:
    """List the reference device releases (for save/load and agents)."""
    out = Output(json_mode)
    rows = [  # every model each release serves (agents create them all; save and load run the first)
        {"implementation": name, "release": cls.implementation().release, "model": model}
        for name, classes in CATALOG.items()
        for cls in classes
        for model in model_classes(cls)
    ]
    if json_mode:
        out.json({"devices": rows})
        return
    table = Table(title="reference devices", title_justify="left")
    for col in ("implementation", "release", "model"):
        table.add_column(col)
    for row in rows:
        table.add_row(row["implementation"], row["release"], row["model"])
    out.console.print(table)


def register(app: typer.Typer) -> None:
    """Add the stream commands to ``app``."""
    app.command("save")(save_cmd)
    app.command("load")(load_cmd)
    app.command("inspect")(inspect_cmd)
    app.command("devices")(devices_cmd)
