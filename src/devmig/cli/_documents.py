"""Commands about documents and configurations: validate, expand, check, diff, schema, examples."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from devmig._errors import ConfigError, DevmigError, DocumentError, Problem
from devmig._examples import list_examples
from devmig.cli._output import EXIT_NO, EXIT_OK, EXIT_USAGE, Output, read_source, with_file
from devmig.compat import check as compat_check
from devmig.compat import diff as release_diff
from devmig.model import (
    DeviceModel,
    HostReport,
    ModelDocument,
    expand,
    host_report_schema,
    load_any,
    load_document,
    model_document_schema,
    version_of,
)

__all__ = ["register"]

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document for programs.")]
DocArg = Annotated[str, typer.Argument(help="A model document: a file, - for stdin, or example:NAME.")]


def _load(out: Output, arg: str) -> ModelDocument | HostReport:
    try:
        return load_any(read_source(arg))
    except DevmigError as exc:
        out.fail(with_file(exc, arg), EXIT_USAGE, title=f"cannot use {arg}")


def _load_document(out: Output, arg: str) -> ModelDocument:
    try:
        return load_document(read_source(arg))
    except DevmigError as exc:
        out.fail(with_file(exc, arg), EXIT_USAGE, title=f"cannot use {arg}")


def _find_model(out: Output, doc: ModelDocument | HostReport, model_id: str, arg: str) -> DeviceModel:
    docs = doc.implementations if isinstance(doc, HostReport) else (doc,)
    known: list[str] = []
    for d in docs:
        found = d.find(model_id)
        if found is not None:
            return found
        known += [m.model for m in d.models]
    out.fail(
        DocumentError(
            [
                Problem(
                    "MODEL_UNKNOWN",
                    ("model",),
                    f"{arg} has no model {model_id!r}",
                    value=model_id,
                    allowed=sorted(set(known)),
                    hint="models there: " + ", ".join(sorted(set(known))) if known else None,
                )
            ]
        ),
        EXIT_USAGE,
    )


def validate(
    files: Annotated[list[str], typer.Argument(help="Model documents or host reports.")],
    json_mode: JsonOpt = False,
) -> None:
    """Validate model documents and host reports; report every problem.

    Exit 0 when all are valid, 1 when any is invalid.
    """
    out = Output(json_mode)
    results: list[dict[str, Any]] = []
    for path in files:
        try:
            loaded = load_any(read_source(path))
        except DevmigError as exc:
            results.append({"path": path, "valid": False, "errors": exc.to_dicts(), "_exc": exc})
            continue
        kind = "host-report" if isinstance(loaded, HostReport) else "model-document"
        results.append({"path": path, "valid": True, "kind": kind, "errors": []})
    all_valid = all(r["valid"] for r in results)
    if json_mode:
        out.json({"files": [{k: v for k, v in r.items() if k != "_exc"} for r in results]})
    else:
        for r in results:
            if r["valid"]:
                out.console.print(f"[green]✓[/] {r['path']}: valid {r['kind']}")
            else:
                out.console.print(f"[red]✗[/] {r['path']}: {len(r['errors'])} problem(s)")
                out.problems(r["_exc"].problems, title=r["path"])
    raise typer.Exit(EXIT_OK if all_valid else EXIT_NO)


def expand_cmd(
    doc: DocArg,
    model: Annotated[str, typer.Argument(help="Model id, e.g. example.org/devices/nic.")],
    config: Annotated[str, typer.Argument(help="Option string, e.g. version=2,rx-table-size=48 ('' = init).")] = "",
    json_mode: JsonOpt = False,
) -> None:
    """Expand a configuration string into its canonical configuration.

    Exit 0 valid, 1 the configuration is refused, 2 unreadable/invalid document.
    """
    out = Output(json_mode)
    loaded = _load(out, doc)
    device_model = _find_model(out, loaded, model, doc)
    try:
        canonical = expand(device_model, config)
    except ConfigError as exc:
        out.fail(exc, EXIT_NO, title=f"configuration {config!r} refused")
    version = version_of(device_model, canonical)
    if json_mode:
        out.json({"model": model, "config": canonical.values, "string": canonical.string, "version": version})
        return
    out.console.print(f"[bold]{model}[/]")
    out.console.print(f"  canonical: {canonical.string or '(all parameters at their off values)'}")
    out.console.print(f"  version:   {version if version is not None else '(no published version)'}")
    table = Table(show_header=True, title=None)
    table.add_column("parameter")
    table.add_column("value")
    table.add_column("off")
    for name, param in sorted(device_model.params.items()):
        full = canonical.full(device_model)
        table.add_row(name, _fmt(full[name]), _fmt(param.off))
    out.console.print(table)


def check_cmd(
    source: Annotated[str, typer.Argument(help="The source's model document (or host report).")],
    dest: Annotated[str, typer.Argument(help="The destination: a model document or a host report.")],
    model: Annotated[str, typer.Argument(help="Model id of the device.")],
    config: Annotated[str, typer.Argument(help="The device's configuration on the source.")] = "",
    json_mode: JsonOpt = False,
) -> None:
    """Check whether a device (MODEL, CONFIG on SOURCE) can move to DEST.

    Exit 0 compatible, 1 incompatible, 2 a question that cannot be answered.
    """
    out = Output(json_mode)
    src_doc = _load(out, source)
    dst_doc = _load(out, dest)
    source_model = _find_model(out, src_doc, model, source)
    try:
        canonical = expand(source_model, config)
    except ConfigError as exc:
        out.fail(exc, EXIT_USAGE, title=f"configuration {config!r} is invalid on the source")
    verdict = compat_check(source_model, canonical, dst_doc)
    if json_mode:
        out.json(verdict.to_dict())
    else:
        where = dest
        if verdict.compatible:
            impl = verdict.implementation
            by = f" ({impl.name} {impl.release} accepts it)" if impl else ""
            out.console.print(f"[green]✓ compatible[/]: {model} {canonical.string or '(off values)'} → {where}{by}")
        else:
            out.console.print(f"[red]✗ incompatible[/]: {model} {canonical.string or '(off values)'} → {where}")
            out.problems(verdict.reasons, title="reasons")
    raise typer.Exit(EXIT_OK if verdict.compatible else EXIT_NO)


def diff_cmd(
    old: Annotated[str, typer.Argument(help="The older release's model document.")],
    new: Annotated[str, typer.Argument(help="The newer release's model document.")],
    json_mode: JsonOpt = False,
) -> None:
    """List every change between two releases of a model document, and what each breaks.

    Exit 0 no breaking change, 1 breaking, 2 unreadable or invalid input.
    """
    out = Output(json_mode)
    old_doc = _load_document(out, old)
    new_doc = _load_document(out, new)
    result = release_diff(old_doc, new_doc)
    if json_mode:
        out.json(result.to_dict())
    else:
        out.console.print(f"[bold]{escape(old)} → {escape(new)}[/]")
        if not result.changes:
            out.console.print("  no changes")
        models = list(dict.fromkeys(change.model for change in result.changes))
        for model_id in models:
            out.console.print(f"  [bold]{escape(model_id)}[/]")
            for change in (c for c in result.changes if c.model == model_id):
                where = ".".join(str(p) for p in change.loc)
                if change.breaks:
                    head = f"    [red]✗ {change.rule}[/]  {escape(where)}  breaks: {', '.join(change.breaks)}"
                else:
                    head = f"    [green]✓ {change.rule}[/]  {escape(where)}"
                out.console.print(head)
                out.console.print(f"        {escape(change.message)}")
        verdict = "[red]breaking[/]" if result.breaking else "[green]no breaking change[/]"
        out.console.print(verdict)
    raise typer.Exit(EXIT_NO if result.breaking else EXIT_OK)


def schema_cmd(
    kind: Annotated[str, typer.Argument(help="model-document or host-report.")] = "model-document",
) -> None:
    """Print the JSON Schema of model documents or host reports."""
    schemas = {"model-document": model_document_schema, "host-report": host_report_schema}
    if kind not in schemas:
        Output(False).fail(
            DevmigError(
                [Problem("USAGE", ("kind",), f"unknown schema {kind!r}", value=kind, allowed=sorted(schemas))]
            ),
            EXIT_USAGE,
        )
    typer.echo(json.dumps(schemas[kind](), indent=2, sort_keys=True))


def examples_cmd(
    name: Annotated[str | None, typer.Argument(help="Print this example's document (acme-nic/3.0.0).")] = None,
    json_mode: JsonOpt = False,
) -> None:
    """List the shipped example model documents (use them as example:NAME)."""
    out = Output(json_mode)
    if name is not None:
        try:
            typer.echo(read_source("example:" + name.removeprefix("example:")), nl=False)
        except DevmigError as exc:
            out.fail(exc, EXIT_USAGE)
        return
    rows: list[dict[str, Any]] = []
    for ex in list_examples():
        doc = load_document(read_source(f"example:{ex.name}"))
        rows.append(
            {
                "name": ex.name,
                "implementation": ex.implementation,
                "release": ex.release,
                "broken": ex.broken,
                "models": [m.model for m in doc.models],
                "versions": {m.model: [v.name for v in m.versions] for m in doc.models},
            }
        )
    if json_mode:
        out.json({"examples": rows})
        return
    table = Table(title="shipped examples (use as example:NAME)", title_justify="left")
    table.add_column("name", no_wrap=True)
    table.add_column("models")
    table.add_column("versions")
    for row in rows:
        name_text = row["name"] + (" [red](breaking)[/]" if row["broken"] else "")
        versions = "; ".join(", ".join(v) for v in row["versions"].values())
        table.add_row(name_text, "\n".join(row["models"]), versions)
    out.console.print(table)


def _fmt(value: object) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def register(app: typer.Typer) -> None:
    """Add the document commands to ``app``."""
    app.command("validate")(validate)
    app.command("expand")(expand_cmd)
    app.command("check")(check_cmd)
    app.command("diff")(diff_cmd)
    app.command("schema")(schema_cmd)
    app.command("examples")(examples_cmd)
