"""Count what SQL an engine runs inside a block: a SQLAlchemy ``before_cursor_execute`` listener.

The fleet's polling tests pin how many statements a read costs (the same at 20 and at 200 hosts,
at 30 and at 300 drains) with this.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa

__all__ = ["executed"]


@contextmanager
def executed(engine: sa.Engine | None) -> Iterator[list[tuple[str, Any]]]:
    """Yield the ``(statement, parameters)`` run on ``engine`` inside the block (an ``executemany`` once).

    ``None`` (an in-memory inventory, which has no engine) yields a list that stays empty.
    """
    seen: list[tuple[str, Any]] = []
    if engine is None:
        yield seen
        return

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_rest: Any) -> None:
        seen.append((statement, parameters))

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)
