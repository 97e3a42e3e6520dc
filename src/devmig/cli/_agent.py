"""``devmig agent``: run one host's agent on uvicorn (TCP or a Unix socket)."""

from __future__ import annotations

import asyncio
import json
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from devmig._errors import DevmigError
from devmig._json import JsonObject
from devmig._logs import configure_logging
from devmig.agent import AgentSettings, PrecopyPolicy, agent_url, parse_releases, parse_size
from devmig.cli._output import EXIT_USAGE, Output
from devmig.cli._secrets import secret_from
from devmig.cli._serve import Announcement, bind, refuse_plain, serve, tls_config

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["register"]


def agent_cmd(
    host_name: Annotated[
        str, typer.Option("--host-name", help="This host's name in its report.")
    ] = socket.gethostname(),
    release: Annotated[
        str, typer.Option(help="Releases to host: nic=2.0.0,blk=1.0.0,accel=3.0.0 (default: newest).")
    ] = "",
    listen: Annotated[str, typer.Option(help="HTTP API address: HOST:PORT or unix:/path.")] = "127.0.0.1:8470",
    stream_listen: Annotated[
        str, typer.Option(help="Migration stream address: HOST:PORT or unix:/path.")
    ] = "127.0.0.1:0",
    token: Annotated[
        str | None,
        typer.Option(
            envvar="DEVMIG_TOKEN",
            help="Bearer token for mutating calls (generated if unset). On the "
            "command line it shows in ps: prefer DEVMIG_TOKEN or --token-file.",
        ),
    ] = None,
    token_file: Annotated[
        Path | None, typer.Option(envvar="DEVMIG_TOKEN_FILE", help="Read the bearer token from this file.")
    ] = None,
    max_device_memory: Annotated[str | None, typer.Option(help="Device memory all devices may use, e.g. 8G.")] = None,
    state_dir: Annotated[
        Path | None, typer.Option(help="Journal and block images (default: a temporary directory).")
    ] = None,
    image_dir: Annotated[
        Path | None,
        typer.Option(
            help="The only directory block-device images may be in (default: STATE_DIR/images); "
            "agents migrating block devices share one."
        ),
    ] = None,
    steps_per_tick: Annotated[int, typer.Option(help="Work steps per running device per tick.")] = 1,
    work_interval: Annotated[float, typer.Option(help="Seconds between workload ticks.")] = 0.01,
    downtime_target_ms: Annotated[
        float, typer.Option(help="Leave pre-copy when the rest fits in this downtime.")
    ] = 100.0,
    max_rounds: Annotated[int, typer.Option(help="Most pre-copy rounds.")] = 10,
    stall_timeout: Annotated[float, typer.Option(help="Seconds of silence before a peer is PEER_STALLED.")] = 10.0,
    mem_prealloc: Annotated[
        bool, typer.Option("--mem-prealloc", help="Make every page of a new device's memory resident at creation.")
    ] = False,
    prefill_seed: Annotated[
        int | None, typer.Option(help="Benchmarks: start devices created through the API with seeded random memory.")
    ] = None,
    secret_ttl: Annotated[float, typer.Option(help="Seconds an incoming migration's secret stays valid.")] = 60.0,
    max_stream_rate: Annotated[
        str | None,
        typer.Option(help="Pace outgoing streams at this many bytes per second, e.g. 50M (default: no limit)."),
    ] = None,
    advertise_url: Annotated[
        str | None,
        typer.Option(
            help="The URL peers reach this API at, sent to destinations for in-doubt queries "
            "(default: the --listen address, unless it is a wildcard)."
        ),
    ] = None,
    advertise_stream: Annotated[
        str | None,
        typer.Option(
            help="Stream address handed to sources, when they reach this agent through NAT or a proxy "
            "(default: the bound --stream-listen)."
        ),
    ] = None,
    max_pending_streams: Annotated[
        int, typer.Option(help="Stream connections whose HELLO is not proved yet, at once (more are closed at accept).")
    ] = 32,
    max_body: Annotated[str, typer.Option(help="Largest request body, e.g. 1M (413 past it).")] = "1M",
    print_migration_info_json: Annotated[
        bool, typer.Option("--print-migration-info-json", help="Print the host report and exit (vfio-user convention).")
    ] = False,
    provider: Annotated[
        list[str] | None,
        typer.Option(
            "--provider",
            help="Also host kernel VFIO/mdev devices: kernel[:SYSFS_ROOT] (default root /sys), "
            "or vfio-user backends: vfio-user:SETTINGS.json (docs/vfio-user.md).",
        ),
    ] = None,
    tls_cert: Annotated[
        Path | None,
        typer.Option(
            help="TLS: this agent's certificate (PEM) for its API and stream; "
            "also its client certificate towards peers."
        ),
    ] = None,
    tls_key: Annotated[Path | None, typer.Option(help="TLS: the certificate's private key (PEM).")] = None,
    tls_ca: Annotated[
        Path | None,
        typer.Option(help="TLS: the CA peers' certificates are signed by (agents it calls; client certificates)."),
    ] = None,
    tls_client_certs: Annotated[
        bool,
        typer.Option(
            "--tls-client-certs",
            help="Require a client certificate signed by --tls-ca on the API "
            "and the stream (agent-to-agent, manager-to-agent).",
        ),
    ] = False,
    insecure_plain_tcp: Annotated[
        bool,
        typer.Option(
            "--insecure-plain-tcp",
            help="Serve plain TCP on a non-loopback address (a trusted "
            "network only: tokens and device state cross in clear).",
        ),
    ] = False,
    log_format: Annotated[str, typer.Option(help="Log lines on stderr: text or json (one object a line).")] = "text",
    json_mode: Annotated[
        bool, typer.Option("--json", help="Announce the listening addresses as one JSON line.")
    ] = False,
) -> None:
    """Run this host's agent: the query mechanism, its devices, and migrations.

    Exit 0 on a clean stop (SIGINT/SIGTERM), 2 for bad options or an address in use.
    """
    out = Output(json_mode)
    try:
        token = secret_from(token, token_file, "token")
        configure_logging(log_format)
        tls = tls_config(tls_cert, tls_key, tls_ca, tls_client_certs)
        refuse_plain(listen, tls, insecure_plain_tcp)
        refuse_plain(stream_listen, tls, insecure_plain_tcp, "stream_listen")
        settings = AgentSettings(
            host_name=host_name,
            releases=parse_releases(release),
            max_device_memory=parse_size(max_device_memory) if max_device_memory else None,
            stream_listen=stream_listen,
            state_dir=state_dir,
            image_dir=image_dir,
            steps_per_tick=steps_per_tick,
            work_interval_s=work_interval,
            precopy=PrecopyPolicy(downtime_target_ms=downtime_target_ms, max_rounds=max_rounds),
            stall_timeout_s=stall_timeout,
            mem_prealloc=mem_prealloc,
            prefill_seed=prefill_seed,
            secret_ttl_s=secret_ttl,
            max_stream_rate=parse_size(max_stream_rate) if max_stream_rate else None,
            advertise_stream=advertise_stream,
            providers=tuple(provider or ()),
            max_body_bytes=parse_size(max_body),
            tls=tls,
            max_pending_streams=max_pending_streams,
            **({"token": token} if token else {}),
        )
        from devmig.devices import device_class

        for implementation, wanted in settings.releases.items():
            device_class(implementation, wanted)  # refuse an unknown release before serving
        if settings.providers:
            from devmig.agent import Host

            Host(settings)  # refuse an unknown provider or a PROVIDER_CONFLICT before serving
        if print_migration_info_json:
            from devmig.agent import Host

            report = Host(settings).report().to_json()
            sys.stdout.write(json.dumps(report, indent=2) + "\n")
            raise typer.Exit(0)
        sock, url = bind(listen, tls=tls is not None)
        if advertise_url is not None:
            settings = settings.model_copy(update={"advertise_url": agent_url(advertise_url, ("advertise-url",))})
        elif url.startswith(("http://", "https://")) and "//0.0.0.0:" not in url and "//[::]:" not in url:
            settings = settings.model_copy(update={"advertise_url": url})
    except DevmigError as exc:
        out.fail(exc, EXIT_USAGE)
    from devmig.agent import create_app  # the web framework only when serving

    app = create_app(settings)
    asyncio.run(serve(app, sock, out, lambda: _announce(app, settings, url, token is None), tls))


def _announce(app: FastAPI, settings: AgentSettings, url: str, generated: bool) -> Announcement:
    stream = getattr(app.state, "stream_address", None)
    data: JsonObject = {"event": "listening", "host": settings.host_name, "url": url, "stream": stream}
    lines = [f"devmig agent [bold]{settings.host_name}[/] listening on {url}"]
    if stream:
        lines.append(f"  migration streams on {stream}")
    if generated:
        data["token"] = settings.token
        lines.append(f"  token (generated): {settings.token}")
    return data, lines


def register(app: typer.Typer) -> None:
    """Add ``devmig agent`` to ``app``."""
    app.command("agent")(agent_cmd)
