"""Alembic, driven from code: the migrations shipped in ``devmig.fleet/migrations``."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

__all__ = ["MIGRATIONS", "alembic_config", "upgrade"]

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_config(connection: sa.Connection | None = None, url: str | None = None) -> Config:
    """Return an alembic :class:`Config` for the inventory's migrations.

    Args:
        connection: run on this connection (``env.py`` uses it as is).
        url: or connect to this database URL.
    """
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def upgrade(connection: sa.Connection, revision: str = "head") -> None:
    """Migrate the database behind ``connection`` to ``revision`` (in its transaction)."""
    command.upgrade(alembic_config(connection), revision)
