"""The release diff's judgement of QEMU's own devices (models imported by :mod:`devmig.qemu`).

QEMU's migration compatibility is one-directional, and its dump says how:

* a section carries ``version_id`` (what it sends) and ``minimum_version_id``
  (the oldest it loads): a stream of version ``v`` loads where ``min <= v <=
  version_id``. A bump within the minimum breaks rollback only;
* a field gated by a version (``field@vN``) is read only from streams of
  version ``N`` or later: added with a bump, it breaks rollback only (and,
  removed with the version going back, upgrade only);
* a subsection (an optional section) is sent only when needed and refused by
  a reader that does not know it: added, it breaks rollback; removed, upgrade;
* an ``unused`` placeholder keeps the wire format: fields that become
  ``unused`` of the same total size are no change; an ``unused`` that becomes
  fields is listed with nothing broken (the reader takes QEMU's zeros as
  values: both views of the pair judge the same bytes the same way).

Everything else (a field removed, added without a gate, resized) breaks both
directions. The changes use the ``STATE_*`` rule ids with these directions; a
version change is a ``STATE_CONDITION_CHANGED`` at ``(..., "version")``: the
versions are the condition under which a section's stream loads.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from difflib import SequenceMatcher
from typing import Any, Final, NamedTuple

from devmig.compat._changes import Direction
from devmig.model import DeviceModel, LayoutField, LayoutSection

QEMU_MODEL_PREFIX: Final = "qemu.org/devices/"
"""Every imported model's id starts so."""

_DESC_HEAD: Final = "QEMU vmstate: "
_VERSION_RE: Final = re.compile(r"(\S+) version_id=(\d+) minimum_version_id=(\d+)")
_GATE_RE: Final = re.compile(r"^(.*)@v(\d+)$")


@dataclass(frozen=True, slots=True)
class QemuSectionVersion:
    """A vmstate section's version (what it sends) and the oldest it loads."""

    version_id: int
    minimum_version_id: int

    def loads(self, version: int) -> bool:
        """Return whether a stream of ``version`` loads here."""
        return self.minimum_version_id <= version <= self.version_id

    def render(self) -> str:
        """``2 (loads 1..2)``."""
        return f"{self.version_id} (loads {self.minimum_version_id}..{self.version_id})"


def is_qemu_model(model: DeviceModel) -> bool:
    """Return whether a model was imported from a QEMU vmstate dump (its id and description say so)."""
    return model.model.startswith(QEMU_MODEL_PREFIX) and model.description.startswith(_DESC_HEAD)


def qemu_versions(description: str) -> dict[str, QemuSectionVersion]:
    """Return the section versions an imported model's description records, by section name."""
    if not description.startswith(_DESC_HEAD):
        return {}
    out: dict[str, QemuSectionVersion] = {}
    for item in description[len(_DESC_HEAD) :].split("; "):
        m = _VERSION_RE.fullmatch(item)
        if m:
            out[m.group(1)] = QemuSectionVersion(int(m.group(2)), int(m.group(3)))
    return out


def field_gate(name: str) -> int:
    """Return the version gate a field's name records (``tx@v3`` → 3; 0 when none)."""
    m = _GATE_RE.match(name.split("#")[0])
    return int(m.group(2)) if m else 0


def field_base(name: str) -> str:
    """Return a field's name without its number and gate (``config#2`` → ``config``)."""
    base = name.split("#")[0]
    m = _GATE_RE.match(base)
    return m.group(1) if m else base


def qemu_description(versions: Mapping[str, QemuSectionVersion]) -> str:
    """Return the description of an imported model: its sections' versions, as :func:`qemu_versions` reads them."""
    return _DESC_HEAD + "; ".join(
        f"{s} version_id={v.version_id} minimum_version_id={v.minimum_version_id}"
        for s, v in versions.items()
    )


__all__ = [
    "QEMU_MODEL_PREFIX",
    "QemuChange",
    "QemuSectionVersion",
    "is_qemu_model",
    "qemu_description",
    "qemu_state_changes",
    "qemu_versions",
]

_BOTH: tuple[Direction, ...] = ("upgrade", "rollback")
_UPGRADE: tuple[Direction, ...] = ("upgrade",)
_ROLLBACK: tuple[Direction, ...] = ("rollback",)


class QemuChange(NamedTuple):
    """A change of an imported QEMU model, with what it breaks."""

    rule: str
    loc: tuple[str, ...]
    message: str
    breaks: tuple[Direction, ...]
    old: Any
    new: Any


def _unused(name: str) -> bool:
    return field_base(name) == "unused"


def _size(f: LayoutField) -> int:
    return f.max if type(f.max) is int else -1


def _runs(
    olds: Sequence[LayoutField], news: Sequence[LayoutField]
) -> Iterator[tuple[list[LayoutField], list[LayoutField]]]:
    """Cut two runs of fields where both reach the same byte offset; the rest is one last run."""
    i = j = 0
    at_a = at_b = 0
    start_i = start_j = 0
    while i < len(olds) and j < len(news):
        if at_a <= at_b:
            at_a += _size(olds[i])
            i += 1
        else:
            at_b += _size(news[j])
            j += 1
        if at_a == at_b:
            yield list(olds[start_i:i]), list(news[start_j:j])
            start_i, start_j = i, j
    if start_i < len(olds) or start_j < len(news):
        yield list(olds[start_i:]), list(news[start_j:])


def qemu_state_changes(old: DeviceModel, new: DeviceModel) -> list[QemuChange]:
    """Return the changes of two imported QEMU models' vmstate, each with the directions it breaks."""
    assert old.state is not None and new.state is not None
    ov, nv = qemu_versions(old.description), qemu_versions(new.description)
    olds = {s.name: s for s in old.state.sections}
    news = {s.name: s for s in new.state.sections}
    out: list[QemuChange] = []
    # the device's own section is the first one, whatever it is called
    main_old, main_new = old.state.sections[0], new.state.sections[0]
    pairs = [(main_old, main_new)]
    pairs += [(s, news[s.name]) for s in old.state.sections[1:] if s.name in news]
    for s in old.state.sections[1:]:
        if s.name not in news and s.name != main_new.name:
            out.append(
                QemuChange(
                    "STATE_SECTION_REMOVED",
                    ("state", "sections", s.name),
                    f"subsection {s.name} is removed: NEW refuses it in a stream OLD sends when it is needed",
                    _UPGRADE,
                    s.name,
                    None,
                )
            )
    for n in new.state.sections[1:]:
        if n.name not in olds and n.name != main_old.name:
            out.append(
                QemuChange(
                    "STATE_SECTION_ADDED",
                    ("state", "sections", n.name),
                    f"subsection {n.name} is added: OLD refuses it in a stream NEW sends when it is needed",
                    _ROLLBACK,
                    None,
                    n.name,
                )
            )
    for a, b in pairs:
        va, vb = ov.get(a.name), nv.get(b.name)
        if va is not None and vb is not None:
            out += _section_changes(a, b, va, vb)
    return out


def _version_change(name: str, va: QemuSectionVersion, vb: QemuSectionVersion) -> QemuChange | None:
    if va == vb:
        return None
    breaks: list[Direction] = []
    if not vb.loads(va.version_id):
        breaks.append("upgrade")
    if not va.loads(vb.version_id):
        breaks.append("rollback")
    return QemuChange(
        "STATE_CONDITION_CHANGED",
        ("state", "sections", name, "version"),
        f"section {name}'s version changed: {va.render()} -> {vb.render()}",
        tuple(breaks),
        {"version_id": va.version_id, "minimum_version_id": va.minimum_version_id},
        {"version_id": vb.version_id, "minimum_version_id": vb.minimum_version_id},
    )


def _section_changes(
    a: LayoutSection, b: LayoutSection, va: QemuSectionVersion, vb: QemuSectionVersion
) -> Iterator[QemuChange]:
    version = _version_change(b.name, va, vb)
    if version is not None:
        yield version
    if a.fields == b.fields:
        return
    name = b.name
    left = [field_base(f.name) for f in a.fields]  # names without number or gate: the gates of
    right = [field_base(f.name) for f in b.fields]  # fields a raised minimum makes moot are dropped
    matcher = SequenceMatcher(a=left, b=right, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            for fa, fb in zip(a.fields[i1:i2], b.fields[j1:j2], strict=True):
                if _size(fa) != _size(fb):
                    yield QemuChange(
                        "STATE_FIELD_MAX_CHANGED",
                        ("state", "sections", name, "fields", fb.name),
                        f"field {name}.{fb.name} is resized: {_size(fa)} -> {_size(fb)} bytes",
                        _BOTH,
                        _size(fa),
                        _size(fb),
                    )
            continue
        removed: list[LayoutField] = []
        added: list[LayoutField] = []
        # the stream carries bytes, not names: runs that end at the same byte offset on both sides
        for olds, news in _runs(a.fields[i1:i2], b.fields[j1:j2]):
            if not olds or not news or sum(map(_size, olds)) != sum(map(_size, news)):
                removed += olds
                added += news
            elif all(_unused(f.name) for f in news):
                pass  # fields replaced by unused placeholders of their size: no change
            elif all(_unused(f.name) for f in olds):
                for fb in news:
                    yield QemuChange(
                        "STATE_FIELD_ADDED",
                        ("state", "sections", name, "fields", fb.name),
                        f"field {name}.{fb.name} ({_size(fb)} bytes) takes the place of an unused "
                        "placeholder: NEW reads OLD's placeholder bytes (QEMU sends zeros) as its "
                        "value; nothing breaks if zero is a valid value",
                        (),
                        [f.name for f in olds],
                        fb.name,
                    )
            elif len(olds) == len(news) == 1:
                fa, fb = olds[0], news[0]
                yield QemuChange(
                    "STATE_FIELD_ADDED",
                    ("state", "sections", name, "fields", fb.name),
                    f"field {name}.{fa.name} is renamed {fb.name} at the same place with the same "
                    f"size ({_size(fb)} bytes): the stream carries no names, so nothing breaks if "
                    "it means the same",
                    (),
                    fa.name,
                    fb.name,
                )
            else:  # the same bytes cut differently: the values move
                removed += olds
                added += news
        for fa in removed:
            gate = field_gate(fa.name)
            if gate > vb.version_id and va.loads(vb.version_id):
                yield QemuChange(
                    "STATE_FIELD_REMOVED",
                    ("state", "sections", name, "fields", fa.name),
                    f"field {name}.{fa.name} ({_size(fa)} bytes), read from version {gate} streams, "
                    f"is removed with the version going back to {vb.version_id}: OLD skips it in "
                    "NEW's streams",
                    _UPGRADE,
                    fa.name,
                    None,
                )
                continue
            yield QemuChange(
                "STATE_FIELD_REMOVED",
                ("state", "sections", name, "fields", fa.name),
                f"field {name}.{fa.name} ({_size(fa)} bytes) is removed",
                _BOTH,
                fa.name,
                None,
            )
        for fb in added:
            gate = field_gate(fb.name)
            if gate > va.version_id and vb.loads(va.version_id):
                yield QemuChange(
                    "STATE_FIELD_ADDED",
                    ("state", "sections", name, "fields", fb.name),
                    f"field {name}.{fb.name} ({_size(fb)} bytes) is added from version {gate}: "
                    f"NEW skips it in OLD's version {va.version_id} streams",
                    _ROLLBACK,
                    None,
                    fb.name,
                )
            else:
                yield QemuChange(
                    "STATE_FIELD_ADDED",
                    ("state", "sections", name, "fields", fb.name),
                    f"field {name}.{fb.name} ({_size(fb)} bytes) is added",
                    _BOTH,
                    None,
                    fb.name,
                )
