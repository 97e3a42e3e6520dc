"""The tutorial's device: examples/tutorial/ is exactly docs/tutorial.md's code blocks, and its tests pass.

Fix a difference by editing docs/tutorial.md, then
``uv run python tests/docs/docs_blocks.py`` rewrites the files from it.
"""

from __future__ import annotations

import ast
import difflib
import os
import re
import subprocess
import sys

from docs_blocks import REPO, assemble_files

TUTORIAL = REPO / "docs" / "tutorial.md"
EXAMPLE = REPO / "examples" / "tutorial"


def test_example_files_are_the_tutorial_blocks() -> None:
    assembled = assemble_files([TUTORIAL])
    assert set(assembled) >= {
        "examples/tutorial/uart.py",
        "examples/tutorial/test_uart.py",
        "examples/tutorial/uart-1.0.0.json",
        "examples/tutorial/uart-2.0.0.json",
    }
    on_disk = {
        str(p.relative_to(REPO)) for p in EXAMPLE.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.name != ".pytest_cache"
    }
    assert on_disk == set(assembled), "examples/tutorial/ holds files the tutorial does not build, or lacks some"
    for name, text in assembled.items():
        actual = (REPO / name).read_text(encoding="utf-8")
        if actual != text:
            diff = "".join(difflib.unified_diff(
                text.splitlines(True), actual.splitlines(True), "docs/tutorial.md blocks", name))
            raise AssertionError(f"{name} differs from the tutorial's blocks:\n{diff}")


def test_tutorial_device_tests_pass() -> None:
    """Run examples/tutorial with pytest in its own process: every test it defines passes."""
    tests = [n.name for n in ast.parse((EXAMPLE / "test_uart.py").read_text()).body
             if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")]
    assert len(tests) >= 3
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_ADDOPTS"}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(EXAMPLE)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(rf"\b{len(tests)} passed\b", proc.stdout), proc.stdout
