"""The typer application behind ``devmig``; ``main`` is the console script.

Commands register themselves from their modules. ``main`` is the one place
where an unexpected :class:`~devmig.DevmigError` becomes a clear message and
exit status 2 instead of a traceback.
"""

from __future__ import annotations

import sys

import typer

from devmig._errors import DevmigError
from devmig.cli import (
    _agent,
    _documents,
    _fleet,
    _kernel,
    _local,
    _migrate,
    _orchestrate,
    _qemu,
    _streams,
    _vfio_user,
)
from devmig.cli._output import EXIT_USAGE, Output

__all__ = ["app", "main"]

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    help=(
        "devmig: safe, automatic migration of VFIO devices between hosts.\n\n"
        "Exit codes: 0 yes/done, 1 no (invalid, incompatible, breaking, refused), "
        "2 cannot answer (usage, unreadable input, unreachable), 3 partial or in doubt."
    ),
)


@app.command()
def version() -> None:
    """Print devmig's version."""
    from devmig import __version__

    typer.echo(__version__)


_documents.register(app)
_streams.register(app)
_agent.register(app)
_migrate.register(app)
_orchestrate.register(app)
_fleet.register(app)
_local.register(app)
_kernel.register(app)
_vfio_user.register(app)
_qemu.register(app)


def main() -> None:
    """Entry point of the ``devmig`` console script."""
    try:
        app()
    except DevmigError as exc:  # a user error that escaped a command: no traceback
        json_mode = "--json" in sys.argv
        try:
            Output(json_mode).fail(exc, EXIT_USAGE)
        except typer.Exit as done:
            sys.exit(done.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
