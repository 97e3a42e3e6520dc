"""Alembic, driven from code: the inventory's schema versions shipped in ``devmig/inventory/schema_versions``.

(Alembic calls them migrations; here that word means moving a device, so the folder is named for
what it holds: the versions of the inventory's database schema.)
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

__all__ = ["SCHEMA_VERSIONS", "alembic_config", "upgrade"]

SCHEMA_VERSIONS = Path(__file__).resolve().parent / "schema_versions"


def alembic_config(connection: sa.Connection | None = None, url: str | None = None) -> Config:
    """Return an alembic :class:`Config` for the inventory's schema versions.

    Args:
        connection: run on this connection (``env.py`` uses it as is).
        url: or connect to this database URL.
    """
    config = Config()
    config.set_main_option("script_location", str(SCHEMA_VERSIONS))
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def upgrade(connection: sa.Connection, revision: str = "head") -> None:
    """Migrate the database behind ``connection`` to ``revision`` (in its transaction)."""
    command.upgrade(alembic_config(connection), revision)
