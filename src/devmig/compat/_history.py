"""Release history: which release of an implementation added a parameter or a value.

A check's hints are more useful when they say *which release* would accept a
device ("rx-table-size was added in acme-nic 2.0.0"). The core cannot know
that from one document; :class:`ReleaseHistory` learns it from a list of
documents given oldest first (the publication order of the releases; the core
never parses release strings).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from devmig.model import Implementation, ModelDocument, Value

__all__ = ["ReleaseHistory"]


@dataclass(frozen=True, slots=True)
class ReleaseHistory:
    """Earlier releases of implementations, oldest first.

    Build it with :meth:`learn` (or pass a list of documents wherever a
    history is accepted). Documents of several implementations may be mixed;
    a question names the implementation it is about.

    Attributes:
        documents: the documents, oldest first.
    """

    documents: tuple[ModelDocument, ...] = ()
    _added: dict[tuple[str, str, str], Implementation] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def learn(cls, documents: Iterable[ModelDocument]) -> ReleaseHistory:
        """Learn a history from documents listed oldest first.

        Args:
            documents: model documents of one or several implementations, each
                implementation's releases in publication order.

        Returns:
            The history; for each ``(implementation, model, parameter)`` the
            first release that defines the parameter.
        """
        docs = tuple(documents)
        added: dict[tuple[str, str, str], Implementation] = {}
        for doc in docs:
            for model in doc.models:
                for name in model.params:
                    added.setdefault((doc.implementation.name, model.model, name), doc.implementation)
        return cls(docs, added)

    def added_in(self, model: str, param: str, implementation: str | None = None) -> Implementation | None:
        """Return the first release that defines ``param`` in ``model``.

        Args:
            model: the model id.
            param: the parameter name.
            implementation: the implementation name; ``None`` for the first
                release of any implementation that defines it.

        Returns:
            The implementation release, or ``None`` when no known release defines it.
        """
        if implementation is not None:
            return self._added.get((implementation, model, param))
        for doc in self.documents:
            m = doc.find(model)
            if m is not None and param in m.params:
                return doc.implementation
        return None

    def introduced_off(
        self, model: str, param: str, implementation: str | None = None
    ) -> tuple[Implementation, Value] | None:
        """Return the release that introduced ``param`` in ``model`` and the off value it gave it.

        Args:
            model: the model id.
            param: the parameter name.
            implementation: prefer this implementation's releases; when none
                of them defines it, the first release of any implementation.

        Returns:
            ``(release, off value)``, or ``None`` when no known release defines it.
        """
        for only in ((implementation, None) if implementation is not None else (None,)):
            for doc in self.documents:
                if only is not None and doc.implementation.name != only:
                    continue
                m = doc.find(model)
                if m is not None and param in m.params:
                    return doc.implementation, m.params[param].off
        return None

    def allowed_since(
        self, model: str, param: str, value: Value, implementation: str | None = None
    ) -> Implementation | None:
        """Return the first release that allows ``param=value`` in ``model`` (typed).

        Args:
            model: the model id.
            param: the parameter name.
            value: the typed value.
            implementation: restrict to this implementation's releases.

        Returns:
            The implementation release, or ``None`` when no known release allows it.
        """
        for doc in self.documents:
            if implementation is not None and doc.implementation.name != implementation:
                continue
            m = doc.find(model)
            p = m.params.get(param) if m is not None else None
            if p is not None and p.allows(value):
                return doc.implementation
        return None
