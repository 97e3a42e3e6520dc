"""Writing published state layouts into a model document's JSON text, leaving the rest as it was.

A layout is generated, never written by hand (DESIGN §4); but the rest of a
document is, and its layout on the page is its author's. :func:`with_layouts`
therefore splices: it finds each model's ``"state"`` member (or the end of the
model object) in the text and replaces (or inserts, or removes) exactly that,
formatting the layout one section and one field per line.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from devmig._errors import DocumentError, Problem

__all__ = ["format_layout", "with_layouts"]

_WS = re.compile(r"[ \t\r\n]*")
_DECODER = json.JSONDecoder()


def _skip(text: str, pos: int) -> int:
    return _WS.match(text, pos).end()  # type: ignore[union-attr]


def _members(text: str, pos: int) -> list[tuple[str, int, int, int]]:
    """Return ``(key, key start, value start, value end)`` of the object at ``pos``."""
    assert text[pos] == "{"
    out: list[tuple[str, int, int, int]] = []
    pos = _skip(text, pos + 1)
    if text[pos] == "}":
        return out
    while True:
        key_start = pos
        key, pos = _DECODER.raw_decode(text, pos)
        pos = _skip(text, pos)
        assert text[pos] == ":"
        start = _skip(text, pos + 1)
        _, end = _DECODER.raw_decode(text, start)
        out.append((key, key_start, start, end))
        pos = _skip(text, end)
        if text[pos] == "}":
            return out
        assert text[pos] == ","
        pos = _skip(text, pos + 1)


def _elements(text: str, pos: int) -> list[int]:
    """Return the start of every element of the array at ``pos``."""
    assert text[pos] == "["
    out: list[int] = []
    pos = _skip(text, pos + 1)
    if text[pos] == "]":
        return out
    while True:
        out.append(pos)
        _, pos = _DECODER.raw_decode(text, pos)
        pos = _skip(text, pos)
        if text[pos] == "]":
            return out
        pos = _skip(text, pos + 1)


def _column(text: str, pos: int) -> int:
    return pos - (text.rfind("\n", 0, pos) + 1)


def _compact(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)


def format_layout(layout: Mapping[str, Any], indent: int) -> str:
    """Return a layout's JSON text: one section and one field per line, ``indent`` the column of its key."""
    pad = " " * indent
    lines = ["{"]
    parts = []
    sections = layout.get("sections", [])
    if sections:
        rows = []
        for section in sections:
            head = {k: v for k, v in section.items() if k != "fields"}
            fields = section.get("fields", [])
            text = _compact(head)[:-1]
            if fields:
                inner = ",\n".join(f"{pad}      {_compact(f)}" for f in fields)
                rows.append(f'{pad}    {text}, "fields": [\n{inner}\n{pad}    ]}}')
            else:
                rows.append(f"{pad}    {text}}}")
        parts.append(f'{pad}  "sections": [\n' + ",\n".join(rows) + f"\n{pad}  ]")
    regions = layout.get("regions", [])
    if regions:
        rows = [f"{pad}    {_compact(r)}" for r in regions]
        parts.append(f'{pad}  "regions": [\n' + ",\n".join(rows) + f"\n{pad}  ]")
    if not parts:
        return "{}"
    lines.append(",\n".join(parts))
    lines.append(pad + "}")
    return "\n".join(lines)


def with_layouts(text: str, layouts: Mapping[str, Mapping[str, Any] | None]) -> str:
    """Return a document's text with each named model's ``"state"`` set (``None``: removed).

    Args:
        text: a model document's JSON text (already valid JSON).
        layouts: model id → its layout as JSON data, or ``None`` to remove it.
            Models not named are left alone.

    Raises:
        DocumentError: ``SCHEMA`` when the text is not a model document with
            a ``models`` array, or names a model that it does not contain.
    """
    try:
        start = _skip(text, 0)
        top = _members(text, start)
        models = next(((s, e) for k, _, s, e in top if k == "models"), None)
        if models is None or text[models[0]] != "[":
            raise ValueError("no models array")
        edits: list[tuple[int, int, str]] = []
        found: set[str] = set()
        for element in _elements(text, models[0]):
            if text[element] != "{":
                continue
            members = _members(text, element)
            ids = [json.loads(text[s:e]) for k, _, s, e in members if k == "model"]
            if not ids or ids[0] not in layouts:
                continue
            model_id = ids[0]
            found.add(model_id)
            layout = layouts[model_id]
            key_column = _column(text, members[0][1]) if members else _column(text, element) + 2
            state = [(i, m) for i, m in enumerate(members) if m[0] == "state"]
            if state:
                i, (_, key_start, value_start, value_end) = state[0]
                if layout is None:
                    begin = members[i - 1][3] if i > 0 else key_start
                    end = (
                        value_end
                        if i > 0
                        else (members[i + 1][1] if i + 1 < len(members) else value_end)
                    )
                    edits.append((begin, end, ""))
                else:
                    edits.append((value_start, value_end, format_layout(layout, key_column)))
            elif layout is not None and members:
                end = members[-1][3]
                insert = f',\n{" " * key_column}"state": {format_layout(layout, key_column)}'
                edits.append((end, end, insert))
    except (ValueError, AssertionError, IndexError) as exc:
        raise DocumentError(
            [
                Problem(
                    "SCHEMA",
                    (),
                    f"not a model document's JSON text: {exc}",
                    hint="validate it first",
                )
            ]
        ) from exc
    missing = sorted(set(layouts) - found)
    if missing:
        raise DocumentError(
            [
                Problem(
                    "SCHEMA",
                    ("models",),
                    f"the document has no model {missing[0]!r}",
                    value=missing[0],
                )
            ]
        )
    for begin, end, new in sorted(edits, reverse=True):
        text = text[:begin] + new + text[end:]
    return text
