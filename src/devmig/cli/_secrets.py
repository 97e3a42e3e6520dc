"""Secrets from files: ``--token-file`` and friends (a token on the command line shows in ``ps``)."""

from __future__ import annotations

from pathlib import Path

from devmig._errors import DevmigError, Problem

__all__ = ["MAX_SECRET_FILE", "secret_from"]

MAX_SECRET_FILE = 4096
"""Bytes a secret file may have."""


def secret_from(given: str | None, path: Path | None, option: str) -> str | None:
    """Return ``given`` (an option or its environment variable) or else the secret in the file ``path``.

    The file holds the secret alone; surrounding whitespace (a final newline) is dropped.

    Raises:
        DevmigError: ``USAGE`` when both are given, or the file is unreadable, empty or too large.
    """
    if path is None:
        return given
    if given is not None:
        raise DevmigError([Problem("USAGE", (option,), f"give --{option} or --{option}-file, not both",
                                   hint=f"--{option}-file keeps the secret out of the process list")])
    try:
        with path.open("rb") as f:
            data = f.read(MAX_SECRET_FILE + 1)
    except OSError as exc:
        raise DevmigError([Problem("USAGE", (f"{option}-file",), f"cannot read {path}: {exc.strerror}",
                                   value=str(path))]) from exc
    text = data.decode("utf-8", "replace").strip()
    if not text or len(data) > MAX_SECRET_FILE:
        raise DevmigError([Problem("USAGE", (f"{option}-file",),
                                   f"{path} must hold one secret of 1 to {MAX_SECRET_FILE} bytes", value=str(path))])
    return text
