"""The layout of DESIGN §8, enforced on the source (``ast``, nothing imported).

- No module imports another package's private module: ``devmig.X._y`` (or a private name
  ``devmig.X._z``) is imported only from inside ``devmig.X``. A package that needs another's name
  imports it from that package's public ``__init__`` (its ``__all__``).
- The fleet's packages are layered: ``devmig.inventory`` imports neither
  ``devmig.orchestration`` nor ``devmig.manager``; ``devmig.orchestration`` does not import
  ``devmig.manager``; ``devmig.local`` (``devmig up``/``down`` and the tour, which talk to the fleet
  over HTTP) imports none of the three.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable

import pytest
from source_tree import SRC, FakeSourceTree, SourceTree, imports_of

FLEET = ("devmig.inventory", "devmig.orchestration", "devmig.manager")

LAYERS: dict[str, tuple[str, ...]] = {
    "devmig.inventory": ("devmig.orchestration", "devmig.manager", "devmig.local"),
    "devmig.orchestration": ("devmig.manager", "devmig.local"),
    "devmig.manager": ("devmig.local",),
    "devmig.local": FLEET,
}
"""Each fleet package and the packages it must not import."""


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def private_prefix(imported: str) -> str | None:
    """The private module or name an import reaches (``devmig.agent._client.X`` -> ``devmig.agent._client``).

    ``None`` when every part after ``devmig`` is public; dunder names (``__version__``) are public.
    What comes before the private part is the package it is private to.
    """
    parts = imported.split(".")
    for i, part in enumerate(parts[1:], start=1):
        if part.startswith("_") and not (part.startswith("__") and part.endswith("__")):
            return ".".join(parts[: i + 1])
    return None


def _devmig_modules(tree: SourceTree, names: Iterable[str]) -> Iterable[tuple[str, bool, ast.Module]]:
    for name in names:
        source = tree.source(name)
        if source is not None:
            yield name, tree.is_package(name), ast.parse(source)


def private_imports(tree: SourceTree, names: Iterable[str]) -> list[str]:
    """``"module:line imports X"`` for every import of another package's private module or name."""
    found = []
    for name, is_package, parsed in _devmig_modules(tree, names):
        for line, imported in imports_of(name, parsed, is_package):
            if imported.split(".")[0] != "devmig":
                continue
            private = private_prefix(imported)
            owner = private.rpartition(".")[0] if private else ""
            if private and not _within(name, owner):
                found.append(f"{name}:{line} imports {private} (private to {owner})")
    return sorted(set(found))


def layer_violations(tree: SourceTree, names: Iterable[str]) -> list[str]:
    """``"module:line imports P"`` for every import of a package ``P`` that :data:`LAYERS` forbids there."""
    found = []
    for name, is_package, parsed in _devmig_modules(tree, names):
        forbidden = next((banned for package, banned in LAYERS.items() if _within(name, package)), ())
        for line, imported in imports_of(name, parsed, is_package):
            found += [f"{name}:{line} imports {b}" for b in forbidden if _within(imported, b)]
    return sorted(set(found))


def source_modules() -> list[str]:
    """Every module under ``src/devmig`` (a package by its own name)."""
    out = []
    for path in sorted((SRC / "devmig").rglob("*.py")):
        parts = path.relative_to(SRC).with_suffix("").parts
        out.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return out


def test_the_fleet_packages_exist_and_fleet_is_gone() -> None:
    modules = source_modules()
    for package in (*FLEET, "devmig.local"):
        assert package in modules, package
    assert not any(_within(m, "devmig.fleet") for m in modules)


def test_no_module_imports_another_packages_private_module() -> None:
    assert private_imports(SourceTree(), source_modules()) == []


def test_the_fleet_packages_are_layered() -> None:
    assert layer_violations(SourceTree(), source_modules()) == []


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"devmig.b.m": "from devmig.a._x import f"}, ["devmig.b.m:1 imports devmig.a._x (private to devmig.a)"]),
        ({"devmig.b.m": "import devmig.a._x"}, ["devmig.b.m:1 imports devmig.a._x (private to devmig.a)"]),
        ({"devmig.b.m": "from devmig.a import _x"}, ["devmig.b.m:1 imports devmig.a._x (private to devmig.a)"]),
        (
            {"devmig.b.m": "def f():\n    from devmig.a._x import g"},
            ["devmig.b.m:2 imports devmig.a._x (private to devmig.a)"],
        ),
        (
            {"devmig.b.m": "if TYPE_CHECKING:\n    from devmig.a.sub._x import T"},
            ["devmig.b.m:2 imports devmig.a.sub._x (private to devmig.a.sub)"],
        ),
        ({"devmig.b.__init__": "from devmig.a._x import f"}, ["devmig.b:1 imports devmig.a._x (private to devmig.a)"]),
        (
            {"devmig.b.m": "import importlib\nimportlib.import_module('devmig.a._x')"},
            ["devmig.b.m:2 imports devmig.a._x (private to devmig.a)"],
        ),
        # allowed: inside the owner, its subpackages, the public names, the top-level private modules
        ({"devmig.a.m": "from devmig.a._x import f"}, []),
        ({"devmig.a.__init__": "from devmig.a._x import f"}, []),
        ({"devmig.a.sub.m": "from devmig.a._x import f"}, []),
        ({"devmig.a.sub.m": "from .._x import f"}, []),
        ({"devmig.b.m": "from devmig.a import f\nfrom devmig._errors import E\nfrom devmig import __version__"}, []),
        ({"devmig.b.m": "from other._x import f"}, []),
    ],
)
def test_the_private_import_checker(files: dict[str, str], expected: list[str]) -> None:
    names = [n.removesuffix(".__init__") for n in files]
    assert private_imports(FakeSourceTree(files), names) == expected


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (
            {"devmig.inventory._m": "from devmig.orchestration import X"},
            ["devmig.inventory._m:1 imports devmig.orchestration"],
        ),
        ({"devmig.orchestration._m": "import devmig.manager"}, ["devmig.orchestration._m:1 imports devmig.manager"]),
        ({"devmig.local._m": "from devmig import inventory"}, ["devmig.local._m:1 imports devmig.inventory"]),
        ({"devmig.manager._m": "from devmig.orchestration import X\nfrom devmig.inventory import Y"}, []),
        ({"devmig.orchestration._m": "from devmig.inventory import Y"}, []),
        ({"devmig.local._m": "from devmig.agent import remote_error"}, []),
    ],
)
def test_the_layer_checker(files: dict[str, str], expected: list[str]) -> None:
    assert layer_violations(FakeSourceTree(files), list(files)) == expected
