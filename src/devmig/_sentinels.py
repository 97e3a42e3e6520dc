"""``NEED_DATA``: the one sentinel every sans-IO reader of devmig returns for "feed me more bytes".

The state codec (:class:`~devmig.state.StreamDecoder`) and the migration
hand-off (:class:`~devmig.migration.SourceHandoff`,
:class:`~devmig.migration.DestinationHandoff`) return it from
``next_event()`` with the same meaning, as h11 does: feed more received
bytes, then ask again. It is one object, so a caller driving both compares
``event is NEED_DATA`` whichever package it imported the name from.
"""

from __future__ import annotations

import enum
from typing import Final

__all__ = ["NEED_DATA", "NeedData"]


class NeedData(enum.Enum):
    """Type of the :data:`NEED_DATA` sentinel."""

    NEED_DATA = "NEED_DATA"

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA: Final = NeedData.NEED_DATA
"""Returned by ``next_event()`` when no whole record or frame is buffered: feed more bytes."""
