"""network types: subnets' network_type, physical networks (+ grants), address scopes,
and the hosts' kernel capabilities and physical networks

Revision ID: 0011
Revises: 0007
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _resource() -> list[sa.Column]:
    return [
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "physical_networks",
        *_resource(),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("shared", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "physical_network_grants",
        sa.Column("physical_network_id", sa.String(length=36), nullable=False),
        sa.Column("tenant_id", sa.String(length=36), nullable=False),
        sa.ForeignKeyConstraint(
            ["physical_network_id"], ["physical_networks.id"], ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("physical_network_id", "tenant_id"),
    )
    op.create_index(
        "ix_physical_network_grants_tenant_id", "physical_network_grants", ["tenant_id"]
    )
    op.create_table(
        "address_scopes",
        *_resource(),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("cidr", sa.String(length=43), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("subnets", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("network_type", sa.String(length=8), nullable=False, server_default="vxlan")
        )
        batch_op.add_column(sa.Column("physical_network", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("segmentation_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("address_scope_id", sa.String(length=36), nullable=True))
        batch_op.create_index("ix_subnets_physical_network", ["physical_network"])
        batch_op.create_foreign_key(
            "fk_subnets_address_scope_id_address_scopes", "address_scopes",
            ["address_scope_id"], ["id"], ondelete="RESTRICT",
        )  # fmt: skip
    with op.batch_alter_table("subnets", schema=None) as batch_op:
        batch_op.alter_column("network_type", server_default=None)
    with op.batch_alter_table("hosts", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("capabilities", sa.JSON(), nullable=False, server_default="[]")
        )
        batch_op.add_column(
            sa.Column("physical_networks", sa.JSON(), nullable=False, server_default="[]")
        )
    with op.batch_alter_table("hosts", schema=None) as batch_op:
        batch_op.alter_column("capabilities", server_default=None)
        batch_op.alter_column("physical_networks", server_default=None)


def downgrade() -> None:
    with op.batch_alter_table("hosts", schema=None) as batch_op:
        batch_op.drop_column("physical_networks")
        batch_op.drop_column("capabilities")
    with op.batch_alter_table("subnets", schema=None) as batch_op:
        batch_op.drop_constraint("fk_subnets_address_scope_id_address_scopes", type_="foreignkey")
        batch_op.drop_index("ix_subnets_physical_network")
        batch_op.drop_column("address_scope_id")
        batch_op.drop_column("segmentation_id")
        batch_op.drop_column("physical_network")
        batch_op.drop_column("network_type")
    op.drop_table("address_scopes")
    op.drop_index("ix_physical_network_grants_tenant_id", table_name="physical_network_grants")
    op.drop_table("physical_network_grants")
    op.drop_table("physical_networks")
