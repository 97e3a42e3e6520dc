"""Each host's agent token, sealed by the manager (hosts.agent_token).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07 19:45:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table("hosts") as batch:
        batch.add_column(sa.Column("agent_token", sa.Text(), nullable=True))


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table("hosts") as batch:
        batch.drop_column("agent_token")
