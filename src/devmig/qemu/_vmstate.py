"""QEMU's ``-dump-vmstate`` JSON as a model document (sans-IO: data in, document out).

``qemu-system-x86_64 -machine M -dump-vmstate FILE`` writes, per device
section, its vmstate description: ``version_id``, ``minimum_version_id``,
``Fields`` (name, byte size, a version gate, whether a run-time test decides
it, in newer QEMU an element count ``num``), nested struct descriptions and
``Subsections``. No field has a type. :func:`import_vmstate` maps it (the
mapping is docs/qemu.md's):

* one parameterless model per section, ``qemu.org/devices/<section>``;
* a field is ``bytes`` with its byte ``size`` as maximum (``num`` is not
  used: older dumps lack it, and it would resize every array between them);
* a nested struct is flattened: its fields become ``<field>.<inner>``;
* a name seen again in a section (alternatives chosen at run time, every
  ``unused`` placeholder) is numbered: ``config``, ``config#2``;
* a field gated by a version (``version_id`` ≥ 2 on a top-level field of a
  section or subsection) is named ``<field>@v<N>``;
* a subsection (sent only when needed) is an optional section named by its
  own name, after its parent's; the subsections of nested structs follow;
* each section's ``version_id``/``minimum_version_id`` are written into the
  model's description (:func:`devmig.compat.qemu_description`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from devmig._errors import DocumentError, Problem
from devmig.compat import QEMU_MODEL_PREFIX, QemuSectionVersion, qemu_description
from devmig.model import (
    MODEL_DOCUMENT_FORMAT,
    DeviceModel,
    Implementation,
    LayoutField,
    LayoutSection,
    ModelDocument,
    PublishedLayout,
)

__all__ = ["import_vmstate", "machine_of"]

_NAME_MAX: Final = 128


def _int(value: Any, where: tuple[str | int, ...], problems: list[Problem]) -> int:
    if type(value) is int and value >= 0:
        return value
    problems.append(
        Problem("SCHEMA", where, f"expected a non-negative integer, not {value!r}", value=value)
    )
    return 0


class _Builder:
    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        self.versions: dict[str, QemuSectionVersion] = {}
        self.sections: list[LayoutSection] = []
        self.names: set[str] = set()

    def section(
        self, desc: Mapping[str, Any], where: tuple[str | int, ...], optional: bool
    ) -> None:
        """Add a section (and after it, its subsections and its structs' subsections)."""
        name = desc.get("name")
        if not isinstance(name, str) or not name:
            self.problems.append(Problem("SCHEMA", (*where, "name"), "a section needs a name"))
            return
        name = _unique(name[:_NAME_MAX], self.names)
        self.versions[name] = QemuSectionVersion(
            _int(desc.get("version_id"), (*where, "version_id"), self.problems),
            _int(desc.get("minimum_version_id"), (*where, "minimum_version_id"), self.problems),
        )
        leaves: list[tuple[str, int]] = []
        later: list[tuple[Mapping[str, Any], tuple[str | int, ...]]] = []
        self._fields(desc, where, "", True, leaves, later)
        seen: set[str] = set()
        fields = tuple(
            LayoutField(name=_unique(n, seen), type="bytes", max=size) for n, size in leaves
        )
        self.sections.append(LayoutSection(name=name, fields=fields, optional=optional))
        for i, sub in enumerate(desc.get("Subsections") or ()):
            if isinstance(sub, Mapping):
                self.section(sub, (*where, "Subsections", i), True)
        for sub, at in later:
            self.section(sub, at, True)

    def _fields(
        self,
        desc: Mapping[str, Any],
        where: tuple[str | int, ...],
        prefix: str,
        top: bool,
        leaves: list[tuple[str, int]],
        later: list[tuple[Mapping[str, Any], tuple[str | int, ...]]],
        gate: int = 0,
    ) -> None:
        for i, f in enumerate(desc.get("Fields") or ()):
            at = (*where, "Fields", i)
            if not isinstance(f, Mapping) or not isinstance(f.get("field"), str):
                self.problems.append(Problem("SCHEMA", at, "a field needs a name"))
                continue
            own = _int(f.get("version_id", 0), (*at, "version_id"), self.problems)
            g = own if top else gate
            nested = f.get("Description")
            if isinstance(nested, Mapping):
                self._fields(
                    nested, (*at, "Description"), f"{prefix}{f['field']}.", False, leaves, later, g
                )
                for j, sub in enumerate(nested.get("Subsections") or ()):
                    if isinstance(sub, Mapping):
                        later.append((sub, (*at, "Description", "Subsections", j)))
                continue
            name = prefix + f["field"]
            if g >= 2:
                name += f"@v{g}"
            leaves.append(
                (name[: _NAME_MAX - 8], _int(f.get("size"), (*at, "size"), self.problems))
            )


def _unique(name: str, seen: set[str]) -> str:
    out, n = name, 1
    while out in seen:
        n += 1
        out = f"{name}#{n}"
    seen.add(out)
    return out


def import_vmstate(dump: Mapping[str, Any], release: str, *, name: str = "qemu") -> ModelDocument:
    """Turn a parsed ``-dump-vmstate`` JSON object into a model document.

    Args:
        dump: the JSON object QEMU wrote (section name → description).
        release: the QEMU release the dump is of (``7.2``); the dump does not say.
        name: the implementation's name.

    Returns:
        A :class:`ModelDocument` with one parameterless model per section, sorted by id.

    Raises:
        DocumentError: the dump is not a vmstate dump (``SCHEMA`` problems).
    """
    problems: list[Problem] = []
    if not isinstance(dump, Mapping):
        raise DocumentError([Problem("SCHEMA", (), "a vmstate dump is a JSON object")])
    models = []
    for key in sorted(dump):
        entry = dump[key]
        if not isinstance(entry, Mapping) or "Description" not in entry:
            continue  # "vmschkmachine": the machine type, no state
        builder = _Builder(problems)
        builder.section(entry["Description"], (key, "Description"), False)
        if not builder.sections:
            continue
        description = qemu_description(builder.versions)
        models.append(
            DeviceModel(
                model=QEMU_MODEL_PREFIX + key,
                description=description,
                state=PublishedLayout(sections=tuple(builder.sections)),
            )
        )
    if problems:
        raise DocumentError(problems)
    if not models:
        raise DocumentError([Problem("SCHEMA", (), "the dump describes no vmstate section")])
    return ModelDocument(
        format=MODEL_DOCUMENT_FORMAT,
        implementation=Implementation(name=name, release=release),
        models=tuple(models),
    )


def machine_of(dump: Mapping[str, Any]) -> str | None:
    """Return the machine type a dump names (``vmschkmachine``), if any."""
    entry = dump.get("vmschkmachine")
    if isinstance(entry, Mapping) and isinstance(entry.get("Name"), str):
        return str(entry["Name"])
    return None
