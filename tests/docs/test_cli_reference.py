"""docs/cli.md documents every devmig subcommand (a heading per command, every sub-subcommand named)."""

from __future__ import annotations

import typer
from docs_blocks import REPO

from devmig.cli import app


def _commands() -> dict[str, list[str]]:
    root = typer.main.get_command(app)
    commands = getattr(root, "commands", None)
    assert isinstance(commands, dict) and commands, "devmig has no subcommands?"
    out: dict[str, list[str]] = {}
    for name, command in commands.items():
        if getattr(command, "hidden", False):
            continue
        out[name] = sorted(getattr(command, "commands", None) or {})
    return out


def test_every_subcommand_is_documented() -> None:
    text = (REPO / "docs" / "cli.md").read_text(encoding="utf-8")
    headings = [line for line in text.splitlines() if line.startswith("### `devmig ")]
    missing = []
    for name, subs in _commands().items():
        if not any(h.startswith(f"### `devmig {name}") for h in headings):
            missing.append(name)
        missing += [f"{name} {sub}" for sub in subs if f"devmig {name} {sub}" not in text]
    assert not missing, f"docs/cli.md does not document: {missing} (see `devmig --help`)"
    assert "PENDING" not in text
