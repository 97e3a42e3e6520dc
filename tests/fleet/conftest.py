"""Inventory fixtures: every inventory test runs on the twin, a SQLite file and PostgreSQL.

PostgreSQL comes from ``DEVMIG_TEST_PG_URL`` (``.ci/run`` starts a throwaway
cluster and exports it); each test gets a database of its own, dropped at
teardown. Without the variable the PostgreSQL cases skip — except under
``CI=true``, where they fail: CI must test PostgreSQL for real.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from devmig.fleet import Inventory, MemoryInventory, SqlInventory, sqlite_url

PG_ENV = "DEVMIG_TEST_PG_URL"


def _pg_base_url() -> str:
    url = os.environ.get(PG_ENV)
    if not url:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{PG_ENV} is not set under CI=true: PostgreSQL tests must run in CI")
        pytest.skip(f"{PG_ENV} not set (no PostgreSQL to test against)")
    return url


@pytest.fixture
def pg_url() -> Iterator[str]:
    """The URL of a fresh, empty PostgreSQL database (dropped at teardown)."""
    base = sa.make_url(_pg_base_url())
    name = f"devmig_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base.set(database="postgres"), isolation_level="AUTOCOMMIT",
                             poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database URL: a SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return sqlite_url(tmp_path / "inventory.db")
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def make_inventory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], Inventory]]:
    """A factory of inventories over one store (the twin, SQLite, PostgreSQL); all closed at teardown."""
    made: list[Inventory] = []
    if request.param == "memory":
        shared = MemoryInventory()

        def make() -> Inventory:
            if shared.state.value == "new":
                shared.open()
            return shared
    else:
        url = sqlite_url(tmp_path / "inventory.db") if request.param == "sqlite" else request.getfixturevalue("pg_url")

        def make() -> Inventory:
            inventory = SqlInventory(url)
            inventory.open()
            made.append(inventory)
            return inventory

    yield make
    for inventory in made:
        inventory.close()
    if request.param == "memory":
        shared.close()


@pytest.fixture
def inventory(make_inventory: Callable[[], Inventory]) -> Inventory:
    """An open inventory (twin, SQLite file or PostgreSQL)."""
    return make_inventory()
