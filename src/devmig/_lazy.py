"""Packages whose public names are imported on first use (PEP 562).

A package that re-exports from heavy modules (the web framework, the database
layer) would make every importer pay for them, including ``devmig`` commands
that use one light part of it. :func:`lazy_names` gives such a package the
module-level ``__getattr__`` and ``__dir__`` that import a name's module when
the name is first asked for.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = ["lazy_names"]


def lazy_names(package: str, where: Mapping[str, str],
               public: Sequence[str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Return ``(__getattr__, __dir__)`` for ``package``.

    Args:
        package: the package's ``__name__``.
        where: each lazily loaded name's module.
        public: the package's ``__all__``.
    """

    def getattr_(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)  # asked once: a plain attribute from now on
        return value

    def dir_() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(public))

    return getattr_, dir_
