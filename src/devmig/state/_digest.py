"""The state digest: one 16-byte fingerprint of a device's state (DESIGN §4).

xxh3-128 over the canonical CBOR of every required and conditional section
active in the layout, in declaration order (each encoded as
``{"name": name, "fields": {...}}`` with normalised values), then the bytes of
every region in layout order. Optional sections are left out. The digest does
not depend on the release, the rounds or the compression of a stream, so two
devices hold "the same state" exactly when their digests are equal.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

import xxhash

from devmig._errors import StreamError
from devmig.state._declaration import StateLayout
from devmig.state._records import encode_cbor
from devmig.state._region import Region

__all__ = ["state_digest"]

_FEED: Final = 1 << 20


def state_digest(
    layout: StateLayout,
    sections: Mapping[str, Mapping[str, Any]],
    regions: Sequence[Region | bytes | bytearray | memoryview],
) -> bytes:
    """Return the 16-byte state digest.

    Args:
        layout: the device's layout.
        sections: section name → field values; every required (and active
            conditional) section must be present, optional ones are ignored.
        regions: the region contents in layout order (:class:`Region` or any
            byte buffer); read in 1 MiB pieces, never copied.

    Raises:
        StreamError: ``SECTION_MISSING``, ``SECTION_UNKNOWN`` (a name the
            layout does not have active), ``SECTION_INVALID``, or
            ``LAYOUT_INVALID`` when the regions do not match the layout.
    """
    for name in sections:
        if layout.section(name) is None:
            raise StreamError(
                "SECTION_UNKNOWN",
                f"section {name!r} is not active in this layout",
                section=name,
                allowed=[s.name for s in layout.sections],
            )
    hasher = xxhash.xxh3_128()
    for spec in layout.sections:
        if spec.optional:
            continue
        if spec.name not in sections:
            raise StreamError(
                "SECTION_MISSING", f"required section {spec.name!r} is missing", section=spec.name
            )
        values = layout.validate_section(spec.name, sections[spec.name])
        hasher.update(encode_cbor({"name": spec.name, "fields": values}))
    views = [r.view if isinstance(r, Region) else memoryview(r).cast("B") for r in regions]
    if [len(v) for v in views] != [r.size for r in layout.regions]:
        raise StreamError(
            "LAYOUT_INVALID",
            "regions do not match the layout",
            value=[len(v) for v in views],
            allowed=[r.size for r in layout.regions],
        )
    for view in views:
        for start in range(0, len(view), _FEED):
            hasher.update(view[start : start + _FEED])
    return hasher.digest()
