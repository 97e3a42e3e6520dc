"""The inventory's tables (SQLAlchemy Core), the single source of the schema.

Alembic's revisions under ``migrations/`` create exactly these tables; a test
runs ``alembic upgrade head`` and then compares the database with
:data:`metadata` (``compare_metadata``) on SQLite and PostgreSQL, so the two
never drift. Constraint names come from a naming convention so that both
databases (and autogenerate) agree on them.

Timestamps are ``DateTime(timezone=True)``; SQLite stores them without a zone,
so readers treat a naive value as UTC.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

__all__ = [
    "devices",
    "drain_journal",
    "host_profile_history",
    "hosts",
    "metadata",
    "migration_journal",
    "newest_page",
    "pool_members",
    "pools",
    "profiles",
]

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)

NAME = sa.String(256)
URL = sa.String(2048)
FINGERPRINT = sa.String(32)
TIMESTAMP = sa.DateTime(timezone=True)

profiles = sa.Table(
    "profiles",
    metadata,
    sa.Column("fingerprint", FINGERPRINT, primary_key=True),
    sa.Column("canonical", sa.Text, nullable=False),
    sa.Column("first_seen", TIMESTAMP, nullable=False),
)

hosts = sa.Table(
    "hosts",
    metadata,
    sa.Column("name", NAME, primary_key=True),
    sa.Column("url", URL, nullable=False, unique=True),
    sa.Column("fingerprint", FINGERPRINT, sa.ForeignKey("profiles.fingerprint"), nullable=True),
    sa.Column("cordoned", sa.Boolean, nullable=False),
    sa.Column("reachable", sa.Boolean, nullable=False),
    sa.Column("missed_polls", sa.Integer, nullable=False),
    sa.Column("last_seen", TIMESTAMP, nullable=True),
    sa.Column("last_etag", sa.String(256), nullable=True),
    sa.Column("device_count", sa.Integer, nullable=False),
    sa.Column("load", sa.Integer, nullable=False),
    sa.Column("agent_token", sa.Text, nullable=True),  # sealed by the manager; never in a HostView
)

host_profile_history = sa.Table(
    "host_profile_history",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column(
        "host", NAME, sa.ForeignKey("hosts.name", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("fingerprint", FINGERPRINT, sa.ForeignKey("profiles.fingerprint"), nullable=False),
    sa.Column("first_seen", TIMESTAMP, nullable=False),
    sa.Column("last_seen", TIMESTAMP, nullable=False),
    sa.Index(None, "host", "id"),
)

pools = sa.Table(
    "pools",
    metadata,
    sa.Column("name", NAME, primary_key=True),
)

pool_members = sa.Table(
    "pool_members",
    metadata,
    sa.Column(
        "pool", NAME, sa.ForeignKey("pools.name", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column(
        "host", NAME, sa.ForeignKey("hosts.name", ondelete="CASCADE"), primary_key=True
    ),
)

devices = sa.Table(
    "devices",
    metadata,
    sa.Column(
        "host", NAME, sa.ForeignKey("hosts.name", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("id", sa.String(128), primary_key=True),
    sa.Column("model", sa.String(512), nullable=False),
    sa.Column("config", sa.JSON, nullable=False),
    sa.Column("state", sa.String(32), nullable=False),
    sa.Column("running", sa.Boolean, nullable=False),
)

migration_journal = sa.Table(
    "migration_journal",
    metadata,
    sa.Column("id", sa.String(128), primary_key=True),
    sa.Column("phase", sa.String(64), nullable=False),
    sa.Column("payload", sa.JSON, nullable=False),
    sa.Column("updated_at", TIMESTAMP, nullable=False),
)

drain_journal = sa.Table(
    "drain_journal",
    metadata,
    sa.Column("id", sa.String(128), primary_key=True),
    sa.Column("phase", sa.String(64), nullable=False),
    sa.Column("payload", sa.JSON, nullable=False),
    sa.Column("updated_at", TIMESTAMP, nullable=False),
)
"""The manager's drains (see :mod:`devmig.orchestration._drain`): one row per drain, its phase and record."""


def newest_page(
    conn: sa.Connection, journal: sa.Table, unfinished: sa.ColumnElement[bool], limit: int
) -> tuple[list[sa.Row[Any]], int, int]:
    """Return a journal table's newest ``limit`` rows, its row count and how many rows are ``unfinished``.

    Two statements on ``conn``: one ``COUNT``, then one ``ORDER BY ... LIMIT``. The order is
    :func:`~devmig.inventory._interface.newest_first`'s: the payload's ``created_at`` (read by the database
    from the JSON; missing is ``''``), then the id, compared as code points (PostgreSQL:
    ``COLLATE "C"``, whatever the database's locale) as Python compares the strings.
    """
    counts = sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(sa.case((unfinished, 1), else_=0)), 0))
    total, open_rows = conn.execute(counts.select_from(journal)).one()
    created: sa.ColumnElement[str] = sa.func.coalesce(journal.c.payload["created_at"].as_string(), "")
    row_id: sa.ColumnElement[str] = journal.c.id
    if conn.dialect.name == "postgresql":
        created, row_id = created.collate("C"), row_id.collate("C")
    rows = conn.execute(sa.select(journal).order_by(created.desc(), row_id.desc()).limit(limit)).all()
    return list(rows), int(total), int(open_rows)
