"""Commands about documents and configurations: validate, expand, check, diff, schema, examples, state-layout."""

from __future__ import annotations

import importlib
import importlib.util
import json
import sys
from pathlib import Path
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
HistoryOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--history",
        help="An earlier (or later) release's document, oldest first; repeat. "
        "Hints name the release that introduced a parameter; check judges a parameter "
        "the destination lacks by the off value it was introduced with.",
    ),
]
DocArg = Annotated[
    str, typer.Argument(help="A model document: a file, - for stdin, or example:NAME.")
]


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


def _find_model(
    out: Output, doc: ModelDocument | HostReport, model_id: str, arg: str
) -> DeviceModel:
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
        results.append(
            {
                "path": path,
                "valid": True,
                "kind": kind,
                "errors": [],
                "warnings": _layout_warnings(loaded),
            }
        )
    all_valid = all(r["valid"] for r in results)
    if json_mode:
        out.json({"files": [{k: v for k, v in r.items() if k != "_exc"} for r in results]})
    else:
        for r in results:
            if r["valid"]:
                out.console.print(f"[green]✓[/] {r['path']}: valid {r['kind']}")
                for warning in r["warnings"]:
                    out.console.print(f"  [yellow]⚠[/] {escape(warning['message'])}")
            else:
                out.console.print(f"[red]✗[/] {r['path']}: {len(r['errors'])} problem(s)")
                out.problems(r["_exc"].problems, title=r["path"])
    raise typer.Exit(EXIT_OK if all_valid else EXIT_NO)


def _history_docs(out: Output, files: list[str] | None) -> list[ModelDocument]:
    return [_load_document(out, f) for f in files or ()]


def _layout_warnings(loaded: ModelDocument | HostReport) -> list[dict[str, Any]]:
    """Warn about every model that publishes no state layout: rule 6 cannot protect it."""
    docs = loaded.implementations if isinstance(loaded, HostReport) else (loaded,)
    out = []
    for doc in docs:
        for model in doc.models:
            if model.state is None:
                out.append(
                    {
                        "code": "STATE_LAYOUT_MISSING",
                        "model": model.model,
                        "implementation": doc.implementation.render(),
                        "message": f"{doc.implementation.render()} publishes no state layout for {model.model}: "
                        "the check cannot catch a state change its parameters do not announce (rule 6); "
                        "generate it with `devmig state-layout` (a declaration with a Python callable cannot "
                        "be published: use size expressions and condition maps)",
                    }
                )
    return out


def expand_cmd(
    doc: DocArg,
    model: Annotated[str, typer.Argument(help="Model id, e.g. example.org/devices/nic.")],
    config: Annotated[
        str, typer.Argument(help="Option string, e.g. version=2,rx-table-size=48 ('' = init).")
    ] = "",
    json_mode: JsonOpt = False,
    history: HistoryOpt = None,
) -> None:
    """Expand a configuration string into its canonical configuration.

    Exit 0 valid, 1 the configuration is refused, 2 unreadable/invalid document.
    """
    out = Output(json_mode)
    loaded = _load(out, doc)
    device_model = _find_model(out, loaded, model, doc)
    introduced: dict[str, str] = {}
    for release in _history_docs(out, history):
        found = release.find(model)
        for name in found.params if found is not None else ():
            if name not in device_model.params:
                introduced.setdefault(name, release.implementation.render())
    try:
        canonical = expand(device_model, config, introduced=introduced)
    except ConfigError as exc:
        out.fail(exc, EXIT_NO, title=f"configuration {config!r} refused")
    version = version_of(device_model, canonical)
    if json_mode:
        out.json(
            {
                "model": model,
                "config": canonical.values,
                "string": canonical.string,
                "version": version,
            }
        )
        return
    out.console.print(f"[bold]{model}[/]")
    out.console.print(f"  canonical: {canonical.string or '(all parameters at their off values)'}")
    out.console.print(
        f"  version:   {version if version is not None else '(no published version)'}"
    )
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
    dest: Annotated[
        str, typer.Argument(help="The destination: a model document or a host report.")
    ],
    model: Annotated[str, typer.Argument(help="Model id of the device.")],
    config: Annotated[str, typer.Argument(help="The device's configuration on the source.")] = "",
    json_mode: JsonOpt = False,
    history: HistoryOpt = None,
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
    verdict = compat_check(source_model, canonical, dst_doc, history=_history_docs(out, history) or None)
    if json_mode:
        out.json(verdict.to_dict())
    else:
        where = dest
        if verdict.compatible:
            impl = verdict.implementation
            by = f" ({impl.name} {impl.release} accepts it)" if impl else ""
            out.console.print(
                f"[green]✓ compatible[/]: {model} {canonical.string or '(off values)'} → {where}{by}"
            )
        else:
            out.console.print(
                f"[red]✗ incompatible[/]: {model} {canonical.string or '(off values)'} → {where}"
            )
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
                [
                    Problem(
                        "USAGE",
                        ("kind",),
                        f"unknown schema {kind!r}",
                        value=kind,
                        allowed=sorted(schemas),
                    )
                ]
            ),
            EXIT_USAGE,
        )
    typer.echo(json.dumps(schemas[kind](), indent=2, sort_keys=True))


def examples_cmd(
    name: Annotated[
        str | None, typer.Argument(help="Print this example's document (acme-nic/3.0.0).")
    ] = None,
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


def _device_class(spec: str) -> Any:
    """Import ``module:Class`` or ``path/to/file.py:Class``."""
    where, _, name = spec.rpartition(":")
    if not where or not name:
        raise ValueError(f"{spec!r}: give MODULE:CLASS or FILE.py:CLASS")
    if where.endswith(".py"):
        path = Path(where).resolve()
        module_name = f"_devmig_layout_{path.stem}"
        loaded = importlib.util.spec_from_file_location(module_name, path)
        if loaded is None or loaded.loader is None:
            raise ValueError(f"cannot import {where}")
        module = importlib.util.module_from_spec(loaded)
        sys.modules[module_name] = module
        sys.path.insert(0, str(path.parent))
        try:
            loaded.loader.exec_module(module)
        finally:
            sys.path.remove(str(path.parent))
    else:
        module = importlib.import_module(where)
    cls = getattr(module, name, None)
    if cls is None:
        raise ValueError(f"{where} has no {name}")
    return cls


def state_layout_cmd(
    document: Annotated[Path, typer.Argument(help="The model document to write the layouts into.")],
    classes: Annotated[
        list[str],
        typer.Argument(
            help="Device classes whose models it defines: MODULE:CLASS or FILE.py:CLASS."
        ),
    ],
    check_only: Annotated[
        bool,
        typer.Option("--check", help="Write nothing; exit 1 when the document is out of date."),
    ] = False,
    json_mode: JsonOpt = False,
) -> None:
    """Write each class's state layout, generated from its declaration, into its model in DOCUMENT.

    Only the models' "state" members change; the rest of the file is kept as
    written. A declaration with a Python callable publishes no layout (its
    model's "state" is removed). Exit 0 written (or current), 1 out of date
    with --check, 2 unusable input.
    """
    from devmig.device import Device, with_published_layouts

    out = Output(json_mode)
    try:
        loaded = [_device_class(spec) for spec in classes]
    except Exception as exc:  # an import error of the user's module is a usage error here
        out.fail(
            DevmigError([Problem("USAGE", ("class",), f"cannot import the device class: {exc}")]),
            EXIT_USAGE,
        )
    for cls in loaded:
        if not (isinstance(cls, type) and issubclass(cls, Device)):
            out.fail(
                DevmigError([Problem("USAGE", ("class",), f"{cls!r} is not a Device class")]),
                EXIT_USAGE,
            )
    try:
        text = read_source(str(document))
        load_document(text)
        new = with_published_layouts(text, loaded)
    except DevmigError as exc:
        out.fail(
            with_file(exc, str(document)), EXIT_USAGE, title=f"cannot write layouts into {document}"
        )
    current = new == text
    if not current and not check_only:
        document.write_text(new, encoding="utf-8")
    rows = [
        {
            "model": cls.model_id,
            "published": not cls.state.callables,
            "callables": cls.state.callables,
        }
        for cls in loaded
    ]
    if json_mode:
        out.json(
            {
                "document": str(document),
                "current": current,
                "written": not current and not check_only,
                "models": rows,
            }
        )
    else:
        for row in rows:
            if row["published"]:
                out.console.print(f"[green]✓[/] {escape(row['model'])}: layout generated")
            else:
                out.console.print(
                    f"[yellow]⚠[/] {escape(row['model'])}: no layout (a Python callable at "
                    f"{escape(', '.join(row['callables']))})"
                )
        state = "up to date" if current else ("out of date" if check_only else "written")
        out.console.print(f"{escape(str(document))}: {state}")
    raise typer.Exit(EXIT_NO if check_only and not current else EXIT_OK)


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
    app.command("state-layout")(state_layout_cmd)
