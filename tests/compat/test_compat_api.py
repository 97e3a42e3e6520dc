"""The public surface of ``devmig.compat``: a curated ``__all__``, private modules, sans-IO."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import devmig.compat as compat

PACKAGE = Path(compat.__file__).parent
FORBIDDEN = {"asyncio", "socket", "threading", "time", "sqlalchemy", "fastapi", "httpx", "os", "io",
             "pathlib", "subprocess", "select", "selectors"}


def test_all_is_curated_and_importable() -> None:
    ours = {"BREAKS", "Change", "DIRECTIONS", "Direction", "RULES", "ReleaseDiff", "ReleaseHistory", "Verdict",
            "check", "diff"}
    assert ours <= set(compat.__all__)
    assert len(set(compat.__all__)) == len(compat.__all__)
    assert not [n for n in compat.__all__ if n.startswith("_")]
    for name in compat.__all__:
        assert getattr(compat, name) is not None
        obj = getattr(compat, name)
        if inspect.isfunction(obj) or inspect.isclass(obj):
            assert obj.__doc__, name


def test_implementation_modules_are_private() -> None:
    modules = [p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"]
    assert modules and all(m.startswith("_") for m in modules)


def test_core_is_sans_io() -> None:
    for path in PACKAGE.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                    assert node.func.id != "open", path
                continue
            for name in names:
                top = name.split(".")[0]
                assert top not in FORBIDDEN, (path.name, name)
                if top == "devmig":
                    assert name.split(".")[1] in {"_errors", "model", "compat"}, (path.name, name)
