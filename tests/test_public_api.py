"""The curated public API (STYLE rule 7): every package's ``__all__``.

For every package under ``src/devmig`` whose ``__init__.py`` defines
``__all__``:
- every name in it exists on the imported package;
- it is unique and sorted — plainly, or in ruff's "isort-style" order
  (SCREAMING_CASE, then CamelCase, then the rest, each sorted);
- every name is *defined* in devmig: following the ``from ... import``
  chain in the source ends at a devmig module that defines it (a class, a
  function, an assignment — type aliases and instances included), never at
  a third-party or standard-library module, unless listed in ``INTENDED``.
"""

from __future__ import annotations

import ast
import importlib

import pytest
from source_tree import SRC, FakeSourceTree, SourceTree, from_module

# (package, name) pairs deliberately re-exported from outside devmig.
INTENDED: set[tuple[str, str]] = set()


def packages() -> list[str]:
    out = []
    for init in sorted((SRC / "devmig").rglob("__init__.py")):
        tree = ast.parse(init.read_text(encoding="utf-8"))
        if _all_node(tree) is not None:
            out.append(".".join(init.relative_to(SRC).parent.parts))
    return out


def _all_node(tree: ast.Module) -> ast.expr | None:
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
        ):
            return node.value
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and node.target.id == "__all__"
        ):
            return node.value
    return None


def _statements(body: list[ast.stmt]) -> list[ast.stmt]:
    """Top-level statements, looking into ``if``/``try`` blocks (conditional definitions)."""
    out: list[ast.stmt] = []
    for node in body:
        out.append(node)
        if isinstance(node, ast.If):
            out += _statements(node.body) + _statements(node.orelse)
        elif isinstance(node, ast.Try):
            out += _statements(node.body) + _statements(node.orelse) + _statements(node.finalbody)
            for handler in node.handlers:
                out += _statements(handler.body)
    return out


def origin(module: str, name: str, sources: SourceTree, depth: int = 0) -> str:
    """Return the module that defines ``name`` as seen from ``module``.

    Follows ``from X import name`` (absolute or relative) through devmig
    modules; stops at the first module outside devmig (which is returned) or
    at the devmig module that defines it.
    """
    if not module.startswith("devmig") or depth > 20:
        return module
    source = sources.source(module)
    if source is None:
        return module
    package = module if sources.is_package(module) else module.rpartition(".")[0]
    for node in _statements(ast.parse(source).body):
        if (
            isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
            and node.name == name
        ):
            return module
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == name for t in node.targets
        ):
            return module
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and node.target.id == name
        ):
            return module
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if (alias.asname or alias.name) != name:
                    continue
                source_module = from_module(package, node)
                if sources.path(f"{source_module}.{alias.name}") is not None:
                    return f"{source_module}.{alias.name}"  # a submodule
                return origin(source_module, alias.name, sources, depth + 1)
        if isinstance(node, ast.Import):
            for alias in node.names:
                if (alias.asname or alias.name.split(".")[0]) == name:
                    return alias.name
    if sources.path(f"{module}.{name}") is not None:
        return f"{module}.{name}"
    return module


def isort_key(name: str) -> tuple[int, str]:
    if name.isupper() and name[:1].isalpha():
        return 0, name
    if name[:1].isupper():
        return 1, name
    return 2, name


PACKAGES = packages()


def test_packages_are_found() -> None:
    assert {"devmig", "devmig.model"} <= set(PACKAGES)


@pytest.mark.parametrize("package", PACKAGES)
def test_all_names_exist(package: str) -> None:
    module = importlib.import_module(package)
    names = module.__all__
    assert isinstance(names, (list, tuple))
    assert all(isinstance(n, str) for n in names)
    missing = [n for n in names if not hasattr(module, n)]
    assert not missing, f"{package}.__all__ names what it does not define: {missing}"


@pytest.mark.parametrize("package", PACKAGES)
def test_all_is_sorted_and_unique(package: str) -> None:
    names = list(importlib.import_module(package).__all__)
    duplicates = sorted({n for n in names if names.count(n) > 1})
    assert not duplicates, f"{package}.__all__ repeats {duplicates}"
    assert names in (sorted(names), sorted(names, key=isort_key)), (
        f"{package}.__all__ is not sorted"
    )


@pytest.mark.parametrize("package", PACKAGES)
def test_all_names_come_from_devmig(package: str) -> None:
    sources = SourceTree(SRC)
    foreign = {
        name: where
        for name in importlib.import_module(package).__all__
        if not (where := origin(package, name, sources)).startswith("devmig")
        and (package, name) not in INTENDED
    }
    assert not foreign, f"{package}.__all__ re-exports names from outside devmig: {foreign}"


@pytest.mark.parametrize("package", PACKAGES)
def test_public_classes_and_functions_are_defined_in_devmig(package: str) -> None:
    # the runtime twin of the source check: a foreign class or function re-exported
    # through a private devmig module still says where it was defined
    module = importlib.import_module(package)
    foreign = {}
    for name in module.__all__:
        obj = getattr(module, name)
        if isinstance(obj, type) or (callable(obj) and hasattr(obj, "__code__")):
            where = getattr(obj, "__module__", "")
            if not where.startswith("devmig") and (package, name) not in INTENDED:
                foreign[name] = where
    assert not foreign, f"{package}.__all__ re-exports from outside devmig: {foreign}"


def test_model_api_is_complete() -> None:
    import devmig.model as model

    expected = {
        "Config", "DeviceModel", "ModelDocument", "HostReport", "expand", "parse_canonical",
        "version_of", "load_document", "load_host_report", "load_any", "model_document_schema",
        "host_report_schema", "format_value", "split_options", "convert_value",
    }  # fmt: skip
    assert expected <= set(model.__all__)


# --------------------------------------------------------------------------- the checks can fail


@pytest.mark.parametrize(
    ("files", "name", "where"),
    [
        (
            {"devmig.p.__init__": "from devmig.p._m import X", "devmig.p._m": "class X: pass"},
            "X",
            "devmig.p._m",
        ),
        (
            {"devmig.p.__init__": "from ._m import X", "devmig.p._m": "X = int | str"},
            "X",
            "devmig.p._m",
        ),
        (
            {"devmig.p.__init__": "from ._m import Y as X", "devmig.p._m": "def Y(): pass"},
            "X",
            "devmig.p._m",
        ),
        (
            {
                "devmig.p.__init__": "from ._m import X",
                "devmig.p._m": "from ._n import X",
                "devmig.p._n": "X: int = 1",
            },
            "X",
            "devmig.p._n",
        ),
        ({"devmig.p.__init__": "from . import _m", "devmig.p._m": ""}, "_m", "devmig.p._m"),
        ({"devmig.p.__init__": "if True:\n    X = 1\nelse:\n    X = 2"}, "X", "devmig.p"),
        # foreign
        ({"devmig.p.__init__": "from pydantic import BaseModel"}, "BaseModel", "pydantic"),
        (
            {
                "devmig.p.__init__": "from ._m import BaseModel",
                "devmig.p._m": "from pydantic import BaseModel",
            },
            "BaseModel",
            "pydantic",
        ),
        ({"devmig.p.__init__": "import json"}, "json", "json"),
        ({"devmig.p.__init__": "from os import path as where"}, "where", "os"),
    ],
)
def test_origin(files: dict[str, str], name: str, where: str) -> None:
    assert origin("devmig.p", name, FakeSourceTree(files)) == where


@pytest.mark.parametrize(
    ("names", "ok"),
    [
        (["A_B", "Alpha", "beta"], True),
        (["Alpha", "Beta", "_x", "alpha"], True),
        (["HOST", "MODEL", "Bool", "Config", "expand"], True),  # isort-style
        (["Bool", "Config", "HOST", "MODEL", "expand"], True),  # plain
        (["Config", "Bool"], False),
        (["expand", "Config"], False),
    ],
)
def test_sort_orders(names: list[str], ok: bool) -> None:
    assert (names in (sorted(names), sorted(names, key=isort_key))) is ok
