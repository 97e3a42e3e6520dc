"""Profile fingerprints computed fast, and what an inventory process knows about profiles.

:meth:`ProfileCache.fingerprints` gives exactly :func:`~devmig.inventory.report_profile`
for each report -- :func:`~devmig.compat.profile_json` and
:func:`~devmig.compat.fingerprint_of`, the one definition -- but renders each
distinct document object once: the canonical JSON of a list is ``[`` + the
canonical JSON of its items joined by ``,`` + ``]``, so a report's profile is
assembled from its documents' canonical strings (``profile_json``'s
``render``). Bulk registration of many hosts running the same software
shares document objects, and this is what makes it fast. Documents parsed
separately (every report from its own JSON) are equal but distinct objects:
those are recognised by pydantic's own JSON rendering of the document (cheaper
than the canonical rendering; equal bytes mean equal data, so a hit is never
wrong), kept in a bounded cache across calls. The answers for document objects
already seen (one document, or a report's tuple of documents) are kept across
calls too, in bounded caches keyed by identity that hold the documents (so an
identity is never reused while its entry lives; documents are immutable).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

from devmig.compat import document_json, fingerprint_of, profile_json
from devmig.inventory._interface import profile_documents
from devmig.model import HostReport, ModelDocument

__all__ = ["ProfileCache"]

_DECODER = json.JSONDecoder()


class ProfileCache:
    """Fingerprints, the profiles known to be stored, and their parsed documents."""

    MAX_RENDERED = 4096
    MAX_IDENTITIES = 1024  # documents and document tuples remembered by identity (held alive)

    def __init__(self) -> None:
        self._stored: set[str] = set()
        self._documents: dict[str, tuple[ModelDocument, ...]] = {}
        self._canonical: dict[bytes, str] = {}
        self._rendered_by_id: dict[int, tuple[ModelDocument, str]] = {}
        self._by_docs: dict[tuple[int, ...], tuple[tuple[ModelDocument, ...], tuple[str, str]]] = {}
        self._parsed: dict[str, ModelDocument] = {}

    def _render(self, doc: ModelDocument) -> str:
        """:func:`~devmig.compat.document_json`, recognised by pydantic's (cheaper) rendering."""
        raw = doc.__pydantic_serializer__.to_json(doc, by_alias=True, exclude_none=True)
        text = self._canonical.get(raw)
        if text is None:
            if len(self._canonical) >= self.MAX_RENDERED:
                self._canonical.clear()
            text = self._canonical[raw] = document_json(doc)
        return text

    def _rendered(self, doc: ModelDocument) -> str:
        """:func:`~devmig.compat.document_json`, remembered by the document's identity."""
        entry = self._rendered_by_id.get(id(doc))
        if entry is None:
            if len(self._rendered_by_id) >= self.MAX_IDENTITIES:
                self._rendered_by_id.clear()
            # Holds the document: its id stays its own while the entry lives.
            entry = self._rendered_by_id[id(doc)] = (doc, self._render(doc))
        return entry[1]

    def fingerprints(self, reports: Sequence[HostReport]) -> list[tuple[str, str]]:
        """Return ``(fingerprint, canonical_json)`` of each report, in order."""
        by_docs = self._by_docs
        out = []
        for report in reports:
            docs = report.implementations
            ident = tuple(map(id, docs))
            known = by_docs.get(ident)
            if known is not None:
                out.append(known[1])
                continue
            canonical = profile_json(docs, render=self._rendered)
            answer = (fingerprint_of(canonical), canonical)
            if len(by_docs) >= self.MAX_IDENTITIES:
                by_docs.clear()
            by_docs[ident] = (docs, answer)  # holds the documents: their ids stay theirs
            out.append(answer)
        return out

    def stored(self, fingerprint: str) -> bool:
        """Whether this process has committed (or seen) that profile in the database."""
        return fingerprint in self._stored

    def mark_stored(self, fingerprints: Iterable[str]) -> None:
        """Remember profiles whose rows are committed."""
        self._stored.update(fingerprints)

    def parse(self, canonical: str) -> tuple[ModelDocument, ...]:
        """Return the documents of a stored profile's canonical JSON (validated when recorded).

        Equal to :func:`~devmig.inventory._interface.profile_documents`, but each
        distinct document (by its exact canonical text) is validated once and
        shared: profiles of one fleet mostly differ in one document.
        """
        out = []
        parsed = self._parsed
        end = len(canonical)
        i = 1
        try:
            if not canonical.startswith("[") or canonical.endswith(",]"):
                raise ValueError(canonical[:1])
            while i < end and canonical[i] != "]":
                raw, stop = _DECODER.raw_decode(canonical, i)
                text = canonical[i:stop]
                doc = parsed.get(text)
                if doc is None:
                    if len(parsed) >= self.MAX_RENDERED:
                        parsed.clear()
                    doc = parsed[text] = ModelDocument.model_validate(raw)
                out.append(doc)
                i = stop + 1 if canonical[stop] == "," else stop
            if canonical[i:] != "]":
                raise ValueError(canonical[i:])
        except ValueError:  # not the compact form this module writes: parse it whole
            return profile_documents(canonical)
        return tuple(out)

    def documents(self, fingerprint: str) -> tuple[ModelDocument, ...] | None:
        """The parsed documents of a profile, if already loaded."""
        return self._documents.get(fingerprint)

    def remember(self, fingerprint: str, docs: tuple[ModelDocument, ...]) -> None:
        """Keep the parsed documents of a stored profile (profiles never change)."""
        self._documents[fingerprint] = docs
        self._stored.add(fingerprint)
