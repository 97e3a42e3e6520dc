"""Output for people (rich tables) and programs (``--json``), and exit codes.

Exit codes of every ``devmig`` command:

====  ==========================================================
0     the answer is yes (valid, compatible, no breaking change)
1     the answer is no (invalid, incompatible, breaking, refused)
2     the question cannot be answered: bad usage, unreadable or
      invalid input, unreachable service
3     partial or in doubt (migrations and drains)
====  ==========================================================

A failed call exits by its first code (:func:`exit_for`): 1 when the code's
HTTP status in the one table of codes (``devmig._codes``) is 409 — a refusal
— and 2 otherwise.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from devmig._codes import code_info
from devmig._errors import DevmigError, DocumentError, Problem
from devmig._examples import EXAMPLE_PREFIX, example_text

__all__ = [
    "EXIT_NO",
    "EXIT_OK",
    "EXIT_PARTIAL",
    "EXIT_USAGE",
    "Output",
    "exit_for",
    "read_source",
]

EXIT_OK = 0
EXIT_NO = 1
EXIT_USAGE = 2
EXIT_PARTIAL = 3


def exit_for(error: DevmigError) -> int:
    """The exit code of a failed call: :data:`EXIT_NO` for a refusal (a 409 code), else :data:`EXIT_USAGE`."""
    return EXIT_NO if error.status == 409 else EXIT_USAGE


class Output:
    """Where a command writes: rich for people, one JSON document for programs."""

    def __init__(self, json_mode: bool) -> None:
        self.json_mode = json_mode
        self.console = Console(highlight=False, soft_wrap=not sys.stdout.isatty())
        self.err = Console(stderr=True, highlight=False)

    def json(self, data: object) -> None:
        """Print ``data`` as one JSON document on stdout."""
        sys.stdout.write(json.dumps(data, indent=2, sort_keys=False) + "\n")
        sys.stdout.flush()

    def fail(self, error: DevmigError, code: int = EXIT_USAGE, *, title: str | None = None) -> NoReturn:
        """Report ``error`` (``{"errors": [...]}`` in JSON mode) and exit with ``code``."""
        if self.json_mode:
            self.json({"errors": error.to_dicts()})
        else:
            self.problems(error.problems, title=title or "error", stream=self.err)
        raise typer.Exit(code)

    def problems(
        self, problems: Sequence[Problem], *, title: str, stream: Console | None = None
    ) -> None:
        """Print problems as a list: code and location, then the message and the hint.

        A list reads better than a table in a narrow terminal or a log file.
        """
        console = stream or self.console
        count = f"{len(problems)} problems" if len(problems) != 1 else "1 problem"
        console.print(f"[bold red]{escape(title)}[/]: {count}")
        for p in problems:
            where = _where(p)
            retry = "  [dim](retryable)[/]" if code_info(p.code).retryable else ""
            console.print(f"  [red]✗ {p.code}[/]" + (f"  [bold]{escape(where)}[/]" if where else "") + retry)
            console.print(f"      {escape(p.message)}")
            if p.hint:
                console.print(f"      [dim]hint: {escape(p.hint)}[/]")


def _where(problem: Problem) -> str:
    return ".".join(str(part) for part in problem.loc)


def read_source(arg: str) -> str:
    """Return the text of a document argument: a file path, ``-`` (stdin) or ``example:NAME``.

    Raises:
        DocumentError: ``FILE_UNREADABLE`` (or ``EXAMPLE_UNKNOWN``) naming the argument.
    """
    if arg.startswith(EXAMPLE_PREFIX):
        return example_text(arg)
    if arg == "-":
        return sys.stdin.read()
    try:
        return Path(arg).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DocumentError(
            [Problem("JSON_SYNTAX", ("file", arg), f"{arg}: not UTF-8 text at byte {exc.start}")]
        ) from exc
    except OSError as exc:
        raise DocumentError(
            [
                Problem(
                    "FILE_UNREADABLE",
                    ("file", arg),
                    f"cannot read {arg}: {exc.strerror or exc}",
                    value=arg,
                    hint="give a file path, - for standard input, or example:NAME (`devmig examples`)",
                )
            ]
        ) from exc


def with_file(error: DevmigError, path: str) -> DocumentError:
    """Return a copy of a document error whose problems say which file they are in."""
    return DocumentError(
        [
            Problem(p.code, p.loc, f"{path}: {p.message}", p.value, p.allowed, p.hint,
                    {**p.context, "file": path})
            for p in error.problems
        ]
    )

