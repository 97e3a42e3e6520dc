"""``devmig migrations``, ``devmig drain`` and the manager form of ``devmig migrate``.

They ask a running manager (``--manager URL`` or ``DEVMIG_MANAGER``; mutating
calls send ``--token`` / ``DEVMIG_TOKEN``): the manager journals and drives
the migrations, so interrupting the command changes nothing — it only stops
watching. Exit codes:

====  ==================================================================
0     done: migrated / the host is drained / the plan is complete
1     refused before anything moved (stranded, incompatible, no host,
      busy) or rolled back / failed
2     bad input (unknown host or device, bad option), refused token,
      unreachable manager
3     partial (``--partial`` left devices behind) or in doubt (the
      manager stopped answering, or the wait timed out)
====  ==================================================================
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from devmig._errors import DevmigError
from devmig._humanize import size
from devmig.cli._fleet import DEFAULT_MANAGER, JsonOpt, ManagerClient, ManagerOpt, TokenOpt
from devmig.cli._output import EXIT_NO, EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, Output, exit_for

__all__ = ["migrate_via_manager", "register"]

_POLL_S = 0.2
_DRAIN_EXIT = {"done": EXIT_OK, "partial": EXIT_PARTIAL, "failed": EXIT_NO}
_MIGRATION_EXIT = {"migrated": EXIT_OK, "rolled_back": EXIT_NO}


def _error(code: str, loc: tuple[str | int, ...], message: str, *, value: object = None,
           hint: str | None = None) -> DevmigError:
    return DevmigError.of(code, message, loc=loc, value=value, hint=hint)


def _call(out: Output, client: ManagerClient, method: str, path: str, **kw: Any) -> Any:
    try:
        return client.call(method, path, **kw)
    except DevmigError as exc:
        out.fail(exc, exit_for(exc))


def _bytes(n: float | None) -> str:
    return size(n or 0)


def _line(record: dict[str, Any]) -> str:
    p = record.get("progress") or {}
    bits = [record["phase"]]
    if p.get("stage"):
        bits.append(f"{p['stage']} round {p.get('round', 0)}")
    if p.get("bytes_sent"):
        bits.append(_bytes(p["bytes_sent"]))
    return "  ".join(bits)


def _watch(out: Output, what: str, fetch: Callable[[], dict[str, Any]], lines: Callable[[dict[str, Any]], list[
        tuple[str, str, bool]]], timeout: float) -> tuple[dict[str, Any] | None, DevmigError | None]:
    """Poll ``fetch`` until its record is finished; show one progress row per ``lines`` item.

    Returns the last record, or ``None`` and the error when the manager stopped answering
    (or the timeout passed: ``TIMEOUT``).
    """
    progress = None if out.json_mode else Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[line]}"),
        console=out.console, transient=False)
    tasks: dict[str, Any] = {}
    deadline = time.monotonic() + timeout
    record: dict[str, Any] | None = None
    if progress is not None:
        progress.start()
    try:
        while True:
            try:
                record = fetch()
            except DevmigError as exc:
                return None, exc
            if progress is not None:
                for key, line, finished in lines(record):
                    if key not in tasks:
                        tasks[key] = progress.add_task(key, total=1, line="")
                    progress.update(tasks[key], line=line, completed=1 if finished else 0)
            if record.get("finished"):
                return record, None
            if time.monotonic() > deadline:
                return record, _error("TIMEOUT", (what,), f"{what} did not finish in {timeout:g} s",
                                               value=record.get("phase"),
                                               hint="it goes on in the manager; see devmig migrations / drains")
            time.sleep(_POLL_S)
    finally:
        if progress is not None:
            progress.stop()


# -- devmig migrate (manager form) -------------------------------------------------------------


def migrate_via_manager(out: Output, manager: str, token: str | None, device: str, to: str | None,
                        migration_id: str | None, timeout: float = 900.0) -> int:
    """Start a journalled migration through the manager and wait for it; return the exit code."""
    if "/" not in device.strip("/"):
        out.fail(_error("USAGE", ("device",), f"a device is HOST/ID, not {device!r}", value=device,
                                 hint="with a manager: devmig migrate HOST/ID [--to HOST]"), EXIT_USAGE)
    client = ManagerClient(manager, token)
    try:
        body = {"device": device, "destination": to, "migration_id": migration_id}
        record = _call(out, client, "POST", "/v1/migrations", json=body)
        mid = record["id"]
        if not out.json_mode:
            out.console.print(f"migration [bold]{mid}[/]: {escape(device)} → {escape(record['destination'])} "
                              "(journalled by the manager)")
        final, lost = _watch(out, f"migration {mid}", lambda: client.call("GET", f"/v1/migrations/{mid}"),
                             lambda r: [(mid, _line(r), bool(r.get("finished")))], timeout)
    finally:
        client.close()
    if final is None or lost is not None:
        assert lost is not None
        if out.json_mode:
            out.json({"id": mid, "outcome": None, "exit": EXIT_PARTIAL, "errors": lost.to_dicts()})
        else:
            out.problems(lost.problems, title=f"in doubt: migration {mid}", stream=out.err)
            out.console.print("the manager keeps driving it: devmig migrations " + mid)
        return EXIT_PARTIAL
    code = _MIGRATION_EXIT.get(final.get("outcome") or "", EXIT_PARTIAL)
    if out.json_mode:
        out.json({**final, "exit": code})
        return code
    if final["outcome"] == "migrated":
        out.console.print(f"[green]migrated[/]: {escape(device)} runs on {escape(final['destination'])} as "
                          f"[bold]{final.get('destination_device_id')}[/]")
        extra = [f"{_bytes((final.get('progress') or {}).get('bytes_sent'))}"]
        if final.get("downtime_ms") is not None:
            extra.append(f"downtime {final['downtime_ms']:.1f} ms")
        out.console.print("  " + ", ".join(extra))
        out.console.print(f"{final['destination']}/{final.get('destination_device_id')}")
    else:
        err = final.get("error") or {}
        out.console.print(f"[yellow]rolled back[/]: {escape(device)} runs on {escape(final['source'])} "
                          f"[{err.get('code')}] {escape(str(err.get('message') or ''))}")
    return code


# -- devmig migrations --------------------------------------------------------------------------


def _migration_table(out: Output, records: list[dict[str, Any]]) -> None:
    count = f"{len(records)} migration" + ("" if len(records) == 1 else "s")
    table = Table(title=f"{count} (newest first)", title_justify="left")
    for col in ("id", "device", "from → to", "phase", "outcome", "downtime", "drain"):
        table.add_column(col)
    for r in records:
        downtime = f"{r['downtime_ms']:.1f} ms" if r.get("downtime_ms") is not None else "-"
        table.add_row(r["id"], r["device"], f"{r['source']} → {r['destination']}", r["phase"],
                      r.get("outcome") or "-", downtime, r.get("drain") or "-")
    out.console.print(table)


def _migration_detail(out: Output, r: dict[str, Any]) -> None:
    c = out.console
    c.print(f"migration [bold]{r['id']}[/]: {escape(r['device'])} ({escape(r['model'])}) "
            f"{r['source']} → {r['destination']}")
    c.print(f"  phase {r['phase']}, outcome {r.get('outcome') or 'running'}"
            + (f", drain {r['drain']}" if r.get("drain") else ""))
    p = r.get("progress") or {}
    c.print(f"  stage {p.get('stage') or '-'}, round {p.get('round', 0)}, sent {_bytes(p.get('bytes_sent'))}")
    if r.get("destination_device_id"):
        c.print(f"  destination device {r['destination_device_id']}")
    if r.get("downtime_ms") is not None:
        c.print(f"  downtime {r['downtime_ms']:.1f} ms")
    if r.get("error"):
        e = r["error"]
        c.print(f"  [red]{e.get('code')}[/] in {e.get('phase')}: {escape(str(e.get('message')))}")
    c.print("  history: " + " → ".join(h["phase"] for h in r.get("history", [])))


def migrations_cmd(
    migration_id: Annotated[str | None, typer.Argument(help="Show this migration (default: list them).")] = None,
    active: Annotated[bool, typer.Option("--active", help="Only unfinished migrations.")] = False,
    manager: ManagerOpt = DEFAULT_MANAGER, json_mode: JsonOpt = False,
) -> None:
    """List the manager's migrations (newest first), or show one: phase, progress, outcome, history.

    Exit 0; 2 for an unknown id or an unreachable manager.
    """
    out = Output(json_mode)
    client = ManagerClient(manager)
    try:
        if migration_id is None:
            data = _call(out, client, "GET", "/v1/migrations", params={"active": str(active).lower()})
        else:
            data = _call(out, client, "GET", f"/v1/migrations/{migration_id}")
    finally:
        client.close()
    if json_mode:
        out.json(data)
    elif migration_id is None:
        _migration_table(out, data["migrations"])
    else:
        _migration_detail(out, data)
    raise typer.Exit(EXIT_OK)


# -- devmig drain -------------------------------------------------------------------------------------


def _plan_table(out: Output, drain: dict[str, Any]) -> None:
    table = Table(title=f"drain of {drain['host']}: {len(drain['plan'])} to move", title_justify="left")
    for col in ("device", "model", "destination"):
        table.add_column(col)
    for p in drain["plan"]:
        table.add_row(p["device"], p["model"], p["destination"])
    out.console.print(table)
    _stranded(out, drain.get("stranded") or [])


def _stranded(out: Output, stranded: list[dict[str, Any]]) -> None:
    for s in stranded:
        codes = ", ".join(dict.fromkeys(e["code"] for e in s["errors"]))
        out.console.print(f"[red]stranded[/] {escape(s['device'])} ({escape(s['model'])}): {codes}")
        for e in s["errors"][1:6]:
            where = ".".join(str(x) for x in e.get("loc", []))
            out.console.print(f"    ✗ {e['code']} {escape(where)}: {escape(e['message'])}")


def _stranded_from(error: DevmigError) -> list[dict[str, Any]]:
    """Group a ``STRANDED`` refusal's problems by device (``devices.HOST/ID....``)."""
    by: dict[str, list[dict[str, Any]]] = {}
    for p in error.to_dicts()[1:]:
        loc = p.get("loc") or []
        if len(loc) >= 2 and loc[0] == "devices":
            by.setdefault(str(loc[1]), []).append(p)
    return [{"device": d, "model": "", "errors": errors} for d, errors in by.items()]


def drain_cmd(
    host: Annotated[str, typer.Argument(help="The host to drain.")],
    partial: Annotated[
        bool, typer.Option("--partial", help="Move what can move even if some device is stranded.")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only show the plan (nothing moves, not cordoned).")
    ] = False,
    parallel: Annotated[int, typer.Option("--parallel", min=1, max=64, help="Migrations at once.")] = 1,
    no_wait: Annotated[bool, typer.Option("--no-wait", help="Start the drain and return its id.")] = False,
    timeout: Annotated[float, typer.Option("--timeout", min=1, help="Seconds to wait for the drain.")] = 3600.0,
    manager: ManagerOpt = DEFAULT_MANAGER,
    token: TokenOpt = None,
    json_mode: JsonOpt = False,
) -> None:
    """Empty HOST: cordon it and migrate every device it runs to the best other host (journalled).

    Exit 0 drained (or, with --dry-run, every device has a destination), 1 refused — some
    device would be stranded: nothing moved, the host stays cordoned — or the drain failed,
    2 bad input / unreachable manager, 3 partial (--partial left devices behind) or in doubt.
    """
    out = Output(json_mode)
    client = ManagerClient(manager, token)
    try:
        body = {"host": host, "partial": partial, "dry_run": dry_run, "parallel": parallel}
        try:
            drain = client.call("POST", "/v1/drains", json=body)
        except DevmigError as exc:
            if exc.code == "STRANDED":
                if not json_mode:
                    out.console.print(
                        f"[bold red]drain of {escape(host)} refused[/]: {escape(exc.problems[0].message)}"
                    )
                    _stranded(out, _stranded_from(exc))
                    out.console.print(f"nothing moved; {escape(host)} stays cordoned "
                                      f"(devmig hosts uncordon {escape(host)}), or drain with --partial")
                    raise typer.Exit(EXIT_NO) from None
                out.fail(exc, EXIT_NO)
            out.fail(exc, exit_for(exc))
        if dry_run:
            code = EXIT_OK if not drain["stranded"] else (EXIT_PARTIAL if partial else EXIT_NO)
            if json_mode:
                out.json({**drain, "exit": code})
            else:
                _plan_table(out, drain)
                out.console.print("dry run: nothing moved, the host is not cordoned")
            raise typer.Exit(code)
        did = drain["id"]
        if no_wait:
            if json_mode:
                out.json(drain)
            else:
                out.console.print(f"drain [bold]{did}[/] of {escape(host)} started: {len(drain['plan'])} to move")
            raise typer.Exit(EXIT_OK)
        if not json_mode:
            _plan_table(out, drain)
        migrations: dict[str, dict[str, Any]] = {}

        def fetch() -> dict[str, Any]:
            record: dict[str, Any] = client.call("GET", f"/v1/drains/{did}")
            for mid in record["migrations"]:
                if mid not in migrations or not migrations[mid].get("finished"):
                    try:
                        migrations[mid] = client.call("GET", f"/v1/migrations/{mid}")
                    except DevmigError as exc:
                        if exc.code != "MIGRATION_UNKNOWN":  # named by the drain, not started yet
                            raise
            return record

        def lines(_record: dict[str, Any]) -> list[tuple[str, str, bool]]:
            return [(f"{m['device']} → {m['destination']}", _line(m), bool(m.get("finished")))
                    for m in migrations.values()]

        final, lost = _watch(out, f"drain {did}", fetch, lines, timeout)
    finally:
        client.close()
    if final is None or lost is not None:
        assert lost is not None
        if json_mode:
            out.json({"id": did, "phase": None, "exit": EXIT_PARTIAL, "errors": lost.to_dicts()})
        else:
            out.problems(lost.problems, title=f"in doubt: drain {did}", stream=out.err)
        raise typer.Exit(EXIT_PARTIAL)
    code = _DRAIN_EXIT.get(final["phase"], EXIT_PARTIAL)
    if json_mode:
        out.json({**final, "migration_records": list(migrations.values()), "exit": code})
        raise typer.Exit(code)
    moved = sum(1 for m in migrations.values() if m.get("outcome") == "migrated")
    colour = {"done": "green", "partial": "yellow"}.get(final["phase"], "red")
    out.console.print(f"[{colour}]drain {final['phase']}[/]: {moved} of {len(final['plan'])} moved, "
                      f"{len(final['stranded'])} stranded; {escape(host)} stays cordoned")
    for m in migrations.values():
        if m.get("outcome") != "migrated":
            err = m.get("error") or {}
            out.console.print(f"  [red]✗[/] {escape(m['device'])}: {m.get('outcome')} [{err.get('code')}]")
    raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    """Add ``devmig migrations`` and ``devmig drain`` to ``app`` (``migrate`` is in ``_migrate``)."""
    app.command("migrations")(migrations_cmd)
    app.command("drain")(drain_cmd)
