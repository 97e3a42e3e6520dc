"""The shipped example model documents (``src/devmig/examples/<impl>/<release>.json``).

An example is named ``<implementation>/<release>`` (``acme-nic/3.0.0``). The
CLI accepts ``example:<name>`` wherever it takes a document file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable

from devmig._errors import DocumentError, Problem
from devmig.model import ModelDocument, load_document

__all__ = ["Example", "example_text", "list_examples", "load_example"]

EXAMPLE_PREFIX = "example:"


@dataclass(frozen=True, slots=True)
class Example:
    """One shipped example document."""

    name: str
    implementation: str
    release: str
    broken: bool


def _root() -> Traversable:
    return resources.files("devmig.examples")


def _release_key(release: str) -> tuple[tuple[int, str], ...]:
    return tuple((int(p), "") if p.isdigit() else (-1, p) for p in re.split(r"[.-]", release))


def list_examples() -> list[Example]:
    """Return every shipped example, by implementation then release order."""
    out = []
    for impl in sorted(_root().iterdir(), key=lambda t: t.name):
        if not impl.is_dir() or impl.name.startswith(("_", ".")):
            continue
        for file in impl.iterdir():
            if file.name.endswith(".json"):
                release = file.name[: -len(".json")]
                out.append(Example(f"{impl.name}/{release}", impl.name, release, "broken" in release))
    out.sort(key=lambda e: (e.implementation, _release_key(e.release)))
    return out


def example_text(name: str) -> str:
    """Return the JSON text of the example ``<implementation>/<release>``.

    Raises:
        DocumentError: ``EXAMPLE_UNKNOWN`` when there is no such example.
    """
    name = name.removeprefix(EXAMPLE_PREFIX)
    names = [e.name for e in list_examples()]
    if name not in names:
        raise DocumentError(
            [
                Problem(
                    "EXAMPLE_UNKNOWN",
                    ("example",),
                    f"no shipped example {name!r}",
                    value=name,
                    allowed=names,
                    hint="`devmig examples` lists them",
                )
            ]
        )
    impl, release = name.split("/", 1)
    return _root().joinpath(impl, f"{release}.json").read_text(encoding="utf-8")


def load_example(name: str) -> ModelDocument:
    """Load and validate the example ``<implementation>/<release>``."""
    return load_document(example_text(name))
