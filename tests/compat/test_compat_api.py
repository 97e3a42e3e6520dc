"""The public surface of ``devmig.compat``: a curated ``__all__``, private modules, sans-IO."""

from __future__ import annotations

import inspect
from pathlib import Path

from source_tree import calls_in_file, imports_in_file

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
        assert "open" not in calls_in_file(path), path
        for name in imports_in_file(path):
            top, _, rest = name.partition(".")
            assert top not in FORBIDDEN, (path.name, name)
            if top == "devmig":
                assert rest.split(".")[0] in {"_codes", "_errors", "model", "compat"}, (path.name, name)
