"""Run every ``console`` and ``python`` block of docs/*.md and the README, so the docs cannot drift.

Each document gets its own temporary directory (holding a copy of the
repository's ``examples/``) where its console commands run, with this
environment's ``devmig`` first on PATH; its Python blocks share one namespace
and run in order (running a block runs the blocks before it first). Like a
terminal session, what a command exports stays set for the document's later
commands. A local fleet (``devmig up``) a failed transcript leaves running is
stopped at the end. The rules of a transcript are in ``docs_blocks.py``.
"""

from __future__ import annotations

import contextlib
import difflib
import io
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from docs_blocks import REPO, Block, doc_files, match_output, parse_blocks, parse_transcript

BIN = Path(sys.executable).parent
COMMAND_TIMEOUT = 180.0
ENV_FILE = ".docs-env"


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEVMIG_")}
    env.update(PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}", COLUMNS="80", NO_COLOR="1", TERM="dumb")
    env.pop("FORCE_COLOR", None)
    return env


class DocRun:
    """The state of one document's run: its directory, its namespace, which blocks ran."""

    def __init__(self, path: Path, root: Path) -> None:
        self.path = path
        self.dir = root / path.stem
        self.dir.mkdir()
        shutil.copytree(REPO / "examples", self.dir / "examples")
        self.namespace: dict[str, Any] = {"__name__": f"docs_{path.stem}"}
        every = parse_blocks(path)
        self.blocks = [b for b in every if b.runs_here]
        self.printed: dict[int, Block] = {
            b.index: every[b.index + 1] for b in self.blocks
            if b.lang == "python" and b.index + 1 < len(every)
            and every[b.index + 1].lang == "text" and "output" in every[b.index + 1].attrs
        }
        self.outcome: dict[int, str | None] = {}

    def run_upto(self, block: Block) -> None:
        """Run the blocks before ``block`` (once each), then ``block``; fail with a clear report."""
        for earlier in self.blocks:
            if earlier.index >= block.index:
                break
            if earlier.index not in self.outcome:
                self.outcome[earlier.index] = self._run(earlier)
        failure = self._run(block)
        self.outcome[block.index] = failure
        if failure:
            broken = [b.ident for b in self.blocks
                      if b.index < block.index and self.outcome.get(b.index)]
            note = f"\n(earlier blocks that failed: {', '.join(broken)})" if broken else ""
            pytest.fail(failure + note, pytrace=False)

    def _run(self, block: Block) -> str | None:
        if block.lang == "console":
            return self._console(block)
        return self._python(block)

    def _console(self, block: Block) -> str | None:
        for command in parse_transcript(block):
            # Like one terminal session: what a command exports, the next command sees.
            script = (f"{{ [ -f {ENV_FILE} ] && . ./{ENV_FILE}; }} >/dev/null 2>&1\n{command.command}\n"
                      f"__status=$?; export -p > {ENV_FILE}; exit $__status")
            proc = subprocess.Popen(
                ["bash", "-c", script], cwd=self.dir, env=_env(), stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True, text=True,
            )
            try:
                output, _ = proc.communicate(timeout=COMMAND_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.communicate()
                return f"{self.path.name}:{command.line}: `{command.command}` ran over {COMMAND_TIMEOUT:.0f} s"
            if proc.returncode == command.status and match_output(command.expected, output):
                continue
            diff = "\n".join(difflib.unified_diff(
                command.expected, output.rstrip("\n").splitlines(), "expected", "actual", lineterm=""))
            return (
                f"{self.path.name}:{command.line}: $ {command.command}\n"
                f"exit status {proc.returncode}, expected {command.status}\n"
                f"output does{'' if match_output(command.expected, output) else ' not'} match "
                f"('...' lines and '...' inside lines are wildcards):\n{diff}"
            )
        return None

    def _python(self, block: Block) -> str | None:
        if block.file:
            self.namespace["__file__"] = str(REPO / block.file)
        code = compile("\n" * block.line + block.text, str(self.path), "exec")
        cwd = Path.cwd()
        out = io.StringIO()
        os.chdir(self.dir)
        try:
            with contextlib.redirect_stdout(out):
                exec(code, self.namespace)
        except BaseException as exc:  # a failing block is a report, whatever it raised
            if isinstance(exc, KeyboardInterrupt):
                raise
            return f"{block.ident} raised:\n" + "".join(traceback.format_exception(exc))
        finally:
            os.chdir(cwd)
            sys.stdout.write(out.getvalue())
        shown = self.printed.get(block.index)
        if shown is not None:
            expected = shown.text.rstrip("\n").splitlines()
            if not match_output(expected, out.getvalue()):
                diff = "\n".join(difflib.unified_diff(
                    expected, out.getvalue().rstrip("\n").splitlines(), "expected", "actual", lineterm=""))
                return (f"{block.ident} printed what the ```text output block at line {shown.line} "
                        f"does not show ('...' is a wildcard):\n{diff}")
        return None


BLOCKS = [b for path in doc_files() for b in parse_blocks(path) if b.runs_here]


class DocRuns(dict[Path, DocRun]):
    """Per document, its run, created on its first block under one temporary root."""

    def __init__(self, root: Path) -> None:
        super().__init__()
        self.root = root

    def of(self, path: Path) -> DocRun:
        if path not in self:
            self[path] = DocRun(path, self.root)
        return self[path]


@pytest.fixture(scope="module")
def runs() -> Iterator[DocRuns]:
    root = Path(tempfile.mkdtemp(prefix="devmig-docs-"))
    try:
        yield DocRuns(root)
    finally:
        for state in root.rglob("state.json"):  # a local fleet a failed transcript left running
            subprocess.run([str(BIN / "devmig"), "down", "--state-dir", str(state.parent)], env=_env(),
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=120, check=False)
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.parametrize("block", BLOCKS, ids=[b.ident for b in BLOCKS])
def test_block(block: Block, runs: DocRuns) -> None:
    runs.of(block.path).run_upto(block)


def test_every_document_has_runnable_blocks() -> None:
    """The new guides are executable: each has at least one console or Python block."""
    for name in ("concepts", "formats", "api", "tutorial", "scheduler", "cli"):
        path = REPO / "docs" / f"{name}.md"
        assert path.exists(), f"docs/{name}.md is missing"
        assert any(b.runs_here for b in parse_blocks(path)), f"docs/{name}.md has no console or python block"


def test_transcript_matching_rules() -> None:
    """The matcher itself: wildcards, trailing spaces, and a mismatch that must be caught."""
    assert match_output(["a ... c", "...", "z"], "a b c\nx\ny\nz\n")
    assert match_output(["one  "], "one\n")
    assert match_output(["...", "last"], "last\n")
    assert not match_output(["a ... c"], "a b d\n")
    assert not match_output(["first"], "first\nextra\n")


def test_transcript_parsing(tmp_path: Path) -> None:
    """Commands, continuation lines, expected output and ``[exit N]`` are read as documented."""
    doc = tmp_path / "doc.md"
    doc.write_text(
        "text\n\n```console\n$ echo a \\\n  b\na b\n$ false\n[exit 1]\n```\n\n"
        "```python file=examples/x/test_x.py\nx = 1\n```\n",
        encoding="utf-8",
    )
    console, python = parse_blocks(doc)
    commands = parse_transcript(console)
    assert [(c.line, c.command, c.expected, c.status) for c in commands] == [
        (4, "echo a \\\n  b", ["a b"], 0),
        (7, "false", [], 1),
    ]
    assert console.runs_here and not python.runs_here  # a test file's block runs under pytest instead
    root = tmp_path / "run"
    root.mkdir()
    DocRun(doc, root).run_upto(console)  # runs for real: the continuation joins, `false` exits 1


def test_a_drifted_transcript_fails(tmp_path: Path) -> None:
    """A transcript whose output no longer matches fails, naming the line and showing a diff."""
    doc = tmp_path / "drift.md"
    doc.write_text("```console\n$ echo new\nold\n```\n", encoding="utf-8")
    (block,) = parse_blocks(doc)
    root = tmp_path / "run"
    root.mkdir()
    with pytest.raises(pytest.fail.Exception) as info:
        DocRun(doc, root).run_upto(block)
    assert "drift.md:2: $ echo new" in str(info.value)
    assert "-old" in str(info.value) and "+new" in str(info.value)


def _slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def test_relative_links_resolve() -> None:
    """Every relative link of the docs and the README names an existing file (and heading)."""
    broken = []
    for doc in doc_files():
        text = doc.read_text(encoding="utf-8")
        prose = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
        for target in re.findall(r"\]\(([^)\s]+)\)", prose):
            if re.match(r"[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            file = (doc.parent / path).resolve() if path else doc
            if not file.exists():
                broken.append(f"{doc.name}: {target}")
                continue
            if anchor and file.suffix == ".md":
                headings = re.findall(r"^#+ (.+)$", file.read_text(encoding="utf-8"), flags=re.M)
                if anchor not in {_slug(h) for h in headings}:
                    broken.append(f"{doc.name}: {target} (no such heading)")
    assert not broken, broken
