"""network ACLs, their entries, and the subnet's association

Revision ID: 0007
Revises: 0009
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0007"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _resource() -> list[sa.Column]:
    return [
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.String(length=36), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "network_acls",
        *_resource(),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("status_detail", sa.Text(), nullable=True),
        sa.Column("vpc_id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("tags", sa.JSON().with_variant(JSONB(), "postgresql"), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["vpc_id"], ["vpcs.id"], ondelete="RESTRICT"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_network_acls_tenant_id", "network_acls", ["tenant_id"])
    op.create_index("ix_network_acls_vpc_id", "network_acls", ["vpc_id"])
    op.create_table(
        "network_acl_entries",
        *_resource(),
        sa.Column("network_acl_id", sa.String(length=36), nullable=False),
        sa.Column("rule_number", sa.Integer(), nullable=False),
        sa.Column("direction", sa.String(length=8), nullable=False),
        sa.Column("action", sa.String(length=8), nullable=False),
        sa.Column("protocol", sa.String(length=8), nullable=False),
        sa.Column("port_min", sa.Integer(), nullable=True),
        sa.Column("port_max", sa.Integer(), nullable=True),
        sa.Column("cidr", sa.String(length=43), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["network_acl_id"], ["network_acls.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("network_acl_id", "direction", "rule_number"),
    )
    op.create_index("ix_network_acl_entries_tenant_id", "network_acl_entries", ["tenant_id"])
    op.create_index(
        "ix_network_acl_entries_network_acl_id", "network_acl_entries", ["network_acl_id"]
    )
    with op.batch_alter_table("subnets", schema=None) as batch_op:
        batch_op.add_column(sa.Column("network_acl_id", sa.String(length=36), nullable=True))
        batch_op.create_index("ix_subnets_network_acl_id", ["network_acl_id"])
        batch_op.create_foreign_key(
            "fk_subnets_network_acl_id_network_acls", "network_acls", ["network_acl_id"], ["id"],
            ondelete="RESTRICT",
        )  # fmt: skip


def downgrade() -> None:
    with op.batch_alter_table("subnets", schema=None) as batch_op:
        batch_op.drop_constraint("fk_subnets_network_acl_id_network_acls", type_="foreignkey")
        batch_op.drop_index("ix_subnets_network_acl_id")
        batch_op.drop_column("network_acl_id")
    op.drop_table("network_acl_entries")
    op.drop_table("network_acls")
