"""``devmig vfio-user``: devmig devices as vfio-user backend programs.

``serve IMPL/RELEASE`` runs one SDK device behind a vfio-user socket
(DESIGN §9; the program's logic is :mod:`devmig.vfio_user`'s serve module);
``check PROGRAM`` is the conformance run for any backend program.
Exit status: 0 when the connection was served (or the model document
printed), 1 when the device refused its configuration (one JSON line on
stderr, no socket), 2 for usage errors.
"""

from __future__ import annotations

from typing import Annotated

import typer

from devmig.vfio_user import ServeOptions, parse_extra_args, run_serve

__all__ = ["register"]

vfio_user_app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="devmig devices as vfio-user backends (serve one device per process).",
)


@vfio_user_app.command(
    "serve",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def serve_cmd(
    ctx: typer.Context,
    target: Annotated[
        str, typer.Argument(help="IMPL/RELEASE of a reference device, or module:Class.")
    ],
    socket_path: Annotated[
        str | None, typer.Option("--socket-path", help="Listen on this Unix socket.")
    ] = None,
    fd: Annotated[
        int | None,
        typer.Option("--fd", help="Serve this inherited socket (listening or connected)."),
    ] = None,
    migration_model: Annotated[
        str | None, typer.Option("--migration-model", help="The model to serve.")
    ] = None,
    migration_version: Annotated[
        str | None,
        typer.Option("--migration-version", help="Create the device at this model version."),
    ] = None,
    print_migration_info_json: Annotated[
        bool,
        typer.Option(
            "--print-migration-info-json", help="Print the release's model document and exit 0."
        ),
    ] = False,
    seed: Annotated[int, typer.Option(help="The workload seed.")] = 0,
    prefill_seed: Annotated[
        int | None,
        typer.Option(help="Benchmarks: start with seeded random bytes in device memory."),
    ] = None,
    work_interval: Annotated[
        float, typer.Option(help="Seconds between workload ticks while running.")
    ] = 0.01,
    steps_per_tick: Annotated[
        int, typer.Option(help="Work steps per tick (0: no background work).")
    ] = 1,
    max_data_xfer_size: Annotated[
        int, typer.Option(help="The largest data transfer accepted (bytes).")
    ] = 1 << 20,
) -> None:
    """Serve one device over vfio-user: one connection, then exit (removing the socket).

    Parameters are ``--m-<param>=<value>`` (e.g. ``--m-rss=on``); host-only
    settings ``--host-<key>=<value>`` (e.g. ``--host-image=/path/disk.img``).
    """
    params, host, rest = parse_extra_args(list(ctx.args))
    if rest:
        raise typer.BadParameter(f"unknown arguments: {' '.join(rest)}")
    options = ServeOptions(
        target,
        socket_path=socket_path,
        fd=fd,
        params=params,
        host=host,
        model=migration_model,
        version=migration_version,
        print_info=print_migration_info_json,
        seed=seed,
        prefill_seed=prefill_seed,
        interval=work_interval,
        steps=steps_per_tick,
        max_data_xfer_size=max_data_xfer_size,
    )
    raise typer.Exit(run_serve(options))


@vfio_user_app.command(
    "check",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def check_cmd(
    ctx: typer.Context,
    program: Annotated[
        str,
        typer.Argument(help="The backend's command, e.g. 'devmig vfio-user serve acme-nic/3.0.0'."),
    ],
    json_mode: Annotated[
        bool, typer.Option("--json", help="Print the steps as one JSON document.")
    ] = False,
) -> None:
    """Check a backend program: two instances, negotiation, regions, interrupts, DMA, migration.

    ``--m-<param>=<value>`` arguments go to both instances. Each step is ✓,
    ✗, or - (the backend showed nothing to judge). Exit 0 when no step
    failed, 1 otherwise, 2 for usage errors.
    """
    import asyncio
    import shlex

    from devmig.vfio_user import check_backend, steps_json

    command = shlex.split(program)
    if not command:
        raise typer.BadParameter("name the backend's command")
    steps = asyncio.run(check_backend(command, list(ctx.args)))
    if json_mode:
        typer.echo(steps_json(steps))
    else:
        for step in steps:
            mark = {True: "✓", False: "✗", None: "-"}[step.ok]
            typer.echo(f"{mark} {step.name:<11} {step.detail}")
    raise typer.Exit(0 if all(s.ok is not False for s in steps) else 1)


def register(app: typer.Typer) -> None:
    """Add the ``vfio-user`` command group to ``app``."""
    app.add_typer(vfio_user_app, name="vfio-user")
