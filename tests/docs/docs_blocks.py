"""Executable documentation: fenced blocks of the Markdown docs, console transcripts, and their matching.

A fenced block opens with three backticks at the start of a line and an info
string: a language, then ``key=value`` attributes (```` ```python
file=examples/tutorial/uart.py ````). Indented code (the README's
``    $ ...`` lines) is not a block.

* ``console`` — a transcript. ``$ CMD`` lines are commands (a line ending in
  `` \\`` continues on the next one); the lines after a command, up to the
  next ``$`` line, are its expected output (standard output and standard error
  together). A line ``...`` matches any number of lines; ``...`` inside a line
  matches any text; a last line ``[exit N]`` expects exit status N (else 0).
  Trailing spaces are ignored.
* ``python`` — runs; the blocks of one file share a namespace, in order.
  A block with ``file=PATH`` is part of that file of the repository; a block
  of a ``test_*.py`` file is not run here (tests/docs/test_tutorial.py runs
  the assembled file with pytest). A ```` ```text output ```` block right
  after a Python block shows what it prints, matched like a transcript.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "REPO",
    "Block",
    "Command",
    "assemble_files",
    "doc_files",
    "match_output",
    "parse_blocks",
    "parse_transcript",
]

REPO = Path(__file__).resolve().parents[2]
_FENCE = re.compile(r"^(`{3,})(.*)$")


@dataclass(frozen=True)
class Block:
    """One fenced block of a Markdown file."""

    path: Path
    index: int
    """Position among the file's fenced blocks (0-based)."""
    line: int
    """Line number of the opening fence (1-based)."""
    lang: str
    attrs: dict[str, str]
    text: str

    @property
    def file(self) -> str | None:
        """The repository file this block is part of, if any."""
        return self.attrs.get("file")

    @property
    def runs_here(self) -> bool:
        """Whether the docs runner executes this block."""
        if self.lang == "console":
            return True
        if self.lang != "python":
            return False
        return self.file is None or not Path(self.file).name.startswith("test_")

    @property
    def ident(self) -> str:
        """A test id: ``tutorial.md:L120-python``."""
        return f"{self.path.name}:L{self.line}-{self.lang}"


def doc_files() -> list[Path]:
    """Every executable document: docs/*.md and the README."""
    return [*sorted((REPO / "docs").glob("*.md")), REPO / "README.md"]


def parse_blocks(path: Path) -> list[Block]:
    """Return the fenced blocks of a Markdown file, in order.

    Raises:
        ValueError: a fence is not closed.
    """
    blocks: list[Block] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        fence, info = opening.group(1), opening.group(2).strip()
        words = shlex.split(info) if info else []
        lang = words[0] if words else ""
        attrs = dict(w.split("=", 1) if "=" in w else (w, "") for w in words[1:])
        start = i
        i += 1
        body: list[str] = []
        while i < len(lines) and not (lines[i].startswith(fence) and lines[i].strip() == fence):
            body.append(lines[i])
            i += 1
        if i == len(lines):
            raise ValueError(f"{path}:{start + 1}: fence not closed")
        blocks.append(Block(path, len(blocks), start + 1, lang, attrs, "\n".join(body) + "\n"))
        i += 1
    return blocks


def assemble_files(paths: list[Path]) -> dict[str, str]:
    """Return repository path → the concatenation of the blocks marked ``file=`` that path.

    Blocks are joined in document order, with one blank line between two
    Python blocks (two, before a top-level ``def``/``class``/decorator) so
    that the file reads as written.
    """
    out: dict[str, list[str]] = {}
    for path in paths:
        for block in parse_blocks(path):
            if block.file:
                out.setdefault(block.file, []).append(block.text)
    return {name: _join(name, parts) for name, parts in out.items()}


def _join(name: str, parts: list[str]) -> str:
    if not name.endswith(".py"):
        return "".join(parts)
    text = parts[0]
    for part in parts[1:]:
        top_level = re.match(r"(class |def |@|async def )", part)
        text += ("\n\n" if top_level else "\n") + part
    return text


@dataclass
class Command:
    """One command of a transcript and what it must print."""

    line: int
    """Line of the ``$`` in the Markdown file."""
    command: str
    expected: list[str] = field(default_factory=list)
    status: int = 0


def parse_transcript(block: Block) -> list[Command]:
    """Split a console block into commands, expected output and exit status.

    Raises:
        ValueError: output before the first command.
    """
    commands: list[Command] = []
    lines = block.text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        number = block.line + 1 + i
        if line.startswith("$ "):
            text = line[2:]
            while text.endswith("\\") and i + 1 < len(lines):
                i += 1
                text += "\n" + lines[i]  # bash reads the backslash-newline as a continuation
            commands.append(Command(number, text))
        elif not commands:
            if line.strip():
                raise ValueError(f"{block.path.name}:{number}: output before the first '$ ' command")
        else:
            commands[-1].expected.append(line)
        i += 1
    for command in commands:
        while command.expected and not command.expected[-1].strip():
            command.expected.pop()
        if command.expected and (m := re.fullmatch(r"\[exit (\d+)\]", command.expected[-1].strip())):
            command.status = int(m.group(1))
            command.expected.pop()
    return commands


def _line_pattern(line: str) -> str:
    return "[^\n]*".join(re.escape(part) for part in line.rstrip().split("..."))


def match_output(expected: list[str], actual: str) -> bool:
    """Whether ``actual`` matches the expected lines (``...`` wildcards; trailing spaces ignored)."""
    parts = []
    for line in expected:
        if line.strip() == "...":
            parts.append("(?:[^\n]*\n)*?")
        else:
            parts.append(_line_pattern(line) + "\n")
    text = "".join(line.rstrip() + "\n" for line in actual.splitlines())
    return re.fullmatch("".join(parts), text) is not None


if __name__ == "__main__":
    # Rewrite the files the docs build (examples/tutorial/...) from their blocks.
    for name, text in assemble_files(doc_files()).items():
        target = REPO / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists() or target.read_text(encoding="utf-8") != text:
            target.write_text(text, encoding="utf-8")
            print(f"wrote {name}")
