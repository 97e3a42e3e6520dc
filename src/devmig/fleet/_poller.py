"""Placeholder: replaced below."""
from __future__ import annotations

__all__ = ["PollOutcome", "Poller"]


class PollOutcome:
    """Placeholder."""


class Poller:
    """Placeholder."""
