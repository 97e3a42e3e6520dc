"""Initial inventory schema: profiles, hosts, history, pools, devices, migration journal.

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-25 18:42:06.530015
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "migration_journal",
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("phase", sa.String(length=64), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_migration_journal")),
    )
    op.create_table(
        "pools",
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_pools")),
    )
    op.create_table(
        "profiles",
        sa.Column("fingerprint", sa.String(length=32), nullable=False),
        sa.Column("canonical", sa.Text(), nullable=False),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("fingerprint", name=op.f("pk_profiles")),
    )
    op.create_table(
        "hosts",
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column("url", sa.String(length=2048), nullable=False),
        sa.Column("fingerprint", sa.String(length=32), nullable=True),
        sa.Column("cordoned", sa.Boolean(), nullable=False),
        sa.Column("reachable", sa.Boolean(), nullable=False),
        sa.Column("missed_polls", sa.Integer(), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_etag", sa.String(length=256), nullable=True),
        sa.Column("device_count", sa.Integer(), nullable=False),
        sa.Column("load", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["fingerprint"], ["profiles.fingerprint"], name=op.f("fk_hosts_fingerprint_profiles")
        ),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_hosts")),
        sa.UniqueConstraint("url", name=op.f("uq_hosts_url")),
    )
    op.create_table(
        "devices",
        sa.Column("host", sa.String(length=256), nullable=False),
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("model", sa.String(length=512), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=32), nullable=False),
        sa.Column("running", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["host"], ["hosts.name"], name=op.f("fk_devices_host_hosts"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("host", "id", name=op.f("pk_devices")),
    )
    op.create_table(
        "host_profile_history",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("host", sa.String(length=256), nullable=False),
        sa.Column("fingerprint", sa.String(length=32), nullable=False),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["fingerprint"],
            ["profiles.fingerprint"],
            name=op.f("fk_host_profile_history_fingerprint_profiles"),
        ),
        sa.ForeignKeyConstraint(
            ["host"],
            ["hosts.name"],
            name=op.f("fk_host_profile_history_host_hosts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_host_profile_history")),
    )
    op.create_index(op.f("ix_host_profile_history_host_id"), "host_profile_history", ["host", "id"])

    op.create_table(
        "pool_members",
        sa.Column("pool", sa.String(length=256), nullable=False),
        sa.Column("host", sa.String(length=256), nullable=False),
        sa.ForeignKeyConstraint(
            ["host"], ["hosts.name"], name=op.f("fk_pool_members_host_hosts"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["pool"], ["pools.name"], name=op.f("fk_pool_members_pool_pools"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("pool", "host", name=op.f("pk_pool_members")),
    )


def downgrade() -> None:
    """Revert this revision."""
    op.drop_table("pool_members")
    op.drop_index(op.f("ix_host_profile_history_host_id"), table_name="host_profile_history")
    op.drop_table("host_profile_history")
    op.drop_table("devices")
    op.drop_table("hosts")
    op.drop_table("profiles")
    op.drop_table("pools")
    op.drop_table("migration_journal")
