"""load balancers

Revision ID: 0008
Revises: 0014
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0008"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TAGS = sa.JSON().with_variant(JSONB(), "postgresql")  # as every tags column since 0005


def upgrade() -> None:
    op.create_table(
        "load_balancers",
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("vpc_id", sa.String(length=36), nullable=False),
        sa.Column("vip_subnet_id", sa.String(length=36), nullable=False),
        sa.Column("vip_address", sa.String(length=45), nullable=False),
        sa.Column("vip_port_id", sa.String(length=36), nullable=True),
        sa.Column("admin_state_up", sa.Boolean(), nullable=False),
        sa.Column("tags", TAGS, nullable=False),
        sa.Column("host", sa.String(length=64), nullable=True),
        sa.Column("tenant_id", sa.String(length=36), nullable=False),
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("status_detail", sa.Text(), nullable=True),
        sa.Column("operating_status", sa.String(length=16), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_load_balancers_tenant_id_tenants"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["vip_port_id"],
            ["ports.id"],
            name=op.f("fk_load_balancers_vip_port_id_ports"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["vip_subnet_id"],
            ["subnets.id"],
            name=op.f("fk_load_balancers_vip_subnet_id_subnets"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["vpc_id"], ["vpcs.id"], name=op.f("fk_load_balancers_vpc_id_vpcs"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_load_balancers")),
        sa.UniqueConstraint("vip_port_id", name=op.f("uq_load_balancers_vip_port_id")),
    )
    with op.batch_alter_table("load_balancers", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_load_balancers_host"), ["host"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_load_balancers_tenant_id"), ["tenant_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_load_balancers_vip_subnet_id"), ["vip_subnet_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_load_balancers_vpc_id"), ["vpc_id"], unique=False)

    op.create_table(
        "pools",
        sa.Column("load_balancer_id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("protocol", sa.String(length=8), nullable=False),
        sa.Column("lb_algorithm", sa.String(length=24), nullable=False),
        sa.Column("admin_state_up", sa.Boolean(), nullable=False),
        sa.Column("tags", TAGS, nullable=False),
        sa.Column("tenant_id", sa.String(length=36), nullable=False),
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("status_detail", sa.Text(), nullable=True),
        sa.Column("operating_status", sa.String(length=16), nullable=False),
        sa.ForeignKeyConstraint(
            ["load_balancer_id"],
            ["load_balancers.id"],
            name=op.f("fk_pools_load_balancer_id_load_balancers"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_pools_tenant_id_tenants"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pools")),
    )
    with op.batch_alter_table("pools", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_pools_load_balancer_id"), ["load_balancer_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_pools_tenant_id"), ["tenant_id"], unique=False)

    op.create_table(
        "health_monitors",
        sa.Column("pool_id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("delay", sa.Integer(), nullable=False),
        sa.Column("timeout", sa.Integer(), nullable=False),
        sa.Column("max_retries", sa.Integer(), nullable=False),
        sa.Column("max_retries_down", sa.Integer(), nullable=False),
        sa.Column("http_method", sa.String(length=8), nullable=True),
        sa.Column("url_path", sa.String(length=255), nullable=True),
        sa.Column("expected_codes", sa.String(length=64), nullable=True),
        sa.Column("admin_state_up", sa.Boolean(), nullable=False),
        sa.Column("tags", TAGS, nullable=False),
        sa.Column("tenant_id", sa.String(length=36), nullable=False),
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("status_detail", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["pool_id"],
            ["pools.id"],
            name=op.f("fk_health_monitors_pool_id_pools"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_health_monitors_tenant_id_tenants"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_health_monitors")),
        sa.UniqueConstraint("pool_id", name=op.f("uq_health_monitors_pool_id")),
    )
    with op.batch_alter_table("health_monitors", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_health_monitors_tenant_id"), ["tenant_id"], unique=False
        )

    op.create_table(
        "listeners",
        sa.Column("load_balancer_id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("protocol", sa.String(length=8), nullable=False),
        sa.Column("transport", sa.String(length=3), nullable=False),
        sa.Column("protocol_port", sa.Integer(), nullable=False),
        sa.Column("default_pool_id", sa.String(length=36), nullable=True),
        sa.Column("admin_state_up", sa.Boolean(), nullable=False),
        sa.Column("tags", TAGS, nullable=False),
        sa.Column("tenant_id", sa.String(length=36), nullable=False),
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("status_detail", sa.Text(), nullable=True),
        sa.Column("operating_status", sa.String(length=16), nullable=False),
        sa.ForeignKeyConstraint(
            ["default_pool_id"],
            ["pools.id"],
            name=op.f("fk_listeners_default_pool_id_pools"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["load_balancer_id"],
            ["load_balancers.id"],
            name=op.f("fk_listeners_load_balancer_id_load_balancers"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_listeners_tenant_id_tenants"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_listeners")),
        sa.UniqueConstraint(
            "load_balancer_id",
            "transport",
            "protocol_port",
            name=op.f("uq_listeners_load_balancer_id_transport_protocol_port"),
        ),
    )
    with op.batch_alter_table("listeners", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_listeners_default_pool_id"), ["default_pool_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_listeners_load_balancer_id"), ["load_balancer_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_listeners_tenant_id"), ["tenant_id"], unique=False)

    op.create_table(
        "members",
        sa.Column("pool_id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("address", sa.String(length=45), nullable=False),
        sa.Column("protocol_port", sa.Integer(), nullable=False),
        sa.Column("weight", sa.Integer(), nullable=False),
        sa.Column("subnet_id", sa.String(length=36), nullable=False),
        sa.Column("admin_state_up", sa.Boolean(), nullable=False),
        sa.Column("tags", TAGS, nullable=False),
        sa.Column("tenant_id", sa.String(length=36), nullable=False),
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("status_detail", sa.Text(), nullable=True),
        sa.Column("operating_status", sa.String(length=16), nullable=False),
        sa.ForeignKeyConstraint(
            ["pool_id"], ["pools.id"], name=op.f("fk_members_pool_id_pools"), ondelete="RESTRICT"
        ),
        sa.ForeignKeyConstraint(
            ["subnet_id"],
            ["subnets.id"],
            name=op.f("fk_members_subnet_id_subnets"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_members_tenant_id_tenants"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_members")),
        sa.UniqueConstraint(
            "pool_id",
            "address",
            "protocol_port",
            name=op.f("uq_members_pool_id_address_protocol_port"),
        ),
    )
    with op.batch_alter_table("members", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_members_pool_id"), ["pool_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_members_subnet_id"), ["subnet_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_members_tenant_id"), ["tenant_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("members", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_members_tenant_id"))
        batch_op.drop_index(batch_op.f("ix_members_subnet_id"))
        batch_op.drop_index(batch_op.f("ix_members_pool_id"))

    op.drop_table("members")
    with op.batch_alter_table("listeners", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_listeners_tenant_id"))
        batch_op.drop_index(batch_op.f("ix_listeners_load_balancer_id"))
        batch_op.drop_index(batch_op.f("ix_listeners_default_pool_id"))

    op.drop_table("listeners")
    with op.batch_alter_table("health_monitors", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_health_monitors_tenant_id"))

    op.drop_table("health_monitors")
    with op.batch_alter_table("pools", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_pools_tenant_id"))
        batch_op.drop_index(batch_op.f("ix_pools_load_balancer_id"))

    op.drop_table("pools")
    with op.batch_alter_table("load_balancers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_load_balancers_vpc_id"))
        batch_op.drop_index(batch_op.f("ix_load_balancers_vip_subnet_id"))
        batch_op.drop_index(batch_op.f("ix_load_balancers_tenant_id"))
        batch_op.drop_index(batch_op.f("ix_load_balancers_host"))

    op.drop_table("load_balancers")
