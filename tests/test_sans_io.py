"""The core is sans-IO (DESIGN §8, STYLE rule 1), checked on the source with ``ast``.

The core packages — ``devmig.model``, ``compat``, ``state``, ``migration``,
``devmig.device``, ``devmig._errors`` and ``devmig._codes``, whichever exist — must not import
an I/O or concurrency module, nor an edge of devmig, nor call the builtin
``open``: not themselves, and not through any devmig module they import
(importing ``devmig.a.b`` also runs ``devmig/__init__`` and ``devmig/a/__init__``).
Third-party libraries are not walked: what they do inside is theirs.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from source_tree import SRC, FakeSourceTree, SourceTree, calls_of, imports_of

FORBIDDEN_MODULES = {
    "asyncio",
    "socket",
    "threading",
    "time",
    "select",
    "selectors",
    "subprocess",
    "sqlalchemy",
    "fastapi",
    "httpx",
    "httpx2",
    "uvicorn",
}
FORBIDDEN_DEVMIG = (
    "devmig.agent",
    "devmig.inventory",
    "devmig.orchestration",
    "devmig.manager",
    "devmig.local",
    "devmig.cli",
)
FORBIDDEN_CALLS = {"open"}
CORE = [
    "devmig.model",
    "devmig.compat",
    "devmig.state",
    "devmig.migration",
    "devmig.device",
    "devmig.qemu",
    "devmig._errors",
    "devmig._codes",
]


@dataclass(frozen=True)
class Finding:
    module: str
    line: int
    what: str

    def __str__(self) -> str:
        return f"{self.module}:{self.line}: {self.what}"


def forbidden(module: str) -> bool:
    top = module.split(".")[0]
    return top in FORBIDDEN_MODULES or any(
        module == e or module.startswith(e + ".") for e in FORBIDDEN_DEVMIG
    )


def check(roots: list[str], modules: SourceTree) -> tuple[list[Finding], dict[str, str | None]]:
    """Walk the devmig import graph from ``roots``; return findings and how each module was reached."""
    findings: list[Finding] = []
    reached_from: dict[str, str | None] = {}
    queue: list[tuple[str, str | None]] = []
    for root in roots:
        queue.append((root, None))
    while queue:
        name, parent = queue.pop()
        if name in reached_from or modules.path(name) is None:
            continue
        reached_from[name] = parent
        # importing a.b.c runs a/__init__ and a/b/__init__ first
        parts = name.split(".")
        for i in range(1, len(parts)):
            queue.append((".".join(parts[:i]), name))
        source = modules.source(name)
        assert source is not None
        tree = ast.parse(source, filename=str(modules.path(name)))
        for line, imported in imports_of(name, tree, modules.is_package(name)):
            if forbidden(imported):
                findings.append(Finding(name, line, f"imports {imported}"))
            elif imported.split(".")[0] == "devmig":
                queue.append((imported, name))
        for line, called in calls_of(tree):
            if called in FORBIDDEN_CALLS:
                findings.append(Finding(name, line, f"calls {called}()"))
    return findings, reached_from


def chain(name: str, reached_from: dict[str, str | None]) -> str:
    out = [name]
    while (parent := reached_from.get(out[-1])) is not None:
        out.append(parent)
    return " <- ".join(out)


EXISTING_CORE = [name for name in CORE if SourceTree(SRC).path(name) is not None]


def test_some_core_exists() -> None:
    assert "devmig.model" in EXISTING_CORE
    assert "devmig._errors" in EXISTING_CORE


@pytest.mark.parametrize("root", EXISTING_CORE)
def test_core_is_sans_io(root: str) -> None:
    findings, reached_from = check([root], SourceTree(SRC))
    assert root in reached_from
    assert not findings, "\n".join(
        f"{f}   (reached: {chain(f.module, reached_from)})" for f in findings
    )


def test_the_walk_reaches_devmig_modules_transitively() -> None:
    _, reached_from = check(["devmig.model"], SourceTree(SRC))
    assert {"devmig", "devmig._errors", "devmig.model._config", "devmig.model._values"} <= set(
        reached_from
    )


# --------------------------------------------------------------------------- the checker can fail


def fake(files: dict[str, str]) -> Callable[[list[str]], list[str]]:
    modules = FakeSourceTree({"devmig.__init__": "", **files})
    return lambda roots: [f.what for f in check(roots, modules)[0]]


@pytest.mark.parametrize(
    ("files", "found"),
    [
        ({"devmig.core": "import socket"}, ["imports socket"]),
        ({"devmig.core": "import os, time"}, ["imports time"]),
        (
            {"devmig.core": "from asyncio import sleep"},
            ["imports asyncio", "imports asyncio.sleep"],
        ),
        ({"devmig.core": "import sqlalchemy.orm"}, ["imports sqlalchemy.orm"]),
        ({"devmig.core": "def f():\n    import threading"}, ["imports threading"]),
        ({"devmig.core": "if TYPE_CHECKING:\n    import httpx"}, ["imports httpx"]),
        (
            {"devmig.core": "import importlib\nimportlib.import_module('subprocess')"},
            ["imports subprocess"],
        ),
        ({"devmig.core": "__import__('selectors')"}, ["imports selectors"]),
        ({"devmig.core": "import devmig.cli"}, ["imports devmig.cli"]),
        ({"devmig.core": "from devmig import orchestration"}, ["imports devmig.orchestration"]),
        ({"devmig.core": "with open('x') as f: pass"}, ["calls open()"]),
        ({"devmig.core": "import builtins\nbuiltins.open('x')"}, ["calls open()"]),
        # transitively, through devmig's own modules (absolute and relative)
        (
            {"devmig.core": "from devmig import helper", "devmig.helper": "import uvicorn"},
            ["imports uvicorn"],
        ),
        (
            {
                "devmig.core.__init__": "from . import _a",
                "devmig.core._a": "from ._b import x",
                "devmig.core._b": "import select",
            },
            ["imports select"],
        ),
        # a package's __init__ runs when a submodule is imported
        ({"devmig.core._a": "", "devmig.core.__init__": "import fastapi"}, ["imports fastapi"]),
        ({"devmig.core": "", "devmig.__init__": "import httpx2"}, ["imports httpx2"]),
        # allowed
        (
            {
                "devmig.core": "import os, json, dataclasses\nfrom pathlib import Path\nPath('x').open()"
            },
            [],
        ),
        (
            {
                "devmig.core": "import timeit, sockets_are_fine_here as s\nfrom devmig import agentless"
            },
            [],
        ),
    ],
)
def test_checker_finds_violations(files: dict[str, str], found: list[str]) -> None:
    assert sorted(fake(files)(["devmig.core"])) == sorted(found)
