"""``devmig migrate`` and ``devmig migration show``: start and observe a live migration.

With a manager (``--manager URL`` / ``DEVMIG_MANAGER``, no ``--from``),
``devmig migrate HOST/ID [--to HOST]`` goes through it instead (journalled;
see :mod:`devmig.cli._orchestrate`).

The CLI only checks, starts and observes: the agents carry the migration, so
killing the CLI changes nothing. Exit codes of ``devmig migrate``:

====  ==============================================================
0     migrated: the device runs on the destination (its id is printed)
1     refused (incompatible, busy) or rolled back: the device runs on the source
2     usage, unreachable agent or refused token, before any change
3     lost or in doubt: the message says where the device is (or was)
====  ==============================================================
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn

from devmig._errors import DevmigError, Problem
from devmig._humanize import size
from devmig._json import JsonObject, object_at, str_at
from devmig.agent import AgentClient
from devmig.cli._output import EXIT_NO, EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, Output
from devmig.compat import Verdict, check
from devmig.model import load_host_report, parse_canonical

__all__ = ["register"]

_REFUSALS = {"INCOMPATIBLE", "DEVICE_BUSY", "MIGRATION_CONFLICT", "DEVICE_NOT_FOUND", "MODEL_UNKNOWN"}
_IN_DOUBT_GRACE_S = 30.0


async def _check(source: AgentClient, destination: AgentClient, device_id: str) -> tuple[JsonObject, Verdict]:
    """Read the device and both reports; return the device and the verdict."""
    device = await source.get_device(device_id)
    source_raw, _ = await source.report()
    dest_raw, _ = await destination.report()
    source_report = load_host_report(source_raw or {})
    dest_report = load_host_report(dest_raw or {})
    impl = str_at(object_at(device, "implementation"), "name")
    model = None
    for doc in source_report.implementations:
        if doc.implementation.name == impl:
            model = doc.find(str_at(device, "model"))
    if model is None:
        raise DevmigError([Problem("MODEL_UNKNOWN", ("device", "model"),
                                   f"the source's report has no {device['model']} in {impl}")])
    raw_config = device["config"]
    config = parse_canonical(model, raw_config if isinstance(raw_config, str) else object_at(device, "config"))
    return device, check(model, config, dest_report)


def _progress_line(st: dict[str, Any]) -> str:
    rate = st.get("rate") or 0
    return (f"{st['phase']:<11} {st.get('stage', ''):<9} round {st.get('round', 0):>2}  "
            f"{size(st.get('bytes_sent', 0)):>10}  {size(rate) + '/s':>12}")


async def _watch(source: AgentClient, destination: AgentClient, mid: str, out: Output) -> tuple[dict[str, Any], str]:
    """Poll the source until the migration ends; return the last status and where it came from."""
    in_doubt_since: float | None = None
    progress = None if out.json_mode else Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.fields[line]}"),
        console=out.console, transient=True,
    )
    task = progress.add_task(mid, total=None, line="") if progress else None
    if progress:
        progress.start()
    try:
        while True:
            try:
                st = await source.migration(mid)
            except DevmigError as exc:
                if exc.code != "AGENT_UNREACHABLE":
                    raise
                # the source agent is gone: the destination knows whether the device runs there
                try:
                    return await destination.migration(mid), "destination"
                except DevmigError:
                    return {"migration_id": mid, "phase": "UNKNOWN", "outcome": None,
                            "error": {"code": "AGENT_UNREACHABLE", "message": str(exc), "phase": None}}, "none"
            if progress is not None and task is not None:
                progress.update(task, line=_progress_line(st))
            if st.get("finished"):
                return st, "source"
            if st.get("phase") == "IN_DOUBT":
                in_doubt_since = in_doubt_since or time.monotonic()
                if time.monotonic() - in_doubt_since > _IN_DOUBT_GRACE_S:
                    return st, "source"
            await asyncio.sleep(0.1)
    finally:
        if progress:
            progress.stop()


async def _migrate(from_url: str, device_id: str, to_url: str, from_token: str | None, to_token: str | None,
                   migration_id: str | None, out: Output) -> int:
    async with AgentClient(from_url, from_token) as source, AgentClient(to_url, to_token) as destination:
        try:
            _device, verdict = await _check(source, destination, device_id)
        except DevmigError as exc:
            out.fail(exc, EXIT_USAGE, title="cannot check the migration")
        if not verdict.compatible:
            if out.json_mode:
                out.json({"outcome": "refused", "verdict": verdict.to_dict()})
            else:
                out.problems(verdict.reasons, title=f"{to_url} cannot run {device_id}")
                out.console.print("nothing was created; the device keeps running on the source")
            return EXIT_NO
        try:
            started = await source.outgoing(migration_id, device_id, to_url, to_token,
                                            source_url=from_url if from_url.startswith("http") else None)
        except DevmigError as exc:
            code = EXIT_NO if exc.code in _REFUSALS else EXIT_USAGE
            out.fail(exc, code, title="the migration was refused")
        mid = str_at(started, "migration_id")
        if not out.json_mode:
            out.console.print(f"migration [bold]{mid}[/]: {device_id} → {escape(to_url)}")
        st, where = await _watch(source, destination, mid, out)
    return _report(st, where, from_url, to_url, out)


def _report(st: dict[str, Any], where: str, from_url: str, to_url: str, out: Output) -> int:
    outcome = st.get("outcome")
    if where == "destination":
        outcome = "migrated" if st.get("phase") == "RUNNING" else "lost"
    code = {"migrated": EXIT_OK, "rolled_back": EXIT_NO}.get(outcome or "", EXIT_PARTIAL)
    if out.json_mode:
        out.json({**st, "outcome": outcome, "reported_by": where, "exit": code})
        return code
    err = st.get("error") or {}
    why = f"[{err.get('code')}] {err.get('message')} (in {err.get('phase')})" if err else ""
    if outcome == "migrated":
        new = st.get("destination_device_id") or st.get("device_id")
        out.console.print(f"[green]migrated[/]: the device runs on {escape(to_url)} as [bold]{new}[/]")
        extra = [f"rounds {st.get('round')}", size(st.get("bytes_sent", 0))]
        if st.get("downtime_ms") is not None:
            extra.append(f"downtime {st['downtime_ms']:.1f} ms")
        out.console.print("  " + ", ".join(extra))
        out.console.print(new)
    elif outcome == "rolled_back":
        out.console.print(f"[yellow]rolled back[/]: the device runs on {escape(from_url)} again {escape(why)}")
    elif st.get("phase") == "IN_DOUBT":
        out.console.print(f"[red]in doubt[/]: the device is stopped on {escape(from_url)}; "
                          f"its agent keeps asking {escape(to_url)} and will release or resume it {escape(why)}")
    else:
        out.console.print(f"[red]lost contact[/]: the source agent {escape(from_url)} is unreachable; "
                          f"the destination reports {st.get('phase')} {escape(why)}")
    return code


def migrate_cmd(
    device_ref: Annotated[
        str | None, typer.Argument(metavar="[HOST/ID]", help="With a manager: the device to move, HOST/ID.")
    ] = None,
    from_url: Annotated[str | None, typer.Option("--from", help="The source agent's URL (agent-direct form).")] = None,
    device: Annotated[
        str | None, typer.Option("--device", help="The device id on the source (agent-direct form).")
    ] = None,
    to_url: Annotated[
        str | None,
        typer.Option(
            "--to",
            help="The destination: an agent's URL (agent-direct), or a host name (with a manager; "
            "default: the best host by placement).",
        ),
    ] = None,
    from_token: Annotated[str | None, typer.Option(envvar="DEVMIG_TOKEN", help="The source agent's token.")] = None,
    to_token: Annotated[str | None, typer.Option(envvar="DEVMIG_TOKEN", help="The destination agent's token.")] = None,
    migration_id: Annotated[str | None, typer.Option("--migration-id", help="Id to use (idempotent retries).")] = None,
    manager: Annotated[
        str | None,
        typer.Option(
            "--manager", envvar="DEVMIG_MANAGER", help="Go through this manager (journalled): devmig migrate HOST/ID."
        ),
    ] = None,
    token: Annotated[
        str | None, typer.Option("--token", envvar="DEVMIG_TOKEN", help="The manager's bearer token.")
    ] = None,
    json_mode: Annotated[bool, typer.Option("--json", help="Print the final status as JSON.")] = False,
) -> None:
    """Live-migrate a device: between two agents, or through the manager (journalled).

    Agent-direct: --from URL --device ID --to URL (checked first; the agents carry
    it through). With --manager URL or DEVMIG_MANAGER and no --from:
    devmig migrate HOST/ID [--to HOST] — the manager chooses the best host when
    --to is not given, journals the migration and drives it; the command waits with
    progress. Exit 0 migrated (prints the new device id), 1 refused or rolled back (the
    device runs on the source), 2 usage/unreachable/auth before any change, 3 lost or in doubt.
    """
    out = Output(json_mode)
    if from_url is None and device is None and manager is not None:
        if device_ref is None:
            out.fail(DevmigError([Problem("USAGE", ("device",), "name the device to migrate: HOST/ID",
                                          hint="devmig migrate HOST/ID [--to HOST] --manager URL")]), EXIT_USAGE)
        from devmig.cli._orchestrate import migrate_via_manager

        raise typer.Exit(migrate_via_manager(out, manager, token, device_ref, to_url, migration_id))
    missing = [name for name, value in (("--from", from_url), ("--device", device), ("--to", to_url))
               if value is None]
    if missing or device_ref is not None:
        message = ("a HOST/ID argument needs a manager (--manager URL or DEVMIG_MANAGER)"
                   if device_ref is not None and from_url is None
                   else f"missing option(s) {', '.join(missing)}" if missing
                   else "give either HOST/ID (with a manager) or --from/--device/--to, not both")
        out.fail(DevmigError([Problem("USAGE", ("options",), message, value=missing or device_ref,
                                      hint="devmig migrate --from URL --device ID --to URL, or "
                                           "devmig migrate HOST/ID [--to HOST] --manager URL")]), EXIT_USAGE)
    assert from_url is not None and device is not None and to_url is not None
    code = asyncio.run(_migrate(from_url, device, to_url, from_token, to_token, migration_id, out))
    raise typer.Exit(code)


async def _show(agent: str, token: str | None, mid: str) -> dict[str, Any]:
    async with AgentClient(agent, token) as client:
        return await client.migration(mid)


def show_cmd(
    migration_id: Annotated[str, typer.Argument(help="The migration id.")],
    agent: Annotated[str, typer.Option("--agent", help="An agent's URL (source or destination).")],
    token: Annotated[str | None, typer.Option(envvar="DEVMIG_TOKEN", help="The agent's token.")] = None,
    json_mode: Annotated[bool, typer.Option("--json", help="Print the status as JSON.")] = False,
) -> None:
    """Show a migration's status and outcome as one agent sees it."""
    out = Output(json_mode)
    try:
        st = asyncio.run(_show(agent, token, migration_id))
    except DevmigError as exc:
        out.fail(exc, EXIT_USAGE)
    if json_mode:
        out.json(st)
        return
    c = out.console
    c.print(f"migration [bold]{st['migration_id']}[/] ({st['role']}): phase {st['phase']}, "
            f"outcome {st.get('outcome') or 'running'}")
    c.print(f"  round {st['round']}, sent {size(st['bytes_sent'])}, received {size(st['bytes_received'])}, "
            f"rate {size(st['rate'])}/s")
    if st.get("downtime_ms") is not None:
        c.print(f"  downtime {st['downtime_ms']} ms (expected {st.get('expected_downtime_ms')} ms)")
    if st.get("role") == "destination":
        c.print(f"  discarded {st.get('discarded_records', 0)} torn pre-copy record(s), "
                f"{size(st.get('discarded_bytes', 0))}")
    if st.get("destination_device_id"):
        c.print(f"  destination device {st['destination_device_id']}")
    if st.get("error"):
        e = st["error"]
        c.print(f"  [red]{e['code']}[/] in {e.get('phase')}: {escape(e['message'])}")


def register(app: typer.Typer) -> None:
    """Add ``devmig migrate`` and ``devmig migration show`` to ``app``."""
    app.command("migrate")(migrate_cmd)
    migration = typer.Typer(help="Observe migrations.", no_args_is_help=True)
    migration.command("show")(show_cmd)
    app.add_typer(migration, name="migration")
