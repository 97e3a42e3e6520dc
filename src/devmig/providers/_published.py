"""Published model documents: loading what a backend or driver publishes, and opaque identities.

:func:`load_published` loads a document a provider found (a driver's
``migration_info.json``, a program's ``--print-migration-info-json``): the
usual document codes (``JSON_SYNTAX``, ``SCHEMA``, ...), each problem naming
where the document came from in ``context["path"]``, and the rule of DESIGN
§9 that published documents may not use the ``opaque:`` prefix.

:func:`opaque_model_id` and :func:`opaque_document` build the identity of a
device without migration information: ``opaque:`` + the sha256 of what
identifies its implementation. Such a device moves only to the very same
identity (the check answers ``NO_MIGRATION_INFO`` otherwise).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from devmig._errors import DocumentError, Problem
from devmig.compat import OPAQUE_PREFIX, is_opaque
from devmig.model import MODEL_DOCUMENT_FORMAT, ModelDocument, load_document

__all__ = ["load_published", "opaque_document", "opaque_model_id", "reserved_problems"]


def opaque_model_id(parts: Iterable[str]) -> str:
    """Return ``opaque:`` + the sha256 (hex) of ``parts``, each NUL-terminated.

    The parts are what identifies the implementation: for an mdev type its
    driver, type name, ``device_api`` and module ``srcversion``; for a
    backend its program file's sha256 and the template's fixed arguments.
    """
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode("utf-8", "surrogateescape") + b"\0")
    return OPAQUE_PREFIX + digest.hexdigest()


def opaque_document(name: str, release: str, model_id: str, description: str) -> ModelDocument:
    """Return the document of an opaque device: one model without parameters or versions.

    Args:
        name: the implementation name (unique per identity, e.g. ``kernel:i915/i915-GVTg_V5_4``).
        release: its release (a module's ``srcversion``, ``unknown`` when there is none).
        model_id: the identity (:func:`opaque_model_id`).
        description: what it is, for people.
    """
    return load_document(
        {
            "format": MODEL_DOCUMENT_FORMAT,
            "implementation": {"name": name, "release": release or "unknown"},
            "models": [{"model": model_id, "description": description}],
        }
    )


def reserved_problems(document: ModelDocument) -> list[Problem]:
    """Return a ``SCHEMA`` problem for every model of a published document named ``opaque:...``."""
    return [
        Problem(
            "SCHEMA",
            ("models", i, "model"),
            f"model ids starting with {OPAQUE_PREFIX!r} are reserved for devices without "
            "migration information",
            value=m.model,
            hint="name the model by a scheme-less unique id such as example.org/devices/nic",
        )
        for i, m in enumerate(document.models)
        if is_opaque(m.model)
    ]


def load_published(
    source: str | bytes | Mapping[str, Any], path: str
) -> tuple[ModelDocument | None, list[Problem]]:
    """Load a published model document, collecting every problem.

    Args:
        source: the raw document.
        path: where it came from (a file, a program); every problem carries
            it in ``context["path"]`` and its message starts with it.

    Returns:
        The document when it has no problem (else ``None``), and the problems.
    """
    try:
        document = load_document(source)
    except DocumentError as e:
        return None, [_at(p, path) for p in e.problems]
    problems = [_at(p, path) for p in reserved_problems(document)]
    return (None if problems else document), problems


def _at(problem: Problem, path: str) -> Problem:
    return replace(
        problem, message=f"{path}: {problem.message}", context={**problem.context, "path": path}
    )
