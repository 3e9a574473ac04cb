"""host protocol version, sections and status detail

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("hosts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("protocol_version", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("sections", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("status_detail", sa.Text(), nullable=True))
    # Registered hosts ran agents that advertised nothing: protocol 1, the L2 sections.
    hosts = sa.table(
        "hosts",
        sa.column("protocol_version", sa.Integer()),
        sa.column("sections", sa.JSON()),
    )
    op.execute(hosts.update().values(protocol_version=1, sections=["subnets", "ports"]))
    with op.batch_alter_table("hosts", schema=None) as batch_op:
        batch_op.alter_column("protocol_version", existing_type=sa.Integer(), nullable=False)
        batch_op.alter_column("sections", existing_type=sa.JSON(), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("hosts", schema=None) as batch_op:
        batch_op.drop_column("status_detail")
        batch_op.drop_column("sections")
        batch_op.drop_column("protocol_version")
