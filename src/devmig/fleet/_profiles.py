"""Profile fingerprints computed fast, and what an inventory process knows about profiles.

:meth:`ProfileCache.fingerprints` gives exactly :func:`~devmig.fleet.report_profile`
for each report, but renders each distinct document object once per call:
the canonical JSON of a list is ``[`` + the canonical JSON of its items joined
by ``,`` + ``]``, so a report's profile is assembled from its documents'
canonical strings. Bulk registration of many hosts running the same software
shares document objects, and this is what makes it fast. Documents parsed
separately (every report from its own JSON) are equal but distinct objects:
those are recognised by pydantic's own JSON rendering of the document (cheaper
than the canonical rendering; equal bytes mean equal data, so a hit is never
wrong), kept in a bounded cache across calls.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

import xxhash

from devmig.model import HostReport, ModelDocument

__all__ = ["ProfileCache"]


class ProfileCache:
    """Fingerprints, the profiles known to be stored, and their parsed documents."""

    MAX_RENDERED = 4096

    def __init__(self) -> None:
        self._stored: set[str] = set()
        self._documents: dict[str, tuple[ModelDocument, ...]] = {}
        self._canonical: dict[bytes, str] = {}

    def _render(self, doc: ModelDocument) -> str:
        raw = doc.__pydantic_serializer__.to_json(doc, by_alias=True, exclude_none=True)
        text = self._canonical.get(raw)
        if text is None:
            if len(self._canonical) >= self.MAX_RENDERED:
                self._canonical.clear()
            text = self._canonical[raw] = json.dumps(
                doc.to_json(), sort_keys=True, separators=(",", ":"))
        return text

    def fingerprints(self, reports: Sequence[HostReport]) -> list[tuple[str, str]]:
        """Return ``(fingerprint, canonical_json)`` of each report, in order."""
        rendered: dict[int, tuple[ModelDocument, tuple[str, str], str]] = {}
        by_canonical: dict[str, str] = {}
        out = []
        for report in reports:
            parts = []
            for doc in report.implementations:
                entry = rendered.get(id(doc))
                if entry is None:
                    key = (doc.implementation.name, doc.implementation.release)
                    text = self._render(doc)
                    entry = rendered[id(doc)] = (doc, key, text)  # keeps doc alive: id stays unique
                parts.append(entry)
            parts.sort(key=lambda e: e[1])
            canonical = "[" + ",".join(e[2] for e in parts) + "]"
            fingerprint = by_canonical.get(canonical)
            if fingerprint is None:
                fingerprint = by_canonical[canonical] = xxhash.xxh3_128_hexdigest(
                    canonical.encode("utf-8"))
            out.append((fingerprint, canonical))
        return out

    def stored(self, fingerprint: str) -> bool:
        """Whether this process has committed (or seen) that profile in the database."""
        return fingerprint in self._stored

    def mark_stored(self, fingerprints: Iterable[str]) -> None:
        """Remember profiles whose rows are committed."""
        self._stored.update(fingerprints)

    def documents(self, fingerprint: str) -> tuple[ModelDocument, ...] | None:
        """The parsed documents of a profile, if already loaded."""
        return self._documents.get(fingerprint)

    def remember(self, fingerprint: str, docs: tuple[ModelDocument, ...]) -> None:
        """Keep the parsed documents of a stored profile (profiles never change)."""
        self._documents[fingerprint] = docs
        self._stored.add(fingerprint)
