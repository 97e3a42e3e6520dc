"""Alembic: ``upgrade head`` builds exactly the tables of ``devmig.inventory.metadata`` (no drift)."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from devmig.inventory import SqlInventory, metadata
from devmig.inventory._schema_upgrade import alembic_config


def _drift(url: str) -> list[object]:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            return list(compare_metadata(context, metadata))
    finally:
        engine.dispose()


def test_upgrade_head_then_no_drift(db_url: str) -> None:
    command.upgrade(alembic_config(url=db_url), "head")
    assert _drift(db_url) == []


def test_open_migrates_to_the_single_head(db_url: str) -> None:
    with SqlInventory(db_url) as inventory, inventory.engine.connect() as conn:
        current = MigrationContext.configure(conn).get_current_revision()
    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    assert [current] == heads
    assert _drift(db_url) == []


def test_downgrade_base_removes_every_table(db_url: str) -> None:
    config = alembic_config(url=db_url)
    command.upgrade(config, "head")
    command.downgrade(config, "base")
    engine = sa.create_engine(db_url, poolclass=sa.pool.NullPool)
    try:
        assert set(sa.inspect(engine).get_table_names()) <= {"alembic_version"}
    finally:
        engine.dispose()
    command.upgrade(config, "head")
    assert _drift(db_url) == []


def test_drift_is_detected(db_url: str) -> None:
    """The comparison can fail: a table missing from the database is reported."""
    command.upgrade(alembic_config(url=db_url), "head")
    engine = sa.create_engine(db_url, poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE migration_journal"))
    engine.dispose()
    assert any(diff[0] == "add_table" for diff in _drift(db_url))  # type: ignore[index]
