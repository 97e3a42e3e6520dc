"""The ``devmig`` command."""

from devmig.cli._app import app, main

__all__ = ["app", "main"]
