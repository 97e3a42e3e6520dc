"""The typer application behind ``devmig``."""

from __future__ import annotations

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False, help="devmig: safe VFIO device migration.")


@app.command()
def version() -> None:
    """Print devmig's version."""
    from devmig import __version__

    typer.echo(__version__)


def main() -> None:
    """Entry point of the ``devmig`` console script."""
    app()
