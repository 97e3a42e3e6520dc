"""Reading devmig's own source with ``ast``: the one copy the source-checking tests share.

Used by ``tests/test_public_api.py`` (where does a name in ``__all__`` come from), ``tests/test_sans_io.py``
(the core's import graph) and each core package's own sans-IO test (``tests/compat``, ``tests/state``,
``tests/migration``):

- :class:`SourceTree` resolves a module name to its file and source under a ``src`` root;
  :class:`FakeSourceTree` is its in-memory twin (module name -> source text), so the checkers'
  own tests can feed them made-up packages;
- :func:`from_module` turns a ``from ... import`` (absolute or relative) into an absolute module name;
- :func:`imports_of` and :func:`calls_of` list what a module imports and which bare names it calls;
- :func:`imports_in_file` and :func:`calls_in_file` do the same for one file under :data:`SRC`.

This folder is on ``sys.path`` (``pythonpath`` in ``[tool.pytest.ini_options]``), so tests import it
by its bare, unique name.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"
"""The ``src`` folder of this checkout."""


class SourceTree:
    """Resolve module names to source text under a ``src`` root (packages are ``NAME/__init__.py``)."""

    def __init__(self, root: Path = SRC) -> None:
        self.root = root

    def path(self, name: str) -> Path | None:
        """The file of module ``name``, or None when there is none."""
        base = self.root.joinpath(*name.split("."))
        for candidate in (base.with_suffix(".py"), base / "__init__.py"):
            if candidate.is_file():
                return candidate
        return None

    def source(self, name: str) -> str | None:
        """The source text of module ``name``, or None when there is none."""
        path = self.path(name)
        return path.read_text(encoding="utf-8") if path else None

    def is_package(self, name: str) -> bool:
        """Whether ``name`` is a package (its file is an ``__init__.py``)."""
        path = self.path(name)
        return path is not None and path.name == "__init__.py"


class FakeSourceTree(SourceTree):
    """The in-memory twin: ``files`` maps a module name to its source (a package as ``NAME.__init__``)."""

    def __init__(self, files: dict[str, str]) -> None:
        self.files = files

    def path(self, name: str) -> Path | None:
        if name in self.files:
            return Path(name.replace(".", "/") + ".py")
        if name + ".__init__" in self.files:
            return Path(name.replace(".", "/") + "/__init__.py")
        return None

    def source(self, name: str) -> str | None:
        return self.files.get(name, self.files.get(name + ".__init__"))

    def is_package(self, name: str) -> bool:
        return name + ".__init__" in self.files


def from_module(package: str, node: ast.ImportFrom) -> str:
    """The absolute name of the module a ``from ... import`` in ``package`` imports from.

    ``package`` is the module's own name if it is a package, else the package it is in (a relative
    import counts its dots from there).
    """
    if not node.level:
        return node.module or ""
    parts = package.split(".")
    base = ".".join(parts[: len(parts) - node.level + 1])
    return f"{base}.{node.module}" if node.module else base


def imports_of(name: str, tree: ast.AST, is_package: bool) -> Iterable[tuple[int, str]]:
    """Yield ``(line, absolute module name)`` for every import in ``tree`` (module ``name``'s source).

    ``from a import b`` yields ``a`` and ``a.b`` (``b`` may be a submodule); relative imports are
    made absolute. Imports inside functions and ``if TYPE_CHECKING:`` blocks count too.
    ``importlib.import_module("x")`` and ``__import__("x")`` with a constant name count as imports
    of ``x``.
    """
    package = name if is_package else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            module = from_module(package, node)
            yield node.lineno, module
            for alias in node.names:
                if alias.name != "*":
                    yield node.lineno, f"{module}.{alias.name}"
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            dynamic = (isinstance(func, ast.Name) and func.id == "__import__") or (
                isinstance(func, ast.Attribute) and func.attr == "import_module"
            )
            if dynamic and isinstance(node.args[0].value, str):
                yield node.lineno, node.args[0].value


def calls_of(tree: ast.AST) -> Iterable[tuple[int, str]]:
    """Yield ``(line, name)`` for every call of a bare name (``open(...)``, ``builtins.open``)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name):
                yield node.lineno, func.id
            elif (
                isinstance(func, ast.Attribute)
                and isinstance(func.value, ast.Name)
                and func.value.id == "builtins"
            ):
                yield node.lineno, func.attr


def _module_of(path: Path) -> tuple[str, bool]:
    """The module name of a file under :data:`SRC`, and whether it is a package's ``__init__``."""
    parts = path.resolve().relative_to(SRC).with_suffix("").parts
    if parts[-1] == "__init__":
        return ".".join(parts[:-1]), True
    return ".".join(parts), False


def imports_in_file(path: Path) -> set[str]:
    """Every module (absolute name, see :func:`imports_of`) that the devmig source file ``path`` imports."""
    name, is_package = _module_of(path)
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return {module for _, module in imports_of(name, tree, is_package)}


def calls_in_file(path: Path) -> set[str]:
    """Every bare name (see :func:`calls_of`) that the source file ``path`` calls."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return {called for _, called in calls_of(tree)}


# -- the error codes the source raises -----------------------------------------------------------

CODE_SHAPE = re.compile(r"[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*")
"""What an error code looks like (DESIGN §7): upper-case words joined by underscores."""


def _params(node: ast.FunctionDef | ast.AsyncFunctionDef) -> list[str]:
    names = [a.arg for a in (*node.args.posonlyargs, *node.args.args)]
    return names[1:] if names and names[0] in ("self", "cls") else names


def code_takers(trees: Iterable[ast.AST]) -> dict[str, set[int]]:
    """Every callable of the source that takes an error code, and the positions it takes it at.

    A function or method with a parameter named ``code`` (``problem(code, message)``,
    ``Migration.fail(self, code, ...)``), a class whose ``__init__`` takes one
    (``StreamError(code, message)``), and a class whose fields include ``code``
    (``Problem``, a dataclass ``Failure(code, message)``). Names, not objects: ``fail`` is
    every ``fail`` of the source; :func:`codes_of` keeps only code-shaped string literals, so
    ``Output.fail(error, code=EXIT_NO)`` adds nothing.
    """
    takers: dict[str, set[int]] = {}
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                params = _params(node)
                if "code" in params:
                    takers.setdefault(node.name, set()).add(params.index("code"))
            if isinstance(node, ast.ClassDef):
                for init in node.body:
                    if isinstance(init, ast.FunctionDef) and init.name == "__init__" and "code" in _params(init):
                        takers.setdefault(node.name, set()).add(_params(init).index("code"))
                fields = [s.target.id for s in node.body
                          if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name)
                          and "ClassVar" not in ast.unparse(s.annotation)]
                if "code" in fields:
                    takers.setdefault(node.name, set()).add(fields.index("code"))
    return takers


def string_constants(trees: Iterable[ast.AST]) -> dict[str, set[str]]:
    """Module-level ``NAME = "TEXT"`` of the source: a code passed by name (``LOAD_FAILED``)."""
    found: dict[str, set[str]] = {}
    for tree in trees:
        for node in getattr(tree, "body", ()):
            value = node.value if isinstance(node, (ast.Assign, ast.AnnAssign)) else None
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]  # type: ignore[union-attr]
                for target in targets:
                    if isinstance(target, ast.Name):
                        found.setdefault(target.id, set()).add(value.value)
    return found


def _literals(node: ast.AST, constants: dict[str, set[str]]) -> Iterable[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        yield node.value
    elif isinstance(node, ast.IfExp):
        yield from _literals(node.body, constants)
        yield from _literals(node.orelse, constants)
    elif isinstance(node, ast.Name) and node.id in constants:
        yield from constants[node.id]


def codes_of(tree: ast.AST, takers: dict[str, set[int]], constants: dict[str, set[str]]) -> Iterable[tuple[int, str]]:
    """Yield ``(line, code)`` for every error code ``tree`` raises or builds.

    A code is a code-shaped string (a literal, either branch of ``a if c else b``, or a
    module-level constant named there) passed as ``code=``, or at a position where a
    :func:`code_takers` callable takes its code, the default of a parameter whose name
    ends in ``code``, or a class's ``default_code``.
    """
    for node in ast.walk(tree):
        args: list[ast.AST] = []
        if isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
            args = [kw.value for kw in node.keywords if kw.arg == "code"]
            args += [node.args[i] for i in takers.get(name, ()) if i < len(node.args)]
        elif isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "default_code"
                                                  for t in node.targets):
            args = [node.value]
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            every = [*node.args.posonlyargs, *node.args.args]
            pairs = list(zip(every[len(every) - len(node.args.defaults):], node.args.defaults, strict=True))
            pairs += [(a, d) for a, d in zip(node.args.kwonlyargs, node.args.kw_defaults, strict=True) if d is not None]
            args = [default for arg, default in pairs if arg.arg.endswith("code")]
        for arg in args:
            for text in _literals(arg, constants):
                if CODE_SHAPE.fullmatch(text):
                    yield node.lineno, text


def codes_in_source(root: Path = SRC / "devmig") -> dict[str, list[str]]:
    """Every error code the package under ``root`` raises, each with where (``path:line``)."""
    files = sorted(root.rglob("*.py"))
    trees = {path: ast.parse(path.read_text(encoding="utf-8"), filename=str(path)) for path in files}
    takers = code_takers(trees.values())
    constants = string_constants(trees.values())
    found: dict[str, list[str]] = {}
    for path, tree in trees.items():
        for line, code in codes_of(tree, takers, constants):
            found.setdefault(code, []).append(f"{path.relative_to(root.parent)}:{line}")
    return found
