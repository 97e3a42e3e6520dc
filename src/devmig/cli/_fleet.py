"""``devmig manager`` and the fleet commands that talk to it over HTTP.

``devmig manager`` runs the service (inventory, poller, ``/v1`` API). The
other commands — ``hosts``, ``pools``, ``place``, ``baseline``,
``rollback-set``, ``plan-upgrade`` — ask a running manager
(``--manager URL`` or ``DEVMIG_MANAGER``; mutating calls send ``--token`` /
``DEVMIG_TOKEN``). Exit codes:

====  ==============================================================
0     answered (a host accepts, a baseline exists, a safe order exists)
1     no host accepts / nothing every member accepts / a device would
      be stranded / the manager refused (conflict)
2     bad input (unknown host, pool or device; invalid request),
      refused token, unreachable manager
====  ==============================================================
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import httpx2
import typer
from rich.markup import escape
from rich.table import Table

from devmig._errors import DevmigError, Problem
from devmig._humanize import ago
from devmig._json import JsonObject, JsonValue, object_at, str_at
from devmig._logs import configure_logging
from devmig._tls import client_tls
from devmig.agent import remote_error
from devmig.cli._output import EXIT_NO, EXIT_OK, EXIT_USAGE, Output, exit_for, read_source
from devmig.cli._secrets import secret_from
from devmig.cli._serve import Announcement, bind, refuse_plain, serve, tls_config

if TYPE_CHECKING:
    from collections.abc import Callable

    from devmig.manager import ManagerSettings

__all__ = ["ManagerClient", "register"]

DEFAULT_MANAGER = "http://127.0.0.1:8480"

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document for programs.")]
ManagerOpt = Annotated[
    str, typer.Option("--manager", envvar="DEVMIG_MANAGER", help="The manager's URL.")
]
TokenOpt = Annotated[
    str | None,
    typer.Option("--token", envvar="DEVMIG_TOKEN",
                 help="The manager's bearer token (mutating calls); on the command line it shows in ps: "
                      "prefer DEVMIG_TOKEN."),
]


class ManagerClient:
    """A synchronous client of the manager's HTTP API; httpx2 errors are mapped here, once.

    A connection that fails is ``MANAGER_UNREACHABLE``; an error response
    becomes the :class:`DevmigError` its problem details describe.
    """

    def __init__(self, url: str, token: str | None = None, *, timeout: float = 60.0) -> None:
        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx2.Client(base_url=self.url, headers=headers, timeout=timeout, verify=client_tls())

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def call(self, method: str, path: str, **kw: Any) -> Any:
        """Send one request; return the JSON body (``None`` for 204).

        Raises:
            DevmigError: ``MANAGER_UNREACHABLE``, or the manager's problems.
        """
        try:
            response = self._http.request(method, path, **kw)
        except httpx2.HTTPError as exc:
            raise DevmigError([Problem(
                "MANAGER_UNREACHABLE", ("manager",), f"cannot reach the manager at {self.url}: {exc}",
                value=self.url, hint="is `devmig manager` running? (--manager URL or DEVMIG_MANAGER)")]) from exc
        if response.status_code >= 400:
            raise remote_error(response)
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError as exc:
            raise DevmigError(
                [Problem("MANAGER_ERROR", ("body",), "the manager answered something that is not JSON")]
            ) from exc


def _ask(out: Output, manager: str, token: str | None, method: str, path: str, **kw: Any) -> Any:
    client = ManagerClient(manager, token)
    try:
        return client.call(method, path, **kw)
    except DevmigError as exc:
        out.fail(exc, exit_for(exc))
    finally:
        client.close()


def _usage(out: Output, loc: str, message: str, value: object = None, hint: str | None = None) -> NoReturn:
    out.fail(DevmigError([Problem("USAGE", (loc,), message, value=value, hint=hint)]), EXIT_USAGE)


def _codes(problems: list[JsonObject]) -> str:
    return ", ".join(dict.fromkeys(str_at(p, "code") for p in problems))


def _opt_str(value: JsonValue) -> str | None:
    """``value`` read as a string or null (a timestamp the manager may not have yet)."""
    if value is not None and not isinstance(value, str):
        raise TypeError(f"a {type(value).__name__}, not a string or null")
    return value


def _list(value: JsonValue) -> list[JsonValue]:
    """``value`` read as a list."""
    if not isinstance(value, list):
        raise TypeError(f"a {type(value).__name__}, not a list")
    return value


def _releases(releases: dict[str, str]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(releases.items())) or "-"


# -- devmig manager ----------------------------------------------------------------------


def manager_cmd(
    db: Annotated[str, typer.Option(help="Inventory: a SQLAlchemy URL or a SQLite file path.")] = "devmig.db",
    listen: Annotated[str, typer.Option(help="HTTP API address: HOST:PORT or unix:/path.")] = "127.0.0.1:8480",
    poll_interval: Annotated[float, typer.Option(help="Seconds between poll rounds.")] = 30.0,
    token: TokenOpt = None,
    token_file: Annotated[
        Path | None, typer.Option(envvar="DEVMIG_TOKEN_FILE", help="Read the manager's bearer token from this file.")
    ] = None,
    agent_token: Annotated[
        str | None, typer.Option(envvar="DEVMIG_AGENT_TOKEN", help="Bearer token sent to agents (shows in ps on "
                                                                   "the command line: prefer the environment).")
    ] = None,
    agent_token_file: Annotated[
        Path | None, typer.Option(envvar="DEVMIG_AGENT_TOKEN_FILE", help="Read the agents' token from this file.")
    ] = None,
    token_key: Annotated[
        str | None, typer.Option(envvar="DEVMIG_TOKEN_KEY", help="The key sealing stored agent tokens (default: "
                                                                 "derived from the manager's token).")
    ] = None,
    token_key_file: Annotated[
        Path | None, typer.Option(envvar="DEVMIG_TOKEN_KEY_FILE", help="Read the token key from this file.")
    ] = None,
    max_body: Annotated[str, typer.Option(help="Largest request body, e.g. 1M (413 past it).")] = "1M",
    tls_cert: Annotated[Path | None, typer.Option(help="TLS: the manager's certificate (PEM) for its API; also "
                                                       "its client certificate towards agents.")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="TLS: the certificate's private key (PEM).")] = None,
    tls_ca: Annotated[Path | None, typer.Option(help="TLS: the CA agents' certificates are signed by "
                                                     "(and client certificates, with --tls-client-certs).")] = None,
    tls_client_certs: Annotated[
        bool, typer.Option("--tls-client-certs", help="Require a client certificate signed by --tls-ca on the API.")
    ] = False,
    insecure_plain_tcp: Annotated[
        bool, typer.Option("--insecure-plain-tcp", help="Serve plain TCP on a non-loopback address (a trusted "
                                                         "network only: tokens cross in clear).")
    ] = False,
    log_format: Annotated[str, typer.Option(help="Log lines on stderr: text or json (one object a line).")] = "text",
    json_mode: Annotated[bool, typer.Option("--json", help="Announce the listening address as one JSON line.")] = False,
) -> None:
    """Run the fleet manager: inventory, poller, and the fleet API.

    Exit 0 on a clean stop (SIGINT/SIGTERM), 2 for bad options or an address in use.
    """
    from devmig.inventory import sqlite_url
    from devmig.manager import ManagerSettings  # the service's imports only when it runs

    out = Output(json_mode)
    url = db if "://" in db else sqlite_url(Path(db))
    try:
        from devmig.agent import parse_size

        configure_logging(log_format)
        tls = tls_config(tls_cert, tls_key, tls_ca, tls_client_certs)
        refuse_plain(listen, tls, insecure_plain_tcp)
        token = secret_from(token, token_file, "token")
        agent_token = secret_from(agent_token, agent_token_file, "agent-token")
        token_key = secret_from(token_key, token_key_file, "token-key")
        settings = ManagerSettings(db_url=url, poll_interval=poll_interval, agent_token=agent_token, tls=tls,
                                   token_key=token_key,
                                   max_body_bytes=parse_size(max_body), **({"token": token} if token else {}))
        sock, address = bind(listen, tls=tls is not None)
    except DevmigError as exc:
        out.fail(exc, EXIT_USAGE)
    except ValueError as exc:
        _usage(out, "options", str(exc))
    from devmig.manager import create_manager_app

    app = create_manager_app(settings)
    asyncio.run(serve(app, sock, out, lambda: _announce(settings, address, token is None), tls))


def _announce(settings: ManagerSettings, url: str, generated: bool) -> Announcement:
    data: JsonObject = {"event": "listening", "url": url, "db": settings.db_url}
    lines = [f"devmig manager listening on {url} (inventory {escape(settings.db_url)})"]
    if generated:
        data["token"] = settings.token
        lines.append(f"  token (generated): {settings.token}")
    return data, lines


# -- devmig hosts ------------------------------------------------------------------------

hosts_app = typer.Typer(help="Hosts of the fleet (through the manager).", no_args_is_help=True)


def _host_table(out: Output, hosts: list[JsonObject]) -> None:
    # releases one per line and never split; an URL folds rather than loses its port; the profile
    # sits under the host's name and the last poll under its state, so 80 columns hold the table
    table = Table(title=None)
    table.add_column("host / profile", no_wrap=True)
    table.add_column("url", overflow="fold", min_width=10)
    table.add_column("releases", min_width=16)
    table.add_column("state / last seen", min_width=11)
    table.add_column("load", justify="right")
    table.add_column("pools")
    now = datetime.now(UTC)
    for h in hosts:
        state = [] if h["reachable"] else ["[red]unreachable[/]"]
        state += ["[yellow]cordoned[/]"] if h["cordoned"] else []
        table.add_row(
            f"{escape(str_at(h, 'name'))}\n[dim]{h['profile'] or '-'}[/]", str_at(h, "url"),
            "\n".join(f"{k} {v}" for k, v in sorted(object_at(h, "releases").items())) or "-",
            "\n".join([*(state or ["[green]ok[/]"]), f"[dim]{ago(_opt_str(h['last_seen']), now)}[/]"]),
            str(h["load"]), ", ".join(str(p) for p in _list(h["pools"])),
        )
    out.console.print(table)


@hosts_app.command("list")
def hosts_list(manager: ManagerOpt = DEFAULT_MANAGER, json_mode: JsonOpt = False) -> None:
    """List every host: profile, releases, state (ok, unreachable, cordoned), load, last seen."""
    out = Output(json_mode)
    data = _ask(out, manager, None, "GET", "/v1/hosts")
    if json_mode:
        out.json(data)
    else:
        _host_table(out, data["hosts"])


@hosts_app.command("add")
def hosts_add(
    url: Annotated[str, typer.Argument(help="The agent's URL.")],
    name: Annotated[str | None, typer.Option(help="The host name (default: what the agent reports).")] = None,
    agent_token: Annotated[str | None, typer.Option(help="The agent's bearer token (shows in ps: prefer "
                                                          "--agent-token-file).")] = None,
    agent_token_file: Annotated[Path | None, typer.Option(help="Read the agent's bearer token from this file.")] = None,
    manager: ManagerOpt = DEFAULT_MANAGER, token: TokenOpt = None, json_mode: JsonOpt = False,
) -> None:
    """Register a host by its agent URL (the manager polls it at once)."""
    out = Output(json_mode)
    try:
        agent_token = secret_from(agent_token, agent_token_file, "agent-token")
    except DevmigError as exc:
        out.fail(exc, EXIT_USAGE)
    body = {"url": url, "name": name, "token": agent_token}
    data = _ask(out, manager, token, "POST", "/v1/hosts", json=body)
    if json_mode:
        out.json(data)
    else:
        _host_table(out, [data])


def _host_action(action: str, help_text: str) -> None:
    def command(
        name: Annotated[str, typer.Argument(help="The host name.")],
        manager: ManagerOpt = DEFAULT_MANAGER, token: TokenOpt = None, json_mode: JsonOpt = False,
    ) -> None:
        out = Output(json_mode)
        if action == "remove":
            _ask(out, manager, token, "DELETE", f"/v1/hosts/{name}")
            data: Any = {"removed": name}
        else:
            data = _ask(out, manager, token, "POST", f"/v1/hosts/{name}/{action}")
        if json_mode:
            out.json(data)
        elif action == "remove":
            out.console.print(f"removed {escape(name)}")
        else:
            _host_table(out, [data])

    command.__doc__ = help_text
    hosts_app.command(action)(command)


_host_action("remove", "Forget a host (its devices, history and pool memberships).")
_host_action("cordon", "Take a host out of placement (it keeps its devices).")
_host_action("uncordon", "Let a cordoned host receive devices again.")


@hosts_app.command("poll")
def hosts_poll(manager: ManagerOpt = DEFAULT_MANAGER, token: TokenOpt = None, json_mode: JsonOpt = False) -> None:
    """Poll every host now. Exit 0 when all answered, 1 when some did not."""
    out = Output(json_mode)
    data = _ask(out, manager, token, "POST", "/v1/poll")
    if json_mode:
        out.json({"polls": data})
    else:
        for p in data:
            mark = "[green]✓[/]" if p["status"] != "failed" else "[red]✗[/]"
            out.console.print(f"{mark} {escape(p['host'])}: {p['status']}" + (
                f" ({_codes(p['errors'])})" if p["errors"] else ""))
    raise typer.Exit(EXIT_OK if all(p["status"] != "failed" for p in data) else EXIT_NO)


# -- devmig pools ------------------------------------------------------------------------

pools_app = typer.Typer(help="Pools of hosts (through the manager).", no_args_is_help=True)


@pools_app.command("list")
def pools_list(manager: ManagerOpt = DEFAULT_MANAGER, json_mode: JsonOpt = False) -> None:
    """List every pool and its hosts."""
    out = Output(json_mode)
    data = _ask(out, manager, None, "GET", "/v1/pools")
    if json_mode:
        out.json({"pools": data})
        return
    table = Table()
    table.add_column("pool")
    table.add_column("hosts")
    for p in data:
        table.add_row(p["name"], ", ".join(p["hosts"]) or "-")
    out.console.print(table)


@pools_app.command("create")
def pools_create(name: Annotated[str, typer.Argument(help="The pool's name.")],
                 manager: ManagerOpt = DEFAULT_MANAGER, token: TokenOpt = None, json_mode: JsonOpt = False) -> None:
    """Create an empty pool (exit 1 when it exists)."""
    out = Output(json_mode)
    data = _ask(out, manager, token, "POST", "/v1/pools", json={"name": name})
    if json_mode:
        out.json(data)
    else:
        out.console.print(f"created pool {escape(name)}")


@pools_app.command("delete")
def pools_delete(name: Annotated[str, typer.Argument(help="The pool's name.")],
                 manager: ManagerOpt = DEFAULT_MANAGER, token: TokenOpt = None, json_mode: JsonOpt = False) -> None:
    """Delete a pool (its hosts stay)."""
    out = Output(json_mode)
    _ask(out, manager, token, "DELETE", f"/v1/pools/{name}")
    if json_mode:
        out.json({"deleted": name})
    else:
        out.console.print(f"deleted pool {escape(name)}")


def _members(method: str, verb: str) -> Callable[..., None]:
    def command(
        pool: Annotated[str, typer.Argument(help="The pool's name.")],
        hosts: Annotated[list[str], typer.Argument(help="Host names.")],
        manager: ManagerOpt = DEFAULT_MANAGER, token: TokenOpt = None, json_mode: JsonOpt = False,
    ) -> None:
        out = Output(json_mode)
        data: Any = None
        for host in hosts:
            data = _ask(out, manager, token, method, f"/v1/pools/{pool}/hosts/{host}")
        if json_mode:
            out.json(data)
        else:
            out.console.print(f"pool {escape(pool)}: {', '.join(data['hosts']) or '(empty)'}")

    command.__doc__ = f"{verb} hosts of a pool."
    return command


pools_app.command("add")(_members("PUT", "Add"))
pools_app.command("remove")(_members("DELETE", "Remove"))


# -- questions ---------------------------------------------------------------------------


def device_ref(text: str) -> dict[str, str]:
    """Turn ``MODEL:CONFIG`` (a device to create) or ``HOST/ID`` (a running device) into a request item.

    Raises:
        DevmigError: ``USAGE`` when it is neither.
    """
    if ":" in text:
        model, _, config = text.partition(":")
        if model:
            return {"model": model, "config": config}
    elif "/" in text.strip("/"):
        return {"device": text}
    raise DevmigError([Problem("USAGE", ("device",), f"a device is HOST/ID or MODEL:CONFIG, not {text!r}",
                               value=text, hint="e.g. h1/dev-1 or example.org/devices/nic:version=3")])


def place_cmd(
    devices: Annotated[list[str], typer.Argument(help="The VM's devices: HOST/ID (running) or MODEL:CONFIG (new).")],
    manager: ManagerOpt = DEFAULT_MANAGER, json_mode: JsonOpt = False,
) -> None:
    """Which hosts accept every device of a VM, best first, and why the others do not.

    Exit 0 when some host accepts, 1 when none does, 2 bad input or unreachable manager.
    """
    out = Output(json_mode)
    try:
        vm = [device_ref(d) for d in devices]
    except DevmigError as exc:
        out.fail(exc, EXIT_USAGE)
    data = _ask(out, manager, None, "POST", "/v1/place", json={"vm": vm})
    if json_mode:
        out.json(data)
    else:
        table = Table(title="accepted (best first)", title_justify="left")
        for col in ("host", "profile", "releases", "load"):
            table.add_column(col)
        for a in data["accepted"]:
            table.add_row(a["host"], a["profile"], _releases(a["releases"]), str(a["load"]))
        out.console.print(table if data["accepted"] else "[red]no host accepts this VM[/]")
        for p in data["profiles"]:
            if p["accepted"] or not p["reasons"]:
                continue
            out.console.print(f"[bold]profile {p['profile']}[/] ({_releases(p['releases'])}) — "
                              f"hosts {', '.join(p['hosts'])}: {_codes(p['reasons'])}")
            for r in p["reasons"]:
                out.console.print(f"    [red]✗ {r['code']}[/] {escape(r['message'])}")
        own = {h: rs for h, rs in data["rejected"].items() if any(r["code"].startswith(("HOST_", "SAME_")) for r in rs)}
        for host, reasons in own.items():
            out.console.print(f"[bold]{escape(host)}[/]: {_codes(reasons)}")
    raise typer.Exit(EXIT_OK if data["accepted"] else EXIT_NO)


def baseline_cmd(
    pool: Annotated[str, typer.Argument(help="The pool.")],
    model: Annotated[str, typer.Argument(help="The model id.")],
    manager: ManagerOpt = DEFAULT_MANAGER, json_mode: JsonOpt = False,
) -> None:
    """The newest version and the richest configuration every member of POOL accepts for MODEL.

    Exit 0 when one exists, 1 when nothing is accepted by all (the blocking hosts are listed).
    """
    out = Output(json_mode)
    data = _ask(out, manager, None, "GET", f"/v1/pools/{pool}/baseline", params={"model": model})
    ok = data["richest"] is not None
    if json_mode:
        out.json(data)
    else:
        out.console.print(f"[bold]{escape(model)}[/] in pool {escape(pool)} ({', '.join(data['hosts'])})")
        if ok:
            out.console.print(f"  newest version: {data['version'] or '(none)'}  create with: "
                              f"{escape(data['version_string'] or '-')}")
            out.console.print(f"  richest:        create with: {escape(data['richest_string'] or '-')}")
        else:
            out.console.print("  [red]nothing every member accepts[/]")
            for host, reasons in data["blocking"].items():
                out.console.print(f"  [bold]{escape(host)}[/]: {_codes(reasons)}")
    raise typer.Exit(EXIT_OK if ok else EXIT_NO)


def rollback_set_cmd(
    device: Annotated[str, typer.Argument(help="The running device, HOST/ID.")],
    window: Annotated[int, typer.Option(help="Also return to N previous releases of each implementation.")] = 0,
    manager: ManagerOpt = DEFAULT_MANAGER, json_mode: JsonOpt = False,
) -> None:
    """The hosts DEVICE can move to and come back from.

    Exit 0 when there is at least one, 1 when there is none.
    """
    out = Output(json_mode)
    host, _, device_id = device.partition("/")
    if not host or not device_id:
        _usage(out, "device", f"a device is HOST/ID, not {device!r}", device)
    data = _ask(out, manager, None, "GET", f"/v1/devices/{host}/{device_id}/rollback-set", params={"window": window})
    if json_mode:
        out.json(data)
    else:
        out.console.print(f"[bold]{escape(device)}[/] ({escape(data['model'])}), returns to "
                          f"{len(data['targets'])} profile(s)")
        for hop in data.get("history", []):
            out.console.print(f"  ran before: {escape(hop['device'])} (profile {hop['profile'] or 'unknown'}, "
                              f"migration {escape(hop['migration'])})")
        out.console.print(f"  round trip: {', '.join(data['hosts']) or '[red](none)[/]'}")
        for h, by in data["one_way"].items():
            out.console.print(f"  one way:    {escape(h)} ({', '.join(_codes(r) for r in by.values())})")
        for h, reasons in data["rejected"].items():
            out.console.print(f"  rejected:   {escape(h)} ({_codes(reasons)})")
    raise typer.Exit(EXIT_OK if data["hosts"] else EXIT_NO)


def plan_upgrade_cmd(
    pool: Annotated[str, typer.Argument(help="The pool to upgrade.")],
    to: Annotated[list[str], typer.Option("--to", help="Target release: nic=3.0.0 (a shipped example).")] = [],  # noqa: B006
    doc: Annotated[list[str], typer.Option("--doc", help="Target release as a model document file.")] = [],  # noqa: B006
    manager: ManagerOpt = DEFAULT_MANAGER, json_mode: JsonOpt = False,
) -> None:
    """Plan upgrading POOL: each host's planned profile, stranded devices, and a safe order.

    Exit 0 when a safe order exists and nothing is stranded, 1 otherwise.
    """
    out = Output(json_mode)
    targets: dict[str, str] = {}
    for item in to:
        for part in filter(None, (p.strip() for p in item.split(","))):
            name, sep, release = part.partition("=")
            if not sep or not name or not release:
                _usage(out, "to", f"--to items are NAME=RELEASE, not {part!r}", part, "e.g. --to nic=3.0.0")
            targets[name] = release
    documents = []
    for path in doc:
        try:
            documents.append(json.loads(read_source(path)))
        except (DevmigError, ValueError) as exc:
            err = exc if isinstance(exc, DevmigError) else DevmigError(
                [Problem("JSON_SYNTAX", ("file", path), f"{path}: {exc}", value=path)])
            out.fail(err, EXIT_USAGE)
    data = _ask(out, manager, None, "POST", f"/v1/pools/{pool}/plan-upgrade",
                json={"to": targets, "documents": documents})
    ok = data["order"] is not None and not data["stranded"]
    if json_mode:
        out.json(data)
    else:
        table = Table(title=f"pool {pool} → " + ", ".join(f"{t['name']} {t['release']}" for t in data["to"]),
                      title_justify="left")
        for col in ("host", "planned profile", "releases"):
            table.add_column(col)
        for h, p in data["planned"].items():
            table.add_row(
                h + (" (unchanged)" if h in data["unchanged"] else ""), p["profile"], _releases(p["releases"])
            )
        out.console.print(table)
        if data["order"] is None:
            out.console.print("[red]no order keeps every device placeable[/]")
        else:
            out.console.print("order: " + (" → ".join(data["order"]) or "(nothing to upgrade)"))
        for issue in data["stranded"]:
            out.console.print(f"[red]stranded[/] {escape(issue['device'])}")
        for issue in data["one_way"]:
            out.console.print(f"[yellow]one way[/] {escape(issue['device'])} (could not return)")
    raise typer.Exit(EXIT_OK if ok else EXIT_NO)


def register(app: typer.Typer) -> None:
    """Add ``manager``, ``hosts``, ``pools``, ``place``, ``baseline``, ``rollback-set``, ``plan-upgrade``."""
    app.command("manager")(manager_cmd)
    app.add_typer(hosts_app, name="hosts")
    app.add_typer(pools_app, name="pools")
    app.command("place")(place_cmd)
    app.command("baseline")(baseline_cmd)
    app.command("rollback-set")(rollback_set_cmd)
    app.command("plan-upgrade")(plan_upgrade_cmd)
